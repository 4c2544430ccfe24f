#!/usr/bin/env bash
# Throw-away TWO-NODE ejabberd (Debian 12's 23.01) cluster on loopback, each node with its
# own BOSH endpoint, for tests of "session created through node A, used through node B" and
# of a node failing mid-test.  Single node: scripts/ejabberd.sh.
#
#   scripts/ejabberd-cluster.sh up            install (if needed), start A and B on fresh
#                                             spools, B joins A, set up the accounts (already
#                                             up and clustered with the same config: nothing
#                                             to do; any other state: rebuilt from scratch)
#   scripts/ejabberd-cluster.sh down          stop both nodes and the private epmd
#   scripts/ejabberd-cluster.sh status        exit 0 if both nodes answer BOSH and are clustered
#   scripts/ejabberd-cluster.sh env           print the BOSH_PREBIND_TEST_CLUSTER_{A,B}_URL exports
#   scripts/ejabberd-cluster.sh stop-node a|b [--kill]
#                                             stop one node (SIGTERM: clean shutdown; --kill:
#                                             SIGKILL, a crash); the other keeps serving
#   scripts/ejabberd-cluster.sh start-node a|b
#                                             restart a stopped node on its old spool; it
#                                             rejoins the cluster by itself (waits for that)
#   scripts/ejabberd-cluster.sh install       only install ejabberd/curl if missing
#   scripts/ejabberd-cluster.sh logs [N]      the last N (default 50) lines of both nodes' logs
#
# Settings (environment):
#   EJABBERD_CLUSTER_DIR         state dir   (default ${TMPDIR:-/tmp}/bosh-prebind-ejabberd-cluster)
#   EJABBERD_CLUSTER_PORT_A / _B BOSH over plain HTTP on 127.0.0.1, path /bosh (5381 / 5382)
#   EJABBERD_CLUSTER_EPMD_PORT   the private epmd, 127.0.0.1                        (5369)
#   EJABBERD_CLUSTER_DIST_PORTS  MIN-MAX window for the Erlang distribution listeners on
#                                127.0.0.1: both nodes AND every short-lived ejabberdctl VM
#                                (they listen too in epmd mode)                 (5370-5379)
#   EJABBERD_CLUSTER_NODE_A / _B node names (bosh-prebind-a@localhost / bosh-prebind-b@localhost)
#   EJABBERD_BOSH_INACTIVITY     mod_bosh max_inactivity, seconds                   (60)
#   EJABBERD_LOG_LEVEL           ejabberd log level                                 (info)
#   EJABBERD_ERL_FLAGS           extra emulator flags, e.g. '+sbwt none' (none; a change
#                                rebuilds the cluster at the next `up`)
#   EJABBERD_START_TIMEOUT       seconds to wait for each node / the join           (60)
# Ports are below Linux's ephemeral range (32768-60999) and clear of Prosody
# (5222/5269/5280/5281) and of scripts/ejabberd.sh (5380, 5389).
#
# Layout: DIR/cookie (shared Erlang cookie), DIR/epmd.pid + DIR/epmd.log (our epmd), and per
# node DIR/a/, DIR/b/: ejabberd.yml, ejabberdctl.cfg, inetrc, spool/ (Mnesia), log/,
# ejabberd.pid.  /etc/ejabberd, /var/lib/ejabberd, the system service and the system epmd
# (4369) are never used.  Must run as root (the VMs run as the `ejabberd` user) or as it.
#
# How it works:
#  * A cluster needs node name -> port resolution, i.e. an epmd (ejabberdctl's ERL_DIST_PORT
#    mode, used by scripts/ejabberd.sh, makes every node dial its own port).  This script
#    runs its own epmd on 127.0.0.1:EJABBERD_CLUSTER_EPMD_PORT as the ejabberd user; every VM
#    finds it through `export ERL_EPMD_PORT=...` in the generated ejabberdctl.cfg.  `down`
#    stops exactly that epmd (pid file), and only once no node is registered on it.
#  * Both nodes boot in parallel on fresh spools; then, ON NODE B, `ejabberdctl join_cluster
#    A`: B drops its own Mnesia data, copies every table from A and restarts its ejabberd
#    application (its BOSH listener is gone for ~0.5 s).  list_cluster on both nodes must
#    then show both.  Never run join_cluster twice: it restarts B's ejabberd again.
#  * Accounts are registered once, through A (Mnesia replicates them: checked on B).
#  * BOSH sessions (mod_bosh, ram_db_type mnesia) belong to the node that created them; the
#    other node finds the sid in its copy of the `bosh` table and forwards each request over
#    Erlang distribution, so a session created through A can be used through B's URL.  When
#    the owner stops, its sessions die: the other node then answers HTTP 200
#    <body type='terminate' condition='item-not-found'/> (or, while the owner is shutting
#    down / right after a crash, condition='remote-stream-error' with <reset/>, or
#    'internal-server-error').  The stopped node's URL refuses connections.
#  * After `start-node X`, X does not learn the sids of the sessions the other node created
#    before X came back (measured, 23.01): through X's URL those get
#    <body type='terminate' condition='item-not-found'/> (the owner does not see that RID),
#    through the owner's URL they keep working.  Sessions created afterwards work through both.
#  * Mnesia restart order: a node restarted on its spool waits (forever) for the node that
#    went down last.  So `start-node X` requires the other node to be running, and `up`
#    always rebuilds from fresh spools.
#
# Hosts and accounts (as scripts/ejabberd.sh):
#   localhost       alice / secret-alice, bob / secret-bob; SASL: PLAIN, SCRAM-SHA-1
#   anon.localhost  SASL ANONYMOUS only
# Takes 4-6 s for `up` once installed (2 vCPU): both nodes answer after ~2 s, the join and
# the checks take ~2 s more, accounts ~1 s.
set -euo pipefail

