#!/usr/bin/env bash
# THE command that runs the whole test suite:
#
#   scripts/test.sh [extra cargo test args...]
#
# Starts a throw-away Prosody with BOSH on loopback (scripts/prosody.sh), points the
# integration tests at it via BOSH_PREBIND_TEST_BOSH_URL (and the HTTPS variables of
# `prosody.sh env`), then:
#   1. `cargo test --workspace --all-features`: the library, gateway/ and perf/ (a plain
#      `cargo test` at the root would test the library only);
#   2. the gateway's #[ignore]d real-server tests against this Prosody (HTTP, HTTPS);
#   3. `cargo install --path gateway` into target/gateway-install (debug profile, the
#      workspace's build reused) and the browser tests (Strophe.js in Debian's headless
#      Chromium against the demo example and that installed gateway: `node --test
#      browser/`, after `npm ci` in browser/ when its lock file changed);
# and stops Prosody again if this script started it.  Extra arguments go to the first
# `cargo test`; each step runs when the one before passed.
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

# Where `cargo install --path gateway` puts the gateway for the browser tests.
GATEWAY_ROOT=$PWD/target/gateway-install
install_gateway() {
	# --debug: the same build `cargo test` just made (a release build would compile
	# everything again); --locked: the workspace's Cargo.lock, no network needed
	# once the dependencies are fetched; CARGO_TARGET_DIR: build in the workspace's
	# target dir, not in a throw-away one.
	CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target} \
		cargo install --path gateway --root "$GATEWAY_ROOT" --debug --locked --force --quiet
}

browser_tests() {
	# The tests start target/debug/examples/demo (built by `cargo test` already, so
	# this is a no-op; extra arguments to this script may not have) and the installed
	# gateway, target/gateway-install/bin/bosh-prebind-gateway.
	cargo build -p bosh-prebind --example demo --all-features || return
	install_gateway || return
	browser/install.sh || return
	BOSH_PREBIND_GATEWAY_BIN=$GATEWAY_ROOT/bin/bosh-prebind-gateway \
		node --test --test-reporter=spec browser/
}

rc=0
cargo test --workspace --all-features "$@" || rc=$?
# The gateway's real-server tests (#[ignore]d in a plain `cargo test`): against this
# Prosody over HTTP, and over HTTPS with --ca-file. Missing servers fail them.
if [ "$rc" -eq 0 ]; then
	cargo test -p bosh-prebind-gateway --all-features --test gateway -- --ignored || rc=$?
fi
if [ "$rc" -eq 0 ]; then
	browser_tests || rc=$?
fi

if [ "$rc" -ne 0 ]; then
	echo "test.sh: tests failed (exit $rc); Prosody log tail follows" >&2
	"$PROSODY" logs || true
fi
exit "$rc"
