#!/usr/bin/env bash
# THE command that runs the whole test suite:
#
#   scripts/test.sh [extra cargo test args...]
#
# Installs Debian's chromium if /usr/bin/chromium is missing (for the browser tests).
# Starts throw-away servers on loopback, each installed when missing: Prosody 0.12 with
# BOSH over HTTP and HTTPS (scripts/prosody.sh), Prosody 13 with SASL2, Bind 2 and FAST
# (scripts/prosody13.sh), ejabberd 23.01 (scripts/ejabberd.sh) and
# a two-node ejabberd cluster (scripts/ejabberd-cluster.sh); exports their URLs
# (BOSH_PREBIND_TEST_*), then:
#   1. `cargo test --workspace --all-features -- --include-ignored`: the library, gateway/
#      and perf/ (a plain `cargo test` at the root tests the library only), including the
#      real-server tests, which a plain `cargo test` reports as ignored;
#   2. `cargo install --path gateway` into target/gateway-install (debug profile, the
#      workspace's build reused) and the browser tests (Strophe.js and Converse.js in
#      Debian's headless Chromium against the demo and per_user examples and that installed
#      gateway: `node --test browser/`, after `npm ci` in browser/ when its lock file
#      changed);
# and stops each server again if this script started it.  Extra arguments go to the first
# `cargo test`; each step runs when the one before passed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PROSODY=scripts/prosody.sh
PROSODY13=scripts/prosody13.sh
EJABBERD=scripts/ejabberd.sh
CLUSTER=scripts/ejabberd-cluster.sh

# The project's machines have 2 cores; don't oversubscribe them.
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}

# The browser tests drive Debian's Chromium (playwright-core, no browser download):
# install it when missing, the way prosody.sh installs prosody.
ensure_chromium() {
	[ -x /usr/bin/chromium ] && return 0
	local sudo=() apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -o Acquire::Retries=3)
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 || {
			echo "test.sh: error: /usr/bin/chromium is missing; install Debian's chromium (needs root)" >&2
			return 1
		}
		sudo=(sudo)
	fi
	echo "test.sh: /usr/bin/chromium is missing; installing: chromium (Debian package, --no-install-recommends)" >&2
	# Retry after `apt-get update` in case the package lists are missing or stale.
	"${sudo[@]}" "${apt[@]}" install -y --no-install-recommends chromium ||
		{ "${sudo[@]}" "${apt[@]}" update && "${sudo[@]}" "${apt[@]}" install -y --no-install-recommends chromium; } ||
		{ echo "test.sh: error: apt-get install chromium failed" >&2; return 1; }
	echo "test.sh: installed $(dpkg-query -W -f='${Package} ${Version}' chromium)" >&2
}
ensure_chromium

# Only stop a Prosody on exit if we are the ones who started it, so running the tests
# against an instance started by hand (or by the demo) leaves that instance up.
started_here=0
prosody13_started_here=0
ejabberd_started_here=0
cluster_started_here=0
# shellcheck disable=SC2317 # invoked via the EXIT trap
cleanup() {
	local rc=$?
	if [ "$cluster_started_here" -eq 1 ]; then
		"$CLUSTER" down || true
	fi
	if [ "$ejabberd_started_here" -eq 1 ]; then
		"$EJABBERD" stop || true
	fi
	if [ "$prosody13_started_here" -eq 1 ]; then
		"$PROSODY13" stop || true
	fi
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

if ! "$PROSODY13" status >/dev/null 2>&1; then
	prosody13_started_here=1
	"$PROSODY13" start
fi
eval "$("$PROSODY13" env)"
export BOSH_PREBIND_TEST_PROSODY13_URL
echo "test.sh: BOSH_PREBIND_TEST_PROSODY13_URL=$BOSH_PREBIND_TEST_PROSODY13_URL" >&2

if ! "$EJABBERD" status >/dev/null 2>&1; then
	ejabberd_started_here=1
	"$EJABBERD" start
fi
if ! "$CLUSTER" status >/dev/null 2>&1; then
	cluster_started_here=1
	"$CLUSTER" up
fi
eval "$("$EJABBERD" env)"
eval "$("$CLUSTER" env)"
export BOSH_PREBIND_TEST_EJABBERD_URL BOSH_PREBIND_TEST_CLUSTER_A_URL BOSH_PREBIND_TEST_CLUSTER_B_URL
echo "test.sh: ejabberd at $BOSH_PREBIND_TEST_EJABBERD_URL, cluster at $BOSH_PREBIND_TEST_CLUSTER_A_URL and $BOSH_PREBIND_TEST_CLUSTER_B_URL" >&2

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
	# The tests start target/debug/examples/{demo,per_user} (built by `cargo test`
	# already, so this is a no-op; extra arguments to this script may not have) and the
	# installed gateway, target/gateway-install/bin/bosh-prebind-gateway.
	cargo build -p bosh-prebind --example demo --example per_user --all-features || return
	install_gateway || return
	browser/install.sh || return
	BOSH_PREBIND_GATEWAY_BIN=$GATEWAY_ROOT/bin/bosh-prebind-gateway \
		node --test --test-reporter=spec browser/
}

rc=0
# Real-server tests are #[ignore]d in a plain `cargo test`; here the servers are up, so
# they run, and a missing server fails them.
cargo test --workspace --all-features "$@" -- --include-ignored || rc=$?
if [ "$rc" -eq 0 ]; then
	browser_tests || rc=$?
fi

if [ "$rc" -ne 0 ]; then
	echo "test.sh: tests failed (exit $rc); server log tails follow" >&2
	"$PROSODY" logs || true
	"$PROSODY13" logs || true
	"$EJABBERD" logs || true
	"$CLUSTER" logs || true
fi
exit "$rc"
