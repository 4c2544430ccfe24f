//! A TCP proxy that adds a fixed one-way delay to every chunk, in each
//! direction: `--delay-ms 50` turns a loopback link into one with 100 ms of
//! round-trip time, for the latency benchmarks (BENCHMARKS.md).
//!
//! ```text
//! cargo run --release -p perf --example latency_proxy -- --listen 127.0.0.1:3100 --target 127.0.0.1:3000 --delay-ms 50
//! # prints: latency proxy on http://127.0.0.1:3100 -> 127.0.0.1:3000, 50 ms each way
//! ```
//!
//! Each accepted connection gets its own connection to the target. Every
//! chunk read from one side is stamped `now + delay` and written to the other
//! side at that instant, so the delay does not add up over the chunks of a
//! long response (the link has latency, not a bandwidth limit), order is kept,
//! and keep-alive connections stay open as long as both ends keep them. An
//! end-of-stream is forwarded (`shutdown`) after the same delay. The TCP
//! handshake itself is not delayed: a new connection costs no emulated round
//! trip, only its data does.
//!
//! Timing: tokio's timer has a 1 ms resolution and rounds every sleep up to
//! the next tick, which adds up to ~1 ms to each hop (8 hops for a 4-request
//! handshake). So the due instants are kept by one timer thread that sleeps
//! with the OS's high-resolution timeout (`recv_timeout`) and wakes the
//! writer: a hop lands within tens of microseconds of its due time, and a
//! zero delay forwards at once.
//!
//! `--listen` may use port 0; the line printed on stdout names the port.
//! Loopback or any address the caller gives; it never picks one itself.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use perf::latency_proxy::serve;
use tokio::net::TcpListener;

const USAGE: &str =
    "usage: latency_proxy --listen ADDR --target ADDR [--delay-ms MS (one way, default 50)]";

fn options() -> Result<(SocketAddr, SocketAddr, Duration), String> {
    let (mut listen, mut target, mut delay_ms) = (None, None, 50u64);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--listen" => listen = Some(value()?.parse().map_err(|e| format!("--listen: {e}"))?),
            "--target" => target = Some(value()?.parse().map_err(|e| format!("--target: {e}"))?),
            "--delay-ms" => delay_ms = value()?.parse().map_err(|e| format!("--delay-ms: {e}"))?,
            _ => return Err(USAGE.to_owned()),
        }
    }
    match (listen, target) {
        (Some(listen), Some(target)) => Ok((listen, target, Duration::from_millis(delay_ms))),
        _ => Err(USAGE.to_owned()),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let (listen, target, delay) = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {listen}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let address = listener.local_addr().unwrap_or(listen);
    println!(
        "latency proxy on http://{address} -> {target}, {} ms each way",
        delay.as_millis()
    );
    tokio::select! {
        result = serve(listener, target, delay) => {
            if let Err(error) = result {
                eprintln!("latency proxy: {error}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
    }
}
