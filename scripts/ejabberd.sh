#!/usr/bin/env bash
# Throw-away ejabberd (Debian 12's 23.01) XMPP server with BOSH on loopback, for the
# integration tests.  One node; for the two-node cluster see scripts/ejabberd-cluster.sh.
#
#   scripts/ejabberd.sh start    install (if needed), configure, start on a fresh spool, wait
#                                until a BOSH session can be created, set up the accounts
#                                (already running with the same config: nothing to do)
#   scripts/ejabberd.sh stop     stop the instance started by `start`
#   scripts/ejabberd.sh status   exit 0 if the instance is running and BOSH answers
#   scripts/ejabberd.sh env      print `export BOSH_PREBIND_TEST_EJABBERD_URL=...`
#   scripts/ejabberd.sh install  only install ejabberd/curl if missing (done by `start` too)
#   scripts/ejabberd.sh logs [N] print the last N (default 50) lines of the logs
#
# Everything lives in its own state dir (ejabberd.yml, ejabberdctl.cfg, inetrc, cookie,
# spool/ = Mnesia, log/, ejabberd.pid); /etc/ejabberd, /var/lib/ejabberd, /var/log/ejabberd
# and the system service are never used.  The package install does not start or enable the
# system service.  Must run as root (ejabberdctl runs the VM as the `ejabberd` user, which
# owns the state dir) or as the ejabberd user.  Settings (environment):
#   EJABBERD_DIR            state dir                  (default ${TMPDIR:-/tmp}/bosh-prebind-ejabberd)
#   EJABBERD_HTTP_PORT      BOSH over plain HTTP, 127.0.0.1, path /bosh            (default 5380)
#   EJABBERD_DIST_PORT      Erlang distribution port, 127.0.0.1                    (default 5389)
#   EJABBERD_NODE           Erlang node name (short)   (default bosh-prebind-ejabberd@localhost)
#   EJABBERD_BOSH_INACTIVITY  mod_bosh max_inactivity, seconds                     (default 60)
#   EJABBERD_LOG_LEVEL      none|emergency|alert|critical|error|warning|notice|info|debug (info)
#   EJABBERD_START_TIMEOUT  seconds to wait for BOSH   (default 60)
# Ports are below Linux's ephemeral range (32768-60999), so no client socket can sit on them,
# and clear of Prosody (5222/5269/5280/5281) and of scripts/ejabberd-cluster.sh (5369-5382).
#
# Erlang distribution: ejabberdctl's ERL_DIST_PORT mode, i.e. the node listens on
# 127.0.0.1:EJABBERD_DIST_PORT and no epmd is used or started at all (every ctl VM dials that
# port directly and does not listen itself), so nothing can collide with a system ejabberd, a
# system epmd (4369) or the cluster script's private epmd.  (This mode cannot cluster, which is
# why the cluster script runs its own epmd instead.)  Cookie: random, in the state dir.
#
# Hosts and accounts (the spool is wiped at every start, so each start is a clean server):
#   localhost       alice / secret-alice, bob / secret-bob (Mnesia, stored as SCRAM-SHA-1
#                   hashes); SASL over BOSH: PLAIN and SCRAM-SHA-1 (plain HTTP, no TLS)
#   anon.localhost  SASL ANONYMOUS only
# Modules: mod_bosh (max_inactivity as above), mod_ping (XEP-0199), mod_roster, mod_vcard,
# mod_disco, mod_version, mod_admin_extra.  No c2s/s2s listener, no TLS, no rate limits.
# Takes ~3 s to start once installed (2 vCPU).
set -euo pipefail

EJB_NAME=ejabberd.sh
# shellcheck source=scripts/lib/ejabberd-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/ejabberd-common.sh"

HTTP_PORT=${EJABBERD_HTTP_PORT:-5380}
DIST_PORT=${EJABBERD_DIST_PORT:-5389}
NODE=${EJABBERD_NODE:-bosh-prebind-ejabberd@localhost}
INACTIVITY=${EJABBERD_BOSH_INACTIVITY:-60}
LOG_LEVEL=${EJABBERD_LOG_LEVEL:-info}
START_TIMEOUT=${EJABBERD_START_TIMEOUT:-60}
check_number EJABBERD_HTTP_PORT "$HTTP_PORT"
check_number EJABBERD_DIST_PORT "$DIST_PORT"
check_number EJABBERD_BOSH_INACTIVITY "$INACTIVITY"
check_number EJABBERD_START_TIMEOUT "$START_TIMEOUT"
# ejabberdctl uses -sname when the name has no dot; inetrc maps localhost to 127.0.0.1.
[[ "$NODE" =~ ^[A-Za-z0-9_-]+@localhost$ ]] || die "EJABBERD_NODE must look like name@localhost, not '$NODE'"
DIR=$(abs_dir "${EJABBERD_DIR:-${TMPDIR:-/tmp}/bosh-prebind-ejabberd}")
BOSH_URL="http://127.0.0.1:${HTTP_PORT}/bosh"
CONFIG_FILES=(ejabberd.yml ejabberdctl.cfg inetrc)

