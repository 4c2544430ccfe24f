//! The warm pool against a distant CM (docs/design.md §5: `/prebind` and an
//! injected page's last byte ≤ 5 ms with a warm pool, the CM 20 ms away),
//! and what it wastes.
//!
//! **Latency.** The CM (a real Prosody) sits behind the latency proxy of
//! `perf::latency_proxy` (run in this process) adding
//! `--delay-ms` (default 10) each way. For ANONYMOUS and for SCRAM (alice),
//! two servers over real HTTP/1.1 on loopback: the layer without a pool and
//! with `pool(--pool)` (default 16), each answering `GET /prebind` and
//! injecting into a ~100 KiB page at `/page`. A hyper client on one
//! keep-alive connection per server sends `-n` (default 50) rounds of
//! `GET /prebind` and `GET /page` to each, the order rotating, a round every
//! `--pace-ms` (default 100: 10 rounds a second, well under what the pool
//! refills), after 5 warm-up rounds.
//!
//! **Waste.** The pooled layer alone (anonymous, in process), the same CM:
//! a steady load (`--steady-rps`, default 5 requests a second, for
//! `--load-secs`, default 60) and a bursty one (`--burst` requests at once,
//! default 50, every `--burst-every` seconds, default 20, for `--load-secs`),
//! each on a fresh layer; then `PoolHandle::shutdown`. Waste ratio = sessions
//! made but never handed out / made.
//!
//! ```text
//! scripts/prosody.sh start
//! cargo run --release -p perf --example pool_latency -- --bosh-url http://127.0.0.1:5280/http-bind
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bosh_prebind::{Credentials, PoolHandle, PoolStats, PrebindLayer};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, ServiceExt, service_fn};

use perf::{Client, app, ms, page, quantile, spawn_server};

const WARM_UP: usize = 5;

struct Settings {
    cm: http::Uri,
    runs: usize,
    pool: usize,
    pace: Duration,
    load: Duration,
    steady_rps: u32,
    burst: usize,
    burst_every: Duration,
}

fn layer(
    settings: &Settings,
    credentials: Credentials,
    pool: usize,
) -> PrebindLayer<bosh_prebind::HttpTransport> {
    PrebindLayer::new(bosh_prebind::BoshUrl::try_from(settings.cm.clone()).expect("a BOSH URL"))
        .credentials(credentials)
        .inject_path("/page")
        .pool(pool)
}

/// One latency table row per metric for `credentials`: without and with
/// the pool, side by side.
async fn latency(settings: &Settings, name: &str, credentials: Credentials) -> Vec<String> {
    let page = page();
    let plain = layer(settings, credentials.clone(), 0);
    let pooled = layer(settings, credentials, settings.pool);
    let handle = pooled.pool_handle();
    let mut clients = [
        Client::connect(spawn_server(plain.layer(app(page.clone()))).await).await,
        Client::connect(spawn_server(pooled.layer(app(page))).await).await,
    ];
    // times[side][metric]
    let mut times = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
    let mut errors = 0;
    let mut next = Instant::now();
    let mut warm_stats = PoolStats::default();
    for round in 0..WARM_UP + settings.runs {
        if round == WARM_UP {
            warm_stats = handle.stats();
        }
        tokio::time::sleep_until(next.into()).await;
        next += settings.pace;
        // Rotate which side and which path go first.
        for k in 0..4 {
            let slot = (k + round) % 4;
            let (side, metric) = (slot % 2, slot / 2);
            let path = if metric == 0 { "/prebind" } else { "/page" };
            let (elapsed, ok) = clients[side].get(path).await;
            if !ok {
                errors += 1;
            }
            if round >= WARM_UP {
                times[side][metric].push(ms(elapsed));
            }
        }
    }
    let stats = handle.stats();
    let hits = stats.hits - warm_stats.hits;
    let asked = hits + stats.misses - warm_stats.misses;
    handle.shutdown().await;
    let mut rows = Vec::new();
    for (metric, label) in [(0, "`GET /prebind`"), (1, "page last byte")] {
        let (a, b) = (&times[0][metric], &times[1][metric]);
        rows.push(format!(
            "| {name} | {label} | {:.2} ms ({:.2}) | **{:.2} ms** ({:.2}) | {hits}/{asked} | {errors} |",
            quantile(a, 0.5),
            quantile(a, 0.9),
            quantile(b, 0.5),
            quantile(b, 0.9),
        ));
    }
    rows
}

