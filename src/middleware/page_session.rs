//! The session of an injected page: its handshake starts when the request
//! arrives and is polled by the response future and the body while the page
//! streams (no spawned task: dropping them cancels it), then rendered as the
//! snippet.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::html::session_json::{error_json, session_json};
use crate::html::snippet::{SnippetContext, default_snippet};
use crate::middleware::config::Config;
use crate::middleware::establish::establish;
use crate::middleware::prebind_request::PrebindRequest;
use crate::telemetry::{PathKind, report};
use crate::transport::BoshTransport;

/// The snippet for a page: runs the handshake for the request's credentials
/// and renders the session or the error; `None` when there is nobody to log
/// in (the page is served as is).
pub(crate) fn page_snippet<T: BoshTransport>(
    config: Arc<Config>,
    transport: T,
    parts: &http::request::Parts,
) -> SnippetFuture {
    let credentials = config.credentials.credentials(parts);
    Box::pin(async move {
        let Some(credentials) = credentials.await else {
            // Not an error (a guest on a members-only site), but the usual
            // cause of "my pages get no snippet": the auth middleware runs
            // inside the prebind layer, or never inserts credentials.
            tracing::debug!(
                "no credentials for this page request: serving it without a snippet \
                 (is the auth middleware outside the prebind layer?)"
            );
            return None;
        };
        let started = tokio::time::Instant::now();
        let outcome = establish(
            &config,
            transport,
            credentials,
            None,
            &PrebindRequest::default(),
        )
        .await;
        let bosh_service_url = match &outcome {
            Ok((_, node)) => config.bosh_service_url(*node),
            Err(_) => &config.public_bosh_url,
        };
        let outcome = outcome.map(|(session, _)| session);
        report(
            config.on_outcome.as_deref(),
            &config.warnings,
            &config.cm_for_logs(),
            PathKind::Page,
            outcome.as_ref(),
            started.elapsed(),
        );
        let json = match &outcome {
            Ok(session) => session_json(session, bosh_service_url),
            Err(error) => error_json(error),
        };
        let pages = &config.pages;
        let markup = match &pages.renderer {
            Some(render) => render(SnippetContext {
                outcome: outcome.as_ref(),
                json: &json,
                bosh_service_url,
            }),
            None => default_snippet(&pages.element_id, &json),
        };
        Some(Bytes::from(markup))
    })
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
