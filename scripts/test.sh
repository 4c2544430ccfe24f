#!/usr/bin/env bash
# THE command that runs the whole test suite:
#
#   scripts/test.sh [extra cargo test args...]
#
# Starts a throw-away Prosody with BOSH on loopback (scripts/prosody.sh), points the
# integration tests at it via BOSH_PREBIND_TEST_BOSH_URL, runs `cargo test
# --all-features`, then the browser tests (Strophe.js in Debian's headless Chromium
# against the demo and gateway examples: `node --test browser/`, after `npm ci` in
# browser/ when its lock file changed), and stops Prosody again if this script
# started it.  Extra arguments go to `cargo test`; the browser tests run when it passes.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PROSODY=scripts/prosody.sh

# The project's machines have 2 cores; don't oversubscribe them.
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}

# Only stop Prosody on exit if we are the ones who started it, so running the tests
# against an instance started by hand (or by the demo) leaves that instance up.
started_here=0
# shellcheck disable=SC2317 # invoked via the EXIT trap
cleanup() {
	local rc=$?
	if [ "$started_here" -eq 1 ]; then
		"$PROSODY" stop || true
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! "$PROSODY" status >/dev/null 2>&1; then
	started_here=1
	"$PROSODY" start
fi
eval "$("$PROSODY" env)"
export BOSH_PREBIND_TEST_BOSH_URL
echo "test.sh: BOSH_PREBIND_TEST_BOSH_URL=$BOSH_PREBIND_TEST_BOSH_URL" >&2

browser_tests() {
	# The tests start target/debug/examples/{demo,gateway}.  `cargo test` has built
	# them already (this is then a no-op); extra arguments to this script may not.
	cargo build --examples --all-features || return
	browser/install.sh || return
	node --test --test-reporter=spec browser/
}

rc=0
cargo test --all-features "$@" || rc=$?
if [ "$rc" -eq 0 ]; then
	browser_tests || rc=$?
fi

if [ "$rc" -ne 0 ]; then
	echo "test.sh: tests failed (exit $rc); Prosody log tail follows" >&2
	"$PROSODY" logs || true
fi
exit "$rc"