EJB_NAME=ejabberd-cluster.sh
# shellcheck source=scripts/lib/ejabberd-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/ejabberd-common.sh"

PORT_A=${EJABBERD_CLUSTER_PORT_A:-5381}
PORT_B=${EJABBERD_CLUSTER_PORT_B:-5382}
EPMD_PORT=${EJABBERD_CLUSTER_EPMD_PORT:-5369}
DIST_PORTS=${EJABBERD_CLUSTER_DIST_PORTS:-5370-5379}
NODE_A=${EJABBERD_CLUSTER_NODE_A:-bosh-prebind-a@localhost}
NODE_B=${EJABBERD_CLUSTER_NODE_B:-bosh-prebind-b@localhost}
INACTIVITY=${EJABBERD_BOSH_INACTIVITY:-60}
LOG_LEVEL=${EJABBERD_LOG_LEVEL:-info}
START_TIMEOUT=${EJABBERD_START_TIMEOUT:-60}
check_number EJABBERD_CLUSTER_PORT_A "$PORT_A"
check_number EJABBERD_CLUSTER_PORT_B "$PORT_B"
check_number EJABBERD_CLUSTER_EPMD_PORT "$EPMD_PORT"
check_number EJABBERD_BOSH_INACTIVITY "$INACTIVITY"
check_number EJABBERD_START_TIMEOUT "$START_TIMEOUT"
[[ "$DIST_PORTS" =~ ^[0-9]+-[0-9]+$ ]] || die "EJABBERD_CLUSTER_DIST_PORTS must look like MIN-MAX, not '$DIST_PORTS'"
[ "$PORT_A" != "$PORT_B" ] || die "the two BOSH ports must differ"
[ "$NODE_A" != "$NODE_B" ] || die "the two node names must differ"
for n in "$NODE_A" "$NODE_B"; do
	# Both nodes must use the same kind of name: short (-sname), host localhost (inetrc).
	[[ "$n" =~ ^[A-Za-z0-9_-]+@localhost$ ]] || die "node names must look like name@localhost, not '$n'"
done
DIR=$(abs_dir "${EJABBERD_CLUSTER_DIR:-${TMPDIR:-/tmp}/bosh-prebind-ejabberd-cluster}")
CONFIG_FILES=(ejabberd.yml ejabberdctl.cfg inetrc)

node_name() { if [ "$1" = a ]; then echo "$NODE_A"; else echo "$NODE_B"; fi; }
node_port() { if [ "$1" = a ]; then echo "$PORT_A"; else echo "$PORT_B"; fi; }
url_of() { echo "http://127.0.0.1:$(node_port "$1")/bosh"; }
other() { if [ "$1" = a ]; then echo b; else echo a; fi; }
X() { echo "$1" | tr ab AB; } # node letter for messages
# ctl_x a|b ARGS...: ejabberdctl against node A or B.
ctl_x() {
	local x=$1
	shift
	ctl "$DIR/$x" "$(node_name "$x")" "$@"
}

