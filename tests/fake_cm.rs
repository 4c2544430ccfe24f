//! The prebind endpoint end to end against a fake connection manager (CM).
//!
//! The fake answers with the shapes Prosody 0.12 uses
//! (`../shared/protocol/prosody.md`), runs real SASL server sides (PLAIN,
//! SCRAM-SHA-1 and SCRAM-SHA-256 per RFC 5802) and checks every request it
//! receives against XEP-0124 / XEP-0206 (DESIGN §4): a protocol violation
//! panics inside the transport, which fails the test that caused it.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bosh_prebind::handshake::HandshakeConfig;
use bosh_prebind::{BoxError, Credentials, Mechanism, PrebindError, PrebindLayer, PrebindSession};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use quick_xml::escape::escape;
use quick_xml::events::{BytesStart, Event};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{Layer, ServiceExt, service_fn};

mod common;
use common::{get, post};

const CM_URL: &str = "http://cm.internal.example:5280/http-bind";
const CM_HOST: &str = "cm.internal.example";
const NS_HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
const SID: &str = "1a12ded7-4c59-4f35-9c13-46c86d9498d4";
const ANON: &str = "anon.localhost";
const ANON_JID: &str = "eunyql_gd_l2kozyecbj_nbi@anon.localhost/GtONlPbg6nB5";
const HOST: &str = "localhost";
const ALICE: &str = "alice@localhost";
const ALICE_PASSWORD: &str = "secret-alice";
const ALICE_JID: &str = "alice@localhost/mpZIduEk0fTx";
const SCRAM_SALT: &[u8] = b"fake-cm-salt-0123";
const SCRAM_ITERATIONS: u32 = 4096;

// ---------------------------------------------------------------------------
// The fake connection manager
// ---------------------------------------------------------------------------

/// How the fake advertises the legacy session feature after the restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionFeature {
    Absent,
    Optional,
    Required,
}

/// Something other than the normal answer, for one request.
#[derive(Debug, Clone)]
enum Fault {
    /// The transport fails as a refused TCP connection does.
    Refused,
    /// This HTTP status, with an HTML body.
    Status(u16),
    /// The response future never completes.
    Pending,
    /// Headers and a first chunk arrive, the rest of the body never does.
    NeverEnds,
    /// This body instead of the normal answer (HTTP 200).
    Xml(String),
    /// A well-formed creation answer padded to 8 KiB, with or without
    /// `Content-Length`.
    Oversize { declared: bool },
}

/// What the fake serves.
#[derive(Debug, Clone)]
struct Script {
    /// The XMPP domain the CM serves.
    domain: &'static str,
    /// SASL mechanisms offered, in order.
    mechanisms: Vec<&'static str>,
    /// The account the server knows (localpart, password).
    account: Option<(&'static str, &'static str)>,
    /// The full JID the server binds when no resource is asked for.
    jid: &'static str,
    /// Who the layer logs in as.
    client: Credentials,
    /// Stream features come on the empty poll after the creation and after
    /// the restart response instead of in them.
    late_features: bool,
    session: SessionFeature,
    /// The creation answer carries a `sid`.
    with_sid: bool,
    /// The SCRAM server signature is wrong (a server that does not know the
    /// password).
    tamper_server_signature: bool,
    /// The SCRAM server-final comes in a `<challenge/>` answered by an empty
    /// `<response/>`, then an empty `<success/>` (RFC 6120 §6.3.10 allows it).
    server_final_in_challenge: bool,
    /// Stream features never come, whatever is polled.
    withhold_features: bool,
    /// Every answer starts with `<?xml version='1.0' encoding='UTF-8'?>`.
    xml_declaration: bool,
    /// Every answer comes after this long.
    delay: Duration,
    /// The request (0-based) that gets a fault instead of its answer.
    fault: Option<(usize, Fault)>,
}

impl Script {
    /// Prosody's `anon.localhost`: ANONYMOUS only, optional session.
    fn anonymous() -> Self {
        Script {
            domain: ANON,
            mechanisms: vec!["ANONYMOUS"],
            account: None,
            jid: ANON_JID,
            client: Credentials::anonymous(ANON),
            late_features: false,
            session: SessionFeature::Optional,
            with_sid: true,
            tamper_server_signature: false,
            server_final_in_challenge: false,
            withhold_features: false,
            xml_declaration: false,
            delay: Duration::ZERO,
            fault: None,
        }
    }

