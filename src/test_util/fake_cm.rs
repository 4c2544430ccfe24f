//! The fake connection manager: a tower `Service` taking the layer's BOSH
//! requests, checking them, recording them and answering like Prosody.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri, header};
use http_body_util::{BodyExt, Full};
use tower_service::Service;

use super::body::ChunkedBody;
use super::builder::{Config, FakeCmBuilder};
use super::counters::{Arrivals, InFlight};
use super::element::Element;
use super::gate::Gate;
use super::record::{Recorded, SessionInfo, Termination};
use super::response::Reply;
use super::scram::StoredKeys;
use super::session::Session;
use super::wire::NS_HTTPBIND;
use crate::{BoxError, PrebindLayer};

/// An in-memory connection manager for tests and benchmarks; see the
/// [module documentation](super).
///
/// Cloning is cheap and shares everything: keep one clone to inspect while
/// the layer owns another as its transport.
#[derive(Debug, Clone)]
pub struct FakeCm {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    keys: Option<StoredKeys>,
    sessions: Mutex<Sessions>,
    requests: Mutex<Vec<Recorded>>,
    terminations: Mutex<Vec<Termination>>,
    violations: Mutex<Vec<String>>,
    in_flight: Arc<AtomicUsize>,
    received: Arrivals,
    gate: Gate,
}

/// Live sessions, oldest first.
#[derive(Debug, Default)]
struct Sessions {
    live: VecDeque<Session>,
    created: usize,
}

impl Sessions {
    /// Newest first: the session being set up is almost always the last.
    fn find(&mut self, sid: &str) -> Option<&mut Session> {
        self.live.iter_mut().rev().find(|s| s.sid == sid)
    }
}

/// What one request comes to, decided at once, sent after the gate and
/// the delay.
#[derive(Debug)]
enum Decision {
    Terminated(String),
    Answer { reply: Reply, sid: String },
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A violation panics with a lock held; what was recorded stays readable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Default for FakeCm {
    fn default() -> Self {
        FakeCm::builder().build()
    }
}

impl FakeCm {
    /// A fake serving anonymous logins on `anon.localhost`, answering at
    /// once; the same as `FakeCm::builder().build()`.
    pub fn new() -> Self {
        FakeCm::default()
    }

    /// Configure a fake: the defaults are those of [`FakeCm::new`].
    pub fn builder() -> FakeCmBuilder {
        FakeCmBuilder::default()
    }

    pub(super) fn from_config(config: Config) -> Self {
        let keys = config.account.as_ref().map(|(_, password)| {
            StoredKeys::new(password, &config.scram_salt, config.scram_iterations)
        });
        let gate = Gate::new(!config.hold);
        FakeCm {
            inner: Arc::new(Inner {
                config,
                keys,
                sessions: Mutex::default(),
                requests: Mutex::default(),
                terminations: Mutex::default(),
                violations: Mutex::default(),
                in_flight: Arc::default(),
                received: Arrivals::default(),
                gate,
            }),
        }
    }

    /// The URL the layer must send to.
    pub fn url(&self) -> Uri {
        self.inner.config.url.clone()
    }

    /// The first session's `sid`.
    pub fn sid(&self) -> &str {
        &self.inner.config.sid
    }

    /// The full JID bound when no resource is asked for.
    pub fn jid(&self) -> &str {
        &self.inner.config.jid
    }

    /// A [`PrebindLayer`] sending to this fake (no credentials yet).
    pub fn layer(&self) -> PrebindLayer<FakeCm> {
        PrebindLayer::with_transport(self.url(), self.clone())
    }

