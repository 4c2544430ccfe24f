//! The driver: runs the sans-IO [`Handshake`] over a
//! [`BoshTransport`], with a timeout per request, a deadline for the whole
//! handshake and a cap on response size, and ends (best effort) a session
//! whose handshake stopped half-way.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::Full;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::capped_body::{CappedReadError, read_capped};
use crate::error::PrebindError;
use crate::protocol::handshake::{
    DeriveRequest, Handshake, HandshakeConfig, HandshakeError, PrebindSession, Step,
};
use crate::protocol::scram_cache::ScramCache;
use crate::telemetry::{self, TerminateResult};
use crate::transport::{BoshTransport, BoxError};

/// How the driver talks to a connection manager (which one is given per run).
#[derive(Debug, Clone)]
pub(crate) struct ClientSettings {
    pub(crate) request_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_response_body: usize,
    /// Permits for `terminate` requests in flight, shared by every clone.
    pub(crate) terminates: Arc<Semaphore>,
    /// Where SCRAM salted passwords are cached across handshakes, if anywhere.
    pub(crate) scram_cache: Option<Arc<ScramCache>>,
    /// Run SCRAM's PBKDF2 on the task's own thread instead of
    /// `spawn_blocking` (tests and benchmarks).
    pub(crate) derive_inline: bool,
    /// Derivations running at once on blocking threads: more than the
    /// cores would only take CPU time from the runtime's workers.
    pub(crate) derivations: Arc<tokio::sync::Semaphore>,
}

/// Why a handshake failed, and whether another connection manager may be
/// tried for it.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The session-creation request got no usable answer (transport error,
    /// request timeout, HTTP 5xx, or a terminate naming the server rather
    /// than the request): no session exists for us at that CM, so the same
    /// prebind may be made at another one.
    NodeFailed(PrebindError),
    /// Anything else, in particular every failure once a sid exists.
    Failed(PrebindError),
}

impl Failure {
    /// The error, whatever the kind.
    pub(crate) fn into_error(self) -> PrebindError {
        match self {
            Failure::NodeFailed(error) | Failure::Failed(error) => error,
        }
    }

    /// The error, whatever the kind.
    pub(crate) fn error(&self) -> &PrebindError {
        match self {
            Failure::NodeFailed(error) | Failure::Failed(error) => error,
        }
    }
}

impl From<PrebindError> for Failure {
    fn from(error: PrebindError) -> Self {
        Failure::Failed(error)
    }
}

/// `terminate` requests in flight at once (abandoned handshakes, sessions
/// finished for pages that were not injected). Beyond it a session is left
/// to the CM's inactivity timeout (XEP-0124 §8: Prosody 60 s, ejabberd
/// 30 s): a flood of cancelled pages must not become a flood of tasks.
pub(crate) const MAX_CONCURRENT_TERMINATES: usize = 32;

/// Runs a whole handshake at the CM at `url`, to finish by `deadline`, in a
/// `prebind` span (see `telemetry`) whose fields are recorded as they become
/// known.
pub(crate) async fn run<T: BoshTransport>(
    transport: T,
    settings: &ClientSettings,
    url: &Uri,
    config: HandshakeConfig,
    deadline: Instant,
) -> Result<PrebindSession, Failure> {
    let span = tracing::info_span!(
        "prebind",
        mechanism = tracing::field::Empty,
        first_rid = tracing::field::Empty,
        round_trips = tracing::field::Empty,
        elapsed_ms = tracing::field::Empty,
        outcome = tracing::field::Empty,
        condition = tracing::field::Empty,
    );
    let started = Instant::now();
    let mut progress = Progress::default();
    let result = drive(
        transport,
        settings,
        url,
        config,
        deadline,
        &span,
        &mut progress,
    )
    .instrument(span.clone())
    .await;
    if !span.is_disabled() {
        span.record("round_trips", progress.round_trips);
        if let Some(mechanism) = progress.mechanism {
            span.record("mechanism", mechanism);
        }
        span.record("elapsed_ms", started.elapsed().as_secs_f64() * 1e3);
        match &result {
            Ok(_) => span.record("outcome", "ok"),
            Err(failure) => span
                .record("outcome", "error")
                .record("condition", failure.error().condition()),
        };
    }
    result
}