    /// Prosody's `localhost` with alice registered, offering `mechanisms`.
    fn account(mechanisms: &[&'static str]) -> Self {
        Script {
            domain: HOST,
            mechanisms: mechanisms.to_vec(),
            account: Some(("alice", ALICE_PASSWORD)),
            jid: ALICE_JID,
            client: Credentials::account(ALICE, ALICE_PASSWORD).unwrap(),
            ..Script::anonymous()
        }
    }

    fn fault(mut self, at: usize, fault: Fault) -> Self {
        self.fault = Some((at, fault));
        self
    }
}

#[derive(Debug, Default)]
struct State {
    last_rid: Option<u64>,
    mechanism: Option<String>,
    scram: Option<Scram>,
    authenticated: bool,
    restarted: bool,
    /// Features owed on the next empty poll.
    features_due: bool,
    bound: bool,
    session_established: bool,
    /// Server-final sent in a challenge; an empty `<response/>` is due.
    final_ack_due: bool,
}

/// The transport type: a `service_fn` boxed so helpers can name it.
type CmBody = BoxBody<Bytes, BoxError>;
type Transport = BoxCloneService<Request<Full<Bytes>>, Response<CmBody>, BoxError>;
type CmLayer = PrebindLayer<Transport>;

/// The fake CM: its script, every request body it received, its state.
#[derive(Debug, Clone)]
struct FakeCm {
    script: Arc<Script>,
    requests: Arc<Mutex<Vec<String>>>,
    state: Arc<Mutex<State>>,
    /// Transport futures and response bodies still alive.
    in_flight: Arc<AtomicUsize>,
    /// `(sid, rid)` of each `type='terminate'` request, which may arrive
    /// after the answer (the layer sends it from a spawned task).
    terminations: Arc<Mutex<Vec<(String, u64)>>>,
    /// Counts requests and terminations, for tests to wait on.
    arrivals: Arc<tokio::sync::watch::Sender<usize>>,
}

/// What the fake does with one request.
enum Reply {
    Xml(String),
    Fault(Fault),
}

impl FakeCm {
    fn new(script: Script) -> Self {
        FakeCm {
            script: Arc::new(script),
            requests: Arc::default(),
            state: Arc::default(),
            in_flight: Arc::default(),
            terminations: Arc::default(),
            arrivals: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }

    fn terminations(&self) -> Vec<(String, u64)> {
        self.terminations.lock().unwrap().clone()
    }

    /// Waits until `n` requests and terminations in all have arrived.
    async fn arrived(&self, n: usize) {
        let mut receiver = self.arrivals.subscribe();
        receiver.wait_for(|count| *count >= n).await.unwrap();
    }

    /// A layer sending its BOSH requests to this fake, logging in as the
    /// script's client.
    fn layer(&self) -> CmLayer {
        PrebindLayer::with_transport(CM_URL.parse().unwrap(), self.transport())
            .credentials(self.script.client.clone())
    }

    /// The same without credentials, for tests that set their own source.
    fn bare_layer(&self) -> CmLayer {
        PrebindLayer::with_transport(CM_URL.parse().unwrap(), self.transport())
    }

    fn transport(&self) -> Transport {
        let cm = self.clone();
        BoxCloneService::new(service_fn(move |request: Request<Full<Bytes>>| {
            let cm = cm.clone();
            let guard = InFlight::new(&cm.in_flight);
            async move {
                assert_eq!(request.method(), Method::POST, "BOSH requests are POSTs");
                assert_eq!(request.uri(), CM_URL);
                assert_eq!(
                    request.headers()[header::CONTENT_TYPE],
                    "text/xml; charset=utf-8"
                );
                let bytes = request.into_body().collect().await?.to_bytes();
                let reply = cm.answer(std::str::from_utf8(&bytes).expect("UTF-8 request"));
                if !cm.script.delay.is_zero() {
                    tokio::time::sleep(cm.script.delay).await;
                }
                reply.into_response(guard).await
            }
        }))
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    fn request(&self, index: usize) -> Node {
        Node::parse(&self.requests()[index])
    }

    fn rids(&self) -> Vec<u64> {
        self.requests()
            .iter()
            .map(|r| Node::parse(r).attr("rid").unwrap().parse().unwrap())
            .collect()
    }

    fn mechanism(&self) -> Option<String> {
        self.state.lock().unwrap().mechanism.clone()
    }

    /// Requests the layer started and has not dropped (response future or
    /// body): zero once an answer is out means nothing was leaked.
    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    fn session_established(&self) -> bool {
        self.state.lock().unwrap().session_established
    }

    /// Records, checks and answers one request body.
    fn answer(&self, body: &str) -> Reply {
        self.arrivals.send_modify(|count| *count += 1);
        let request = Node::parse(body);
        if request.attr("type") == Some("terminate") {
            // XEP-0124 §12: the next RID in sequence, the session's sid.
            let rid: u64 = request.attr("rid").unwrap().parse().unwrap();
            let state = self.state.lock().unwrap();
            assert_eq!(
                Some(rid),
                state.last_rid.map(|r| r + 1),
                "terminate RID in sequence"
            );
            let sid = request
                .attr("sid")
                .expect("terminate names the session")
                .to_owned();
            self.terminations.lock().unwrap().push((sid, rid));
            return Reply::Xml(format!("<body xmlns='{NS_HTTPBIND}' type='terminate'/>"));
        }
        let index = {
            let mut requests = self.requests.lock().unwrap();
            requests.push(body.to_owned());
            requests.len() - 1
        };
        let mut state = self.state.lock().unwrap();
        self.check(&request, index, &mut state);
        match &self.script.fault {
            Some((at, fault)) if *at == index => Reply::Fault(fault.clone()),
            _ if self.script.xml_declaration => Reply::Xml(format!(
                "<?xml version='1.0' encoding='UTF-8'?>\n{}",
                self.respond(&request, index, &mut state)
            )),
            _ => Reply::Xml(self.respond(&request, index, &mut state)),
        }
    }

    /// What every request must satisfy (XEP-0124 §7.1, §14.1; XEP-0206 §5).
    fn check(&self, request: &Node, index: usize, state: &mut State) {
        let at = format!("request {index}: {request:?}");
        assert_eq!(request.name, "body", "{at}");
        assert_eq!(request.attr("xmlns"), Some(NS_HTTPBIND), "{at}");
        let rid: u64 = request
            .attr("rid")
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("no numeric rid: {at}"));
        if let Some(last) = state.last_rid {
            assert_eq!(rid, last + 1, "RIDs must increase by exactly one: {at}");
        }
        state.last_rid = Some(rid);
        for forbidden in ["ack", "key", "newkey"] {
            assert_eq!(request.attr(forbidden), None, "{at}");
        }
        if index == 0 {
            assert_eq!(request.attr("sid"), None, "{at}");
            for (name, value) in [
                ("to", self.script.domain),
                ("hold", "1"),
                ("ver", "1.6"),
                ("xmpp:version", "1.0"),
                ("content", "text/xml; charset=utf-8"),
                ("xmlns:xmpp", "urn:xmpp:xbosh"),
            ] {
                assert_eq!(request.attr(name), Some(value), "{name}: {at}");
            }
            assert!(
                request.attr("xml:lang").is_some_and(|l| !l.is_empty()),
                "{at}"
            );
            let wait = request.attr("wait").and_then(|w| w.parse::<u32>().ok());
            assert!(wait.is_some_and(|w| w >= 1), "wait: {at}");
            assert!(request.children.is_empty(), "{at}");
        } else {
            assert_eq!(request.attr("sid"), Some(SID), "{at}");
        }
    }

    fn respond(&self, request: &Node, index: usize, state: &mut State) -> String {
        let script = &self.script;
        if index == 0 {
            state.features_due = script.late_features;
            let features = if script.late_features || script.withhold_features {
                String::new()
            } else {
                self.mechanism_features()
            };
            let sid = if script.with_sid {
                format!(" authid='{SID}' sid='{SID}'")
            } else {
                String::new()
            };
            // Prosody: wait = min(client wait, bosh_max_wait = 120).
            let wait = request
                .attr("wait")
                .unwrap()
                .parse::<u32>()
                .unwrap()
                .min(120);
            return format!(
                "<body hold='1'{sid} secure='true' xmpp:version='1.0' ver='1.6' \
                 xmlns:stream='{NS_STREAMS}' xmlns:xmpp='urn:xmpp:xbosh' xmlns='{NS_HTTPBIND}' \
                 from='{}' requests='2' polling='5' inactivity='60' wait='{wait}'>{features}</body>",
                script.domain
            );
        }
        if let Some(restart) = request.attr("xmpp:restart") {
            assert_eq!(restart, "true");
            assert_eq!(request.attr("to"), Some(script.domain));
            assert_eq!(request.attr("xmlns:xmpp"), Some("urn:xmpp:xbosh"));
            assert!(request.attr("xml:lang").is_some());
            assert!(request.children.is_empty());
            assert!(state.authenticated, "stream restart before SASL success");
            assert!(!state.restarted, "second stream restart");
            state.restarted = true;
            state.features_due = script.late_features;
            return if script.late_features {
                self.body("")
            } else {
                self.body(&self.bind_features())
            };
        }
        let Some(payload) = request.children.first() else {
            // An empty poll: whatever is queued (Prosody would hold an
            // empty poll when nothing is; the handshake must not need that).
            if !std::mem::take(&mut state.features_due) {
                return self.body("");
            }
            return if state.restarted {
                self.body(&self.bind_features())
            } else {
                self.body(&self.mechanism_features())
            };
        };
        assert!(!state.features_due, "payload sent before the features came");
        assert_eq!(request.children.len(), 1, "one payload per request");
        match payload.name.as_str() {
            "auth" => self.auth(payload, state),
            "response" => self.scram_final(payload, state),
            "iq" => self.iq(payload, state),
            other => panic!("unexpected payload <{other}> in request {index}"),
        }
    }

    fn auth(&self, auth: &Node, state: &mut State) -> String {
        assert_eq!(auth.attr("xmlns"), Some(NS_SASL));
        assert!(state.mechanism.is_none(), "second <auth/>");
        let mechanism = auth.attr("mechanism").expect("mechanism attribute");
        assert!(
            self.script.mechanisms.contains(&mechanism),
            "{mechanism} was not offered"
        );
        state.mechanism = Some(mechanism.to_owned());
        let data = match auth.text.trim() {
            "=" => Vec::new(),
            text => B64.decode(text).expect("base64 initial response"),
        };
        match mechanism {
            "ANONYMOUS" => self.success(state, ""),
            "PLAIN" => {
                let (user, password) = self.script.account.expect("an account");
                if data == format!("\0{user}\0{password}").as_bytes() {
                    self.success(state, "")
                } else {
                    self.failure("not-authorized")
                }
            }
            "SCRAM-SHA-1" => self.scram_first(Hash::Sha1, &data, state),
            "SCRAM-SHA-256" => self.scram_first(Hash::Sha256, &data, state),
            other => panic!("the fake has no server side for {other}"),
        }
    }

    /// RFC 5802 §5.1: client-first → server-first.
    fn scram_first(&self, hash: Hash, data: &[u8], state: &mut State) -> String {
        let message = std::str::from_utf8(data).expect("UTF-8 client-first");
        let bare = message
            .strip_prefix("n,,")
            .unwrap_or_else(|| panic!("GS2 header must be 'n,,' (no channel binding): {message}"));
        let (user, _) = self.script.account.expect("an account");
        assert_eq!(scram_field(bare, "n"), Some(user), "{message}");
        let client_nonce = scram_field(bare, "r").expect("client nonce");
        assert!(client_nonce.len() >= 8, "{message}");
        let nonce = format!("{client_nonce}fake-cm-server-nonce");
        let server_first = format!(
            "r={nonce},s={},i={SCRAM_ITERATIONS}",
            B64.encode(SCRAM_SALT)
        );
        let challenge = B64.encode(&server_first);
        state.scram = Some(Scram {
            hash,
            client_first_bare: bare.to_owned(),
            server_first,
            nonce,
        });
        self.body(&format!(
            "<challenge xmlns='{NS_SASL}'>{challenge}</challenge>"
        ))
    }

    /// RFC 5802 §3: verifies the client proof, answers the server signature.
    fn scram_final(&self, response: &Node, state: &mut State) -> String {
        assert_eq!(response.attr("xmlns"), Some(NS_SASL));
        if std::mem::take(&mut state.final_ack_due) {
            assert_eq!(response.text.trim(), "", "the final response is empty");
            return self.success(state, "");
        }
        let scram = state.scram.take().expect("<response/> outside SCRAM");
        let decoded = B64.decode(response.text.trim()).expect("base64 response");
        let message = String::from_utf8(decoded).expect("UTF-8 client-final");
        let (without_proof, proof) = message.rsplit_once(",p=").expect("client proof");
        assert_eq!(scram_field(without_proof, "c"), Some("biws"), "{message}");
        assert_eq!(
            scram_field(without_proof, "r"),
            Some(scram.nonce.as_str()),
            "{message}"
        );
        let (_, password) = self.script.account.expect("an account");
        let hash = scram.hash;
        let salted = hash.salted_password(password.as_bytes());
        let client_key = hash.hmac(&salted, b"Client Key");
        let stored_key = hash.digest(&client_key);
        let auth_message = format!(
            "{},{},{without_proof}",
            scram.client_first_bare, scram.server_first
        );
        let client_signature = hash.hmac(&stored_key, auth_message.as_bytes());
        let expected: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(k, s)| k ^ s)
            .collect();
        if B64.decode(proof).ok() != Some(expected) {
            return self.failure("not-authorized");
        }
        let server_key = hash.hmac(&salted, b"Server Key");
        let mut server_signature = hash.hmac(&server_key, auth_message.as_bytes());
        if self.script.tamper_server_signature {
            server_signature[0] ^= 1;
        }
        let verifier = B64.encode(format!("v={}", B64.encode(server_signature)));
        if self.script.server_final_in_challenge {
            state.final_ack_due = true;
            return self.body(&format!(
                "<challenge xmlns='{NS_SASL}'>{verifier}</challenge>"
            ));
        }
        self.success(state, &verifier)
    }

    fn iq(&self, iq: &Node, state: &mut State) -> String {
        assert!(state.restarted, "<iq/> before the stream restart");
        assert_eq!(iq.attr("xmlns"), Some("jabber:client"));
        assert_eq!(iq.attr("type"), Some("set"));
        let id = iq.attr("id").expect("iq id");
        if let Some(bind) = iq.child("bind") {
            assert_eq!(bind.attr("xmlns"), Some(NS_BIND));
            assert!(!state.bound, "second bind");
            state.bound = true;
            let jid = match bind.child("resource") {
                Some(resource) => {
                    let bare = self.script.jid.split_once('/').unwrap().0;
                    format!("{bare}/{}", resource.text)
                }
                None => self.script.jid.to_owned(),
            };
            return self.body(&format!(
                "<iq id='{id}' xmlns='jabber:client' type='result'>\
                 <bind xmlns='{NS_BIND}'><jid>{}</jid></bind></iq>",
                escape(&jid)
            ));
        }
        if let Some(session) = iq.child("session") {
            assert_eq!(session.attr("xmlns"), Some(NS_SESSION));
            assert!(state.bound, "session IQ before bind");
            assert_ne!(self.script.session, SessionFeature::Absent);
            state.session_established = true;
            return self.body(&format!(
                "<iq to='{}' xmlns='jabber:client' id='{id}' type='result'/>",
                escape(self.script.jid)
            ));
        }
        panic!("unexpected iq {iq:?}");
    }

