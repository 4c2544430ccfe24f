//! CPU per prebind in our process, the connection manager excluded
//! (docs/design.md §5: ≤ 50 µs for ANONYMOUS).
//!
//! - `sans_io/anonymous`: the handshake state machine alone, fed Prosody's
//!   recorded responses (docs/protocol/prosody-0.12.md).
//! - `layer/anonymous`: `GET /prebind` through the whole layer, with the
//!   in-memory fake CM of `bosh_prebind::test_util` answering like Prosody
//!   (its own checks included): request parsing, credentials, the driver,
//!   four HTTP exchanges over a tower transport, the JSON answer.
//! - `layer/scram_sha1_{uncached,cached}`: the same with SCRAM-SHA-1 at
//!   Prosody's 10 000 PBKDF2 iterations, without and with the salted-password
//!   cache: what the cache saves on repeat logins.
//!
//! - `observed/anonymous_{none,fmt_info,metrics,both}`: `layer/anonymous`
//!   again with nothing listening, with a `tracing_subscriber::fmt`
//!   subscriber at INFO writing to a sink, with a Prometheus metrics recorder
//!   (feature `metrics`), and with both: what observability costs per
//!   prebind. (Installed per thread: `tracing::subscriber::with_default`,
//!   `metrics::with_local_recorder`; the runtime is current-thread.)
//!
//! PBKDF2 runs inline (`derive_inline(true)`): the CPU cost, not the thread
//! hop of `spawn_blocking`, is measured.
//!
//! ```text
//! cargo bench --bench handshake
//! ```

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::time::Duration;

use bosh_prebind::handshake::{Handshake, HandshakeConfig, Step};
use bosh_prebind::test_util::FakeCm;
use bosh_prebind::{Credentials, Mechanism};
use bytes::Bytes;
use criterion::Criterion;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use std::hint::black_box;
use tower::{Layer, Service, ServiceExt, service_fn};

const CREATED: &str = "<body hold='1' authid='7d0aa91d-ded8-4d91-89b3-b4c918168c50' secure='true' xmpp:version='1.0' ver='1.6' xmlns:stream='http://etherx.jabber.org/streams' xmlns:xmpp='urn:xmpp:xbosh' xmlns='http://jabber.org/protocol/httpbind' from='anon.localhost' requests='2' polling='5' sid='7d0aa91d-ded8-4d91-89b3-b4c918168c50' inactivity='60' wait='60'><stream:features xmlns='jabber:client'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>ANONYMOUS</mechanism></mechanisms></stream:features></body>";
const SUCCESS: &str = "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams' sid='7d0aa91d-ded8-4d91-89b3-b4c918168c50'><success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></body>";
const RESTARTED: &str = "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams' sid='7d0aa91d-ded8-4d91-89b3-b4c918168c50'><stream:features xmlns='jabber:client'><c hash='sha-1' xmlns='http://jabber.org/protocol/caps' node='http://prosody.im' ver='g6v15bTJOfWXNUu1mm4Hlk5EAd0='/><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><required/></bind><session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session><ver xmlns='urn:xmpp:features:rosterver'/><sub xmlns='urn:xmpp:features:pre-approval'/></stream:features></body>";
const BOUND: &str = "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams' sid='7d0aa91d-ded8-4d91-89b3-b4c918168c50'><iq id='bind_1' xmlns='jabber:client' type='result'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>eunyql_gd_l2kozyecbj_nbi@anon.localhost/GtONlPbg6nB5</jid></bind></iq></body>";

const ITERATIONS: u32 = 10_000;
const SALT: &[u8] = b"a-prosody-like-salt";
const PASSWORD: &str = "secret-bob";

/// The layer around an empty app, logging in to `cm` as `credentials`.
fn layer_service(
    cm: &FakeCm,
    credentials: Credentials,
    scram_cache: usize,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<bosh_prebind::PrebindBody<Full<Bytes>>>,
    Error = Infallible,
> + Clone {
    let app = service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    cm.layer()
        .credentials(credentials)
        .scram_cache(scram_cache)
        .derive_inline(true)
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
    // The shared fake CM (bosh_prebind::test_util), keeping no records so
    // memory stays flat over millions of iterations.
    let anonymous_cm = FakeCm::builder().keep_requests(false).build();
    let anonymous = layer_service(
        &anonymous_cm,
        Credentials::anonymous("anon.localhost"),
        1024,
    );
    c.bench_function("layer/anonymous", |b| {
        b.iter(|| prebind(&runtime, &anonymous))
    });

    let mut observed = c.benchmark_group("observed");
    observed.bench_function("anonymous_none", |b| {
        b.iter(|| prebind(&runtime, &anonymous))
    });
    let fmt_info = || {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(std::io::sink)
            .finish()
    };
    observed.bench_function("anonymous_fmt_info", |b| {
        tracing::subscriber::with_default(fmt_info(), || b.iter(|| prebind(&runtime, &anonymous)))
    });
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    observed.bench_function("anonymous_metrics", |b| {
        metrics::with_local_recorder(&recorder, || b.iter(|| prebind(&runtime, &anonymous)))
    });
    observed.bench_function("anonymous_both", |b| {
        tracing::subscriber::with_default(fmt_info(), || {
            metrics::with_local_recorder(&recorder, || b.iter(|| prebind(&runtime, &anonymous)))
        })
    });
    observed.finish();

    let bob = Credentials::account("bob@localhost", PASSWORD)
        .unwrap()
        .with_mechanisms([Mechanism::ScramSha1]);
    let mut group = c.benchmark_group("layer");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    // Prosody's SCRAM-SHA-1 at 10 000 iterations; the server's keys are
    // derived once, as a server stores them.
    let bob_cm = FakeCm::builder()
        .domain("localhost")
        .account("bob", PASSWORD)
        .mechanisms(["SCRAM-SHA-1"])
        .jid("bob@localhost/bench")
        .scram(SALT, ITERATIONS)
        .keep_requests(false)
        .build();
    let uncached = layer_service(&bob_cm, bob.clone(), 0);
    group.bench_function("scram_sha1_uncached", |b| {
        b.iter(|| prebind(&runtime, &uncached))
    });
    let cached = layer_service(&bob_cm, bob, 1024);
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
