#!/usr/bin/env bash
# Runs every benchmark of BENCHMARKS.md in order and writes the results to
# target/bench-results/ (override with BENCH_OUT):
#
#   scripts/bench.sh [all]      everything below, in this order
#   scripts/bench.sh build      release builds of the examples used (the demo; perf/'s harnesses)
#   scripts/bench.sh browser    session-ready time in headless Chromium at 0 and 100 ms RTT
#                               (browser/latency.mjs; then scripts/plot.py -> docs/session-ready.svg)
#   scripts/bench.sh page       page latency with the CM at 20 ms RTT (perf/examples/page_latency.rs)
#   scripts/bench.sh pool       the warm pool: /prebind and page latency without/with it, CM at 20 ms RTT,
#                               and its waste ratio under a steady and a bursty load (perf/examples/pool_latency.rs)
#   scripts/bench.sh login      classic vs SASL2 + Bind 2 vs FAST vs the pool, anonymous and SCRAM, against
#                               Prosody 13 at 20 ms RTT (perf/examples/login_latency.rs)
#   scripts/bench.sh throughput prebinds/s, layer vs raw client, concurrency 1/8/64 (perf/examples/throughput.rs)
#   scripts/bench.sh criterion  cargo bench --bench handshake|passthrough|inject, inject_memory 1 and 64,
#                               handshake_latency, the pass-through allocation test, passthrough_stream
#   scripts/bench.sh plot       only redraw docs/session-ready.svg from the last browser run
#   scripts/bench.sh machine    only record the machine (nproc, CPU model, kernel, Prosody)
#
# Prosody: a throw-away instance of scripts/prosody.sh in its own state dir and on its own
# ports (defaults below, so a test instance on 5280 is left alone), restarted fresh before
# each step that uses it (no live sessions left over from the step before), and stopped at
# the end if this script started it. The throughput step restarts it before each of its
# phases (tens of thousands of live sessions slow Prosody down).
# Settings: BENCH_RUNS (browser runs per method and RTT, default 30), THROUGHPUT_SECS
# (default 10), THROUGHPUT_ROUNDS (default 2), CARGO_BUILD_JOBS (default 2).
#
# Every step is bounded: the browser run has per-page timeouts, the throughput run lasts
# 3 levels x 2 sides x rounds x THROUGHPUT_SECS, the others a fixed number of requests.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${BENCH_OUT:-$ROOT/target/bench-results}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
export PROSODY_DIR=${PROSODY_DIR:-${TMPDIR:-/tmp}/bosh-prebind-bench-prosody}
export PROSODY_HTTP_PORT=${PROSODY_HTTP_PORT:-5480}
export PROSODY_C2S_PORT=${PROSODY_C2S_PORT:-5422}
export PROSODY_HTTPS_PORT=${PROSODY_HTTPS_PORT:-5481}
export PROSODY_HTTPS_WRONG_PORT=${PROSODY_HTTPS_WRONG_PORT:-5482}
export PROSODY_HTTPS_UNTRUSTED_PORT=${PROSODY_HTTPS_UNTRUSTED_PORT:-5483}
BOSH_URL="http://127.0.0.1:${PROSODY_HTTP_PORT}/http-bind"
BENCH_RUNS=${BENCH_RUNS:-30}
THROUGHPUT_SECS=${THROUGHPUT_SECS:-10}
THROUGHPUT_ROUNDS=${THROUGHPUT_ROUNDS:-2}
# The demo is the library's example; the measurement harnesses are examples of the
# unpublished perf/ crate. Both land in target/release/examples/.
PERF_EXAMPLES=(latency_proxy page_latency pool_latency login_latency throughput handshake_latency inject_memory)

log() { printf '\n==== bench.sh: %s ====\n' "$*" >&2; }
mkdir -p "$OUT"

# Prosody 13 (SASL2, Bind 2, FAST) likewise in its own state dir and on its own port.
export PROSODY13_DIR=${PROSODY13_DIR:-${TMPDIR:-/tmp}/bosh-prebind-bench-prosody13}
export PROSODY13_HTTP_PORT=${PROSODY13_HTTP_PORT:-5490}
export PROSODY13_C2S_PORT=${PROSODY13_C2S_PORT:-5432}
BOSH13_URL="http://127.0.0.1:${PROSODY13_HTTP_PORT}/http-bind"

started_prosody=0
started_prosody13=0
cleanup() {
	if [ "$started_prosody" -eq 1 ]; then scripts/prosody.sh stop || true; fi
	if [ "$started_prosody13" -eq 1 ]; then scripts/prosody13.sh stop || true; fi
}
trap cleanup EXIT

# A fresh Prosody: stopped if running, started again (empty of sessions).
fresh_prosody() {
	scripts/prosody.sh stop
	scripts/prosody.sh start
	started_prosody=1
}

