#!/usr/bin/env bash
# Throw-away Prosody XMPP server with BOSH on loopback, for tests and the demo.
#
#   scripts/prosody.sh start    install (if needed), configure, start, wait until BOSH answers
#   scripts/prosody.sh stop     stop the instance started by `start`
#   scripts/prosody.sh status   exit 0 if the instance is running and BOSH answers
#   scripts/prosody.sh env      print `export BOSH_PREBIND_TEST_BOSH_URL=...` and the HTTPS
#                               variables below
#   scripts/prosody.sh install  only install prosody/curl/openssl if missing (done by `start` too)
#   scripts/prosody.sh logs [N] print the last N (default 50) lines of the logs
#
# Everything lives in its own state dir (config, data, log, pid); /etc/prosody and the
# system service are never used.  Settings (environment):
#   PROSODY_DIR        state dir        (default ${TMPDIR:-/tmp}/bosh-prebind-prosody)
#   PROSODY_HTTP_PORT  BOSH/HTTP port   (default 5280, 127.0.0.1 only)
#   PROSODY_C2S_PORT   c2s port         (default 5222, 127.0.0.1 only)
#   PROSODY_HTTPS_PORT            BOSH over TLS, good certificate   (default 5281, 127.0.0.1 only)
#   PROSODY_HTTPS_WRONG_PORT      BOSH over TLS, certificate for the wrong host name (default 5282)
#   PROSODY_HTTPS_UNTRUSTED_PORT  BOSH over TLS, certificate from an untrusted CA   (default 5283)
#   PROSODY_START_TIMEOUT  seconds to wait for BOSH (default 20)
#
# Accounts: alice@localhost / secret-alice, bob@localhost / secret-bob;
# anon.localhost offers SASL ANONYMOUS.  Modules: bosh, ping (XEP-0199), roster,
# vcard (XEP-0054, stored as sent), saslauth, disco.  Stanzas up to 1 MiB are accepted
# (c2s_stanza_size_limit, which also bounds each stanza in a BOSH body; Prosody's default
# is 256 KiB), so a vCard with a ~300 KiB photo goes through; HTTP bodies up to 10 MiB
# (http_max_content_size, Prosody's default).
#
# HTTPS: a throw-away PKI is made with openssl in $PROSODY_DIR/tls/ on the first `start`
# (kept afterwards; remade when a file is missing or a certificate expires within a day):
#   ca.pem               the test CA: trust it (BOSH_PREBIND_TEST_CA_FILE)
#   localhost.pem/.key   CA-signed, SAN DNS:localhost + IP:127.0.0.1: served on PROSODY_HTTPS_PORT
#                        -> https://localhost:5281/http-bind or https://127.0.0.1:5281/http-bind
#   wrong-host.pem/.key  CA-signed, but only for DNS:wrong.example: served on
#                        PROSODY_HTTPS_WRONG_PORT; a client trusting ca.pem must refuse
#                        https://localhost:5282/http-bind (name mismatch)
#   untrusted-ca.pem     a second, unrelated CA (BOSH_PREBIND_TEST_UNTRUSTED_CA_FILE)
#   untrusted.pem/.key   for localhost + 127.0.0.1 but signed by untrusted-ca: served on
#                        PROSODY_HTTPS_UNTRUSTED_PORT; a client trusting ca.pem must refuse
#                        https://localhost:5283/http-bind (unknown issuer)
# The *.key files and the CAs' keys stay in tls/ too (EC P-256).  Nothing is put into the
# system trust store.  `env` prints, besides BOSH_PREBIND_TEST_BOSH_URL:
#   BOSH_PREBIND_TEST_BOSH_HTTPS_URL            https://localhost:$PROSODY_HTTPS_PORT/http-bind
#   BOSH_PREBIND_TEST_CA_FILE                   $PROSODY_DIR/tls/ca.pem
#   BOSH_PREBIND_TEST_BOSH_HTTPS_WRONG_HOST_URL https://localhost:$PROSODY_HTTPS_WRONG_PORT/http-bind
#   BOSH_PREBIND_TEST_BOSH_HTTPS_UNTRUSTED_URL  https://localhost:$PROSODY_HTTPS_UNTRUSTED_PORT/http-bind
#   BOSH_PREBIND_TEST_UNTRUSTED_CA_FILE         $PROSODY_DIR/tls/untrusted-ca.pem
set -euo pipefail