/// What the span reports of a handshake, success or not.
#[derive(Default)]
struct Progress {
    round_trips: u32,
    mechanism: Option<&'static str>,
}

async fn drive<T: BoshTransport>(
    mut transport: T,
    settings: &ClientSettings,
    url: &Uri,
    config: HandshakeConfig,
    deadline: Instant,
    span: &tracing::Span,
    progress: &mut Progress,
) -> Result<PrebindSession, Failure> {
    let started = Instant::now();
    let (mut handshake, mut body) = Handshake::start(config);
    span.record("first_rid", handshake.last_rid());
    let mut abandoned = Abandoned {
        transport: Some(transport.clone()),
        settings: settings.clone(),
        url: url.clone(),
        sid: None,
        next_rid: 0,
    };
    loop {
        // From the moment a request with a sid goes out, a session exists
        // that must not be left half-made.
        abandoned.sid = handshake.sid().map(str::to_owned);
        abandoned.next_rid = handshake.last_rid() + 1;
        let creating = abandoned.sid.is_none();
        let rid = handshake.last_rid();
        tracing::trace!(rid, kind = telemetry::request_kind(&body), "sending");
        progress.round_trips += 1;
        let request_deadline =
            deadline.min(deadline_after(Instant::now(), settings.request_timeout));
        let answer =
            tokio::time::timeout_at(request_deadline, post(&mut transport, settings, url, body))
                .await;
        let response = match answer {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => return Err(classify(creating, error)),
            Err(_) if request_deadline == deadline => {
                return Err(PrebindError::Timeout("handshake deadline exceeded").into());
            }
            // A CM that took a connection and no answer within the request
            // timeout: when creating, one more CM may fit in the deadline.
            Err(_) => {
                let error = PrebindError::Timeout("request timed out");
                return Err(if creating {
                    Failure::NodeFailed(error)
                } else {
                    Failure::Failed(error)
                });
            }
        };
        tracing::trace!(
            rid,
            kind = telemetry::response_kind(&response),
            bytes = response.len(),
            "received"
        );
        let mut step = handshake.receive(&response).inspect_err(|error| {
            if matches!(error, HandshakeError::Terminated { .. }) {
                // The CM already ended it.
                abandoned.sid = None;
            }
        });
        progress.mechanism = handshake.mechanism();
        loop {
            match step.map_err(|error| classify(creating, error.into()))? {
                Step::Send(next) => {
                    body = next;
                    break;
                }
                Step::Derive(request) => {
                    tracing::trace!(
                        mechanism = request.mechanism,
                        iterations = request.iterations,
                        inline = settings.derive_inline,
                        "deriving the SCRAM salted password"
                    );
                    let salted = tokio::time::timeout_at(deadline, derive(settings, request))
                        .await
                        .map_err(|_| PrebindError::Timeout("handshake deadline exceeded"))??;
                    step = handshake.derived(&salted);
                }
                Step::Done(session) => {
                    abandoned.sid = None;
                    tracing::debug!(
                        jid = %session.jid,
                        mechanism = session.mechanism,
                        round_trips = session.round_trips,
                        elapsed_us = started.elapsed().as_micros() as u64,
                        "prebind handshake done"
                    );
                    return Ok(session);
                }
            }
        }
    }
}

