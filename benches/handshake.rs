//! CPU per prebind in our process, the connection manager excluded
//! (DESIGN §5: ≤ 50 µs for ANONYMOUS).
//!
//! - `sans_io/anonymous`: the handshake state machine alone, fed Prosody's
//!   recorded responses (../shared/protocol/prosody.md).
//! - `layer/anonymous`: `GET /prebind` through the whole layer, with an
//!   in-memory CM answering like Prosody: request parsing, credentials, the
//!   driver, four HTTP exchanges over a tower transport, the JSON answer.
//! - `layer/scram_sha1_{uncached,cached}`: the same with SCRAM-SHA-1 at
//!   Prosody's 10 000 PBKDF2 iterations, without and with the salted-password
//!   cache: what the cache saves on repeat logins.
//!
//! ```text
//! cargo bench --bench handshake
//! ```

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bosh_prebind::handshake::{Handshake, HandshakeConfig, Step};
use bosh_prebind::{Credentials, Mechanism, PrebindLayer};
use bytes::Bytes;
use criterion::{Criterion, black_box};
use hmac::{Hmac, Mac};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use sha1::{Digest, Sha1};
use tower::{Layer, Service, ServiceExt, service_fn};

const SID: &str = "7d0aa91d-ded8-4d91-89b3-b4c918168c50";
const CREATED: &str = "<body hold='1' authid='7d0aa91d-ded8-4d91-89b3-b4c918168c50' secure='true' xmpp:version='1.0' ver='1.6' xmlns:stream='http://etherx.jabber.org/streams' xmlns:xmpp='urn:xmpp:xbosh' xmlns='http://jabber.org/protocol/httpbind' from='anon.localhost' requests='2' polling='5' sid='7d0aa91d-ded8-4d91-89b3-b4c918168c50' inactivity='60' wait='60'><stream:features xmlns='jabber:client'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>ANONYMOUS</mechanism></mechanisms></stream:features></body>";
const SUCCESS: &str = "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams' sid='7d0aa91d-ded8-4d91-89b3-b4c918168c50'><success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></body>";
const RESTARTED: &str = "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams' sid='7d0aa91d-ded8-4d91-89b3-b4c918168c50'><stream:features xmlns='jabber:client'><c hash='sha-1' xmlns='http://jabber.org/protocol/caps' node='http://prosody.im' ver='g6v15bTJOfWXNUu1mm4Hlk5EAd0='/><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><required/></bind><session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session><ver xmlns='urn:xmpp:features:rosterver'/><sub xmlns='urn:xmpp:features:pre-approval'/></stream:features></body>";
const BOUND: &str = "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams' sid='7d0aa91d-ded8-4d91-89b3-b4c918168c50'><iq id='bind_1' xmlns='jabber:client' type='result'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>eunyql_gd_l2kozyecbj_nbi@anon.localhost/GtONlPbg6nB5</jid></bind></iq></body>";

const ITERATIONS: u32 = 10_000;
const SALT: &[u8] = b"a-prosody-like-salt";
const PASSWORD: &str = "secret-bob";

