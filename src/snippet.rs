//! The markup injected into HTML pages: by default a non-executable
//! `<script type="application/json" id="xmpp-prebind">` element (no CSP nonce
//! needed) holding the session as JSON escaped for a script context, or
//! `{"error", "condition"}` when the handshake failed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::error::PrebindError;
use crate::handshake::PrebindSession;

/// What a custom snippet renderer gets (see
/// [`PrebindLayer::render_snippet`](crate::PrebindLayer::render_snippet)).
#[derive(Debug)]
#[non_exhaustive]
pub struct SnippetContext<'a> {
    /// The session, or why there is none.
    pub outcome: Result<&'a PrebindSession, &'a PrebindError>,
    /// The default JSON payload (session or error object), already safe to
    /// place inside a `<script>` element.
    pub json: &'a str,
    /// The BOSH URL the browser should attach to.
    pub bosh_service_url: &'a str,
}

/// Renders the snippet.
pub(crate) type Renderer = dyn Fn(SnippetContext<'_>) -> String + Send + Sync;

/// The default snippet: `<script type="application/json" id="ID">JSON</script>`.
pub(crate) fn default_snippet(element_id: &str, json: &str) -> String {
    format!("<script type=\"application/json\" id=\"{element_id}\">{json}</script>")
}

/// An element id is used verbatim in an attribute: keep it to characters
/// that need no escaping.
pub(crate) fn valid_element_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The future of a page's snippet: `None` when there is nobody to log in
/// (the page is then served without injection).
pub(crate) type SnippetFuture = Pin<Box<dyn Future<Output = Option<Bytes>> + Send>>;

/// A snippet being made while the page streams: polled for progress by the
/// response future and the body, so the handshake runs concurrently with the
/// inner service without a spawned task (dropping it cancels the handshake).
pub(crate) enum PendingSnippet {
    Running(SnippetFuture),
    Ready(Option<Bytes>),
    Taken,
}

impl PendingSnippet {
    /// Drives the handshake; keeps its result.
    pub(crate) fn progress(&mut self, cx: &mut Context<'_>) {
        if let PendingSnippet::Running(future) = self {
            if let Poll::Ready(snippet) = future.as_mut().poll(cx) {
                *self = PendingSnippet::Ready(snippet);
            }
        }
    }

    /// Waits for the snippet and takes it.
    pub(crate) fn poll_take(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        self.progress(cx);
        match std::mem::replace(self, PendingSnippet::Taken) {
            PendingSnippet::Ready(snippet) => Poll::Ready(snippet),
            PendingSnippet::Taken => Poll::Ready(None),
            running => {
                *self = running;
                Poll::Pending
            }
        }
    }
}

impl std::fmt::Debug for PendingSnippet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PendingSnippet::Running(_) => "PendingSnippet::Running",
            PendingSnippet::Ready(_) => "PendingSnippet::Ready",
            PendingSnippet::Taken => "PendingSnippet::Taken",
        })
    }
}