/// SCRAM's salted password (RFC 5802 §3): from the cache, else PBKDF2 on a
/// blocking thread (`spawn_blocking`: never on a runtime worker, where up to
/// [`MAX_SCRAM_ITERATIONS`](crate::handshake::MAX_SCRAM_ITERATIONS) HMACs
/// would stall every other task on it), or inline when so configured.
/// Concurrent cold logins of one account share one run (the cache is
/// single-flight).
async fn derive(
    settings: &ClientSettings,
    request: DeriveRequest,
) -> Result<Arc<[u8]>, PrebindError> {
    let inline = settings.derive_inline;
    let permits = &settings.derivations;
    let run = |request: DeriveRequest| async move {
        if inline {
            return Some(request.derive());
        }
        // Closed never: the semaphore lives in the settings.
        let _permit = permits.acquire().await.ok()?;
        match tokio::runtime::Handle::try_current() {
            // Fails only if the runtime is shutting down.
            Ok(runtime) => runtime.spawn_blocking(move || request.derive()).await.ok(),
            Err(_) => Some(request.derive()),
        }
    };
    let derived = match &settings.scram_cache {
        Some(cache) => cache
            .get_or_derive(&request, run(request.clone()))
            .await
            .map(|(salted, hit)| {
                telemetry::scram_cache(hit);
                tracing::trace!(cached = hit, "salted password ready");
                salted
            }),
        None => run(request).await,
    };
    derived.ok_or(PrebindError::Timeout("the runtime is shutting down"))
}

/// Ends, best effort, a session whose handshake stopped before handing it
/// over: the caller went away (the response future or body was dropped) or
/// the handshake failed on our side. See [`terminate`].
struct Abandoned<T: BoshTransport> {
    transport: Option<T>,
    settings: ClientSettings,
    url: Uri,
    /// Set while a half-made session exists.
    sid: Option<String>,
    /// The RID after the last one sent.
    next_rid: u64,
}

impl<T: BoshTransport> Drop for Abandoned<T> {
    fn drop(&mut self) {
        if let (Some(sid), Some(transport)) = (self.sid.take(), self.transport.take()) {
            spawn_terminate(
                transport,
                &self.settings,
                &self.url,
                &sid,
                self.next_rid,
                "abandoned handshake",
            );
        }
    }
}

/// A finished session not yet handed to a browser: dropped unclaimed (the
/// page it was made for was not injectable, or went away before the
/// snippet was written), it is terminated like an abandoned handshake.
pub(crate) struct Unclaimed(Option<Box<dyn FnOnce() + Send>>);

impl Unclaimed {
    pub(crate) fn new<T: BoshTransport>(
        transport: T,
        settings: &ClientSettings,
        url: &Uri,
        session: &PrebindSession,
    ) -> Self {
        let settings = settings.clone();
        let url = url.clone();
        let (sid, rid) = (session.sid.clone(), session.next_rid());
        Unclaimed(Some(Box::new(move || {
            spawn_terminate(
                transport,
                &settings,
                &url,
                &sid,
                rid,
                "session not handed over",
            );
        })))
    }

    /// The session reached the browser: nothing to end.
    pub(crate) fn claim(mut self) {
        self.0 = None;
    }
}

impl Drop for Unclaimed {
    fn drop(&mut self) {
        if let Some(end) = self.0.take() {
            end();
        }
    }
}

impl std::fmt::Debug for Unclaimed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Unclaimed")
    }
}

/// One `terminate` request (XEP-0124 §12) for a session nobody will use,
/// on a spawned task bounded by the request timeout, when a tokio runtime
/// is there and fewer than [`MAX_CONCURRENT_TERMINATES`] are in flight;
/// otherwise the session expires at the CM after its `inactivity`. Each
/// one, sent or skipped, is counted (`bosh_prebind_abandoned_terminates_total`).
fn spawn_terminate<T: BoshTransport>(
    mut transport: T,
    settings: &ClientSettings,
    url: &Uri,
    sid: &str,
    rid: u64,
    why: &'static str,
) {
    let permit = tokio::runtime::Handle::try_current()
        .ok()
        .and_then(|runtime| {
            Some((
                runtime,
                Arc::clone(&settings.terminates).try_acquire_owned().ok()?,
            ))
        });
    let Some((runtime, permit)) = permit else {
        telemetry::abandoned_terminate(TerminateResult::Skipped);
        tracing::debug!(
            why,
            "session left to expire at the CM (no runtime, or {MAX_CONCURRENT_TERMINATES} terminates in flight)"
        );
        return;
    };
    let settings = settings.clone();
    let url = url.clone();
    let sid = sid.to_owned();
    runtime.spawn(async move {
        let ended = terminate(&mut transport, &settings, &url, &sid, rid).await;
        drop(permit);
        telemetry::abandoned_terminate(if ended {
            TerminateResult::Ended
        } else {
            TerminateResult::Failed
        });
        tracing::debug!(why, ended, "terminated a pre-bound session");
    });
}