    fn success(&self, state: &mut State, data: &str) -> String {
        state.authenticated = true;
        if data.is_empty() {
            self.body(&format!("<success xmlns='{NS_SASL}'/>"))
        } else {
            self.body(&format!("<success xmlns='{NS_SASL}'>{data}</success>"))
        }
    }

    fn failure(&self, condition: &str) -> String {
        self.body(&format!(
            "<failure xmlns='{NS_SASL}'><{condition}/></failure>"
        ))
    }

    fn mechanism_features(&self) -> String {
        let mechanisms: String = self
            .script
            .mechanisms
            .iter()
            .map(|m| format!("<mechanism>{m}</mechanism>"))
            .collect();
        format!(
            "<stream:features xmlns='jabber:client'><mechanisms xmlns='{NS_SASL}'>\
             {mechanisms}</mechanisms></stream:features>"
        )
    }

    fn bind_features(&self) -> String {
        let session = match self.script.session {
            SessionFeature::Absent => String::new(),
            SessionFeature::Optional => {
                format!("<session xmlns='{NS_SESSION}'><optional/></session>")
            }
            SessionFeature::Required => format!("<session xmlns='{NS_SESSION}'/>"),
        };
        format!(
            "<stream:features xmlns='jabber:client'><c hash='sha-1' \
             xmlns='http://jabber.org/protocol/caps' node='http://prosody.im' \
             ver='g6v15bTJOfWXNUu1mm4Hlk5EAd0='/><bind xmlns='{NS_BIND}'><required/></bind>\
             {session}<ver xmlns='urn:xmpp:features:rosterver'/></stream:features>"
        )
    }

    /// A later response, as Prosody sends it (`sid` repeated).
    fn body(&self, inner: &str) -> String {
        format!(
            "<body xmlns='{NS_HTTPBIND}' xmlns:stream='{NS_STREAMS}' sid='{SID}'>{inner}</body>"
        )
    }
}

impl Reply {
    async fn into_response(self, guard: InFlight) -> Result<Response<CmBody>, BoxError> {
        let fault = match self {
            Reply::Xml(xml) => return Ok(cm_response(StatusCode::OK, full(xml))),
            Reply::Fault(fault) => fault,
        };
        match fault {
            Fault::Refused => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                format!("tcp connect error: {CM_HOST}:5280: Connection refused (os error 111)"),
            )
            .into()),
            Fault::Status(code) => Ok(cm_response(
                StatusCode::from_u16(code).unwrap(),
                full("<html><body>Internal Server Error</body></html>".into()),
            )),
            Fault::Pending => std::future::pending().await,
            Fault::NeverEnds => Ok(cm_response(
                StatusCode::OK,
                Chunks::hanging([format!("<body xmlns='{NS_HTTPBIND}' sid='{SID}'>")])
                    .guarded(guard)
                    .map_err(|never| match never {})
                    .boxed(),
            )),
            Fault::Xml(xml) => Ok(cm_response(StatusCode::OK, full(xml))),
            Fault::Oversize { declared } => {
                let padding = " ".repeat(8192);
                let xml =
                    format!("<body xmlns='{NS_HTTPBIND}' sid='{SID}' wait='59'>{padding}</body>");
                let length = xml.len();
                if declared {
                    let mut response = cm_response(StatusCode::OK, full(xml));
                    response
                        .headers_mut()
                        .insert(header::CONTENT_LENGTH, length.into());
                    Ok(response)
                } else {
                    let chunks: Vec<String> = xml
                        .as_bytes()
                        .chunks(512)
                        .map(|c| String::from_utf8(c.to_vec()).unwrap())
                        .collect();
                    let body = Chunks::new(chunks).map_err(|never| match never {});
                    Ok(cm_response(StatusCode::OK, body.boxed()))
                }
            }
        }
    }
}

fn full(text: String) -> CmBody {
    Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed()
}

fn cm_response(status: StatusCode, body: CmBody) -> Response<CmBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        "text/xml; charset=utf-8".parse().unwrap(),
    );
    response
}

/// `key=value` from a comma-separated SCRAM message.
fn scram_field<'a>(message: &'a str, key: &str) -> Option<&'a str> {
    message
        .split(',')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// One SCRAM exchange in progress on the server side.
#[derive(Debug)]
struct Scram {
    hash: Hash,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

#[derive(Debug, Clone, Copy)]
enum Hash {
    Sha1,
    Sha256,
}

impl Hash {
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => {
                let mut mac = Hmac::<Sha1>::new_from_slice(key).unwrap();
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            Hash::Sha256 => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => Sha1::digest(data).to_vec(),
            Hash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// Hi(password, salt, i) (RFC 5802 §2.2).
    fn salted_password(self, password: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => {
                let mut out = [0; 20];
                pbkdf2::pbkdf2_hmac::<Sha1>(password, SCRAM_SALT, SCRAM_ITERATIONS, &mut out);
                out.to_vec()
            }
            Hash::Sha256 => {
                let mut out = [0; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, SCRAM_SALT, SCRAM_ITERATIONS, &mut out);
                out.to_vec()
            }
        }
    }
}

/// A body delivered in chunks with no size hint, optionally never ending.
#[derive(Debug)]
struct Chunks {
    chunks: VecDeque<Bytes>,
    hang: bool,
    guard: Option<InFlight>,
}

impl Chunks {
    fn new<S: Into<String>>(chunks: impl IntoIterator<Item = S>) -> Self {
        Chunks {
            chunks: chunks.into_iter().map(|c| Bytes::from(c.into())).collect(),
            hang: false,
            guard: None,
        }
    }

    fn hanging<S: Into<String>>(chunks: impl IntoIterator<Item = S>) -> Self {
        Chunks {
            hang: true,
            ..Chunks::new(chunks)
        }
    }
}

impl Chunks {
    fn guarded(mut self, guard: InFlight) -> Self {
        self.guard = Some(guard);
        self
    }
}

/// Counts itself in a counter while alive.
#[derive(Debug)]
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(counter))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        match this.chunks.pop_front() {
            Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            None if this.hang => Poll::Pending,
            None => Poll::Ready(None),
        }
    }
}

// ---------------------------------------------------------------------------
// A small XML tree (qualified names, as written) and a flat JSON reader
// ---------------------------------------------------------------------------

#[derive(Debug, Default, Clone)]
struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<Node>,
}

impl Node {
    /// Parses one well-formed document; panics on anything else.
    fn parse(xml: &str) -> Node {
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut stack: Vec<Node> = Vec::new();
        loop {
            let event = reader
                .read_event()
                .unwrap_or_else(|e| panic!("malformed XML ({e}): {xml}"));
            let done = match event {
                Event::Start(start) => {
                    stack.push(Node::open(&start));
                    None
                }
                Event::Empty(start) => Some(Node::open(&start)),
                Event::End(_) => stack.pop(),
                Event::Text(text) => {
                    if let Some(parent) = stack.last_mut() {
                        parent.text.push_str(&text.xml10_content());
                    }
                    None
                }
                Event::GeneralRef(reference) => {
                    let resolved = match reference.resolve_char_ref().unwrap() {
                        Some(c) => c.to_string(),
                        None => quick_xml::escape::resolve_predefined_entity(&reference)
                            .expect("predefined entity")
                            .to_owned(),
                    };
                    stack
                        .last_mut()
                        .expect("text in root")
                        .text
                        .push_str(&resolved);
                    None
                }
                Event::Eof => panic!("truncated XML: {xml}"),
                _ => None,
            };
            if let Some(node) = done {
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return node,
                }
            }
        }
    }

    fn open(start: &BytesStart<'_>) -> Node {
        let attrs = start
            .attributes()
            .map(|a| {
                let a = a.expect("attribute");
                let value = a
                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .expect("attribute value");
                (a.key.as_ref().to_owned(), value.into_owned())
            })
            .collect();
        Node {
            name: start.name().as_ref().to_owned(),
            attrs,
            ..Node::default()
        }
    }

    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The first element named `name`, depth first.
    fn find(&self, name: &str) -> Option<&Node> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Json {
    Str(String),
    Num(u64),
}

/// Reads the flat objects the crate writes (string and unsigned number
/// values only); panics on anything else.
fn parse_json(text: &str) -> Vec<(String, Json)> {
    let mut chars = text.trim().chars().peekable();
    let mut fields = Vec::new();
    assert_eq!(chars.next(), Some('{'), "{text}");
    let string = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        assert_eq!(chars.next(), Some('"'), "{text}");
        let mut out = String::new();
        loop {
            match chars.next().expect("unterminated string") {
                '"' => return out,
                '\\' => match chars.next().unwrap() {
                    'u' => {
                        let hex: String = chars.by_ref().take(4).collect();
                        out.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
                    }
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    c => out.push(c),
                },
                c => out.push(c),
            }
        }
    };
    if chars.peek() == Some(&'}') {
        return fields;
    }
    loop {
        let key = string(&mut chars);
        assert_eq!(chars.next(), Some(':'), "{text}");
        let value = if chars.peek() == Some(&'"') {
            Json::Str(string(&mut chars))
        } else {
            let mut digits = String::new();
            while chars.peek().is_some_and(char::is_ascii_digit) {
                digits.push(chars.next().unwrap());
            }
            Json::Num(digits.parse().unwrap_or_else(|_| panic!("value: {text}")))
        };
        fields.push((key, value));
        match chars.next() {
            Some(',') => {}
            Some('}') => break,
            other => panic!("unexpected {other:?} in {text}"),
        }
    }
    assert_eq!(chars.next(), None, "{text}");
    fields
}

