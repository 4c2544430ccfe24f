# shellcheck shell=bash
# Shared helpers for scripts/ejabberd.sh (one node) and scripts/ejabberd-cluster.sh (two
# nodes).  Sourced, never run.  The caller sets EJB_NAME (prefix for messages) before
# sourcing and `set -euo pipefail` itself.
#
# What lives here: installing the Debian package without its system service, writing a
# node's ejabberd.yml / ejabberdctl.cfg / inetrc, running ejabberdctl against one of our
# state dirs, pid checks, the BOSH readiness probe, stopping a node, accounts, log tails.
#
# ejabberdctl (Debian 23.01) facts the helpers rely on:
#  * It runs only as root or as the `ejabberd` user; as root it re-executes every Erlang VM
#    as `ejabberd` (su), so state dirs are chowned to that user and must be reachable by it.
#  * --config-dir/--config/--ctl-config/--spool/--logs/--node keep it away from /etc/ejabberd,
#    /var/lib/ejabberd and /var/log/ejabberd.  It sources the ctl config with bash, so an
#    `export VAR=...` line there reaches every VM, including the short-lived ctl VMs that
#    each `ejabberdctl <command>` boots (~0.3-0.5 s each).
#  * It does not quote paths: state dirs must not contain whitespace.

EJB_NAME=${EJB_NAME:-ejabberd-common}
EJB_USER=ejabberd

log() { printf '%s: %s\n' "$EJB_NAME" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# Milliseconds since the epoch (for start-up timings in the log).
now_ms() { echo $(($(date +%s%N) / 1000000)); }

as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root to run: $* (install it yourself or run as root)"
	fi
}

check_number() { # NAME VALUE
	[[ "$2" =~ ^[0-9]+$ ]] || {
		log "error: $1 is not a number: '$2'"
		exit 2
	}
}

