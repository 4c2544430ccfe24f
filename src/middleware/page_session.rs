//! The session of an injected page: its handshake starts when the request
//! arrives and is polled by the response future and the body while the page
//! streams (no spawned task: dropping them cancels it), then rendered as the
//! snippet. A session finished but never written into its page is
//! terminated ([`Unclaimed`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::driver::Unclaimed;
use crate::html::json::JsonObject;
use crate::html::session_json::{error_json, session_json};
use crate::html::snippet::{SnippetContext, default_snippet};
use crate::middleware::config::Config;
use crate::middleware::credentials_source::CredentialsFuture;
use crate::middleware::establish::establish;
use crate::middleware::prebind_request::PrebindRequest;
use crate::protocol::credentials::Credentials;
use crate::telemetry::{PathKind, report};
use crate::transport::BoshTransport;

/// Who a page's session is for: known when the request arrived, or still
/// being looked up.
pub(crate) enum PageCredentials {
    Known(Credentials),
    Later(CredentialsFuture),
}

/// The snippet for a page: runs the handshake for the request's credentials
/// and renders the session or the error; `None` when there is nobody to log
/// in (the page is served as is). With `reuse`, the browser said it holds a
/// live session of its own: no handshake, the snippet says so.
pub(crate) fn page_snippet<T: BoshTransport>(
    config: Arc<Config>,
    transport: T,
    credentials: PageCredentials,
    reuse: bool,
) -> SnippetFuture {
    Box::pin(async move {
        let credentials = match credentials {
            PageCredentials::Known(credentials) => credentials,
            PageCredentials::Later(future) => {
                let Some(credentials) = future.await else {
                    log_no_credentials();
                    return None;
                };
                credentials
            }
        };
        if reuse {
            crate::telemetry::page_reuse();
            return Some(Snippet::unclaimed(reuse_snippet(&config, &credentials)));
        }
        let started = tokio::time::Instant::now();
        let outcome = establish(
            &config,
            transport.clone(),
            credentials,
            None,
            &PrebindRequest::default(),
        )
        .await;
        let (bosh_service_url, node) = match &outcome {
            Ok((_, node)) => (config.bosh_service_url(*node), *node),
            Err(_) => (config.public_bosh_url.as_str(), 0),
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
        let unclaimed = outcome.ok().map(|session| {
            // Ended, if never written into the page, at the node that
            // made it.
            let url = &config.cluster.node(node).url;
            Unclaimed::new(transport, &config.client, url, &session)
        });
        Some(Snippet {
            markup: Bytes::from(markup),
            unclaimed,
        })
    })
}

/// `{"reuse":true,"jid":…}`: the page restores the session it keeps
/// (`jid` is who it must belong to: the account's bare JID, or the domain
/// for anonymous logins, as Strophe.js `restore(jid)` compares them).
/// Always the default element: a custom renderer renders sessions.
fn reuse_snippet(config: &Config, credentials: &Credentials) -> Bytes {
    let jid = credentials
        .bare_jid()
        .unwrap_or_else(|| credentials.domain().to_owned());
    let json = JsonObject::new()
        .boolean("reuse", true)
        .string("jid", &jid)
        // The layer does not know which node the kept session lives on:
        // with several nodes, the URL for all of them (the pass-through's
        // base path, or `public_bosh_url`), right where nodes forward each
        // other's sessions (ejabberd).
        .string("bosh_service_url", &config.public_bosh_url)
        .finish();
    Bytes::from(default_snippet(&config.pages.element_id, &json))
}

/// A page's snippet, and the session in it until the page carries it.
#[derive(Debug)]
pub(crate) struct Snippet {
    markup: Bytes,
    /// The session, terminated if the snippet is dropped unwritten.
    unclaimed: Option<Unclaimed>,
}

impl Snippet {
    fn unclaimed(markup: Bytes) -> Self {
        Snippet {
            markup,
            unclaimed: None,
        }
    }

    /// The markup, to be written into the page: the session is handed over.
    fn write(self) -> Bytes {
        if let Some(unclaimed) = self.unclaimed {
            unclaimed.claim();
        }
        self.markup
    }
}

/// The future of a page's snippet: `None` when there is nobody to log in
/// (the page is then served without injection).
pub(crate) type SnippetFuture = Pin<Box<dyn Future<Output = Option<Snippet>> + Send>>;

/// A snippet being made while the page streams: polled for progress by the
/// response future and the body, so the handshake runs concurrently with the
/// inner service without a spawned task (dropping it cancels the handshake,
/// or terminates the session it finished).
pub(crate) enum PendingSnippet {
    Running(SnippetFuture),
    Ready(Option<Snippet>),
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

    /// Waits for the snippet and takes it, to be written into the page.
    pub(crate) fn poll_take(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        self.progress(cx);
        match std::mem::replace(self, PendingSnippet::Taken) {
            PendingSnippet::Ready(snippet) => Poll::Ready(snippet.map(Snippet::write)),
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

/// A page request with nobody to log in. Not an error (a guest on a
/// members-only site), but the usual cause of "my pages get no snippet":
/// the auth middleware runs inside the prebind layer, or never inserts
/// credentials.
pub(crate) fn log_no_credentials() {
    tracing::debug!(
        "no credentials for this page request: serving it without a snippet \
         (is the auth middleware outside the prebind layer?)"
    );
}