// ---------------------------------------------------------------------------
// Calling the layer
// ---------------------------------------------------------------------------

async fn app<B>(request: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() == PAGE_PATH {
        return Ok(Response::builder()
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(Full::new(Bytes::from_static(PAGE_HTML.as_bytes())))
            .unwrap());
    }
    Ok(Response::new(Full::new(Bytes::from_static(b"app"))))
}

/// One answer of the layered service.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
    error: Option<PrebindError>,
    session: Option<PrebindSession>,
    elapsed: Duration,
}

impl Answer {
    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn xml(&self) -> Node {
        Node::parse(&self.body)
    }

    fn json(&self) -> Vec<(String, Json)> {
        parse_json(&self.body)
    }

    fn json_field(&self, key: &str) -> Json {
        self.json()
            .into_iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("no {key:?} in {}", self.body))
            .1
    }

    fn json_str(&self, key: &str) -> String {
        match self.json_field(key) {
            Json::Str(s) => s,
            other => panic!("{key} is {other:?}, not a string"),
        }
    }

    fn json_num(&self, key: &str) -> u64 {
        match self.json_field(key) {
            Json::Num(n) => n,
            other => panic!("{key} is {other:?}, not a number"),
        }
    }

    /// A successful XML answer (`rid` = the last used RID).
    fn assert_xml_success(&self) -> Node {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        assert_eq!(
            self.header(header::CONTENT_TYPE),
            Some("text/xml; charset=utf-8")
        );
        assert_eq!(self.header(header::CACHE_CONTROL), Some("no-store"));
        let body = self.xml();
        assert_eq!(body.name, "body");
        assert_eq!(body.attr("xmlns"), Some(NS_HTTPBIND));
        assert_eq!(body.attr("type"), None);
        body
    }

    /// A successful JSON answer (`rid` = the next RID).
    fn assert_json_success(&self) {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        assert_eq!(self.header(header::CONTENT_TYPE), Some("application/json"));
        assert_eq!(self.header(header::CACHE_CONTROL), Some("no-store"));
    }

    /// The documented failure in the documented shape (DESIGN §3.3).
    fn assert_failure(&self, format: Format, status: StatusCode, condition: &str) {
        assert_eq!(self.status, status, "{format:?}: {}", self.body);
        assert_eq!(self.header(header::CACHE_CONTROL), Some("no-store"));
        match format {
            Format::Xml => {
                assert_eq!(
                    self.header(header::CONTENT_TYPE),
                    Some("text/xml; charset=utf-8")
                );
                let body = self.xml();
                assert_eq!(body.name, "body");
                assert_eq!(body.attr("xmlns"), Some(NS_HTTPBIND));
                assert_eq!(body.attr("type"), Some("terminate"), "{}", self.body);
                assert_eq!(body.attr("condition"), Some(condition), "{}", self.body);
            }
            Format::Json => {
                assert_eq!(self.header(header::CONTENT_TYPE), Some("application/json"));
                assert_eq!(self.json_str("condition"), condition, "{}", self.body);
                assert!(!self.json_str("error").is_empty(), "{}", self.body);
            }
        }
        let error = self.error.as_ref().expect("PrebindError in the extensions");
        assert_eq!(error.status(), status);
        assert_eq!(error.condition(), condition);
    }
}

/// The two answer formats of the prebind path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// POST `<body/>` → XML.
    Xml,
    /// GET → JSON.
    Json,
}

impl Format {
    /// A request asking for all defaults.
    fn request(self) -> Request<Full<Bytes>> {
        match self {
            Format::Xml => post(&format!("<body xmlns='{NS_HTTPBIND}'/>")),
            Format::Json => get(),
        }
    }
}

/// Sends one request through `layer` wrapped around the "app" service.
/// A hung request fails the test (the clock may be paused: then this
/// fires as soon as nothing else can happen).
async fn send<B>(layer: &CmLayer, request: Request<B>) -> Answer
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let service = layer.layer(service_fn(app::<B>));
    let started = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(600), service.oneshot(request))
        .await
        .expect("the request hung")
        .unwrap_or_else(|never| match never {});
    let elapsed = started.elapsed();
    let (parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .unwrap_or_else(|never| match never {})
        .to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
        error: parts.extensions.get::<PrebindError>().cloned(),
        session: parts.extensions.get::<PrebindSession>().cloned(),
        elapsed,
    }
}

/// Runs one prebind per answer format, each against a fresh fake playing
/// `script` behind `configure(layer)`, and checks the documented failure.
async fn assert_fault(
    script: Script,
    configure: impl Fn(CmLayer) -> CmLayer,
    status: StatusCode,
    condition: &str,
) -> Vec<(Answer, FakeCm)> {
    let mut runs = Vec::new();
    for format in [Format::Xml, Format::Json] {
        let cm = FakeCm::new(script.clone());
        let answer = send(&configure(cm.layer()), format.request()).await;
        answer.assert_failure(format, status, condition);
        runs.push((answer, cm));
    }
    // The same fault on an HTML route: the page is still served, whole,
    // with the error object where the session would be.
    let cm = FakeCm::new(script.clone());
    let layer = configure(cm.layer()).inject_path(PAGE_PATH);
    let page = send(
        &layer,
        Request::get(PAGE_PATH).body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let open = "<script type=\"application/json\" id=\"xmpp-prebind\">";
    let start = page.body.find(open).expect("error object injected") + open.len();
    let end = start + page.body[start..].find("</script>").unwrap();
    let json = &page.body[start..end];
    assert_eq!(common::json_field(json, "condition"), condition, "{json}");
    assert_eq!(
        format!(
            "{}{}",
            &page.body[..start - open.len()],
            &page.body[end + 9..]
        ),
        PAGE_HTML,
        "the page itself is untouched"
    );
    runs
}

const PAGE_PATH: &str = "/page";
const PAGE_HTML: &str =
    "<!doctype html><html><head><title>p</title></head><body>page</body></html>";

/// Sends a request that must be refused before anything reaches the CM.
async fn assert_refused<B>(
    layer: impl FnOnce(&FakeCm) -> CmLayer,
    request: Request<B>,
    status: StatusCode,
    condition: &str,
) -> Answer
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let format = if request.method() == Method::POST {
        Format::Xml
    } else {
        Format::Json
    };
    let cm = FakeCm::new(Script::anonymous());
    let answer = send(&layer(&cm), request).await;
    answer.assert_failure(format, status, condition);
    assert_eq!(cm.requests(), Vec::<String>::new(), "the CM was contacted");
    answer
}

fn unchanged(layer: CmLayer) -> CmLayer {
    layer
}

/// The anonymous layer of `cm`, for [`assert_refused`].
fn anonymous(cm: &FakeCm) -> CmLayer {
    cm.layer()
}

// ---------------------------------------------------------------------------
// 1-2. The two answer formats and their RID conventions
// ---------------------------------------------------------------------------

#[tokio::test]
async fn post_answers_xml_with_the_last_used_rid_and_the_bound_jid() {
    let cm = FakeCm::new(Script::anonymous());
    let answer = send(
        &cm.layer(),
        post(&format!(
            "<body xmlns='{NS_HTTPBIND}' to='{ANON}' rid='1000' wait='60' hold='1'/>"
        )),
    )
    .await;

    let body = answer.assert_xml_success();
    assert_eq!(cm.rids(), [1000, 1001, 1002, 1003]);
    assert_eq!(body.attr("rid"), Some("1003"), "the last RID the CM saw");
    assert_eq!(body.attr("jid"), Some(ANON_JID));
    assert_eq!(body.attr("sid"), Some(SID));
    assert_eq!(body.attr("inactivity"), Some("60"));
    assert_eq!(
        body.find("jid").map(|j| j.text.as_str()),
        Some(ANON_JID),
        "the bind result is carried"
    );
    assert_eq!(cm.mechanism().as_deref(), Some("ANONYMOUS"));
}

#[tokio::test]
async fn get_answers_json_with_the_next_rid() {
    let cm = FakeCm::new(Script::anonymous());
    let answer = send(&cm.layer(), get()).await;

    answer.assert_json_success();
    let keys: Vec<String> = answer.json().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        ["jid", "sid", "rid", "wait", "hold", "bosh_service_url"]
    );
    let rids = cm.rids();
    assert_eq!(rids.len(), 4);
    assert_eq!(answer.json_num("rid"), rids[3] + 1, "the next RID to send");
    assert!(
        rids[0] < 1 << 32,
        "a random first RID below 2^32, like Strophe"
    );
    assert_eq!(answer.json_str("jid"), ANON_JID);
    assert_eq!(answer.json_str("sid"), SID);
    assert_eq!(answer.json_num("wait"), 59);
    assert_eq!(answer.json_num("hold"), 1);
    assert_eq!(answer.json_str("bosh_service_url"), CM_URL);
}

#[tokio::test]
async fn the_largest_allowed_first_rid_keeps_the_next_rid_within_2_pow_53() {
    let first = HandshakeConfig::max_first_rid();
    let cm = FakeCm::new(Script::anonymous());
    let answer = send(
        &cm.layer(),
        post(&format!("<body xmlns='{NS_HTTPBIND}' rid='{first}'/>")),
    )
    .await;

    let body = answer.assert_xml_success();
    assert_eq!(cm.rids(), [first, first + 1, first + 2, first + 3]);
    assert_eq!(body.attr("rid"), Some((first + 3).to_string().as_str()));
    assert!(first + 4 < 1 << 53);
}

