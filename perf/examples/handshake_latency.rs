//! Measures prebind latency through the layer against a running CM:
//! `N` sequential `GET /prebind` per mechanism, after 3 warm-ups; prints the
//! median, p10 and p90 and the round trips each handshake took.
//!
//! ```text
//! scripts/prosody.sh start
//! cargo run --release -p perf --example handshake_latency -- http://127.0.0.1:5280/http-bind 50
//! ```

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bosh_prebind::{Credentials, Mechanism, PrebindLayer, PrebindSession};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url: http::Uri = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:5280/http-bind".into())
        .parse()
        .expect("a BOSH URL");
    let runs: usize = args.next().map_or(50, |n| n.parse().expect("a run count"));

    let cases = [
        ("ANONYMOUS", Credentials::anonymous("anon.localhost")),
        (
            "SCRAM-SHA-1",
            Credentials::account("bob@localhost", "secret-bob")
                .unwrap()
                .with_mechanisms([Mechanism::ScramSha1]),
        ),
        (
            "PLAIN",
            Credentials::account("alice@localhost", "secret-alice")
                .unwrap()
                .with_mechanisms([Mechanism::Plain]),
        ),
    ];
    println!("| mechanism | round trips | median | p10 | p90 | runs |");
    println!("|---|---|---|---|---|---|");
    for (name, credentials) in cases {
        let app = service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        });
        let mut service =
            PrebindLayer::new(bosh_prebind::BoshUrl::try_from(url.clone()).expect("a BOSH URL"))
                .credentials(credentials)
                .layer(app);
        let mut times = Vec::with_capacity(runs);
        let mut round_trips = 0;
        for i in 0..runs + 3 {
            let request = Request::get("/prebind").body(Full::default()).unwrap();
            let started = Instant::now();
            let response = service.ready().await.unwrap().call(request).await.unwrap();
            let elapsed = started.elapsed();
            assert_eq!(response.status(), StatusCode::OK, "{name} prebind failed");
            let session = response
                .extensions()
                .get::<PrebindSession>()
                .expect("the session");
            assert_eq!(session.mechanism, name);
            round_trips = session.round_trips;
            if i >= 3 {
                times.push(elapsed);
            }
        }
        times.sort();
        let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        println!(
            "| {name} | {round_trips} | {} | {} | {} | {runs} |",
            ms(pick(0.5)),
            ms(pick(0.1)),
            ms(pick(0.9))
        );
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