step_build() {
	log "release builds: demo, perf: ${PERF_EXAMPLES[*]}"
	local args=()
	for example in "${PERF_EXAMPLES[@]}"; do args+=(--example "$example"); done
	cargo build --release -p bosh-prebind --example demo
	cargo build --release -p perf "${args[@]}"
	[ -d browser/node_modules/playwright-core ] || npm ci --prefix browser
}

step_machine() {
	log "machine -> $OUT/machine.txt"
	{
		echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
		echo "nproc: $(nproc)"
		echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
		echo "kernel: $(uname -sr)"
		echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
		echo "prosody: $(dpkg-query -W -f '${Version}' prosody 2>/dev/null || echo unknown)"
		echo "rustc: $(rustc --version)"
		echo "node: $(node --version)"
		echo "chromium: $(${CHROMIUM:-/usr/bin/chromium} --version 2>/dev/null || echo unknown)"
		echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	} | tee "$OUT/machine.txt"
}

step_browser() {
	log "session-ready time in headless Chromium -> $OUT/session-ready.{json,md}"
	fresh_prosody
	node browser/latency.mjs --bosh-url "$BOSH_URL" --runs "$BENCH_RUNS" --rtt 0,100 \
		--out "$OUT/session-ready.json" | tee "$OUT/session-ready.md"
	step_plot
}

step_plot() {
	log "plot -> docs/session-ready.svg"
	python3 scripts/plot.py "$OUT/session-ready.json" docs/session-ready.svg
}

step_page() {
	log "page latency, CM at 20 ms RTT -> $OUT/page-latency.{json,md}"
	fresh_prosody
	target/release/examples/page_latency --bosh-url "$BOSH_URL" --delay-ms 10 -n 50 \
		--json "$OUT/page-latency.json" | tee "$OUT/page-latency.md"
}

step_pool() {
	log "warm pool: latency and waste, CM at 20 ms RTT -> $OUT/pool.md"
	fresh_prosody
	target/release/examples/pool_latency --bosh-url "$BOSH_URL" --delay-ms 10 -n 50 --pool 16 \
		--load-secs 60 --steady-rps 5 --burst 50 --burst-every 20 | tee "$OUT/pool.md"
}

step_login() {
	log "logins: classic, SASL2 + Bind 2, FAST, pool; Prosody 13 at 20 ms RTT -> $OUT/login.md"
	scripts/prosody13.sh stop
	scripts/prosody13.sh start
	started_prosody13=1
	target/release/examples/login_latency --bosh-url "$BOSH13_URL" --delay-ms 10 -n 40 --pool 16 |
		tee "$OUT/login.md"
}

step_throughput() {
	log "throughput, layer vs raw client -> $OUT/throughput.{json,md}"
	fresh_prosody
	target/release/examples/throughput --bosh-url "$BOSH_URL" --secs "$THROUGHPUT_SECS" \
		--rounds "$THROUGHPUT_ROUNDS" --concurrency 1,8,64 \
		--reset 'scripts/prosody.sh stop && scripts/prosody.sh start' \
		--prosody-pid-file "$PROSODY_DIR/prosody.pid" \
		--json "$OUT/throughput.json" | tee "$OUT/throughput.md"
}

step_criterion() {
	local bench
	for bench in handshake passthrough inject; do
		log "cargo bench --bench $bench -> $OUT/bench-$bench.txt"
		cargo bench --bench "$bench" 2>&1 | tee "$OUT/bench-$bench.txt"
	done
	log "pass-through allocations -> $OUT/passthrough-allocations.txt"
	cargo test --release --test passthrough_allocations 2>&1 | tee "$OUT/passthrough-allocations.txt"
	local mib
	for mib in 1 64; do
		log "inject_memory $mib MiB -> $OUT/inject-memory-$mib.txt"
		target/release/examples/inject_memory "$mib" | tee "$OUT/inject-memory-$mib.txt"
	done
	log "pass-through of large answers (1, 8, 64 MiB) -> $OUT/passthrough-stream.md"
	cargo run --release -p perf --example passthrough_stream | tee "$OUT/passthrough-stream.md"
	log "handshake_latency against Prosody -> $OUT/handshake-latency.md"
	fresh_prosody
	target/release/examples/handshake_latency "$BOSH_URL" 50 | tee "$OUT/handshake-latency.md"
}

case "${1:-all}" in
all)
	step_build
	step_machine
	step_browser
	step_page
	step_pool
	step_login
	step_throughput
	step_criterion
	log "done: results in $OUT"
	;;
build) step_build ;;
machine) step_machine ;;
browser) step_build && step_browser ;;
plot) step_plot ;;
page) step_build && step_page ;;
pool) step_build && step_pool ;;
login) step_build && step_login ;;
throughput) step_build && step_throughput ;;
criterion) step_build && step_criterion ;;
*)
	sed -n '2,29p' "$0" >&2
	exit 2
	;;
esac