# Generate the config as *.new files (compared with the running config by `start`).
write_config_new() {
	ensure_cookie "$DIR/cookie"
	write_ejabberd_yml "$DIR/ejabberd.yml.new" "$HTTP_PORT" 0
	write_inetrc "$DIR/inetrc.new"
	write_ctl_cfg "$DIR/ejabberdctl.cfg.new" "$NODE" "$DIR" "$(cat "$DIR/cookie")" \
		"# ERL_DIST_PORT mode: listen on this port, no epmd (-erl_epmd_port, -start_epmd false)
ERL_DIST_PORT=$DIST_PORT
ERL_EPMD_ADDRESS=127.0.0.1"
}

config_unchanged() {
	local f
	for f in "${CONFIG_FILES[@]}"; do cmp -s "$DIR/$f.new" "$DIR/$f" || return 1; done
}

install_config() {
	local f
	for f in "${CONFIG_FILES[@]}"; do mv -f "$DIR/$f.new" "$DIR/$f"; done
}

cmd_start() {
	local t0 pid
	t0=$(now_ms)
	mkdir -p "$DIR"
	# Serialise concurrent starts/stops on the same state dir.
	exec 9>"$DIR/lock"
	flock -w 180 9 || die "timed out waiting for the lock on $DIR"

	ensure_packages
	require_ctl_user
	write_config_new
	if pid=$(node_pid "$DIR"); then
		if config_unchanged && bosh_answers "$BOSH_URL"; then
			log "already running (pid $pid), BOSH at $BOSH_URL"
			return 0
		fi
		log "pid $pid is running with another config or BOSH does not answer; restarting it"
		stop_node "$DIR" >/dev/null
	fi

	port_in_use "$HTTP_PORT" && die "port 127.0.0.1:$HTTP_PORT is already in use by another process (set EJABBERD_HTTP_PORT)"
	port_in_use "$DIST_PORT" && die "port 127.0.0.1:$DIST_PORT is already in use by another process (set EJABBERD_DIST_PORT)"

	install_config
	# A fresh Mnesia spool at every start: a clean server, and no schema bound to an old
	# node name.  Fresh logs too, so a failure's log tail is about this start.
	rm -rf "$DIR/spool" "$DIR/log"
	mkdir -p "$DIR/spool" "$DIR/log" "$DIR/ext" "$DIR/modules.d"
	own_dir "$DIR"

	start_node "$DIR" "$NODE"
	if ! wait_node "$DIR" "$BOSH_URL" "$START_TIMEOUT"; then
		stop_node "$DIR" >/dev/null || true
		exit 1
	fi
	pid=$(node_pid "$DIR") || die "ejabberd exited right after start-up"
	log "BOSH answers after $(($(now_ms) - t0)) ms"
	if ! ensure_accounts "$DIR" "$NODE"; then
		print_node_logs "$DIR" 40
		stop_node "$DIR" >/dev/null || true
		die "could not set up the accounts"
	fi
	log "started ejabberd (pid $pid, node $NODE) in $(($(now_ms) - t0)) ms, BOSH at $BOSH_URL, state in $DIR"
}

cmd_stop() {
	local pid
	[ -d "$DIR" ] || return 0
	exec 9>"$DIR/lock"
	flock -w 180 9 || die "timed out waiting for the lock on $DIR"
	pid=$(stop_node "$DIR")
	[ -z "$pid" ] || log "stopped ejabberd (pid $pid)"
}

cmd_status() {
	local pid
	if pid=$(node_pid "$DIR") && bosh_answers "$BOSH_URL"; then
		echo "running (pid $pid, node $NODE), BOSH at $BOSH_URL"
		return 0
	fi
	echo "not running"
	return 1
}

cmd_env() {
	echo "export BOSH_PREBIND_TEST_EJABBERD_URL=$BOSH_URL"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) cmd_env ;;
install) ensure_packages ;;
logs) print_node_logs "$DIR" "${2:-50}" ;;
*)
	echo "usage: $0 {start|stop|status|env|install|logs [N]}" >&2
	exit 2
	;;
esac
