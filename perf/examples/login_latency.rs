//! Every way the layer logs in, side by side against one distant CM
//! (docs/design.md §5): classic SASL, SASL2 + Bind 2 (XEP-0388, XEP-0386),
//! a FAST token (XEP-0484) and the warm pool, for ANONYMOUS and SCRAM.
//!
//! The CM is a real Prosody 13 with prosody-modules' `mod_sasl2`,
//! `mod_sasl2_bind2` and `mod_sasl2_fast` (`scripts/prosody13.sh`), behind
//! the latency proxy of `perf::latency_proxy` (run in this
//! process) adding `--delay-ms` (default 10) each way. One server per case
//! over real HTTP/1.1 on loopback, each a layer answering `GET /prebind` and
//! injecting into a ~100 KiB page at `/page`:
//!
//! | case | layer |
//! |---|---|
//! | classic | `sasl2(false)` |
//! | SASL2 + Bind 2 | the default (SASL2 where offered) |
//! | FAST (SCRAM row only) | a token asked for once with the password, then `Credentials::fast_token`, the newest token kept (`on_fast_token`) |
//! | pool | `pool(--pool)`, default 16 (its sessions made with SASL2) |
//!
//! A hyper client on one keep-alive connection per server; `-n` rounds
//! (default 40) after 5 warm-ups, one every `--pace-ms` (default 100); each
//! round sends `GET /prebind` and `GET /page` to every server, the order
//! rotating. Round trips per login come from each session's own count
//! (`PrebindSession::round_trips`, through `on_outcome`); a pool hit makes
//! none at request time.
//!
//! ```text
//! scripts/prosody13.sh start
//! cargo run --release -p perf --example login_latency -- --bosh-url http://127.0.0.1:5290/http-bind
//! ```

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bosh_prebind::{Credentials, Outcome, PrebindLayer};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, ServiceExt, service_fn};

use perf::{Client, app, ms, page, quantile, spawn_server};

const WARM_UP: usize = 5;
/// The FAST token's user-agent id (XEP-0388 §2.3.1): one "device".
const USER_AGENT_ID: &str = "c5b1e4a2-7a1f-4f3e-9a57-login-latency";

/// The round trips of every login a layer made at request time, and its
/// mechanism.
#[derive(Default)]
struct Logins {
    round_trips: Vec<u32>,
    mechanisms: Vec<&'static str>,
}

/// One case: its server's client, what its layer saw, and its times.
struct Case {
    login: &'static str,
    name: &'static str,
    client: Client,
    logins: Arc<Mutex<Logins>>,
    pool: Option<bosh_prebind::PoolHandle>,
    times: [Vec<f64>; 2],
    errors: usize,
}

async fn case(
    cm: &http::Uri,
    login: &'static str,
    name: &'static str,
    build: impl FnOnce(
        PrebindLayer<bosh_prebind::HttpTransport>,
    ) -> PrebindLayer<bosh_prebind::HttpTransport>,
) -> Case {
    let logins = Arc::new(Mutex::new(Logins::default()));
    let seen = logins.clone();
    let layer = build(
        PrebindLayer::new(bosh_prebind::BoshUrl::try_from(cm.clone()).expect("a BOSH URL"))
            .inject_path("/page")
            .on_outcome(move |outcome: &Outcome<'_>| {
                if let Ok(session) = outcome.result {
                    let mut seen = seen.lock().unwrap();
                    seen.round_trips.push(session.round_trips);
                    seen.mechanisms.push(session.mechanism);
                }
            }),
    );
    let pool = Some(layer.pool_handle());
    let client = Client::connect(spawn_server(layer.layer(app(page()))).await).await;
    Case {
        login,
        name,
        client,
        logins,
        pool,
        times: [Vec::new(), Vec::new()],
        errors: 0,
    }
}

/// A FAST token for alice on `cm`: one password login that asks for it.
async fn first_token(cm: &http::Uri) -> String {
    let token = Arc::new(Mutex::new(None));
    let kept = token.clone();
    let layer = PrebindLayer::new(bosh_prebind::BoshUrl::try_from(cm.clone()).unwrap())
        .credentials(
            Credentials::account("alice@localhost", "secret-alice")
                .unwrap()
                .request_fast_token(USER_AGENT_ID),
        )
        .on_fast_token(move |_, new| *kept.lock().unwrap() = Some(new.token.clone()));
    let service = layer.layer(service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
    }));
    let response = service
        .oneshot(Request::get("/prebind").body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the password login");
    let token = token.lock().unwrap().clone();
    token.expect("Prosody 13 with mod_sasl2_fast issues a token (is --bosh-url a Prosody 13?)")
}

const USAGE: &str = "usage: login_latency [--bosh-url URL (Prosody 13)] [--delay-ms MS (one way, 10)] [-n ROUNDS (40)] [--pool N (16)] [--pace-ms MS (100)]";