# ---------------------------------------------------------------------------- config

write_config_new() {
	local x nd
	ensure_cookie "$DIR/cookie"
	for x in a b; do
		nd="$DIR/$x"
		mkdir -p "$nd"
		# ejabberd.yml is read per node (not shared through the cluster): both files
		# are identical except for the BOSH port.
		write_ejabberd_yml "$nd/ejabberd.yml.new" "$(node_port "$x")" 1
		write_inetrc "$nd/inetrc.new"
		write_ctl_cfg "$nd/ejabberdctl.cfg.new" "$(node_name "$x")" "$nd" "$(cat "$DIR/cookie")" \
			"# Our private epmd (export: ejabberdctl does not export it itself), and the
# port window for the distribution listeners of the node and of each ctl VM.
export ERL_EPMD_PORT=$EPMD_PORT
ERL_EPMD_ADDRESS=127.0.0.1
FIREWALL_WINDOW=$DIST_PORTS"
	done
}

config_unchanged() { # a|b
	local f
	for f in "${CONFIG_FILES[@]}"; do cmp -s "$DIR/$1/$f.new" "$DIR/$1/$f" || return 1; done
}

install_config() {
	local x f
	for x in a b; do
		for f in "${CONFIG_FILES[@]}"; do mv -f "$DIR/$x/$f.new" "$DIR/$x/$f"; done
	done
}

# ---------------------------------------------------------------------------- epmd

epmd_up() { epmd -port "$EPMD_PORT" -names >/dev/null 2>&1; }
epmd_names() { epmd -port "$EPMD_PORT" -names 2>/dev/null | sed -n 's/^name \([^ ]*\) at.*/\1/p'; }

