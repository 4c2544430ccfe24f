#!/usr/bin/env bash
# Run the demo against a throw-away Prosody on loopback:
#
#   scripts/demo.sh [extra demo args...]
#
# Starts Prosody (scripts/prosody.sh), installs Strophe.js and Converse.js for the demo pages
# (`npm ci` in browser/, only when needed), runs `cargo run --example demo` with
# --bosh-url pointing at it, and stops Prosody when the demo exits (or on Ctrl-C) if
# this script started it.  cargo runs in the foreground (not exec) so the EXIT trap can
# clean up.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PROSODY=scripts/prosody.sh

export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}

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

# The pages load Strophe.js from the npm package; without it they say how to get it.
if command -v npm >/dev/null 2>&1; then
	browser/install.sh || echo "demo.sh: npm ci in browser/ failed; the pages will lack Strophe.js" >&2
else
	echo "demo.sh: npm not found; the pages will lack Strophe.js (npm ci --prefix browser)" >&2
fi

rc=0
cargo run --example demo -- --bosh-url "$BOSH_PREBIND_TEST_BOSH_URL" "$@" || rc=$?
exit "$rc"