#[tokio::main]
async fn main() {
    let mut bosh_url = "http://127.0.0.1:5290/http-bind".to_owned();
    let (mut delay_ms, mut runs, mut pool, mut pace_ms) = (10u64, 40usize, 16usize, 100u64);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{USAGE}"));
        let number = || {
            value
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("{flag}: a number"))
        };
        match flag.as_str() {
            "--bosh-url" => bosh_url = value.clone(),
            "--delay-ms" => delay_ms = number(),
            "-n" => runs = number() as usize,
            "--pool" => pool = number() as usize,
            "--pace-ms" => pace_ms = number(),
            _ => panic!("{USAGE}"),
        }
    }
    let cm: http::Uri = bosh_url.parse().expect("--bosh-url: a URL");
    let cm = perf::latency_proxy::distant(&cm, Duration::from_millis(delay_ms)).await;

    let anonymous = || Credentials::anonymous("anon.localhost");
    let alice = || Credentials::account("alice@localhost", "secret-alice").unwrap();
    // The newest FAST token, as a site would keep it in its database.
    let token = Arc::new(Mutex::new(first_token(&cm).await));
    let mut cases = vec![
        case(&cm, "ANONYMOUS", "classic", |l| {
            l.credentials(anonymous()).sasl2(false)
        })
        .await,
        case(&cm, "ANONYMOUS", "SASL2 + Bind 2", |l| {
            l.credentials(anonymous())
        })
        .await,
        case(&cm, "ANONYMOUS", "pool", |l| {
            l.credentials(anonymous()).pool(pool)
        })
        .await,
        case(&cm, "SCRAM (alice)", "classic", |l| {
            l.credentials(alice()).sasl2(false)
        })
        .await,
        case(&cm, "SCRAM (alice)", "SASL2 + Bind 2", |l| {
            l.credentials(alice())
        })
        .await,
        case(&cm, "SCRAM (alice)", "FAST token", {
            let (read, write) = (token.clone(), token.clone());
            move |l| {
                l.allow_domain("localhost")
                    .credentials_fn(move |_| {
                        let token = read.lock().unwrap().clone();
                        async move {
                            Credentials::fast_token("alice@localhost", token, USER_AGENT_ID).ok()
                        }
                    })
                    .on_fast_token(move |_, new| *write.lock().unwrap() = new.token.clone())
            }
        })
        .await,
        case(&cm, "SCRAM (alice)", "pool", |l| {
            l.credentials(alice()).pool(pool)
        })
        .await,
    ];
    for case in &mut cases {
        if case.name != "pool" {
            case.pool = None;
        }
    }
    println!(
        "CM {bosh_url} behind a proxy adding {delay_ms} ms each way ({} ms RTT); {runs} rounds after {WARM_UP} warm-ups, one every {pace_ms} ms; each round: GET /prebind and GET /page (100 KiB, injected) on every case's server, order rotating",
        2 * delay_ms
    );

    let slots = cases.len() * 2;
    let mut next = Instant::now();
    let mut warm_logins = vec![0; cases.len()];
    for round in 0..WARM_UP + runs {
        if round == WARM_UP {
            for (i, case) in cases.iter().enumerate() {
                warm_logins[i] = case.logins.lock().unwrap().round_trips.len();
            }
        }
        tokio::time::sleep_until(next.into()).await;
        next += Duration::from_millis(pace_ms);
        for k in 0..slots {
            let slot = (k + round) % slots;
            let (index, metric) = (slot / 2, slot % 2);
            let path = if metric == 0 { "/prebind" } else { "/page" };
            let case = &mut cases[index];
            let (elapsed, ok) = case.client.get(path).await;
            if !ok {
                case.errors += 1;
            }
            if round >= WARM_UP {
                case.times[metric].push(ms(elapsed));
            }
        }
    }

    println!();
    println!(
        "| login | method | `GET /prebind` median (p90) | page last byte median (p90) | round trips per login at request time | errors |"
    );
    println!("|---|---|---|---|---|---|");
    for (i, case) in cases.iter().enumerate() {
        let logins = case.logins.lock().unwrap();
        let measured = &logins.round_trips[warm_logins[i]..];
        let round_trips = match &case.pool {
            Some(handle) => {
                let stats = handle.stats();
                format!(
                    "0 for a pool hit ({} hits, {} misses in all)",
                    stats.hits, stats.misses
                )
            }
            None => {
                let mut distinct: Vec<u32> = measured.to_vec();
                distinct.sort_unstable();
                distinct.dedup();
                let mechanism = logins.mechanisms.last().copied().unwrap_or("?");
                format!(
                    "{} ({mechanism}, {} logins)",
                    distinct
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join("/"),
                    measured.len()
                )
            }
        };
        println!(
            "| {} | {} | {:.2} ms ({:.2}) | {:.2} ms ({:.2}) | {round_trips} | {} |",
            case.login,
            case.name,
            quantile(&case.times[0], 0.5),
            quantile(&case.times[0], 0.9),
            quantile(&case.times[1], 0.5),
            quantile(&case.times[1], 0.9),
            case.errors,
        );
    }
    for case in &cases {
        if let Some(handle) = &case.pool {
            handle.shutdown().await;
        }
    }
}
