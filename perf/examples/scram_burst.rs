//! How long a plain request to the app waits while a burst of cold SCRAM
//! logins runs: PBKDF2 on the runtime's workers (`derive_inline(true)`, the
//! old behaviour) against `spawn_blocking`, side by side.
//!
//! A multi-thread runtime with `--workers` (default 2) workers serves the
//! layered app in memory (no sockets); the CM is the shared in-memory fake
//! (`bosh_prebind::test_util`) offering SCRAM-SHA-1 at `--iterations`
//! (default 10 000, Prosody's), its own keys derived before the first round.
//! Each round spawns `--burst` (default 64) cold logins (the SCRAM cache is
//! off, so each runs PBKDF2) and, from the start of the burst until the last
//! login ends, a probe sends `GET /plain` to the app every millisecond. A
//! probe's delay is counted from the tick it was due at to its answer, so
//! time spent waiting for a free worker counts; a probe waiting long skips
//! the ticks it missed, so "probes answered" says how often the app got a
//! turn. Rounds alternate inline,
//! `spawn_blocking` one derivation per core at once (the default), and
//! `spawn_blocking` unbounded (`--rounds` each, default 5, the order rotated
//! every round).
//!
//! ```text
//! cargo run --release -p perf --example scram_burst -- --iterations 10000
//! cargo run --release -p perf --example scram_burst -- --iterations 100000
//! ```

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bosh_prebind::test_util::FakeCm;
use bosh_prebind::{Credentials, Mechanism};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt, service_fn};

struct Options {
    workers: usize,
    iterations: u32,
    burst: usize,
    rounds: usize,
}

fn options() -> Options {
    let mut options = Options {
        workers: 2,
        iterations: 10_000,
        burst: 64,
        rounds: 5,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().expect("a value after each flag");
        match flag.as_str() {
            "--workers" => options.workers = value.parse().expect("--workers N"),
            "--iterations" => options.iterations = value.parse().expect("--iterations N"),
            "--burst" => options.burst = value.parse().expect("--burst N"),
            "--rounds" => options.rounds = value.parse().expect("--rounds N"),
            other => panic!("unknown flag {other}"),
        }
    }
    options
}

/// One round's result.
struct Round {
    /// Delay of each probe, due tick to answer.
    delays: Vec<Duration>,
    /// From the first login's spawn to the last login's answer.
    burst: Duration,
}

/// Where PBKDF2 runs.
#[derive(Clone, Copy)]
enum Mode {
    /// On the worker (`derive_inline(true)`).
    Inline,
    /// `spawn_blocking`, one derivation per core at once (the default).
    Blocking,
    /// `spawn_blocking`, all at once.
    Unbounded,
}

async fn round(cm: &FakeCm, options: &Options, mode: Mode) -> Round {
    let app = service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"app"))))
    });
    let bob = Credentials::account("bob@localhost", "secret-bob")
        .unwrap()
        .with_mechanisms([Mechanism::ScramSha1]);
    let service = cm
        .layer()
        .credentials(bob)
        .scram_cache(0)
        .derive_inline(matches!(mode, Mode::Inline))
        .max_concurrent_derivations(if matches!(mode, Mode::Unbounded) {
            usize::MAX >> 4
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        })
        .layer(app);
    let started = Instant::now();
    let logins: Vec<_> = (0..options.burst)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move {
                let request = Request::get("/prebind").body(Full::default()).unwrap();
                let response = service.oneshot(request).await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
            })
        })
        .collect();
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let probe = {
        let service = service.clone();
        tokio::spawn(async move {
            let mut delays = Vec::new();
            let mut ticks = tokio::time::interval(Duration::from_millis(1));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let due = tokio::select! {
                    due = ticks.tick() => due,
                    _ = &mut done_rx => break,
                };
                let request = Request::get("/plain").body(Full::default()).unwrap();
                let response = service.clone().oneshot(request).await.unwrap();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(&body[..], b"app");
                delays.push(due.elapsed());
            }
            delays
        })
    };
    for login in logins {
        login.await.unwrap();
    }
    let burst = started.elapsed();
    let _ = done_tx.send(());
    Round {
        delays: probe.await.unwrap(),
        burst,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.workers)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let cm = FakeCm::builder()
            .domain("localhost")
            .account("bob", "secret-bob")
            .mechanisms(["SCRAM-SHA-1"])
            .jid("bob@localhost/burst")
            .scram(b"a-prosody-like-salt", options.iterations)
            .keep_requests(false)
            .build();
        // The fake derives its stored keys once, at the first login.
        round(&cm, &Options { burst: 1, ..options }, Mode::Inline).await;
        let mut results: [(Vec<Duration>, Vec<Duration>); 3] = Default::default();
        let modes = [Mode::Inline, Mode::Blocking, Mode::Unbounded];
        for n in 0..options.rounds {
            // Rotate which goes first.
            for k in 0..3 {
                let slot = (n + k) % 3;
                let result = round(&cm, &options, modes[slot]).await;
                results[slot].0.extend(result.delays);
                results[slot].1.push(result.burst);
            }
        }
        println!(
            "{} workers, burst of {} cold SCRAM-SHA-1 logins at {} iterations, {} rounds each, interleaved",
            options.workers, options.burst, options.iterations, options.rounds
        );
        println!(
            "| PBKDF2 runs | probes answered (per s of burst; 1000 due) | plain request delay p50 | p90 | p99 | max | burst duration (median) |"
        );
        println!("|---|---|---|---|---|---|---|");
        for (name, (mut delays, mut bursts)) in [
            "inline (on the worker)",
            "spawn_blocking, one per core (default)",
            "spawn_blocking, unbounded",
        ]
        .into_iter()
        .zip(results)
        {
            delays.sort();
            bursts.sort();
            let total: Duration = bursts.iter().sum();
            println!(
                "| {name} | {} ({:.0}/s) | {} ms | {} ms | {} ms | {} ms | {} ms |",
                delays.len(),
                delays.len() as f64 / total.as_secs_f64(),
                ms(percentile(&delays, 0.5)),
                ms(percentile(&delays, 0.9)),
                ms(percentile(&delays, 0.99)),
                ms(percentile(&delays, 1.0)),
                ms(percentile(&bursts, 0.5)),
            );
        }
    });
}
