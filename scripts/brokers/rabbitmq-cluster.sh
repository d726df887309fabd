#!/usr/bin/env bash
# A 3-node RabbitMQ cluster of real processes on this machine
# (omnibus-c1..c3@localhost, AMQP 127.0.0.1:5681-5683, Erlang distribution
# on 25681-25683) for tests that need replicated quorum queues and a node
# that really dies. Uses the Debian rabbitmq-server package, like
# rabbitmq-private.sh; never touches the shared node or the private one.
# Usage: rabbitmq-cluster.sh up|down|status|restart
#        rabbitmq-cluster.sh kill-node N|start-node N|stop-node N|pid N   (N = 1, 2 or 3)
#        rabbitmq-cluster.sh freeze-node N|thaw-node N   (SIGSTOP / SIGCONT)
set -euo pipefail

# shellcheck disable=SC2034 # read by lib.sh
BROKER_NAME=rabbitmq-cluster
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

NODES=(1 2 3)
HOST=127.0.0.1
BASE_PORT=5680
BASE_DIST_PORT=25680
# The Debian wrappers (lib.sh) run every node and rabbitmqctl as user
# rabbitmq, so all share one cookie: one for the whole cluster without
# writing one.
ROOT="$OMNIBUS_BROKER_DATA/rabbitmq-cluster"

node_name() { printf 'omnibus-c%s@localhost' "$1"; }
node_port() { printf '%s' $((BASE_PORT + $1)); }
node_dir() { printf '%s/c%s' "$ROOT" "$1"; }

# Make node N the current node of lib.sh's RabbitMQ helpers (its paths and
# the exported environment that keeps it apart from every other node).
# Call it in a subshell when another node follows.
use_node() {
  local n=$1
  NODE="$(node_name "$n")"
  PORT="$(node_port "$n")"
  DIST_PORT=$((BASE_DIST_PORT + n))
  DIR="$(node_dir "$n")"
  rabbit_node_env
}

write_config() {
  # The node (user rabbitmq) must be able to enter the cluster's folder.
  mkdir -p "$ROOT"
  if [[ $(id -u) == 0 ]]; then chown rabbitmq:rabbitmq "$ROOT"; fi
  # A killed peer is noticed within seconds (default 60 s), so quorum queues
  # elect a new leader quickly; pause_minority keeps a cut-off node quiet.
  rabbit_write_config <<CONF
net_ticktime = 10
cluster_partition_handling = pause_minority
CONF
}

# The nodes the current node counts as cluster members (running or not).
members() {
  rabbit_ctl cluster_status --formatter json 2>/dev/null |
    tr ',[]{}' '\n\n\n\n\n' | grep -o '"omnibus-c[0-9]@localhost"' | tr -d '"' | sort -u || true
}
running_members() {
  rabbit_ctl eval 'io:format("~p~n", [rabbit_nodes:all_running()]).' 2>/dev/null |
    grep -o 'omnibus-c[0-9]@localhost' | sort -u || true
}

# Node N (not 1) joins node 1's cluster unless it is a member already.
join_first() {
  local first
  first="$(node_name 1)"
  if members | grep -qx "$first"; then return 0; fi
  rabbit_ctl stop_app >>"$STARTUP_OUT" 2>&1 || rabbit_fail_start "rabbitmqctl stop_app failed on $NODE"
  # A node that has been in another cluster must forget it before joining.
  rabbit_ctl reset >>"$STARTUP_OUT" 2>&1 || rabbit_fail_start "rabbitmqctl reset failed on $NODE"
  rabbit_ctl join_cluster "$first" >>"$STARTUP_OUT" 2>&1 || rabbit_fail_start "$NODE could not join $first"
  rabbit_ctl start_app >>"$STARTUP_OUT" 2>&1 || rabbit_fail_start "rabbitmqctl start_app failed on $NODE after joining"
}

# Start node N and wait for it; with join=1, make it join node 1 first.
start_node() {
  local n=$1 join=${2:-0} started pid
  started="$(now_ms)"
  use_node "$n"
  thaw_current
  rabbit_launch
  rabbit_await
  if ((join)) && ((n != 1)); then join_first; fi
  pid="$(rabbit_running_pid)"
  [[ -n $pid ]] || rabbit_fail_start "node $NODE started but no live process was found"
  say "$NODE up (pid $pid, amqp://$HOST:$PORT, ready in $(elapsed_since "$started"))"
}

stop_node() {
  use_node "$1"
  rabbit_stop >/dev/null
}