    /// Every request received, terminations excepted, in order (empty when
    /// [`keep_requests(false)`](FakeCmBuilder::keep_requests)).
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.inner.requests).clone()
    }

    /// Request `index` of [`FakeCm::requests`], parsed.
    ///
    /// # Panics
    ///
    /// When there is no such request.
    pub fn request(&self, index: usize) -> Element {
        lock(&self.inner.requests)[index].element()
    }

    /// The RIDs of [`FakeCm::requests`].
    pub fn rids(&self) -> Vec<u64> {
        lock(&self.inner.requests)
            .iter()
            .map(Recorded::rid)
            .collect()
    }

    /// Every request received, terminations included (counted even when
    /// requests are not kept).
    pub fn received(&self) -> usize {
        self.inner.received.get()
    }

    /// Waits until [`FakeCm::received`] reaches `n`.
    pub async fn wait_received(&self, n: usize) {
        self.inner.received.reached(n).await;
    }

    /// The `type='terminate'` requests, in order.
    pub fn terminations(&self) -> Vec<Termination> {
        lock(&self.inner.terminations).clone()
    }

    /// The sessions remembered, oldest first.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        lock(&self.inner.sessions)
            .live
            .iter()
            .map(Session::info)
            .collect()
    }

    /// How many sessions were created.
    pub fn sessions_created(&self) -> usize {
        lock(&self.inner.sessions).created
    }

    /// The SASL mechanism chosen in the newest session, if any was.
    pub fn mechanism(&self) -> Option<String> {
        lock(&self.inner.sessions)
            .live
            .back()
            .and_then(|s| s.info().mechanism)
    }

    /// Response futures and response bodies the caller has not dropped
    /// yet: zero once an answer is out means nothing was leaked.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// Lets held answers go ([`hold_answers`](FakeCmBuilder::hold_answers)),
    /// now and from now on.
    pub fn release(&self) {
        self.inner.gate.open();
    }

    /// The protocol violations seen so far. Each also panicked inside the
    /// transport call (failing the test that made it, unless it came from a
    /// spawned task): assert this is empty to catch those too.
    pub fn violations(&self) -> Vec<String> {
        lock(&self.inner.violations).clone()
    }

    #[track_caller]
    fn violation(&self, message: String) -> ! {
        lock(&self.inner.violations).push(message.clone());
        panic!("fake CM: protocol violation: {message}");
    }

    /// Checks, records and decides one request. Panics on a violation.
    fn decide(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
        over_tcp: bool,
    ) -> Decision {
        let inner = &*self.inner;
        let config = &inner.config;
        inner.received.count();
        if method != Method::POST {
            self.violation(format!("BOSH requests are POSTs, not {method}"));
        }
        let right_place = if over_tcp {
            uri.path() == config.url.path()
        } else {
            *uri == config.url
        };
        if !right_place {
            self.violation(format!("request to {uri}, not {}", config.url));
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if content_type != "text/xml; charset=utf-8" {
            self.violation(format!("Content-Type {content_type:?}"));
        }
        let parsed = std::str::from_utf8(&body)
            .map_err(|_| "a request body that is not UTF-8".to_owned())
            .and_then(Element::try_parse);
        if let Ok(request) = &parsed {
            if request.attr("type") == Some("terminate") {
                return self.terminate(request);
            }
        }
        if config.keep_requests {
            lock(&inner.requests).push(Recorded {
                uri: uri.clone(),
                content_type,
                body,
            });
        }
        let request = parsed.unwrap_or_else(|e| self.violation(e));
        let rid = self.check_body(&request);

        let mut sessions = lock(&inner.sessions);
        let (index, sid, normal) = match request.attr("sid") {
            None => {
                let number = sessions.created + 1;
                let sid = if number == 1 {
                    config.sid.clone()
                } else {
                    format!("{}-{number}", config.sid)
                };
                let (session, answer) = Session::create(config, sid.clone(), &request, rid)
                    .unwrap_or_else(|e| self.violation(e));
                if self.fault(0).is_none() {
                    sessions.created = number;
                    if sessions.live.len() >= config.max_sessions {
                        sessions.live.pop_front();
                    }
                    sessions.live.push_back(session);
                }
                (0, sid, answer)
            }
            Some(sid) => {
                let Some(session) = sessions.find(sid) else {
                    self.violation(format!("request for unknown session {sid}"))
                };
                session
                    .next_rid(rid, true)
                    .unwrap_or_else(|e| self.violation(e));
                let index = session.requests - 1;
                let answer = if self
                    .fault(index)
                    .is_some_and(|f| *f != super::Fault::Truncated)
                {
                    String::new()
                } else {
                    session
                        .answer(config, inner.keys.as_ref(), &request)
                        .unwrap_or_else(|e| self.violation(e))
                };
                (index, sid.to_owned(), answer)
            }
        };
        drop(sessions);
        let reply = match self.fault(index) {
            Some(fault) => Reply::Fault {
                fault: fault.clone(),
                normal,
            },
            None if config.xml_declaration => {
                Reply::Xml(format!("<?xml version='1.0' encoding='UTF-8'?>\n{normal}"))
            }
            None => Reply::Xml(normal),
        };
        Decision::Answer { reply, sid }
    }

    /// What every request must satisfy (XEP-0124 §7.1, §14.1): its RID.
    fn check_body(&self, request: &Element) -> u64 {
        if request.name != "body" || request.attr("xmlns") != Some(NS_HTTPBIND) {
            self.violation(format!("not a BOSH <body/>: {request:?}"));
        }
        for forbidden in ["ack", "key", "newkey"] {
            if request.attr(forbidden).is_some() {
                self.violation(format!(
                    "{forbidden} is not used by pre-binding: {request:?}"
                ));
            }
        }
        request
            .attr("rid")
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| self.violation(format!("no numeric rid: {request:?}")))
    }

    fn fault(&self, index: usize) -> Option<&super::Fault> {
        self.inner
            .config
            .faults
            .iter()
            .find(|(at, _)| at.is_none_or(|at| at == index))
            .map(|(_, fault)| fault)
    }

    /// XEP-0124 §12: the next RID in sequence, a live session's `sid`.
    fn terminate(&self, request: &Element) -> Decision {
        let rid = self.check_body(request);
        let Some(sid) = request.attr("sid") else {
            self.violation(format!("terminate without sid: {request:?}"))
        };
        let mut sessions = lock(&self.inner.sessions);
        let Some(session) = sessions.find(sid) else {
            self.violation(format!("terminate for unknown session {sid}"))
        };
        session
            .next_rid(rid, false)
            .unwrap_or_else(|e| self.violation(format!("terminate: {e}")));
        session.terminate();
        drop(sessions);
        lock(&self.inner.terminations).push(Termination {
            sid: sid.to_owned(),
            rid,
        });
        Decision::Terminated(format!("<body xmlns='{NS_HTTPBIND}' type='terminate'/>"))
    }

    /// Receives one request and answers it (after the gate and the delay).
    pub(super) async fn handle(
        self,
        request: Request<Bytes>,
        over_tcp: bool,
        guard: InFlight,
    ) -> Result<Response<ChunkedBody>, BoxError> {
        let (parts, body) = request.into_parts();
        let decision = self.decide(&parts.method, &parts.uri, &parts.headers, body, over_tcp);
        let config = &self.inner.config;
        let response = match decision {
            Decision::Terminated(xml) => {
                self.delay().await;
                Reply::Xml(xml).into_response("", guard).await
            }
            Decision::Answer { reply, sid } => {
                self.inner.gate.passed().await;
                self.delay().await;
                reply.into_response(&sid, guard).await
            }
        };
        response.map(|mut response| {
            for (name, value) in &config.response_headers {
                response.headers_mut().insert(name, value.clone());
            }
            response
        })
    }

    /// The configured delay; none at all when zero (a zero sleep still
    /// waits for the timer's next tick, about a millisecond).
    async fn delay(&self) {
        let delay = self.inner.config.delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    pub(super) fn in_flight_guard(&self) -> InFlight {
        InFlight::new(&self.inner.in_flight)
    }
}

impl Service<Request<Full<Bytes>>> for FakeCm {
    type Response = Response<ChunkedBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ChunkedBody>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future {
        let cm = self.clone();
        let guard = cm.in_flight_guard();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await?.to_bytes();
            cm.handle(Request::from_parts(parts, body), false, guard)
                .await
        })
    }
}
