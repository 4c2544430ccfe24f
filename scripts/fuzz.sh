#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ one after another:
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 30); TARGETs default to all of them
# (prebind_request, cm_response, html_scanner). Exits non-zero when a target
# crashes (a panic: a broken invariant or a bug), after printing the crash
# input's path under fuzz/artifacts/; the other targets still run.
#
# Works from a clean clone: installs cargo-fuzz when missing, copies the
# committed seeds (fuzz/seeds/TARGET/) into the scratch corpus
# fuzz/corpus/TARGET/ (gitignored, grows across runs), and passes the
# target's dictionary (fuzz/dicts/TARGET.dict).
#
# Environment:
#   FUZZ_SANITIZER  cargo fuzz --sanitizer: none (default) or address. The
#                   crate is #![forbid(unsafe_code)], so AddressSanitizer only
#                   watches dependencies, at ~1/3-1/9 of the speed.
#   FUZZ_ARGS       extra libFuzzer arguments, e.g. "-jobs=2 -workers=2".
#   CARGO_BUILD_JOBS  default 2 (the project's machines have 2 cores).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-30}
if [ "$#" -gt 0 ]; then shift; fi
case "$seconds" in
'' | *[!0-9]*)
	echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2
	exit 2
	;;
esac
all_targets=(prebind_request cm_response html_scanner)
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi

export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
# cargo-fuzz builds with nightly-only rustc flags (-Zsanitizer=...,
# -Cpasses=sancov-module's companions, --cfg fuzzing with -Z options), and
# the project's only toolchain is stable (no nightly can be installed here).
# RUSTC_BOOTSTRAP=1 makes stable rustc/cargo accept them. It is set for this
# script's cargo commands only, never for the main crate's build or tests.
export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-none}

if ! cargo fuzz --version >/dev/null 2>&1; then
	echo "fuzz.sh: installing cargo-fuzz" >&2
	cargo install cargo-fuzz --locked
fi
# libfuzzer-sys compiles libFuzzer (C++).
if ! command -v c++ >/dev/null 2>&1; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "fuzz.sh: installing g++ for libFuzzer" >&2
		apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends g++
	else
		echo "fuzz.sh: a C++ compiler (g++) is needed to build libFuzzer" >&2
		exit 1
	fi
fi

echo "fuzz.sh: building fuzz targets (sanitizer: $sanitizer)" >&2
start=$(date +%s)
cargo fuzz build --sanitizer "$sanitizer"
echo "fuzz.sh: built in $(($(date +%s) - start)) s" >&2

failed=()
for target in "${targets[@]}"; do
	if [ ! -f "fuzz/fuzz_targets/$target.rs" ]; then
		echo "fuzz.sh: no fuzz target '$target' (have: ${all_targets[*]})" >&2
		exit 2
	fi
	corpus=fuzz/corpus/$target
	mkdir -p "$corpus"
	cp -n "fuzz/seeds/$target/"* "$corpus/" 2>/dev/null || true
	dict=()
	if [ -f "fuzz/dicts/$target.dict" ]; then dict=("-dict=fuzz/dicts/$target.dict"); fi
	log=$(mktemp)
	echo "==== fuzz $target for ${seconds}s ====" >&2
	rc=0
	# shellcheck disable=SC2086 # FUZZ_ARGS is a list of words
	cargo fuzz run --sanitizer "$sanitizer" "$target" "$corpus" -- \
		-max_total_time="$seconds" -max_len=65536 -timeout=10 -print_final_stats=1 \
		"${dict[@]}" ${FUZZ_ARGS:-} \
		2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
	summary=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
	if [ "$rc" -ne 0 ]; then
		artifact=$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -1 | sed 's/Test unit written to //' || true)
		echo "fuzz.sh: $target FAILED (exit $rc); crash input: ${artifact:-see the log above}" >&2
		echo "fuzz.sh: reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer $sanitizer $target ${artifact:-ARTIFACT}" >&2
		failed+=("$target:${artifact:-?}")
	else
		echo "fuzz.sh: $target ok: ${summary:-no DONE line}" >&2
	fi
	rm -f "$log"
done

if [ "${#failed[@]}" -gt 0 ]; then
	echo "fuzz.sh: crashes: ${failed[*]}" >&2
	exit 1
fi
echo "fuzz.sh: ${#targets[@]} target(s) ran ${seconds}s each without a crash" >&2