// ---------------------------------------------------------------------------
// 3. SASL mechanisms, each proven against a real server side
// ---------------------------------------------------------------------------

/// A GET prebind as alice; the session in the answer's extensions must
/// agree with what the fake saw.
async fn account_prebind(mechanisms: &[&'static str]) -> (Answer, FakeCm) {
    let cm = FakeCm::new(Script::account(mechanisms));
    let answer = send(&cm.layer(), get()).await;
    if let Some(session) = &answer.session {
        assert_eq!(Some(session.mechanism), cm.mechanism().as_deref());
        assert_eq!(session.round_trips as usize, cm.requests().len());
        assert_eq!(session.last_rid, *cm.rids().last().unwrap());
    }
    (answer, cm)
}

#[tokio::test]
async fn plain_sends_nul_user_nul_password_in_four_round_trips() {
    let (answer, cm) = account_prebind(&["PLAIN"]).await;

    answer.assert_json_success();
    assert!(answer.session.is_some(), "PrebindSession in the extensions");
    assert_eq!(cm.mechanism().as_deref(), Some("PLAIN"));
    assert_eq!(cm.requests().len(), 4);
    assert_eq!(answer.json_str("jid"), ALICE_JID);
    assert_eq!(answer.json_num("rid"), cm.rids()[3] + 1);
}

#[tokio::test]
async fn scram_sha_1_proves_the_password_in_five_round_trips() {
    let (answer, cm) = account_prebind(&["SCRAM-SHA-1"]).await;

    answer.assert_json_success();
    assert_eq!(cm.mechanism().as_deref(), Some("SCRAM-SHA-1"));
    assert_eq!(cm.requests().len(), 5);
    assert_eq!(answer.json_str("jid"), ALICE_JID);
    assert_eq!(answer.json_num("rid"), cm.rids()[4] + 1);
}

#[tokio::test]
async fn scram_sha_256_proves_the_password_in_five_round_trips() {
    let (answer, cm) = account_prebind(&["SCRAM-SHA-256"]).await;

    answer.assert_json_success();
    assert_eq!(cm.mechanism().as_deref(), Some("SCRAM-SHA-256"));
    assert_eq!(cm.requests().len(), 5);
    assert_eq!(answer.json_str("jid"), ALICE_JID);
    assert_eq!(answer.json_num("rid"), cm.rids()[4] + 1);
}

#[tokio::test]
async fn the_strongest_offered_mechanism_is_chosen() {
    for (offered, expected) in [
        (
            &["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"][..],
            "SCRAM-SHA-256",
        ),
        (&["SCRAM-SHA-1", "PLAIN"], "SCRAM-SHA-1"), // Prosody's offer
        (&["PLAIN", "ANONYMOUS"], "PLAIN"),
    ] {
        let (answer, cm) = account_prebind(offered).await;
        answer.assert_json_success();
        assert_eq!(cm.mechanism().as_deref(), Some(expected), "{offered:?}");
    }
}

#[tokio::test]
async fn credentials_restricted_to_scram_never_fall_back_to_plain() {
    let script = Script {
        client: Credentials::account(ALICE, ALICE_PASSWORD)
            .unwrap()
            .with_mechanisms([Mechanism::ScramSha256, Mechanism::ScramSha1]),
        ..Script::account(&["PLAIN"])
    };
    for (_, cm) in assert_fault(
        script,
        unchanged,
        StatusCode::BAD_GATEWAY,
        "policy-violation",
    )
    .await
    {
        assert_eq!(cm.requests().len(), 1, "no <auth/> sent");
        assert_eq!(cm.mechanism(), None);
    }
}

#[tokio::test]
async fn anonymous_credentials_use_anonymous_even_when_plain_is_offered() {
    let cm = FakeCm::new(Script {
        mechanisms: vec!["SCRAM-SHA-1", "PLAIN", "ANONYMOUS"],
        ..Script::anonymous()
    });
    let answer = send(&cm.layer(), get()).await;

    answer.assert_json_success();
    assert_eq!(cm.mechanism().as_deref(), Some("ANONYMOUS"));
}

#[tokio::test]
async fn scram_with_a_wrong_password_is_refused_by_the_server() {
    let script = Script {
        client: Credentials::account(ALICE, "not-her-password").unwrap(),
        ..Script::account(&["SCRAM-SHA-256"])
    };
    for (_, cm) in assert_fault(script, unchanged, StatusCode::BAD_GATEWAY, "not-authorized").await
    {
        assert_eq!(cm.requests().len(), 3, "create, auth, response; no restart");
    }
}

#[tokio::test]
async fn scram_server_signature_is_verified() {
    let script = Script {
        tamper_server_signature: true,
        ..Script::account(&["SCRAM-SHA-1"])
    };
    for (_, cm) in assert_fault(
        script,
        unchanged,
        StatusCode::BAD_GATEWAY,
        "undefined-condition",
    )
    .await
    {
        assert_eq!(
            cm.requests().len(),
            3,
            "a server that cannot prove the password gets no restart"
        );
    }
}

// ---------------------------------------------------------------------------
// 4-6. Protocol variations
// ---------------------------------------------------------------------------

#[tokio::test]
async fn late_features_are_fetched_with_empty_bodies_and_rids_stay_exact() {
    let cm = FakeCm::new(Script {
        late_features: true,
        ..Script::anonymous()
    });
    let answer = send(
        &cm.layer(),
        post(&format!("<body xmlns='{NS_HTTPBIND}' rid='500'/>")),
    )
    .await;

    let body = answer.assert_xml_success();
    // create, poll, auth, restart, poll, bind
    assert_eq!(cm.rids(), [500, 501, 502, 503, 504, 505]);
    for poll in [1, 4] {
        let request = cm.request(poll);
        assert!(request.children.is_empty(), "{request:?}");
        assert_eq!(request.attr("sid"), Some(SID));
    }
    assert_eq!(body.attr("rid"), Some("505"));
    assert_eq!(body.attr("jid"), Some(ANON_JID));
}

#[tokio::test]
async fn session_iq_is_sent_when_session_is_required() {
    let cm = FakeCm::new(Script {
        session: SessionFeature::Required,
        ..Script::anonymous()
    });
    let answer = send(
        &cm.layer(),
        post(&format!("<body xmlns='{NS_HTTPBIND}' rid='1000'/>")),
    )
    .await;

    let body = answer.assert_xml_success();
    assert!(cm.session_established());
    assert_eq!(cm.rids(), [1000, 1001, 1002, 1003, 1004]);
    assert_eq!(body.attr("rid"), Some("1004"));
}

#[tokio::test]
async fn session_iq_is_not_sent_when_optional_or_absent() {
    for session in [SessionFeature::Optional, SessionFeature::Absent] {
        let cm = FakeCm::new(Script {
            session,
            ..Script::anonymous()
        });
        let answer = send(&cm.layer(), get()).await;

        answer.assert_json_success();
        assert!(!cm.session_established(), "{session:?}");
        assert_eq!(cm.requests().len(), 4, "{session:?}");
    }
}

#[tokio::test]
async fn wait_and_hold_are_clamped_before_session_creation() {
    let cm = FakeCm::new(Script::anonymous());
    let answer = send(
        &cm.layer(),
        post(&format!(
            "<body xmlns='{NS_HTTPBIND}' wait='3600' hold='5'/>"
        )),
    )
    .await;

    let body = answer.assert_xml_success();
    let creation = cm.request(0);
    let wait: u32 = creation.attr("wait").unwrap().parse().unwrap();
    assert!(wait <= 59, "wait {wait}");
    assert_eq!(creation.attr("hold"), Some("1"));
    assert_eq!(body.attr("wait"), Some(wait.to_string().as_str()));
    assert_eq!(body.attr("hold"), Some("1"));
}

#[tokio::test]
async fn a_requested_resource_is_bound_and_the_servers_jid_is_handed_out() {
    let script = Script {
        client: Credentials::account(ALICE, ALICE_PASSWORD)
            .unwrap()
            .with_resource("tab-7"),
        ..Script::account(&["PLAIN"])
    };
    let cm = FakeCm::new(script);
    let answer = send(&cm.layer(), get()).await;

    answer.assert_json_success();
    let bind = cm.request(3);
    assert_eq!(
        bind.find("resource").map(|r| r.text.as_str()),
        Some("tab-7")
    );
    assert_eq!(answer.json_str("jid"), "alice@localhost/tab-7");
}

#[tokio::test]
async fn credentials_from_extensions_are_used_for_an_allowed_domain() {
    let cm = FakeCm::new(Script::anonymous());
    let layer = cm
        .bare_layer()
        .credentials_from_extensions()
        .allow_domain(ANON);
    let mut request = get();
    request
        .extensions_mut()
        .insert(Credentials::anonymous(ANON));
    let answer = send(&layer, request).await;

    answer.assert_json_success();
    assert_eq!(answer.json_str("jid"), ANON_JID);
    assert_eq!(cm.requests().len(), 4);
}

#[tokio::test]
async fn a_scram_server_final_in_a_challenge_is_accepted() {
    let cm = FakeCm::new(Script {
        server_final_in_challenge: true,
        ..Script::account(&["SCRAM-SHA-1"])
    });
    let answer = send(&cm.layer(), get()).await;

    answer.assert_json_success();
    // create, auth, response, empty response, restart, bind
    assert_eq!(cm.requests().len(), 6);
    assert_eq!(answer.json_num("rid"), cm.rids()[5] + 1);
}

#[tokio::test]
async fn an_xml_declaration_before_the_cm_body_is_accepted() {
    let cm = FakeCm::new(Script {
        xml_declaration: true,
        ..Script::anonymous()
    });
    let answer = send(&cm.layer(), get()).await;

    answer.assert_json_success();
    assert_eq!(answer.json_str("jid"), ANON_JID);
}

#[tokio::test]
async fn a_resource_with_markup_characters_is_escaped_in_both_formats() {
    let resource = "tab'<7>&\"x";
    let jid = format!("alice@localhost/{resource}");
    for format in [Format::Xml, Format::Json] {
        let cm = FakeCm::new(Script {
            client: Credentials::account(ALICE, ALICE_PASSWORD)
                .unwrap()
                .with_resource(resource),
            ..Script::account(&["PLAIN"])
        });
        let answer = send(&cm.layer(), format.request()).await;

        match format {
            Format::Xml => {
                let body = answer.assert_xml_success();
                assert_eq!(body.attr("jid"), Some(jid.as_str()));
                assert_eq!(body.find("jid").map(|j| j.text.as_str()), Some(&*jid));
            }
            Format::Json => {
                answer.assert_json_success();
                assert_eq!(answer.json_str("jid"), jid);
                for raw in ['<', '>', '&'] {
                    assert!(!answer.body.contains(raw), "{raw:?} in {}", answer.body);
                }
            }
        }
    }
}

#[tokio::test]
async fn a_bound_resource_with_a_space_is_handed_out() {
    let cm = FakeCm::new(Script {
        client: Credentials::account(ALICE, ALICE_PASSWORD)
            .unwrap()
            .with_resource("foo bar"),
        ..Script::account(&["PLAIN"])
    });
    let answer = send(&cm.layer(), get()).await;

    answer.assert_json_success();
    assert_eq!(answer.json_str("jid"), "alice@localhost/foo bar");
}

#[tokio::test]
async fn payloads_in_the_prebind_request_are_not_forwarded() {
    let cm = FakeCm::new(Script::anonymous());
    let answer = send(
        &cm.layer(),
        post(&format!(
            "<body xmlns='{NS_HTTPBIND}'><message xmlns='jabber:client' \
             to='victim@localhost'><body>spam</body></message></body>"
        )),
    )
    .await;

    answer.assert_xml_success();
    let requests = cm.requests();
    assert_eq!(requests.len(), 4);
    assert!(requests.iter().all(|r| !r.contains("spam")), "{requests:?}");
}

#[tokio::test]
async fn a_same_origin_post_with_matching_origin_and_host_is_accepted() {
    let cm = FakeCm::new(Script::anonymous());
    let mut request = post(&format!("<body xmlns='{NS_HTTPBIND}'/>"));
    let headers = request.headers_mut();
    headers.insert(header::ORIGIN, "http://app.example".parse().unwrap());
    headers.insert(header::HOST, "app.example".parse().unwrap());
    let answer = send(&cm.layer(), request).await;

    answer.assert_xml_success();
    assert_eq!(cm.requests().len(), 4);
}

#[tokio::test]
async fn a_same_origin_post_over_http2_without_host_header_is_accepted() {
    // HTTP/2 carries the host in `:authority`, which hyper puts in the URI;
    // there is no Host header. An older browser sends Origin but no
    // Sec-Fetch-Site.
    let cm = FakeCm::new(Script::anonymous());
    let mut request = Request::post("https://app.example/prebind")
        .version(http::Version::HTTP_2)
        .header(header::CONTENT_TYPE, "text/xml")
        .header(header::ORIGIN, "https://app.example")
        .body(Full::new(Bytes::from(format!(
            "<body xmlns='{NS_HTTPBIND}'/>"
        ))))
        .unwrap();
    assert!(request.headers_mut().get(header::HOST).is_none());
    let answer = send(&cm.layer(), request).await;

    answer.assert_xml_success();
    assert_eq!(cm.requests().len(), 4);
}

// ---------------------------------------------------------------------------
// 7. Faults of the CM: status, body shape, no-store, in both formats
// ---------------------------------------------------------------------------

#[tokio::test]
async fn refused_connection_is_502_and_does_not_leak_the_cm_host() {
    let runs = assert_fault(
        Script::anonymous().fault(0, Fault::Refused),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "remote-connection-failed",
    )
    .await;
    for (answer, cm) in runs {
        assert!(!answer.body.contains(CM_HOST), "{}", answer.body);
        assert!(!answer.body.contains("5280"), "{}", answer.body);
        assert_eq!(cm.requests().len(), 1);
    }
}

#[tokio::test]
async fn http_500_from_the_cm_is_502() {
    let runs = assert_fault(
        Script::anonymous().fault(1, Fault::Status(500)),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "remote-connection-failed",
    )
    .await;
    for (answer, cm) in runs {
        assert_eq!(
            answer.error,
            Some(PrebindError::HttpStatus(StatusCode::INTERNAL_SERVER_ERROR))
        );
        assert_eq!(cm.requests().len(), 2, "no request after the failure");
    }
}

#[tokio::test(start_paused = true)]
async fn a_cm_that_never_answers_is_504_at_the_request_timeout() {
    let runs = assert_fault(
        Script::anonymous().fault(2, Fault::Pending),
        |layer| layer.request_timeout(Duration::from_secs(2)),
        StatusCode::GATEWAY_TIMEOUT,
        "remote-connection-failed",
    )
    .await;
    for (answer, cm) in runs {
        assert_eq!(cm.in_flight(), 0, "the pending request was dropped");
        assert_eq!(
            answer.error,
            Some(PrebindError::Timeout("request timed out"))
        );
        assert!(
            answer.elapsed >= Duration::from_secs(2)
                && answer.elapsed < Duration::from_millis(2100),
            "{:?}",
            answer.elapsed
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_response_body_that_never_ends_is_504_at_the_request_timeout() {
    let runs = assert_fault(
        Script::anonymous().fault(0, Fault::NeverEnds),
        |layer| layer.request_timeout(Duration::from_secs(3)),
        StatusCode::GATEWAY_TIMEOUT,
        "remote-connection-failed",
    )
    .await;
    for (answer, cm) in runs {
        assert_eq!(cm.in_flight(), 0, "the endless body was dropped");
        assert!(
            answer.elapsed >= Duration::from_secs(3)
                && answer.elapsed < Duration::from_millis(3100),
            "{:?}",
            answer.elapsed
        );
    }
}

#[tokio::test(start_paused = true)]
async fn slow_but_in_time_answers_hit_the_handshake_deadline_as_504() {
    let script = Script {
        delay: Duration::from_millis(400),
        ..Script::anonymous()
    };
    let runs = assert_fault(
        script,
        |layer| {
            layer
                .request_timeout(Duration::from_secs(5))
                .handshake_timeout(Duration::from_secs(1))
        },
        StatusCode::GATEWAY_TIMEOUT,
        "remote-connection-failed",
    )
    .await;
    for (answer, cm) in runs {
        assert_eq!(
            answer.error,
            Some(PrebindError::Timeout("handshake deadline exceeded"))
        );
        // Requests start at 0, 0.4 and 0.8 s; the deadline cuts the third.
        assert_eq!(cm.requests().len(), 3);
        assert!(
            answer.elapsed >= Duration::from_secs(1)
                && answer.elapsed < Duration::from_millis(1100),
            "{:?}",
            answer.elapsed
        );
    }
}

#[tokio::test]
async fn garbage_from_the_cm_is_502() {
    assert_fault(
        Script::anonymous().fault(0, Fault::Xml("this is not XML at all".into())),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "undefined-condition",
    )
    .await;
}

#[tokio::test]
async fn truncated_xml_from_the_cm_is_502() {
    let truncated = format!(
        "<body xmlns='{NS_HTTPBIND}' xmlns:stream='{NS_STREAMS}' sid='{SID}'>\
         <stream:features xmlns='jabber:client'><mechanisms xmlns='{NS_SASL}'><mechanism>ANONY"
    );
    assert_fault(
        Script::anonymous().fault(0, Fault::Xml(truncated)),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "undefined-condition",
    )
    .await;
}

#[tokio::test]
async fn an_oversized_response_with_content_length_is_502() {
    let runs = assert_fault(
        Script::anonymous().fault(0, Fault::Oversize { declared: true }),
        |layer| layer.max_response_body(4096),
        StatusCode::BAD_GATEWAY,
        "remote-connection-failed",
    )
    .await;
    for (answer, _) in runs {
        assert_eq!(answer.error, Some(PrebindError::ResponseTooLarge(4096)));
    }
}

#[tokio::test]
async fn an_oversized_streamed_response_is_502() {
    let runs = assert_fault(
        Script::anonymous().fault(0, Fault::Oversize { declared: false }),
        |layer| layer.max_response_body(4096),
        StatusCode::BAD_GATEWAY,
        "remote-connection-failed",
    )
    .await;
    for (answer, _) in runs {
        assert_eq!(answer.error, Some(PrebindError::ResponseTooLarge(4096)));
    }
}

#[tokio::test]
async fn a_terminate_condition_is_passed_on_in_both_formats() {
    // XEP-0124 §17.2, at each step of the handshake in turn.
    for (step, condition) in [
        "host-unknown",
        "improper-addressing",
        "item-not-found",
        "policy-violation",
        "system-shutdown",
        "see-other-uri",
        "other-request",
        "internal-server-error",
        "host-gone",
        "bad-request",
    ]
    .into_iter()
    .enumerate()
    {
        let terminate = format!(
            "<body condition='{condition}' xmlns='{NS_HTTPBIND}' \
             xmlns:stream='{NS_STREAMS}' type='terminate'/>"
        );
        let step = step % 4;
        for (_, cm) in assert_fault(
            Script::anonymous().fault(step, Fault::Xml(terminate)),
            unchanged,
            StatusCode::BAD_GATEWAY,
            condition,
        )
        .await
        {
            assert_eq!(cm.requests().len(), step + 1, "{condition}");
        }
    }
}

#[tokio::test]
async fn a_remote_stream_error_is_passed_on_with_its_stream_condition() {
    let stream_error = format!(
        "<body xmlns='{NS_HTTPBIND}' xmlns:stream='{NS_STREAMS}' sid='{SID}' \
         type='terminate' condition='remote-stream-error'><stream:error>\
         <conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
         <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Replaced by new connection</text>\
         </stream:error></body>"
    );
    let runs = assert_fault(
        Script::anonymous().fault(1, Fault::Xml(stream_error)),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "remote-stream-error",
    )
    .await;
    let (json, _) = &runs[1];
    assert!(json.json_str("error").contains("conflict"), "{}", json.body);
}

#[tokio::test]
async fn a_stream_error_without_terminate_is_a_remote_stream_error() {
    let stream_error = format!(
        "<body xmlns='{NS_HTTPBIND}' xmlns:stream='{NS_STREAMS}' sid='{SID}'>\
         <stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
         </stream:error></body>"
    );
    let runs = assert_fault(
        Script::anonymous().fault(2, Fault::Xml(stream_error)),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "remote-stream-error",
    )
    .await;
    let (json, cm) = &runs[1];
    assert!(
        json.json_str("error").contains("policy-violation"),
        "{}",
        json.body
    );
    assert_eq!(cm.requests().len(), 3, "no bind after a stream error");
}

#[tokio::test]
async fn a_cm_that_never_sends_features_is_502_after_bounded_polls() {
    let script = Script {
        withhold_features: true,
        ..Script::anonymous()
    };
    for (_, cm) in assert_fault(
        script,
        unchanged,
        StatusCode::BAD_GATEWAY,
        "undefined-condition",
    )
    .await
    {
        let rids = cm.rids();
        assert_eq!(rids.len(), 5, "creation and four empty polls");
        assert!(rids.windows(2).all(|w| w[1] == w[0] + 1), "{rids:?}");
    }
}

#[tokio::test]
async fn a_sasl_failure_is_502_not_authorized() {
    let script = Script {
        client: Credentials::account(ALICE, "wrong").unwrap(),
        ..Script::account(&["PLAIN"])
    };
    for (_, cm) in assert_fault(script, unchanged, StatusCode::BAD_GATEWAY, "not-authorized").await
    {
        assert_eq!(cm.requests().len(), 2, "no restart after a failure");
    }
}

#[tokio::test]
async fn a_bind_error_is_502_with_its_condition() {
    let bind_error = format!(
        "<body xmlns='{NS_HTTPBIND}' xmlns:stream='{NS_STREAMS}' sid='{SID}'>\
         <iq id='bind_1' xmlns='jabber:client' type='error'><error type='cancel'>\
         <conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq></body>"
    );
    assert_fault(
        Script::anonymous().fault(3, Fault::Xml(bind_error)),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "conflict",
    )
    .await;
}

#[tokio::test]
async fn a_recoverable_binding_error_body_is_502() {
    let error = format!("<body xmlns='{NS_HTTPBIND}' sid='{SID}' type='error'/>");
    assert_fault(
        Script::anonymous().fault(1, Fault::Xml(error)),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "undefined-condition",
    )
    .await;
}

#[tokio::test]
async fn a_creation_response_without_sid_is_502() {
    let script = Script {
        with_sid: false,
        ..Script::anonymous()
    };
    for (answer, cm) in assert_fault(
        script,
        unchanged,
        StatusCode::BAD_GATEWAY,
        "undefined-condition",
    )
    .await
    {
        assert!(answer.error.unwrap().to_string().contains("sid"));
        assert_eq!(cm.requests().len(), 1);
    }
}

#[tokio::test]
async fn an_answer_for_another_session_is_502() {
    let other = format!(
        "<body xmlns='{NS_HTTPBIND}' sid='00000000-dead-beef-0000-000000000000'>\
         <success xmlns='{NS_SASL}'/></body>"
    );
    for (_, cm) in assert_fault(
        Script::anonymous().fault(1, Fault::Xml(other)),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "undefined-condition",
    )
    .await
    {
        assert_eq!(cm.requests().len(), 2, "no restart on another session");
    }
}

#[tokio::test]
async fn no_usable_mechanism_is_502_policy_violation() {
    let script = Script {
        mechanisms: vec!["ANONYMOUS", "X-OAUTH2"],
        ..Script::account(&[])
    };
    for (_, cm) in assert_fault(
        script,
        unchanged,
        StatusCode::BAD_GATEWAY,
        "policy-violation",
    )
    .await
    {
        assert_eq!(cm.requests().len(), 1, "nothing sent after the creation");
    }
}

// ---------------------------------------------------------------------------
// 8. Bad requests: refused, and the CM receives nothing
// ---------------------------------------------------------------------------

#[tokio::test]
async fn malformed_xml_is_400() {
    assert_refused(
        anonymous,
        post(&format!("<body xmlns='{NS_HTTPBIND}' rid='1'")),
        StatusCode::BAD_REQUEST,
        "bad-request",
    )
    .await;
}

#[tokio::test]
async fn a_request_body_over_the_cap_with_content_length_is_413() {
    let body = format!("<body xmlns='{NS_HTTPBIND}'>{}</body>", " ".repeat(3000));
    let mut request = post(&body);
    request
        .headers_mut()
        .insert(header::CONTENT_LENGTH, body.len().into());
    assert_refused(
        anonymous,
        request,
        StatusCode::PAYLOAD_TOO_LARGE,
        "bad-request",
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_content_length_over_the_cap_is_refused_without_reading_the_body() {
    // The body never ends: reading it would hang until `send` gives up.
    let request = Request::post("/prebind")
        .header(header::CONTENT_TYPE, "text/xml")
        .header(header::CONTENT_LENGTH, "1000000")
        .body(Chunks::hanging([format!("<body xmlns='{NS_HTTPBIND}'>")]))
        .unwrap();
    let answer = assert_refused(
        anonymous,
        request,
        StatusCode::PAYLOAD_TOO_LARGE,
        "bad-request",
    )
    .await;
    assert_eq!(answer.elapsed, Duration::ZERO);
}

#[tokio::test]
async fn a_streamed_request_body_over_the_cap_is_413() {
    let mut chunks = vec![format!("<body xmlns='{NS_HTTPBIND}'>")];
    chunks.extend(std::iter::repeat_n(" ".repeat(500), 6));
    chunks.push("</body>".into());
    let request = Request::post("/prebind")
        .header(header::CONTENT_TYPE, "text/xml")
        .body(Chunks::new(chunks))
        .unwrap();
    assert_refused(
        |cm| cm.layer().max_request_body(2048),
        request,
        StatusCode::PAYLOAD_TOO_LARGE,
        "bad-request",
    )
    .await;
}

#[tokio::test]
async fn a_json_content_type_is_415() {
    let request = Request::post("/prebind")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(
            b"{\"to\":\"anon.localhost\"}",
        )))
        .unwrap();
    assert_refused(
        anonymous,
        request,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "bad-request",
    )
    .await;
}

#[tokio::test]
async fn a_domain_not_allowed_is_403_host_unknown() {
    assert_refused(
        anonymous,
        post(&format!("<body xmlns='{NS_HTTPBIND}' to='evil.example'/>")),
        StatusCode::FORBIDDEN,
        "host-unknown",
    )
    .await;
}

#[tokio::test]
async fn a_jid_in_to_is_400() {
    assert_refused(
        anonymous,
        post(&format!(
            "<body xmlns='{NS_HTTPBIND}' to='alice@anon.localhost'/>"
        )),
        StatusCode::BAD_REQUEST,
        "bad-request",
    )
    .await;
}

#[tokio::test]
async fn rids_that_are_not_numbers_or_out_of_range_are_400() {
    let above_max = (HandshakeConfig::max_first_rid() + 1).to_string();
    for rid in ["abc", "0", "9007199254740991", "-1", "1e3", &above_max] {
        assert_refused(
            anonymous,
            post(&format!("<body xmlns='{NS_HTTPBIND}' rid='{rid}'/>")),
            StatusCode::BAD_REQUEST,
            "bad-request",
        )
        .await;
    }
}

#[tokio::test]
async fn a_negative_wait_is_400() {
    assert_refused(
        anonymous,
        post(&format!("<body xmlns='{NS_HTTPBIND}' wait='-5'/>")),
        StatusCode::BAD_REQUEST,
        "bad-request",
    )
    .await;
}

#[tokio::test]
async fn put_is_405_with_an_allow_header() {
    let request = Request::put("/prebind")
        .header(header::CONTENT_TYPE, "text/xml")
        .body(Full::new(Bytes::from(format!(
            "<body xmlns='{NS_HTTPBIND}'/>"
        ))))
        .unwrap();
    let answer = assert_refused(
        anonymous,
        request,
        StatusCode::METHOD_NOT_ALLOWED,
        "bad-request",
    )
    .await;
    assert_eq!(answer.header(header::ALLOW), Some("GET, POST"));
}

#[tokio::test]
async fn a_cross_site_fetch_is_403() {
    let mut request = get();
    request
        .headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_refused(
        anonymous,
        request,
        StatusCode::FORBIDDEN,
        "policy-violation",
    )
    .await;
}

#[tokio::test]
async fn a_foreign_origin_is_403() {
    let mut request = post(&format!("<body xmlns='{NS_HTTPBIND}'/>"));
    let headers = request.headers_mut();
    headers.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
    headers.insert(header::HOST, "app.example".parse().unwrap());
    assert_refused(
        anonymous,
        request,
        StatusCode::FORBIDDEN,
        "policy-violation",
    )
    .await;
}

#[tokio::test]
async fn no_credentials_for_the_request_is_401() {
    assert_refused(
        |cm| {
            cm.bare_layer()
                .credentials_from_extensions()
                .allow_domain(ANON)
        },
        get(),
        StatusCode::UNAUTHORIZED,
        "not-authorized",
    )
    .await;
}

#[tokio::test]
async fn credentials_for_a_domain_not_allowed_are_403() {
    let mut request = get();
    request
        .extensions_mut()
        .insert(Credentials::anonymous("other.example"));
    assert_refused(
        |cm| {
            cm.bare_layer()
                .credentials_from_extensions()
                .allow_domain(ANON)
        },
        request,
        StatusCode::FORBIDDEN,
        "host-unknown",
    )
    .await;
}

// ---------------------------------------------------------------------------
// 9. Everything else is the inner app's
// ---------------------------------------------------------------------------

#[tokio::test]
async fn other_paths_reach_the_inner_app_untouched() {
    let cm = FakeCm::new(Script::anonymous());
    let layer = cm.layer();
    for request in [
        Request::get("/").body(Full::new(Bytes::new())).unwrap(),
        Request::post("/prebind/x")
            .header(header::CONTENT_TYPE, "text/xml")
            .body(Full::new(Bytes::from(format!(
                "<body xmlns='{NS_HTTPBIND}'/>"
            ))))
            .unwrap(),
    ] {
        let answer = send(&layer, request).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body, "app");
        assert_eq!(answer.header(header::CACHE_CONTROL), None);
        assert_eq!(answer.error, None);
    }
    assert_eq!(cm.requests(), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// Abandoned handshakes: terminated at the CM, best effort, bounded
// ---------------------------------------------------------------------------

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test]
async fn a_client_gone_mid_handshake_terminates_the_half_made_session() {
    let cm = FakeCm::new(Script {
        fault: Some((1, Fault::Pending)),
        ..Script::anonymous()
    });
    let layer = cm.layer();
    let mut answer = Box::pin(send(&layer, get()));
    tokio::select! {
        _ = &mut answer => panic!("the auth request never gets an answer"),
        () = cm.arrived(2) => {}
    }
    // The browser goes away: the answer future is dropped mid-handshake.
    drop(answer);
    cm.arrived(3).await;
    assert_eq!(cm.terminations(), [(SID.to_owned(), cm.rids()[1] + 1)]);
    assert_eq!(cm.requests().len(), 2, "nothing else was sent");
    // The terminate task finishes once the CM answered.
    while alive_tasks() > 0 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_handshake_failed_on_our_side_terminates_its_session() {
    let cm = FakeCm::new(Script {
        fault: Some((1, Fault::Xml("<html>garbage</html>".into()))),
        ..Script::anonymous()
    });
    let answer = send(&cm.layer(), get()).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    cm.arrived(3).await;
    assert_eq!(cm.terminations(), [(SID.to_owned(), cm.rids()[1] + 1)]);
}

#[tokio::test]
async fn successful_or_cm_terminated_sessions_are_not_terminated_again() {
    let cm = FakeCm::new(Script::anonymous());
    let answer = send(&cm.layer(), get()).await;
    answer.assert_json_success();
    assert_eq!(
        alive_tasks(),
        0,
        "no terminate task for a handed-over session"
    );

    let cm = FakeCm::new(Script {
        fault: Some((
            1,
            Fault::Xml(format!(
                "<body xmlns='{NS_HTTPBIND}' type='terminate' condition='system-shutdown'/>"
            )),
        )),
        ..Script::anonymous()
    });
    let answer = send(&cm.layer(), get()).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(alive_tasks(), 0, "the CM already ended it");
    assert!(cm.terminations().is_empty());
}

// ---------------------------------------------------------------------------
// Secrets never reach logs or error messages
// ---------------------------------------------------------------------------

/// What tracing wrote on one thread, at every level.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Captured>> = const { std::cell::RefCell::new(None) };
}

/// Routes the global subscriber's output to the calling thread's capture.
struct ThreadCapture;

impl std::io::Write for ThreadCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|capture| {
            if let Some(captured) = &*capture.borrow() {
                captured.0.lock().unwrap().extend_from_slice(bytes);
            }
        });
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures this thread's tracing output. A global subscriber at TRACE
/// (installed once) rather than a scoped one: tests on other threads then
/// cannot leave a callsite's interest cached as "never".
fn capture_logs() -> Captured {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(|| ThreadCapture)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
    let captured = Captured::default();
    CAPTURE.with(|capture| *capture.borrow_mut() = Some(captured.clone()));
    captured
}

/// The base64 payloads of every `<auth/>` and `<response/>` the layer sent.
fn sasl_payloads(requests: &[String]) -> Vec<String> {
    let mut payloads = Vec::new();
    for request in requests {
        for element in ["auth", "response"] {
            if let Some(start) = request.find(&format!("<{element} ")) {
                let open_end = start + request[start..].find('>').unwrap() + 1;
                let close = open_end + request[open_end..].find('<').unwrap();
                payloads.push(request[open_end..close].to_owned());
            }
        }
    }
    payloads
}

#[tokio::test(flavor = "current_thread")]
async fn scram_handshakes_log_no_password_sasl_data_or_sid() {
    let captured = capture_logs();

    let (answer, cm) = account_prebind(&["SCRAM-SHA-256"]).await;
    answer.assert_json_success();
    let mut payloads = sasl_payloads(&cm.requests());
    let wrong = Script {
        client: Credentials::account(ALICE, "not-her-password").unwrap(),
        ..Script::account(&["SCRAM-SHA-1"])
    };
    let failed_cm = FakeCm::new(wrong);
    let failed = send(&failed_cm.layer(), get()).await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY);
    payloads.extend(sasl_payloads(&failed_cm.requests()));
    assert_eq!(payloads.len(), 4, "two SCRAM exchanges, two messages each");

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("prebind handshake done"),
        "the success was logged: {logs}"
    );
    assert!(
        logs.contains("not-authorized"),
        "the failure was logged: {logs}"
    );
    for secret in [ALICE_PASSWORD, "not-her-password", SID]
        .into_iter()
        .map(str::to_owned)
        .chain(payloads)
    {
        assert!(
            !logs.contains(&secret),
            "{secret:?} leaked into the logs:\n{logs}"
        );
        assert!(
            !failed.body.contains(&secret),
            "{secret:?} leaked into the answer"
        );
    }
    let debug = format!("{:?} {:?}", answer.session, Script::account(&[]).client);
    assert!(
        !debug.contains(SID) && !debug.contains(ALICE_PASSWORD),
        "{debug}"
    );
}

// ---------------------------------------------------------------------------
// Allow-list and cross-origin rules, with tricky input
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_allow_list_ignores_case_and_a_trailing_dot() {
    for to in ["ANON.LocalHost", "anon.localhost.", " anon.localhost "] {
        let cm = FakeCm::new(Script::anonymous());
        let answer = send(
            &anonymous(&cm),
            post(&format!("<body xmlns='{NS_HTTPBIND}' to='{to}'/>")),
        )
        .await;
        answer.assert_xml_success();
        assert_eq!(
            cm.request(0).attr("to"),
            Some(ANON),
            "normalized before use: {to:?}"
        );
    }
}

#[tokio::test]
async fn tricky_domains_are_refused_without_contacting_the_cm() {
    for (to, status, condition) in [
        (
            "anon.localhost/resource",
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            "guest@anon.localhost",
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        ("", StatusCode::BAD_REQUEST, "bad-request"),
        ("anon.localhost..", StatusCode::FORBIDDEN, "host-unknown"),
        ("anön.localhost", StatusCode::FORBIDDEN, "host-unknown"),
        (
            "anon.localhost.evil.example",
            StatusCode::FORBIDDEN,
            "host-unknown",
        ),
        (
            "evil.example#anon.localhost",
            StatusCode::FORBIDDEN,
            "host-unknown",
        ),
        ("localhost", StatusCode::FORBIDDEN, "host-unknown"),
        (
            "anon.localhost\u{0}",
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
    ] {
        let to = quick_xml::escape::escape(to);
        assert_refused(
            anonymous,
            post(&format!("<body xmlns='{NS_HTTPBIND}' to='{to}'/>")),
            status,
            condition,
        )
        .await;
    }
}

#[tokio::test]
async fn an_allowed_origin_gets_cors_for_itself_alone() {
    let cm = FakeCm::new(Script::anonymous());
    let layer = cm.layer().allow_origin("https://partner.example");
    let preflight = Request::options("/prebind")
        .header(header::ORIGIN, "https://partner.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .body(Full::default())
        .unwrap();
    let answer = send(&layer, preflight).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(
        answer.header(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some("https://partner.example")
    );
    assert_eq!(
        answer.header(header::ACCESS_CONTROL_ALLOW_METHODS),
        Some("GET, POST")
    );
    assert!(cm.requests().is_empty());

    let mut request = get();
    request
        .headers_mut()
        .insert(header::ORIGIN, "https://partner.example".parse().unwrap());
    request
        .headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    let answer = send(&layer, request).await;
    answer.assert_json_success();
    assert_eq!(
        answer.header(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some("https://partner.example")
    );
    assert_eq!(
        answer.header(header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
        Some("true")
    );
    assert_eq!(answer.header(header::VARY), Some("Origin"));

    // Anyone else: no CORS headers, no wildcard, and refused.
    let mut request = get();
    request
        .headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    request
        .headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    let answer = assert_refused(
        |cm| cm.layer().allow_origin("https://partner.example"),
        request,
        StatusCode::FORBIDDEN,
        "policy-violation",
    )
    .await;
    assert_eq!(answer.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), None);
    let preflight = Request::options("/prebind")
        .header(header::ORIGIN, "https://evil.example")
        .body(Full::default())
        .unwrap();
    let answer = send(&layer, preflight).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), None);
}