PROSODY_DIR=${PROSODY_DIR:-${TMPDIR:-/tmp}/bosh-prebind-prosody}
# Absolute, so the pid check (which matches the config path in the command line)
# works from any working directory.
[[ "$PROSODY_DIR" == /* ]] || PROSODY_DIR="$PWD/$PROSODY_DIR"
HTTP_PORT=${PROSODY_HTTP_PORT:-5280}
C2S_PORT=${PROSODY_C2S_PORT:-5222}
HTTPS_PORT=${PROSODY_HTTPS_PORT:-5281}
HTTPS_WRONG_PORT=${PROSODY_HTTPS_WRONG_PORT:-5282}
HTTPS_UNTRUSTED_PORT=${PROSODY_HTTPS_UNTRUSTED_PORT:-5283}
START_TIMEOUT=${PROSODY_START_TIMEOUT:-20}
BOSH_URL="http://127.0.0.1:${HTTP_PORT}/http-bind"
BOSH_HTTPS_URL="https://localhost:${HTTPS_PORT}/http-bind"
BOSH_HTTPS_WRONG_HOST_URL="https://localhost:${HTTPS_WRONG_PORT}/http-bind"
BOSH_HTTPS_UNTRUSTED_URL="https://localhost:${HTTPS_UNTRUSTED_PORT}/http-bind"
for p in "$HTTP_PORT" "$C2S_PORT" "$HTTPS_PORT" "$HTTPS_WRONG_PORT" "$HTTPS_UNTRUSTED_PORT" "$START_TIMEOUT"; do
	[[ "$p" =~ ^[0-9]+$ ]] || { echo "prosody.sh: error: not a number: '$p'" >&2; exit 2; }
done

CFG="$PROSODY_DIR/prosody.cfg.lua"
DATA="$PROSODY_DIR/data"
LOG="$PROSODY_DIR/prosody.log"  # Prosody's own log
OUT="$PROSODY_DIR/prosody.out"  # stdout/stderr of the process (startup errors land here)
PIDFILE="$PROSODY_DIR/prosody.pid"
TLS="$PROSODY_DIR/tls"          # throw-away CAs and certificates (see the header)
CA_FILE="$TLS/ca.pem"
UNTRUSTED_CA_FILE="$TLS/untrusted-ca.pem"

log() { printf 'prosody.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root to run: $* (install it yourself or run as root)"
	fi
}

# Install prosody (and curl, used for the readiness probe, and openssl, which makes the
# test certificates) only if missing, without letting the package start or enable the
# system service.
ensure_packages() {
	local pkgs=()
	command -v prosody >/dev/null 2>&1 && command -v prosodyctl >/dev/null 2>&1 || pkgs+=(prosody)
	command -v curl >/dev/null 2>&1 || pkgs+=(curl ca-certificates)
	command -v openssl >/dev/null 2>&1 || pkgs+=(openssl)
	if [ "${#pkgs[@]}" -eq 0 ]; then return 0; fi

	log "installing: ${pkgs[*]}"
	local policy=/usr/sbin/policy-rc.d created_policy=0
	if [ ! -e "$policy" ]; then
		# invoke-rc.d consults policy-rc.d: exit 101 = "action forbidden", so
		# the package's postinst does not start the system prosody.
		printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
		as_root chmod 755 "$policy"
		created_policy=1
	fi
	local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
	# Retry after `apt-get update` in case the package lists are missing or stale.
	local rc=0
	as_root "${apt[@]}" install -y --no-install-recommends "${pkgs[@]}" ||
		{ as_root "${apt[@]}" update && as_root "${apt[@]}" install -y --no-install-recommends "${pkgs[@]}"; } ||
		rc=$?
	if [ "$created_policy" -eq 1 ]; then as_root rm -f "$policy"; fi
	[ "$rc" -eq 0 ] || die "apt-get install ${pkgs[*]} failed"

	# If the system service was started anyway (e.g. systemd started it directly),
	# stop it: it would hold the default ports.  Its config is left alone.
	if [[ " ${pkgs[*]} " == *" prosody "* ]]; then
		if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prosody 2>/dev/null; then
			log "stopping the system prosody service started by the package"
			as_root systemctl stop prosody || true
		elif [ -s /run/prosody/prosody.pid ] && kill -0 "$(cat /run/prosody/prosody.pid)" 2>/dev/null; then
			log "stopping the system prosody started by the package"
			as_root kill "$(cat /run/prosody/prosody.pid)" || true
		fi
	fi
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

# A real BOSH session-creation request; ready when the answer carries a sid.
# bosh_answers [URL [extra curl args...]] (default: the plain-HTTP URL).
bosh_answers() {
	command -v curl >/dev/null 2>&1 || return 1
	local url=${1:-$BOSH_URL}
	[ "$#" -eq 0 ] || shift
	local rid=$((RANDOM * 32768 + RANDOM + 1)) resp
	resp=$(curl --noproxy '*' -sS --max-time 5 "$@" \
		-H 'Content-Type: text/xml; charset=utf-8' \
		--data-binary "<body content='text/xml; charset=utf-8' hold='1' rid='$rid' to='anon.localhost' ver='1.6' wait='60' xml:lang='en' xmpp:version='1.0' xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>" \
		"$url" 2>/dev/null) || return 1
	[[ "$resp" == *"sid="* ]]
}

# BOSH over TLS with the good certificate, verified against the test CA.
https_answers() {
	[ -s "$CA_FILE" ] && bosh_answers "$BOSH_HTTPS_URL" --cacert "$CA_FILE"
}

# Both the plain-HTTP and the HTTPS endpoint answer.
all_answer() {
	bosh_answers && https_answers
}

# openssl helpers for ensure_certs.
new_key() { # FILE: an EC P-256 private key, readable by its owner only
	(umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null)
}
new_ca() { # NAME CN: self-signed CA NAME.pem / NAME.key
	new_key "$TLS/$1.key"
	openssl req -x509 -new -sha256 -days 3650 -key "$TLS/$1.key" -subj "/CN=$2" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" \
		-addext "subjectKeyIdentifier=hash" \
		-out "$TLS/$1.pem" 2>/dev/null
}
new_leaf() { # NAME CA CN SAN: server certificate NAME.pem / NAME.key signed by CA
	local ext="$TLS/$1.ext"
	new_key "$TLS/$1.key"
	openssl req -new -sha256 -key "$TLS/$1.key" -subj "/CN=$3" -out "$TLS/$1.csr" 2>/dev/null
	printf '%s\n' "basicConstraints=critical,CA:FALSE" \
		"keyUsage=critical,digitalSignature,keyEncipherment" \
		"extendedKeyUsage=serverAuth" \
		"subjectAltName=$4" \
		"subjectKeyIdentifier=hash" \
		"authorityKeyIdentifier=keyid,issuer" >"$ext"
	openssl x509 -req -sha256 -days 825 -in "$TLS/$1.csr" \
		-CA "$TLS/$2.pem" -CAkey "$TLS/$2.key" -set_serial "0x$(openssl rand -hex 16)" \
		-extfile "$ext" -out "$TLS/$1.pem" 2>/dev/null
	rm -f "$TLS/$1.csr" "$ext"
}

# The throw-away PKI in $TLS (see the header); kept while complete and valid for a day.
ensure_certs() {
	local f ok=1
	for f in ca untrusted-ca localhost wrong-host untrusted; do
		[ -s "$TLS/$f.pem" ] && [ -s "$TLS/$f.key" ] &&
			openssl x509 -checkend 86400 -noout -in "$TLS/$f.pem" >/dev/null 2>&1 || ok=0
	done
	[ "$ok" -eq 0 ] || return 0
	log "making throw-away TLS certificates in $TLS"
	rm -rf "$TLS"
	mkdir -p "$TLS"
	if ! { new_ca ca "bosh-prebind test CA" &&
		new_ca untrusted-ca "bosh-prebind untrusted CA" &&
		new_leaf localhost ca localhost "DNS:localhost,IP:127.0.0.1" &&
		new_leaf wrong-host ca wrong.example "DNS:wrong.example" &&
		new_leaf untrusted untrusted-ca localhost "DNS:localhost,IP:127.0.0.1"; }; then
		die "openssl failed to make the test certificates in $TLS"
	fi
	# The certificates (not the keys) may be read by anyone, e.g. a test run as another user.
	chmod 755 "$TLS"
	chmod 644 "$TLS"/*.pem
}

port_in_use() {
	# bash's /dev/tcp: connecting succeeds only if something listens.
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

write_config() {
	local run_as_root=false
	[ "$(id -u)" -eq 0 ] && run_as_root=true  # Prosody refuses to run as root otherwise
	cat >"$CFG" <<EOF
-- Generated by scripts/prosody.sh: throw-away test instance, loopback only.
data_path = "$DATA"
log = { info = "$LOG" }
-- No TLS on c2s; an existing (empty) dir just silences a startup error.  It must stay
-- empty: a certificate found there for "localhost" would be served (via SNI) on every
-- https port, the wrong-host and untrusted ones included.
certificates = "$PROSODY_DIR/certs"
run_as_root = $run_as_root

modules_enabled = {
	"bosh";      -- BOSH endpoint at /http-bind
	"ping";      -- XEP-0199: prove a pre-bound session is live
	"saslauth";  -- SASL (SCRAM-SHA-1, PLAIN, ANONYMOUS)
	"roster";    -- clients request the roster after attaching
	"vcard";     -- XEP-0054 vcard-temp, stored as sent (photo included)
	"disco";
	"posix";     -- clean shutdown on SIGTERM, root check
}

-- Loopback only: no s2s, no direct TLS c2s.
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
http_ports = { $HTTP_PORT }
http_interfaces = { "127.0.0.1" }
-- BOSH over TLS, one certificate per port (throw-away PKI in $TLS).
https_ports = { $HTTPS_PORT, $HTTPS_WRONG_PORT, $HTTPS_UNTRUSTED_PORT }
https_interfaces = { "127.0.0.1" }
https_ssl = {
	[$HTTPS_PORT] = { certificate = "$TLS/localhost.pem", key = "$TLS/localhost.key" };
	[$HTTPS_WRONG_PORT] = { certificate = "$TLS/wrong-host.pem", key = "$TLS/wrong-host.key" };
	[$HTTPS_UNTRUSTED_PORT] = { certificate = "$TLS/untrusted.pem", key = "$TLS/untrusted.key" };
}
c2s_ports = { $C2S_PORT }
c2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = { }
legacy_ssl_ports = { }
s2s_ports = { }

-- Without this Prosody offers no SASL mechanism at all on plain-HTTP BOSH.
consider_bosh_secure = true
-- PLAIN over plain HTTP on loopback.
allow_unencrypted_plain_auth = true
c2s_require_encryption = false
-- How long an unattached pre-bound session lives.
bosh_max_inactivity = 60
-- Largest stanza (c2s and each stanza inside a BOSH body; the default is 256 KiB): a vCard
-- with a ~300 KiB photo must fit.  HTTP request bodies: Prosody's default, stated.
c2s_stanza_size_limit = 1024 * 1024
http_max_content_size = 10 * 1024 * 1024
-- No rate limiting (benchmarks).
limits = { }
-- The default incremental GC makes per-handshake CPU grow with live sessions.
gc = { mode = "generational" }

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
		if ! out=$(prosodyctl --config "$CFG" register "$user" localhost "$pass" 2>&1); then
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
	mkdir -p "$PROSODY_DIR"

	# Serialise concurrent `start`s on the same state dir.
	exec 9>"$PROSODY_DIR/lock"
	flock -w 120 9 || die "timed out waiting for the lock on $PROSODY_DIR"

	if running_pid >/dev/null; then
		if all_answer; then
			log "already running (pid $(running_pid)), BOSH at $BOSH_URL and $BOSH_HTTPS_URL"
			return 0
		fi
		log "pid $(running_pid) is alive but BOSH (HTTP or HTTPS) does not answer; restarting it"
		cmd_stop
	fi

	ensure_packages

	for p in "$HTTP_PORT" "$C2S_PORT" "$HTTPS_PORT" "$HTTPS_WRONG_PORT" "$HTTPS_UNTRUSTED_PORT"; do
		if port_in_use "$p"; then
			die "port 127.0.0.1:$p is already in use by another process (set PROSODY_HTTP_PORT / PROSODY_C2S_PORT / PROSODY_HTTPS_*PORT)"
		fi
	done

	mkdir -p "$DATA" "$PROSODY_DIR/certs"
	ensure_certs
	write_config
	register_accounts

	: >"$OUT"
	# -F: stay in the foreground (no double fork), so $! is Prosody's pid.
	# setsid: own session, so a Ctrl-C in the caller's terminal does not reach
	# Prosody (it installs its own SIGINT handler); the caller's trap stops it.
	# (setsid only forks if already a group leader, which a background job of a
	# script without job control never is, so $! stays Prosody's pid.)
	# 9>&-: the lock fd must not be inherited, or the next `start` would block.
	setsid nohup prosody --config "$CFG" -F </dev/null >>"$OUT" 2>&1 9>&- &
	local pid=$!
	echo "$pid" >"$PIDFILE"

	local deadline=$((SECONDS + START_TIMEOUT))
	while :; do
		if ! running_pid >/dev/null; then
			log "error: prosody (pid $pid) exited during startup"
			print_logs
			exit 1
		fi
		all_answer && break
		if [ "$SECONDS" -ge "$deadline" ]; then
			log "error: BOSH did not answer at $BOSH_URL and $BOSH_HTTPS_URL (CA $CA_FILE) within ${START_TIMEOUT}s"
			print_logs
			cmd_stop || true
			exit 1
		fi
		sleep 0.2
	done
	log "started prosody (pid $pid), BOSH at $BOSH_URL and $BOSH_HTTPS_URL, state in $PROSODY_DIR"
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
			log "prosody (pid $pid) ignored SIGTERM for 10s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			sleep 0.5
			break
		fi
		sleep 0.1
	done
	running_pid >/dev/null && die "could not stop prosody (pid $pid)"
	rm -f "$PIDFILE"
	log "stopped prosody (pid $pid)"
}

cmd_status() {
	local pid
	if pid=$(running_pid) && all_answer; then
		echo "running (pid $pid), BOSH at $BOSH_URL and $BOSH_HTTPS_URL"
		return 0
	fi
	echo "not running"
	return 1
}

cmd_env() {
	echo "export BOSH_PREBIND_TEST_BOSH_URL=$BOSH_URL"
	echo "export BOSH_PREBIND_TEST_BOSH_HTTPS_URL=$BOSH_HTTPS_URL"
	printf 'export BOSH_PREBIND_TEST_CA_FILE=%q\n' "$CA_FILE"
	echo "export BOSH_PREBIND_TEST_BOSH_HTTPS_WRONG_HOST_URL=$BOSH_HTTPS_WRONG_HOST_URL"
	echo "export BOSH_PREBIND_TEST_BOSH_HTTPS_UNTRUSTED_URL=$BOSH_HTTPS_UNTRUSTED_URL"
	printf 'export BOSH_PREBIND_TEST_UNTRUSTED_CA_FILE=%q\n' "$UNTRUSTED_CA_FILE"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) cmd_env ;;
install) ensure_packages ;;
logs) print_logs "${2:-50}" ;;
*)
	echo "usage: $0 {start|stop|status|env|install|logs [N]}" >&2
	exit 2
	;;
esac