# Our epmd's pid, if the pid file names a live epmd on our port.
our_epmd_pid() {
	local pid
	[ -s "$DIR/epmd.pid" ] || return 1
	pid=$(cat "$DIR/epmd.pid")
	[[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "^epmd .*-port $EPMD_PORT " || return 1
	echo "$pid"
}

ensure_epmd() {
	local pid
	if epmd_up; then
		if pid=$(our_epmd_pid); then return 0; fi
		rm -f "$DIR/epmd.pid" # someone else's: reuse it, never stop it
		log "reusing the epmd already listening on 127.0.0.1:$EPMD_PORT (not ours: it will not be stopped)"
		return 0
	fi
	port_in_use "$EPMD_PORT" && die "port 127.0.0.1:$EPMD_PORT is in use but is not an epmd (set EJABBERD_CLUSTER_EPMD_PORT)"
	# Foreground epmd in its own session; setpriv execs without forking, so $! is epmd.
	# epmd adds ::1 to -address by itself.  9>&-: the lock fd must not leak into it.
	if [ "$(id -u)" -eq 0 ]; then
		setsid setpriv --reuid="$EJB_USER" --regid="$EJB_USER" --init-groups \
			epmd -address 127.0.0.1 -port "$EPMD_PORT" </dev/null >"$DIR/epmd.log" 2>&1 9>&- &
	else
		setsid epmd -address 127.0.0.1 -port "$EPMD_PORT" </dev/null >"$DIR/epmd.log" 2>&1 9>&- &
	fi
	echo $! >"$DIR/epmd.pid"
	for _ in $(seq 1 50); do
		epmd_up && return 0
		sleep 0.1
	done
	die "epmd did not come up on 127.0.0.1:$EPMD_PORT (see $DIR/epmd.log)"
}

stop_epmd() {
	local pid names=""
	pid=$(our_epmd_pid) || {
		rm -f "$DIR/epmd.pid"
		return 0
	}
	# Short-lived ctl VMs unregister when they exit; give them a moment.
	for _ in $(seq 1 30); do
		names=$(epmd_names | tr '\n' ' ')
		[ -z "$names" ] && break
		sleep 0.2
	done
	if [ -n "$names" ]; then
		log "epmd (pid $pid, port $EPMD_PORT) still has registered nodes ($names): left running"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 20); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	rm -f "$DIR/epmd.pid"
	log "stopped epmd (pid $pid, port $EPMD_PORT)"
}

# Wait until NODE's name is gone from our epmd (a VM unregisters when it exits; ejabberdctl
# refuses to start a node whose name is still registered).
wait_unregistered() { # a|b
	local short
	short=$(node_name "$1")
	short=${short%@*}
	for _ in $(seq 1 50); do
		epmd_names | grep -qx "$short" || return 0
		sleep 0.1
	done
	die "node name $short stays registered on epmd port $EPMD_PORT (another cluster with the same names? set EJABBERD_CLUSTER_NODE_A/_B)"
}

# ---------------------------------------------------------------------------- cluster

# list_cluster on node X shows both nodes (atoms with '-' come out quoted).
clustered() { # a|b
	local out
	out=$(CTL_TIMEOUT=20 ctl_x "$1" list_cluster 2>/dev/null | tr -d "'") || return 1
	grep -qx "$NODE_A" <<<"$out" && grep -qx "$NODE_B" <<<"$out"
}

wait_clustered() {
	local deadline=$((SECONDS + START_TIMEOUT))
	until clustered a && clustered b; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			log "error: list_cluster does not show both nodes within ${START_TIMEOUT}s:" \
				"A: $(ctl_x a list_cluster 2>&1 | tr '\n' ' ') B: $(ctl_x b list_cluster 2>&1 | tr '\n' ' ')"
			return 1
		fi
		sleep 0.5
	done
}

lock() {
	mkdir -p "$DIR"
	exec 9>"$DIR/lock"
	flock -w 300 9 || die "timed out waiting for the lock on $DIR"
}

stop_both() {
	local x pid
	for x in b a; do
		pid=$(stop_node "$DIR/$x")
		[ -z "$pid" ] || log "stopped node $(X "$x") (pid $pid)"
	done
}

# Something failed after `up` started nodes: stop them again, then fail.
up_failed() {
	log "error: $*; stopping what this run started"
	stop_both || true
	stop_epmd || true
	exit 1
}

cmd_up() {
	local t0 x out
	t0=$(now_ms)
	lock
	ensure_packages
	require_ctl_user
	write_config_new
	if node_pid "$DIR/a" >/dev/null && node_pid "$DIR/b" >/dev/null &&
		config_unchanged a && config_unchanged b &&
		bosh_answers "$(url_of a)" && bosh_answers "$(url_of b)" && clustered a && clustered b; then
		ensure_accounts "$DIR/a" "$NODE_A" || die "could not set up the accounts"
		log "already up: A $(url_of a), B $(url_of b)"
		return 0
	fi
	if node_pid "$DIR/a" >/dev/null || node_pid "$DIR/b" >/dev/null; then
		log "not a healthy cluster with this config: stopping both nodes, rebuilding from scratch"
		stop_both
	fi

	install_config
	for x in a b; do
		port_in_use "$(node_port "$x")" &&
			die "port 127.0.0.1:$(node_port "$x") is already in use by another process (set EJABBERD_CLUSTER_PORT_$(X "$x"))"
		# Fresh Mnesia for both: B's is dropped by join_cluster anyway, and A must not
		# carry an old two-node schema (it would wait for the old B at start-up).
		rm -rf "$DIR/$x/spool" "$DIR/$x/log"
		mkdir -p "$DIR/$x/spool" "$DIR/$x/log" "$DIR/$x/ext" "$DIR/$x/modules.d"
	done
	own_dir "$DIR"
	ensure_epmd
	wait_unregistered a
	wait_unregistered b

	# Both boot in parallel (~1.5-2 s each); B is a stand-alone node until it joins.
	start_node "$DIR/a" "$NODE_A"
	start_node "$DIR/b" "$NODE_B"
	wait_node "$DIR/a" "$(url_of a)" "$START_TIMEOUT" || up_failed "node A did not start"
	wait_node "$DIR/b" "$(url_of b)" "$START_TIMEOUT" || up_failed "node B did not start"
	log "both nodes answer BOSH after $(($(now_ms) - t0)) ms"

	# Runs on the joining node (B), names the node to join (A); prints nothing on success.
	out=$(CTL_TIMEOUT=$START_TIMEOUT ctl_x b join_cluster "$NODE_A" 2>&1) || up_failed "join_cluster failed: $out"
	[ -z "$out" ] || log "join_cluster: $out"
	wait_node "$DIR/b" "$(url_of b)" "$START_TIMEOUT" || up_failed "node B did not come back after join_cluster"
	wait_clustered || up_failed "the nodes did not form a cluster"
	log "cluster formed after $(($(now_ms) - t0)) ms"

	# Once, through A: Mnesia replicates the passwd table to B.  Checked on B.
	ensure_accounts "$DIR/a" "$NODE_A" || up_failed "could not set up the accounts"
	if ! ctl_x b check_password alice localhost secret-alice >/dev/null 2>&1 ||
		! ctl_x b check_password bob localhost secret-bob >/dev/null 2>&1; then
		up_failed "the accounts registered through A are not visible on B"
	fi

	log "up in $(($(now_ms) - t0)) ms: A (pid $(node_pid "$DIR/a")) $(url_of a), B (pid $(node_pid "$DIR/b")) $(url_of b), state in $DIR"
}

cmd_down() {
	[ -d "$DIR" ] || return 0
	lock
	stop_both
	stop_epmd
}

cmd_stop_node() { # a|b [--kill]
	local x=$1 kill=0 pid
	[ "${2:-}" = --kill ] && kill=1
	lock
	pid=$(stop_node "$DIR/$x" "$kill")
	if [ -n "$pid" ]; then
		log "stopped node $(X "$x") (pid $pid$([ "$kill" -eq 1 ] && echo ", SIGKILL"))"
	else
		log "node $(X "$x") was not running"
	fi
}

cmd_start_node() { # a|b
	local x=$1 y t0 pid
	y=$(other "$x")
	t0=$(now_ms)
	lock
	if [ ! -s "$DIR/$x/ejabberd.yml" ] || [ ! -d "$DIR/$x/spool" ]; then
		die "no node $(X "$x") in $DIR: run \`$0 up\` first"
	fi
	if pid=$(node_pid "$DIR/$x") && bosh_answers "$(url_of "$x")"; then
		log "node $(X "$x") is already running (pid $pid)"
		return 0
	fi
	# Mnesia: a node restarted on its spool waits for the node that went down last.
	node_pid "$DIR/$y" >/dev/null ||
		die "node $(X "$y") is not running either: use \`$0 up\` (rebuilds the cluster)"
	require_ctl_user
	ensure_epmd
	wait_unregistered "$x"
	port_in_use "$(node_port "$x")" &&
		die "port 127.0.0.1:$(node_port "$x") is already in use by another process"
	start_node "$DIR/$x" "$(node_name "$x")"
	wait_node "$DIR/$x" "$(url_of "$x")" "$START_TIMEOUT" || die "node $(X "$x") did not start"
	wait_clustered || die "node $(X "$x") did not rejoin the cluster"
	log "node $(X "$x") (pid $(node_pid "$DIR/$x")) is back and clustered after $(($(now_ms) - t0)) ms"
}

cmd_status() {
	local x pid rc=0
	for x in a b; do
		if pid=$(node_pid "$DIR/$x") && bosh_answers "$(url_of "$x")"; then
			echo "node $(X "$x"): running (pid $pid, $(node_name "$x")), BOSH at $(url_of "$x")"
		else
			echo "node $(X "$x"): not running"
			rc=1
		fi
	done
	if [ "$rc" -eq 0 ]; then
		if clustered a && clustered b; then
			echo "cluster: both nodes joined"
		else
			echo "cluster: NOT joined"
			rc=1
		fi
	fi
	return "$rc"
}

cmd_env() {
	echo "export BOSH_PREBIND_TEST_CLUSTER_A_URL=$(url_of a)"
	echo "export BOSH_PREBIND_TEST_CLUSTER_B_URL=$(url_of b)"
}

cmd_logs() {
	local x
	for x in a b; do
		log "==== node $(X "$x") ($(node_name "$x")) ===="
		print_node_logs "$DIR/$x" "${1:-50}"
	done
	if [ -s "$DIR/epmd.log" ]; then
		log "---- $DIR/epmd.log ----"
		tail -n "${1:-50}" "$DIR/epmd.log" >&2
	fi
}

node_arg() {
	case "${1:-}" in
	a | b) ;;
	*)
		echo "usage: $0 ${2} a|b" >&2
		exit 2
		;;
	esac
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
env) cmd_env ;;
stop-node)
	node_arg "${2:-}" "stop-node"
	cmd_stop_node "$2" "${3:-}"
	;;
start-node)
	node_arg "${2:-}" "start-node"
	cmd_start_node "$2"
	;;
install) ensure_packages ;;
logs) cmd_logs "${2:-50}" ;;
*)
	echo "usage: $0 {up|down|status|env|stop-node a|b [--kill]|start-node a|b|install|logs [N]}" >&2
	exit 2
	;;
esac