# Make a state dir path absolute and reject what ejabberdctl cannot handle.
abs_dir() { # PATH -> absolute path on stdout
	local d=$1
	[[ "$d" == /* ]] || d="$PWD/$d"
	[[ "$d" =~ [[:space:]] ]] && die "state dir '$d' contains whitespace (ejabberdctl does not quote paths)"
	printf '%s\n' "${d%/}"
}

# ejabberdctl runs only as root or as the ejabberd user.
require_ctl_user() {
	[ "$(id -u)" -eq 0 ] && return 0
	[ "$(id -un)" = "$EJB_USER" ] && return 0
	die "ejabberdctl only runs as root or as the '$EJB_USER' user; run this script as root"
}

# ---------------------------------------------------------------------------- install

# A system ejabberd (the package's service, /etc/ejabberd) that is running: its beam pid.
system_ejabberd_pid() {
	local pid
	[ -s /run/ejabberd/ejabberd.pid ] || return 1
	pid=$(cat /run/ejabberd/ejabberd.pid 2>/dev/null) || return 1
	[[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q beam || return 1
	echo "$pid"
}

# Install ejabberd (and curl, for the readiness probe) only if missing, without letting the
# package start the system service (policy-rc.d) or leave it enabled at boot; if it was
# started anyway, stop it and the system epmd (port 4369) it brought up.  /etc/ejabberd is
# left as the package wrote it and never used.
ensure_packages() {
	local pkgs=()
	command -v ejabberdctl >/dev/null 2>&1 && command -v epmd >/dev/null 2>&1 || pkgs+=(ejabberd)
	command -v curl >/dev/null 2>&1 || pkgs+=(curl ca-certificates)
	command -v setsid >/dev/null 2>&1 && command -v setpriv >/dev/null 2>&1 && command -v flock >/dev/null 2>&1 ||
		pkgs+=(util-linux)
	if [ "${#pkgs[@]}" -eq 0 ]; then return 0; fi

	log "installing: ${pkgs[*]} (ejabberd pulls Erlang/OTP: 1-2 minutes)"
	local epmd_before=0
	epmd -names >/dev/null 2>&1 && epmd_before=1 # a system epmd on 4369 before the install
	local policy=/usr/sbin/policy-rc.d created_policy=0
	if [ ! -e "$policy" ]; then
		# invoke-rc.d consults policy-rc.d: exit 101 = "action forbidden", so the
		# package's postinst does not start the system ejabberd.
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

	[[ " ${pkgs[*]} " == *" ejabberd "* ]] || return 0
	# postinst enables the unit for the next boot even when policy-rc.d forbids starting
	# it; `systemctl disable` also works without a running systemd (and runs update-rc.d).
	if command -v systemctl >/dev/null 2>&1; then
		as_root systemctl disable ejabberd >/dev/null 2>&1 || log "warning: could not disable the system ejabberd service"
	elif command -v update-rc.d >/dev/null 2>&1; then
		as_root update-rc.d ejabberd disable >/dev/null 2>&1 || true
	fi
	# Started anyway (e.g. by systemd directly)?  Stop it; its config is left alone.
	local pid
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet ejabberd 2>/dev/null; then
		log "stopping the system ejabberd service started by the package"
		as_root systemctl stop ejabberd || true
	elif pid=$(system_ejabberd_pid); then
		log "stopping the system ejabberd (pid $pid) started by the package"
		as_root kill -TERM "$pid" || true
		for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	fi
	# The system epmd (4369), if the install brought it up and nothing is registered on it.
	if [ "$epmd_before" -eq 0 ] && epmd -names >/dev/null 2>&1; then
		if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet epmd.socket epmd.service 2>/dev/null; then
			as_root systemctl stop epmd.socket epmd.service || true
		elif ! epmd -names 2>/dev/null | grep -q '^name '; then
			log "stopping the system epmd (port 4369) started by the package"
			epmd -kill >/dev/null 2>&1 || true
		fi
	fi
}

# ---------------------------------------------------------------------------- config

# write_ejabberd_yml FILE HTTP_PORT CLUSTER(0|1)
# Uses INACTIVITY and LOG_LEVEL from the caller.  The cluster variant differs only in the
# explicit Mnesia cluster backend and the BOSH sid table (ram_db_type: mnesia is the default
# anyway, but the cluster depends on it, so it is spelled out).
write_ejabberd_yml() {
	local file=$1 port=$2 cluster=$3 cluster_backend="" bosh_ram_db=""
	if [ "$cluster" -eq 1 ]; then
		cluster_backend="cluster_backend: mnesia"
		# The BOSH sid -> session pid map is a local_content Mnesia RAM table that
		# mod_bosh_mnesia keeps identical on every node; this is what lets node B find
		# (and forward to) a session owned by node A.
		bosh_ram_db="ram_db_type: mnesia"
	fi
	cat >"$file" <<EOF
# Generated by scripts/$EJB_NAME: throw-away test instance on loopback, not for production.
loglevel: $LOG_LEVEL
log_rotate_count: 0
hide_sensitive_log_data: false
hosts:
  - localhost
  - anon.localhost
# No TLS anywhere: plain HTTP BOSH on 127.0.0.1, no certificates, no ACME.
certfiles: []
acme:
  auto: false
default_db: mnesia
default_ram_db: mnesia
$cluster_backend

# localhost: accounts in Mnesia, stored as SCRAM-SHA-1 hashes; ejabberd then offers
# SCRAM-SHA-1 and PLAIN (PLAIN is checked against the hash).  DIGEST-MD5 cannot work with
# hashed storage, X-OAUTH2 is not wanted.
auth_method: [mnesia]
auth_password_format: scram
auth_scram_hash: sha
disable_sasl_mechanisms: ["digest-md5", "x-oauth2"]
host_config:
  anon.localhost:
    auth_method: [anonymous]
    anonymous_protocol: sasl_anon
    allow_multiple_connections: true
    # Without this anon.localhost also offers PLAIN, which always fails there.
    disable_sasl_mechanisms: ["plain", "digest-md5", "x-oauth2"]

listen:
  -
    port: $port
    ip: "127.0.0.1"
    module: ejabberd_http
    tls: false
    backlog: 1024
    request_handlers:
      /bosh: mod_bosh

s2s_access: none
acl:
  loopback:
    ip:
      - 127.0.0.0/8
      - ::1/128
access_rules:
  c2s:
    allow: all
  local:
    allow: all
api_permissions:
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"
# No rate limiting (benchmarks open many sessions).
shaper_rules:
  max_user_sessions: infinity
  c2s_shaper: none

modules:
  mod_bosh:
    max_inactivity: $INACTIVITY
    max_pause: 120
    queue_type: ram
    $bosh_ram_db
  mod_ping: {}
  mod_disco: {}
  mod_roster: {}
  mod_vcard:
    search: false
  mod_version:
    show_os: false
  mod_admin_extra: {}
EOF
}

# 'localhost' (the host part of our node names) must resolve to 127.0.0.1 in every VM;
# ejabberdctl points ERL_INETRC at CONFIG_DIR/inetrc.
write_inetrc() { # FILE
	cat >"$1" <<'EOF'
{lookup,["file","native"]}.
{host,{127,0,0,1}, ["localhost"]}.
{file, resolv, "/etc/resolv.conf"}.
EOF
}

# write_ctl_cfg FILE NODE NODE_DIR COOKIE DIST_LINES
# DIST_LINES: the lines that select how Erlang distribution finds nodes (ERL_DIST_PORT for
# the single node, a private epmd for the cluster).  -setcookie: no ~/.erlang.cookie is
# created in /var/lib/ejabberd (the ejabberd user's HOME).  inet_dist_use_interface keeps
# every distribution listener on 127.0.0.1.  EJABBERD_ERL_FLAGS (default none) adds emulator
# flags, e.g. '+sbwt none +sbwtdcpu none +sbwtdio none' (no scheduler busy-waiting, so that
# a node's CPU time counts its work only: perf/examples/cluster_load.rs); unset, the file is
# the same as before, so running nodes are not rebuilt.
write_ctl_cfg() {
	local file=$1 node=$2 nd=$3 cookie=$4 dist=$5
	local extra=${EJABBERD_ERL_FLAGS:+ $EJABBERD_ERL_FLAGS}
	cat >"$file" <<EOF
# Generated by scripts/$EJB_NAME (node $node)
ERLANG_NODE=$node
$dist
ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0 -setcookie $cookie -kernel inet_dist_use_interface {127,0,0,1}$extra"
EJABBERD_PID_PATH=$nd/ejabberd.pid
EJABBERD_BYPASS_WARNINGS=true
CONTRIB_MODULES_PATH=$nd/ext
CONTRIB_MODULES_CONF_DIR=$nd/modules.d
ERL_MAX_PORTS=65536
EOF
}

# Random Erlang cookie, created once per state dir.
ensure_cookie() { # FILE
	if [ ! -s "$1" ]; then
		head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$1"
		chmod 600 "$1"
	fi
}

# Hand a state dir to the ejabberd user (as root) and check that user can reach it.
own_dir() { # DIR
	[ "$(id -u)" -eq 0 ] || return 0
	chown -R "$EJB_USER:" "$1"
	su -s /bin/sh "$EJB_USER" -c "test -w '$1'" ||
		die "user $EJB_USER cannot write $1 (a parent directory is not traversable?); choose a state dir under /tmp"
}

# ---------------------------------------------------------------------------- nodes

# ctl NODE_DIR NODE ARGS...: ejabberdctl against the node living in NODE_DIR.
# Set CTL_TIMEOUT=N to bound it.  9>&-: our lock fd must not leak into the VMs.
ctl() {
	local nd=$1 node=$2
	shift 2
	${CTL_TIMEOUT:+timeout "$CTL_TIMEOUT"} ejabberdctl --config-dir "$nd" --config "$nd/ejabberd.yml" \
		--ctl-config "$nd/ejabberdctl.cfg" --spool "$nd/spool" --logs "$nd/log" --node "$node" "$@" 9>&-
}

# node_pid NODE_DIR: the beam pid of the node in NODE_DIR, if alive (a zombie counts as
# dead) and really running on NODE_DIR/spool (guards against stale pid files, pid reuse).
node_pid() {
	local pid
	[ -s "$1/ejabberd.pid" ] || return 1
	pid=$(cat "$1/ejabberd.pid" 2>/dev/null) || return 1
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	pid_is_live_beam "$pid" "$1" || return 1
	echo "$pid"
}

# bash's /dev/tcp: connecting succeeds only if something listens.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A real BOSH session-creation request to URL for DOMAIN; prints the response body.
bosh_create() { # URL [DOMAIN]
	local rid=$((RANDOM * 32768 + RANDOM + 1))
	curl --noproxy '*' -sS --max-time 5 \
		-H 'Content-Type: text/xml; charset=utf-8' \
		--data-binary "<body content='text/xml; charset=utf-8' hold='1' rid='$rid' to='${2:-anon.localhost}' ver='1.6' wait='60' xml:lang='en' xmpp:version='1.0' xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>" \
		"$1" 2>/dev/null
}

# Ready = a session-creation request answers with a sid.
bosh_answers() { # URL
	local resp
	command -v curl >/dev/null 2>&1 || return 1
	resp=$(bosh_create "$1") || return 1
	[[ "$resp" == *"sid="* ]]
}

# start_node NODE_DIR NODE: launch the VM (detached); returns once ejabberdctl did.
# The caller then waits with wait_node.
start_node() {
	local nd=$1 node=$2 out
	rm -f "$nd/ejabberd.pid"
	out=$(ctl "$nd" "$node" start 2>&1) || die "ejabberdctl start ($node) failed: $out"
	[ -z "$out" ] || log "ejabberdctl start ($node): $out"
}

# wait_node NODE_DIR URL TIMEOUT: until a BOSH session creation at URL answers with a sid.
# Fails at once if the VM exits (e.g. eaddrinuse on the listener, a config error), after
# TIMEOUT seconds otherwise; prints the node's log tail on failure.
wait_node() {
	local nd=$1 url=$2 timeout=$3 start=$SECONDS
	while :; do
		if node_pid "$nd" >/dev/null; then
			bosh_answers "$url" && return 0
		elif [ $((SECONDS - start)) -ge 2 ] && ! beam_of "$nd" >/dev/null; then
			log "error: the ejabberd VM of $nd exited during start-up"
			print_node_logs "$nd" 40
			return 1
		fi
		if [ $((SECONDS - start)) -ge "$timeout" ]; then
			log "error: no BOSH session could be created at $url within ${timeout}s"
			print_node_logs "$nd" 40
			return 1
		fi
		sleep 0.2
	done
}

# beam_of NODE_DIR: pid(s) of any beam running on NODE_DIR/spool, pid file or not.
beam_of() { pgrep -f -- "beam.* -mnesia dir \"?$1/spool\"?( |\$)"; }

# stop_node NODE_DIR [KILL]: SIGTERM the beam (init:stop, a clean shutdown: Mnesia tells the
# other cluster node, BOSH clients get a terminate body) and wait for it to exit; SIGKILL
# after 20 s.  KILL=1: SIGKILL at once (a crash).  No ctl VM is needed, so this also works
# when distribution is broken.  Prints the pid it stopped, if any.
stop_node() {
	local nd=$1 kill=${2:-0} pid deadline
	pid=$(node_pid "$nd") || pid=$(beam_of "$nd" | head -n 1) || pid=""
	if [ -z "$pid" ]; then
		rm -f "$nd/ejabberd.pid"
		return 0
	fi
	if [ "$kill" -eq 1 ]; then
		kill -KILL "$pid" 2>/dev/null || true
	else
		kill -TERM "$pid" 2>/dev/null || true
	fi
	deadline=$((SECONDS + 20))
	while pid_is_live_beam "$pid" "$nd"; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			log "ejabberd (pid $pid) ignored SIGTERM for 20s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			deadline=$((SECONDS + 5))
		fi
		sleep 0.1
	done
	rm -f "$nd/ejabberd.pid"
	echo "$pid"
}

# pid_is_live_beam PID NODE_DIR: alive, not a zombie, running on NODE_DIR/spool.
pid_is_live_beam() {
	local state
	kill -0 "$1" 2>/dev/null || return 1
	state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[ "$state" != Z ] || return 1
	tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$2/spool"
}

# ensure_account NODE_DIR NODE USER PASSWORD (on host localhost): register, or reset the
# password of an existing account.  One ctl VM when the account is already right.
ensure_account() {
	local nd=$1 node=$2 user=$3 pass=$4 out
	ctl "$nd" "$node" check_password "$user" localhost "$pass" >/dev/null 2>&1 && return 0
	if out=$(ctl "$nd" "$node" register "$user" localhost "$pass" 2>&1); then return 0; fi
	if [[ "$out" == *"already registered"* ]]; then
		out=$(ctl "$nd" "$node" change_password "$user" localhost "$pass" 2>&1) && return 0
	fi
	log "error: setting up $user@localhost failed: $out"
	return 1
}

# The test accounts alice/secret-alice and bob/secret-bob, set up in parallel.
ensure_accounts() { # NODE_DIR NODE
	local pids=() p rc=0
	ensure_account "$1" "$2" alice secret-alice &
	pids+=($!)
	ensure_account "$1" "$2" bob secret-bob &
	pids+=($!)
	for p in "${pids[@]}"; do wait "$p" || rc=1; done
	return "$rc"
}

print_node_logs() { # NODE_DIR [N]
	local f lines=${2:-50}
	for f in "$1/log/error.log" "$1/log/ejabberd.log" "$1"/log/erl_crash_*.dump; do
		[ -s "$f" ] || continue
		log "---- last $lines lines of $f ----"
		tail -n "$lines" "$f" >&2
	done
}