/// Sorts a failure: only one of the session-creation request, and only one
/// that says nothing about the request itself, lets another CM be tried.
/// Once the CM has handed out a sid, the session is bound to that CM
/// (XEP-0124 §7: the sid names a session of *this* connection manager) and
/// its RID sequence has started, so nothing is retried anywhere.
fn classify(creating: bool, error: PrebindError) -> Failure {
    let node_failed = creating
        && match &error {
            PrebindError::Unreachable(_) => true,
            PrebindError::HttpStatus(status) => status.is_server_error(),
            // XEP-0124 §17.2: conditions about the server, not the request.
            PrebindError::Handshake(HandshakeError::Terminated { condition, .. }) => matches!(
                condition.as_str(),
                "system-shutdown" | "remote-connection-failed" | "internal-server-error"
            ),
            _ => false,
        };
    if node_failed {
        Failure::NodeFailed(error)
    } else {
        Failure::Failed(error)
    }
}

/// `now + timeout`, saturating: `Duration::MAX` (or any timeout past what
/// `Instant` can hold) means "no deadline", not a panic. Like tokio's own
/// `timeout`, far enough is 30 years.
pub(crate) fn deadline_after(now: Instant, timeout: Duration) -> Instant {
    const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);
    now.checked_add(timeout.min(FAR_FUTURE)).unwrap_or(now)
}

/// Ends a session at the CM at `url` (XEP-0124 §12): one `type='terminate'` request
/// with `rid` (the RID after the last one used), bounded by the request
/// timeout. True when the CM answered it.
pub(crate) async fn terminate<T: BoshTransport>(
    transport: &mut T,
    settings: &ClientSettings,
    url: &Uri,
    sid: &str,
    rid: u64,
) -> bool {
    let body = crate::protocol::bosh::terminate(rid, sid);
    let sent = tokio::time::timeout(
        settings.request_timeout,
        post(transport, settings, url, body),
    )
    .await;
    matches!(sent, Ok(Ok(_)))
}

/// One POST to the CM, returning its (capped) body.
async fn post<T: BoshTransport>(
    transport: &mut T,
    settings: &ClientSettings,
    url: &Uri,
    body: String,
) -> Result<Bytes, PrebindError> {
    let mut request = Request::new(Full::new(Bytes::from(body)));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = url.clone();
    request.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    poll_fn(|cx| transport.poll_ready(cx))
        .await
        .map_err(cm_unreachable)?;
    let response = transport.call(request).await.map_err(cm_unreachable)?;
    // XEP-0124 §17.1: HTTP errors end the session; a CM's own errors come
    // as terminate bodies on 200.
    if !response.status().is_success() {
        return Err(PrebindError::HttpStatus(response.status()));
    }
    let limit = settings.max_response_body;
    let (parts, body) = response.into_parts();
    read_capped(&parts.headers, body, limit)
        .await
        .map_err(|error| match error {
            CappedReadError::TooLarge => PrebindError::ResponseTooLarge(limit),
            CappedReadError::Failed(error) => {
                PrebindError::Unreachable(format!("reading the response failed: {error}"))
            }
        })
}

fn cm_unreachable<E: Into<BoxError>>(error: E) -> PrebindError {
    PrebindError::Unreachable(error_chain(&*error.into()))
}

/// An error and all its sources, `outer: inner: …`: hyper-util's own
/// Display is terse ("client error (Connect)"); the OS error or the
/// certificate problem is further down the chain. For server-side logs.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors repeat their source in their own message.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
