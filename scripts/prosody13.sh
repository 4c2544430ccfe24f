#!/usr/bin/env bash
# Throw-away Prosody 13 (SASL2 + Bind2 + FAST from prosody-modules) with BOSH on loopback,
# beside the Prosody 0.12 of scripts/prosody.sh, for the integration tests.
#
#   scripts/prosody13.sh start    install (if needed), configure, start, wait until BOSH
#                                 answers with SASL2 features
#   scripts/prosody13.sh stop     stop the instance started by `start`
#   scripts/prosody13.sh status   exit 0 if the instance is running and BOSH answers
#   scripts/prosody13.sh env      print `export BOSH_PREBIND_TEST_PROSODY13_URL=...`
#   scripts/prosody13.sh install  only fetch/unpack Prosody 13 if missing (done by `start` too)
#   scripts/prosody13.sh logs [N] print the last N (default 50) lines of the logs
#
# Debian 12 ships Prosody 0.12, and 0.12 and 13 are the same package, so 13 is never
# installed: `install` downloads prosody 13.0.x and prosody-modules from bookworm-backports
# with `apt-get download`, using a sources list, package lists and caches of its own under
# PROSODY13_ROOT (the system's apt sources and state are not touched, nothing is installed
# with dpkg -i), and unpacks them there with `dpkg -x`.  The unpacked `prosody`/`prosodyctl`
# launchers are pointed at the unpacked source and plugin dirs; everything else they need
# (lua5.4 and the Lua C libraries lua-expat, luasocket, luasec, lfs, bitop) comes from the
# installed Prosody 0.12 package, which `install` installs via scripts/prosody.sh if missing.
# The download is kept (PROSODY13_ROOT is a cache; delete it to fetch again).
#
# Everything else lives in its own state dir (config, data, log, pid); /etc/prosody and
# the system service are never used.  Settings (environment):
#   PROSODY13_DIR        state dir        (default ${TMPDIR:-/tmp}/bosh-prebind-prosody13)
#   PROSODY13_ROOT       download/unpack cache (default ${TMPDIR:-/tmp}/bosh-prebind-prosody13-root)
#   PROSODY13_HTTP_PORT  BOSH/HTTP port   (default 5290, 127.0.0.1 only)
#   PROSODY13_C2S_PORT   c2s port         (default 5232, 127.0.0.1 only)
#   PROSODY13_SUITE      Debian suite to fetch from (default bookworm-backports)
#   PROSODY13_MIRROR     Debian mirror    (default: the one in this machine's apt sources)
#   PROSODY13_START_TIMEOUT  seconds to wait for BOSH (default 20)
#
# Accounts: alice@localhost / secret-alice, bob@localhost / secret-bob (SCRAM-SHA-1 hashes);
# anon.localhost offers SASL ANONYMOUS only.  Modules: bosh, ping (XEP-0199), roster,
# vcard, saslauth (classic SASL), disco, and from prosody-modules sasl2 (XEP-0388),
# sasl2_bind2 (XEP-0386), sasl2_fast (XEP-0484, HT-SHA-256-NONE over plain HTTP).
# Plain HTTP only (no TLS); consider_bosh_secure and c2s_require_encryption = false make
# Prosody offer the mechanisms over it.  Notes for clients (measured):
#   * the SASL2 <authentication xmlns='urn:xmpp:sasl:2'> block, with Bind2's <inline>
#     <bind xmlns='urn:xmpp:bind:0'>, is already in the session-creation response;
#   * FAST (<fast xmlns='urn:xmpp:fast:0'> inside <inline>) is only offered when the
#     creation <body/> carries from='user@localhost' (any localpart);
#   * a Bind2 <bind/> must be sent in <authenticate>, or the session is not bound.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROSODY13_DIR=${PROSODY13_DIR:-${TMPDIR:-/tmp}/bosh-prebind-prosody13}
PROSODY13_ROOT=${PROSODY13_ROOT:-${TMPDIR:-/tmp}/bosh-prebind-prosody13-root}
# Absolute, so the pid check (which matches the config path in the command line)
# works from any working directory, and the launchers' patched paths are absolute.
[[ "$PROSODY13_DIR" == /* ]] || PROSODY13_DIR="$PWD/$PROSODY13_DIR"
[[ "$PROSODY13_ROOT" == /* ]] || PROSODY13_ROOT="$PWD/$PROSODY13_ROOT"
HTTP_PORT=${PROSODY13_HTTP_PORT:-5290}
C2S_PORT=${PROSODY13_C2S_PORT:-5232}
SUITE=${PROSODY13_SUITE:-bookworm-backports}
START_TIMEOUT=${PROSODY13_START_TIMEOUT:-20}
BOSH_URL="http://127.0.0.1:${HTTP_PORT}/http-bind"
for p in "$HTTP_PORT" "$C2S_PORT" "$START_TIMEOUT"; do
	[[ "$p" =~ ^[0-9]+$ ]] || { echo "prosody13.sh: error: not a number: '$p'" >&2; exit 2; }
done

CFG="$PROSODY13_DIR/prosody.cfg.lua"
DATA="$PROSODY13_DIR/data"
LOG="$PROSODY13_DIR/prosody.log"  # Prosody's own log
OUT="$PROSODY13_DIR/prosody.out"  # stdout/stderr of the process (startup errors land here)
PIDFILE="$PROSODY13_DIR/prosody.pid"

TREE="$PROSODY13_ROOT/tree"             # the unpacked packages (dpkg -x)
PROSODY_BIN="$TREE/usr/bin/prosody"
PROSODYCTL_BIN="$TREE/usr/bin/prosodyctl"
VERSIONS="$TREE/.bosh-prebind-versions" # written last: the unpack is complete

log() { printf 'prosody13.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The Debian mirror this machine's apt uses (deb822 sources first, then the classic list).
debian_mirror() {
	local m=${PROSODY13_MIRROR:-}
	if [ -z "$m" ] && [ -r /etc/apt/sources.list.d/debian.sources ]; then
		m=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
	fi
	if [ -z "$m" ] && [ -r /etc/apt/sources.list ]; then
		m=$(awk '$1 == "deb" && $2 !~ /^\[/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
	fi
	echo "${m:-http://deb.debian.org/debian}"
}

# Download prosody + prosody-modules from $SUITE and unpack them into $TREE, unless done.
fetch_prosody13() {
	if [ -s "$VERSIONS" ] && [ -x "$PROSODY_BIN" ]; then return 0; fi
	if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
		die "apt-get and dpkg are needed to fetch Prosody 13"
	fi
	local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
	[ -r "$keyring" ] || die "$keyring is missing (package debian-archive-keyring)"

	local apt_dir="$PROSODY13_ROOT/apt" debs="$PROSODY13_ROOT/debs" new="$PROSODY13_ROOT/tree.new"
	local mirror started=$SECONDS
	mirror=$(debian_mirror)
	log "fetching prosody and prosody-modules from $mirror $SUITE into $PROSODY13_ROOT"
	rm -rf "$debs" "$new"
	mkdir -p "$apt_dir/lists/partial" "$debs" "$new"
	printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
		"$mirror" "$SUITE" "$keyring" >"$apt_dir/sources.sources"
	# Only our sources file, our lists and caches; no sandbox user (the dirs are ours).
	local o=(-q -o "Dir::Etc::sourcelist=$apt_dir/sources.sources" -o "Dir::Etc::sourceparts=$apt_dir/none"
		-o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache::pkgcache=$apt_dir/pkgcache.bin"
		-o "Dir::Cache::srcpkgcache=$apt_dir/srcpkgcache.bin" -o "Dir::Cache::archives=$apt_dir/archives"
		-o "APT::Sandbox::User=$(id -un)" -o Acquire::Retries=3)
	apt-get "${o[@]}" update >&2 || die "apt-get update for $SUITE failed"
	(cd "$debs" && apt-get "${o[@]}" download "prosody/$SUITE" "prosody-modules/$SUITE" >&2) ||
		die "apt-get download prosody prosody-modules from $SUITE failed"
	local d
	for d in "$debs"/*.deb; do
		dpkg -x "$d" "$new" || die "dpkg -x $d failed"
	done
	local version
	version=$(cat "$new/usr/lib/prosody/prosody.version" 2>/dev/null || true)
	[[ "$version" == 13.* ]] || die "expected Prosody 13 from $SUITE, got '${version:-nothing}'"
	[ -r "$new/usr/lib/prosody/modules/mod_sasl2/mod_sasl2.lua" ] ||
		die "prosody-modules from $SUITE has no mod_sasl2"
	# Point the launchers at the unpacked tree (they hard-code /usr/lib/prosody).
	local src="$TREE/usr/lib/prosody"
	sed -i -e "s|^CFG_SOURCEDIR=.*|CFG_SOURCEDIR='$src';|" \
		-e "s|^CFG_PLUGINDIR=.*|CFG_PLUGINDIR='$src/modules/';|" \
		"$new/usr/bin/prosody" "$new/usr/bin/prosodyctl"
	rm -rf "$TREE"
	mv "$new" "$TREE"
	chmod -R a+rX "$TREE"
	dpkg-deb -f "$debs"/prosody_*.deb Package Version >"$VERSIONS"
	dpkg-deb -f "$debs"/prosody-modules_*.deb Package Version >>"$VERSIONS"
	log "unpacked in $((SECONDS - started))s: $(awk '/^Version:/ {print $2}' "$VERSIONS" | paste -sd' ')"
}

# Prosody 0.12 (its Lua libraries), curl and openssl via scripts/prosody.sh, then 13.
ensure_installed() {
	"$SCRIPT_DIR/prosody.sh" install
	mkdir -p "$PROSODY13_ROOT"
	# Serialise concurrent fetches into the same cache.
	exec 8>"$PROSODY13_ROOT/lock"
	flock -w 300 8 || die "timed out waiting for the lock on $PROSODY13_ROOT"
	fetch_prosody13
	exec 8>&-
}

# Our pid, if that process is alive and really is our prosody (guards against a
# stale pid file and pid reuse; a zombie counts as dead).
running_pid() {
	local pid state
	[ -s "$PIDFILE" ] || return 1
	pid=$(cat "$PIDFILE")
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
	[ "$state" != Z ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$CFG" || return 1
	echo "$pid"
}

# A real BOSH session-creation request; ready when the answer carries a sid and the
# SASL2 features (so the prosody-modules were loaded).
bosh_answers() {
	command -v curl >/dev/null 2>&1 || return 1
	local rid=$((RANDOM * 32768 + RANDOM + 1)) resp
	resp=$(curl --noproxy '*' -sS --max-time 5 \
		-H 'Content-Type: text/xml; charset=utf-8' \
		--data-binary "<body content='text/xml; charset=utf-8' hold='1' rid='$rid' to='anon.localhost' ver='1.6' wait='60' xml:lang='en' xmpp:version='1.0' xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>" \
		"$BOSH_URL" 2>/dev/null) || return 1
	[[ "$resp" == *"sid="* && "$resp" == *"urn:xmpp:sasl:2"* ]]
}

port_in_use() {
	# bash's /dev/tcp: connecting succeeds only if something listens.
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

write_config() {
	local run_as_root=false
	[ "$(id -u)" -eq 0 ] && run_as_root=true  # Prosody refuses to run as root otherwise
	cat >"$CFG" <<EOF
-- Generated by scripts/prosody13.sh: throw-away Prosody 13 test instance, loopback only.
data_path = "$DATA"
log = { info = "$LOG" }
-- No TLS is used; an existing (empty) dir just silences a startup error.
certificates = "$PROSODY13_DIR/certs"
run_as_root = $run_as_root

modules_enabled = {
	"bosh";         -- BOSH endpoint at /http-bind
	"ping";         -- XEP-0199: prove a pre-bound session is live
	"saslauth";     -- classic SASL (SCRAM-SHA-1, PLAIN, ANONYMOUS)
	"sasl2";        -- XEP-0388 (prosody-modules)
	"sasl2_bind2";  -- XEP-0386 Bind2: bind inside <authenticate> (prosody-modules)
	"sasl2_fast";   -- XEP-0484 FAST tokens (prosody-modules)
	"roster";       -- clients request the roster after attaching
	"vcard";        -- XEP-0054 vcard-temp
	"disco";
	"posix";        -- clean shutdown on SIGTERM, root check
}

-- Loopback only: no https, no s2s, no direct TLS.
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
http_ports = { $HTTP_PORT }
http_interfaces = { "127.0.0.1" }
https_ports = { }
https_interfaces = { }
c2s_ports = { $C2S_PORT }
c2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = { }
s2s_ports = { }

-- Without this Prosody offers no SASL mechanism at all on plain-HTTP BOSH.
consider_bosh_secure = true
-- PLAIN over plain HTTP on loopback (mod_sasl2 reads the same options as mod_saslauth).
allow_unencrypted_plain_auth = true
c2s_require_encryption = false
-- How long an unattached pre-bound session lives.
bosh_max_inactivity = 60
-- Largest stanza (default 256 KiB): a vCard with a ~300 KiB photo must fit.
c2s_stanza_size_limit = 1024 * 1024
-- No rate limiting.
limits = { }

VirtualHost "localhost"
	authentication = "internal_hashed"

VirtualHost "anon.localhost"
	authentication = "anonymous"
EOF
}

register_accounts() {
	local user pass out
	for user in alice bob; do
		pass="secret-$user"
		# `register` refuses existing users; that is fine (idempotent).
		if ! out=$("$PROSODYCTL_BIN" --config "$CFG" register "$user" localhost "$pass" 2>&1); then
			[[ "$out" == *"already exists"* ]] || die "registering $user@localhost failed: $out"
		fi
	done
}

print_logs() {
	local f lines=${1:-50}
	for f in "$OUT" "$LOG"; do
		[ -s "$f" ] || continue
		log "---- last $lines lines of $f ----"
		tail -n "$lines" "$f" >&2
	done
}

cmd_start() {
	mkdir -p "$PROSODY13_DIR"

	# Serialise concurrent `start`s on the same state dir.
	exec 9>"$PROSODY13_DIR/lock"
	flock -w 300 9 || die "timed out waiting for the lock on $PROSODY13_DIR"

	if running_pid >/dev/null; then
		if bosh_answers; then
			log "already running (pid $(running_pid)), BOSH at $BOSH_URL"
			return 0
		fi
		log "pid $(running_pid) is alive but BOSH does not answer; restarting it"
		cmd_stop
	fi

	ensure_installed

	for p in "$HTTP_PORT" "$C2S_PORT"; do
		if port_in_use "$p"; then
			die "port 127.0.0.1:$p is already in use by another process (set PROSODY13_HTTP_PORT / PROSODY13_C2S_PORT)"
		fi
	done

	mkdir -p "$DATA" "$PROSODY13_DIR/certs"
	write_config
	register_accounts

	: >"$OUT"
	# As in prosody.sh: -F keeps $! Prosody's pid, setsid keeps the caller's Ctrl-C
	# away from it, 9>&- keeps the lock from being inherited.
	setsid nohup "$PROSODY_BIN" --config "$CFG" -F </dev/null >>"$OUT" 2>&1 9>&- &
	local pid=$!
	echo "$pid" >"$PIDFILE"

	local deadline=$((SECONDS + START_TIMEOUT))
	while :; do
		if ! running_pid >/dev/null; then
			log "error: prosody 13 (pid $pid) exited during startup"
			print_logs
			exit 1
		fi
		bosh_answers && break
		if [ "$SECONDS" -ge "$deadline" ]; then
			log "error: BOSH with SASL2 did not answer at $BOSH_URL within ${START_TIMEOUT}s"
			print_logs
			cmd_stop || true
			exit 1
		fi
		sleep 0.2
	done
	log "started prosody $(cat "$TREE/usr/lib/prosody/prosody.version") (pid $pid), BOSH at $BOSH_URL, state in $PROSODY13_DIR"
}

cmd_stop() {
	local pid
	if ! pid=$(running_pid); then
		rm -f "$PIDFILE"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	local deadline=$((SECONDS + 10))
	while running_pid >/dev/null; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			log "prosody 13 (pid $pid) ignored SIGTERM for 10s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			sleep 0.5
			break
		fi
		sleep 0.1
	done
	running_pid >/dev/null && die "could not stop prosody 13 (pid $pid)"
	rm -f "$PIDFILE"
	log "stopped prosody 13 (pid $pid)"
}

cmd_status() {
	local pid
	if pid=$(running_pid) && bosh_answers; then
		echo "running (pid $pid), BOSH at $BOSH_URL"
		return 0
	fi
	echo "not running"
	return 1
}

cmd_env() {
	echo "export BOSH_PREBIND_TEST_PROSODY13_URL=$BOSH_URL"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) cmd_env ;;
install) ensure_installed ;;
logs) print_logs "${2:-50}" ;;
*)
	echo "usage: $0 {start|stop|status|env|install|logs [N]}" >&2
	exit 2
	;;
esac