/// Requests through a pooled layer (anonymous) in process: `plan` says
/// when, as offsets from the start and counts; the stats after shutdown.
async fn waste(settings: &Settings, plan: Vec<(Duration, usize)>) -> (PoolStats, PoolStats, usize) {
    let layer = layer(
        settings,
        Credentials::anonymous("anon.localhost"),
        settings.pool,
    );
    let handle: PoolHandle = layer.pool_handle();
    let service = layer.layer(service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
    }));
    let started = tokio::time::Instant::now();
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (at, count) in plan {
        tokio::time::sleep_until(started + at).await;
        for _ in 0..count {
            let (service, failures) = (service.clone(), failures.clone());
            tasks.push(tokio::spawn(async move {
                let request = Request::get("/prebind").body(Full::default()).unwrap();
                let response = service.oneshot(request).await.unwrap();
                if response.status() != StatusCode::OK {
                    failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    tokio::time::sleep_until(started + settings.load).await;
    let before = handle.stats();
    handle.shutdown().await;
    (
        before,
        handle.stats(),
        failures.load(std::sync::atomic::Ordering::Relaxed),
    )
}

const USAGE: &str = "usage: pool_latency [--bosh-url URL] [--delay-ms MS (one way, 10)] [-n ROUNDS (50)] [--pool N (16)] [--pace-ms MS (100)] [--load-secs S (60)] [--steady-rps R (5)] [--burst K (50)] [--burst-every S (20)] [--skip latency|waste]";

#[tokio::main]
async fn main() {
    let mut bosh_url = "http://127.0.0.1:5280/http-bind".to_owned();
    let (mut delay_ms, mut skip) = (10u64, String::new());
    let mut settings = Settings {
        cm: http::Uri::default(),
        runs: 50,
        pool: 16,
        pace: Duration::from_millis(100),
        load: Duration::from_secs(60),
        steady_rps: 5,
        burst: 50,
        burst_every: Duration::from_secs(20),
    };
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
            "-n" => settings.runs = number() as usize,
            "--pool" => settings.pool = number() as usize,
            "--pace-ms" => settings.pace = Duration::from_millis(number()),
            "--load-secs" => settings.load = Duration::from_secs(number()),
            "--steady-rps" => settings.steady_rps = number() as u32,
            "--burst" => settings.burst = number() as usize,
            "--burst-every" => settings.burst_every = Duration::from_secs(number()),
            "--skip" => skip = value.clone(),
            _ => panic!("{USAGE}"),
        }
    }
    let cm: http::Uri = bosh_url.parse().expect("--bosh-url: a URL");
    settings.cm = perf::latency_proxy::distant(&cm, Duration::from_millis(delay_ms)).await;
    println!(
        "CM {bosh_url} behind a proxy adding {delay_ms} ms each way ({} ms RTT); pool({})",
        2 * delay_ms,
        settings.pool
    );

    if skip != "latency" {
        println!();
        println!(
            "{} rounds per case after {WARM_UP} warm-ups, one every {} ms; each round: GET /prebind and GET /page (100 KiB, injected) on each server, order rotating",
            settings.runs,
            settings.pace.as_millis()
        );
        println!();
        println!(
            "| login | time to the last byte of | no pool: median (p90) | pool: median (p90) | pool hits | errors |"
        );
        println!("|---|---|---|---|---|---|");
        for (name, credentials) in [
            ("ANONYMOUS", Credentials::anonymous("anon.localhost")),
            (
                "SCRAM (alice)",
                Credentials::account("alice@localhost", "secret-alice").unwrap(),
            ),
        ] {
            for row in latency(&settings, name, credentials).await {
                println!("{row}");
            }
        }
    }

    if skip != "waste" {
        let secs = settings.load.as_secs();
        let steady: Vec<_> = (0..secs * u64::from(settings.steady_rps))
            .map(|i| {
                (
                    Duration::from_secs(1) * i as u32 / settings.steady_rps.max(1),
                    1,
                )
            })
            .collect();
        let bursts: Vec<_> = (0..)
            .map(|i| settings.burst_every * i)
            .take_while(|at| *at < settings.load)
            .map(|at| (at, settings.burst))
            .collect();
        println!();
        println!(
            "| load ({secs} s, anonymous, pool({})) | requests | hits | misses | made | expired | pooled at the end (terminated) | **waste ratio** | waste without the final pool | failures |",
            settings.pool
        );
        println!("|---|---|---|---|---|---|---|---|---|---|");
        for (name, plan) in [
            (format!("steady, {} req/s", settings.steady_rps), steady),
            (
                format!(
                    "bursts of {} every {} s",
                    settings.burst,
                    settings.burst_every.as_secs()
                ),
                bursts,
            ),
        ] {
            let requests: usize = plan.iter().map(|(_, n)| n).sum();
            let (before, after, failures) = waste(&settings, plan).await;
            let during = if before.made == 0 {
                0.0
            } else {
                before.wasted as f64 / before.made as f64
            };
            println!(
                "| {name} | {requests} | {} | {} | {} | {} | {} | **{:.1} %** | {:.1} % | {failures} |",
                after.hits,
                after.misses,
                after.made,
                after.expired,
                before.size,
                after.waste_ratio() * 100.0,
                during * 100.0,
            );
        }
    }
}