# SIGKILL node N: no goodbye to its peers, as in a crash or a lost machine.
kill_node() {
  local n=$1 pid deadline
  use_node "$n"
  pid="$(rabbit_running_pid)"
  [[ -n $pid ]] || die "$NODE is not running"
  kill -KILL "$pid"
  deadline=$((SECONDS + 15))
  while pid_alive_with "$pid" beam.smp && ((SECONDS < deadline)); do sleep 0.1; done
  pid_alive_with "$pid" beam.smp && die "pid $pid survived SIGKILL"
  say "$NODE killed (SIGKILL, pid $pid)"
}

# SIGSTOP node N: alive for its peers (its sockets stay open) but silent,
# as a node stalled by its machine. Its peers declare it down only after
# net_ticktime (10 s): thaw it before that to hold back an election.
freeze_node() {
  local n=$1 pid
  use_node "$n"
  pid="$(rabbit_running_pid)"
  [[ -n $pid ]] || die "$NODE is not running"
  kill -STOP "$pid"
  say "$NODE frozen (SIGSTOP, pid $pid)"
}

# SIGCONT the current node, if it runs (a node never frozen takes no harm).
thaw_current() {
  local pid
  pid="$(rabbit_running_pid)"
  [[ -z $pid ]] || kill -CONT "$pid"
}

start() {
  local started n pids=() rc=0
  started="$(now_ms)"
  rabbit_check_user
  mkdir -p "$ROOT"
  # All nodes boot at once: after a full stop each waits for its peers'
  # tables, so starting them one by one could wait on a node not yet started.
  for n in "${NODES[@]}"; do
    (start_node "$n" 0 >/dev/null) &
    pids+=("$!")
  done
  for n in "${!pids[@]}"; do wait "${pids[$n]}" || rc=1; done
  ((rc == 0)) || die "a node failed to start (see above)"
  # Form the cluster the first time (no-op when the nodes are members already).
  for n in 2 3; do (
    use_node "$n"
    join_first
  ); done
  (
    use_node 1
    local got
    got="$(running_members | tr '\n' ' ')"
    [[ $got == "omnibus-c1@localhost omnibus-c2@localhost omnibus-c3@localhost " ]] ||
      die "cluster not formed: running members are [$got]"
  )
  say "up (3 nodes: amqp://$HOST:5681,$HOST:5682,$HOST:5683, ready in $(elapsed_since "$started"))"
}

stop() {
  local started n pids=()
  started="$(now_ms)"
  rabbit_check_user
  # In parallel: a node stopped alone would wait for the others to sync.
  for n in "${NODES[@]}"; do
    (stop_node "$n") &
    pids+=("$!")
  done
  for n in "${!pids[@]}"; do wait "${pids[$n]}" || true; done
  say "stopped (in $(elapsed_since "$started"))"
}

status() {
  local n down=0 bad=0 line=()
  rabbit_check_user
  for n in "${NODES[@]}"; do
    use_node "$n"
    local pid
    pid="$(rabbit_running_pid)"
    if [[ -z $pid ]]; then
      down=$((down + 1))
      line+=("c$n stopped")
    elif amqp_answers "$HOST" "$PORT"; then
      line+=("c$n pid $pid :$PORT")
    else
      bad=$((bad + 1))
      line+=("c$n pid $pid not answering")
    fi
  done
  if ((down == ${#NODES[@]})); then
    say "stopped"
    return 3
  fi
  if ((down + bad > 0)); then
    warn "degraded: ${line[*]}"
    return 1
  fi
  say "running (${line[*]})"
}

main() {
  case "${1:-}" in
    up | start)
      take_lock rabbitmq-cluster
      start
      ;;
    down | stop)
      take_lock rabbitmq-cluster
      stop
      ;;
    restart)
      take_lock rabbitmq-cluster
      stop >/dev/null
      start
      ;;
    status) status ;;
    kill-node)
      node_arg "${2:-}" kill-node
      rabbit_check_user
      kill_node "$2"
      ;;
    start-node)
      node_arg "${2:-}" start-node
      rabbit_check_user
      take_lock rabbitmq-cluster
      start_node "$2" 1
      ;;
    stop-node)
      node_arg "${2:-}" stop-node
      rabbit_check_user
      take_lock rabbitmq-cluster
      stop_node "$2"
      say "$(node_name "$2") stopped"
      ;;
    freeze-node)
      node_arg "${2:-}" freeze-node
      rabbit_check_user
      freeze_node "$2"
      ;;
    thaw-node)
      node_arg "${2:-}" thaw-node
      rabbit_check_user
      use_node "$2"
      thaw_current
      say "$(node_name "$2") thawed"
      ;;
    pid)
      node_arg "${2:-}" pid
      use_node "$2"
      rabbit_running_pid
      ;;
    *)
      echo "usage: $0 up|down|status|restart|kill-node N|start-node N|stop-node N|freeze-node N|thaw-node N|pid N" >&2
      exit 2
      ;;
  esac
}

main "$@"
