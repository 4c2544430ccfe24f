//! The measurement harnesses behind `BENCHMARKS.md`, as examples of this
//! unpublished crate (a package needs one library or binary target; this is it):
//!
//! ```text
//! cargo run --release -p perf --example handshake_latency -- http://127.0.0.1:5280/http-bind 50
//! cargo run --release -p perf --example page_latency -- --bosh-url http://127.0.0.1:5280/http-bind
//! cargo run --release -p perf --example pool_latency -- --bosh-url http://127.0.0.1:5280/http-bind
//! cargo run --release -p perf --example throughput -- --bosh-url http://127.0.0.1:5280/http-bind
//! cargo run --release -p perf --example inject_memory -- 64
//! cargo run --release -p perf --example latency_proxy -- --listen 127.0.0.1:3100 --target 127.0.0.1:3000 --delay-ms 50
//! ```
//!
//! `scripts/bench.sh` runs them all, with a throw-away Prosody. The page
//! generator and in-memory CM they share with the library's criterion benches
//! live in `benches/support/` at the workspace root, included by path.