/// The server's side of SCRAM-SHA-1 (RFC 5802), keys computed once.
struct ScramServer {
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl ScramServer {
    fn new() -> Self {
        let mut salted = [0u8; 20];
        pbkdf2::pbkdf2::<Hmac<Sha1>>(PASSWORD.as_bytes(), SALT, ITERATIONS, &mut salted).unwrap();
        let client_key = hmac(&salted, b"Client Key");
        ScramServer {
            stored_key: Sha1::digest(&client_key).to_vec(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha1>>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Text between `<tag …>` and `</tag>` of the first `tag` element.
fn element_text<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let start = body.find(&format!("<{tag} "))?;
    let open_end = start + body[start..].find('>')? + 1;
    Some(&body[open_end..open_end + body[open_end..].find('<')?])
}

fn envelope(inner: &str) -> String {
    format!(
        "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams' sid='{SID}'>{inner}</body>"
    )
}

/// An in-memory CM: answers by what each request is, like Prosody would.
/// For SCRAM it keeps the exchange's auth message between two requests.
fn answer(server: &ScramServer, auth_message: &mut String, body: &str) -> String {
    if !body.contains("sid=") {
        let mechanisms = if body.contains("to='localhost'") {
            "SCRAM-SHA-1"
        } else {
            "ANONYMOUS"
        };
        return CREATED.replace(
            "<mechanism>ANONYMOUS</mechanism>",
            &format!("<mechanism>{mechanisms}</mechanism>"),
        );
    }
    if let Some(initial) = element_text(body, "auth") {
        if body.contains("mechanism='ANONYMOUS'") {
            return SUCCESS.to_owned();
        }
        let client_first = String::from_utf8(B64.decode(initial).unwrap()).unwrap();
        let bare = client_first.strip_prefix("n,,").unwrap();
        // Fields are comma-separated; the nonce may itself contain "r=".
        let nonce = bare
            .split(',')
            .find_map(|field| field.strip_prefix("r="))
            .unwrap();
        let server_first = format!("r={nonce}srv,s={},i={ITERATIONS}", B64.encode(SALT));
        *auth_message = format!("{bare},{server_first}");
        let challenge = B64.encode(&server_first);
        return envelope(&format!(
            "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{challenge}</challenge>"
        ));
    }
    if let Some(response) = element_text(body, "response") {
        let client_final = String::from_utf8(B64.decode(response).unwrap()).unwrap();
        let (without_proof, proof) = client_final.rsplit_once(",p=").unwrap();
        auth_message.push(',');
        auth_message.push_str(without_proof);
        let signature = hmac(&server.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = B64
            .decode(proof)
            .unwrap()
            .iter()
            .zip(&signature)
            .map(|(p, s)| p ^ s)
            .collect();
        assert_eq!(
            Sha1::digest(&client_key).as_slice(),
            server.stored_key,
            "proof"
        );
        let verifier = B64.encode(format!(
            "v={}",
            B64.encode(hmac(&server.server_key, auth_message.as_bytes()))
        ));
        return envelope(&format!(
            "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{verifier}</success>"
        ));
    }
    if body.contains("xmpp:restart='true'") {
        return RESTARTED.to_owned();
    }
    BOUND.to_owned()
}

fn layer_service(
    credentials: Credentials,
    scram_cache: usize,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<bosh_prebind::PrebindBody<Full<Bytes>>>,
    Error = Infallible,
> + Clone {
    let server = Arc::new(ScramServer::new());
    let auth_message = Arc::new(std::sync::Mutex::new(String::new()));
    let transport = service_fn(move |request: Request<Full<Bytes>>| {
        let server = Arc::clone(&server);
        let auth_message = Arc::clone(&auth_message);
        async move {
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let body = std::str::from_utf8(&body).unwrap();
            let xml = answer(&server, &mut auth_message.lock().unwrap(), body);
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(xml))))
        }
    });
    let app = service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    PrebindLayer::with_transport("http://cm.invalid/http-bind".parse().unwrap(), transport)
        .credentials(credentials)
        .scram_cache(scram_cache)
        .layer(app)
}

fn prebind<S>(runtime: &tokio::runtime::Runtime, service: &S)
where
    S: Service<
            Request<Full<Bytes>>,
            Response = Response<bosh_prebind::PrebindBody<Full<Bytes>>>,
            Error = Infallible,
        > + Clone,
{
    runtime.block_on(async {
        let request = Request::get("/prebind").body(Full::default()).unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(status, StatusCode::OK, "{body:?}");
        black_box(body);
    });
}

fn benches(c: &mut Criterion) {
    c.bench_function("sans_io/anonymous", |b| {
        b.iter(|| {
            let mut config = HandshakeConfig::new(Credentials::anonymous("anon.localhost"));
            config.first_rid = Some(1_062_715_484_561);
            let (mut handshake, first) = Handshake::start(config);
            black_box(first);
            for response in [CREATED, SUCCESS, RESTARTED] {
                let Ok(Step::Send(next)) = handshake.receive(response.as_bytes()) else {
                    panic!("expected a request");
                };
                black_box(next);
            }
            let Ok(Step::Done(session)) = handshake.receive(BOUND.as_bytes()) else {
                panic!("expected the session");
            };
            black_box(session)
        })
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let anonymous = layer_service(Credentials::anonymous("anon.localhost"), 1024);
    c.bench_function("layer/anonymous", |b| {
        b.iter(|| prebind(&runtime, &anonymous))
    });

    let bob = Credentials::account("bob@localhost", PASSWORD)
        .unwrap()
        .with_mechanisms([Mechanism::ScramSha1]);
    let mut group = c.benchmark_group("layer");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    let uncached = layer_service(bob.clone(), 0);
    group.bench_function("scram_sha1_uncached", |b| {
        b.iter(|| prebind(&runtime, &uncached))
    });
    let cached = layer_service(bob, 1024);
    group.bench_function("scram_sha1_cached", |b| {
        b.iter(|| prebind(&runtime, &cached))
    });
    group.finish();
}

criterion::criterion_group! {
    name = handshake;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion::criterion_main!(handshake);
