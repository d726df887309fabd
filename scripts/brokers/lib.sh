#!/usr/bin/env bash
# shellcheck shell=bash
# Helpers shared by the broker scripts in this folder. Sourced, never run.
# The caller sets BROKER_NAME before sourcing.

OMNIBUS_BROKER_CACHE="${OMNIBUS_BROKER_CACHE:-$HOME/.cache/omnibus-brokers}"
OMNIBUS_BROKER_DATA="${OMNIBUS_BROKER_DATA:-/tmp/omnibus-brokers}"
# Pinned so resolution is reproducible whatever the local repository holds.
MAVEN_DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

say() { printf '%s: %s\n' "${BROKER_NAME:-broker}" "$*"; }
warn() { printf '%s: %s\n' "${BROKER_NAME:-broker}" "$*" >&2; }
die() {
  warn "$*"
  exit 1
}

now_ms() { date +%s%3N; }
# Seconds since a now_ms timestamp, one decimal: "7.3s".
elapsed_since() {
  local ms=$(($(now_ms) - $1))
  printf '%d.%ds' $((ms / 1000)) $(((ms % 1000) / 100))
}

# Serialise up/down/restart of one broker (parallel callers, CI re-runs).
# The lock lives as long as this shell. A broker started while holding it
# must not inherit it (it would keep it for its whole life): start brokers
# through without_lock or spawn_detached.
BROKER_LOCK_FD=
take_lock() {
  local file="$OMNIBUS_BROKER_DATA/locks/$1.lock"
  mkdir -p "$(dirname "$file")"
  exec {BROKER_LOCK_FD}>"$file"
  flock -w 300 "$BROKER_LOCK_FD" || die "could not take lock $file within 300s"
}
without_lock() {
  if [[ -n $BROKER_LOCK_FD ]]; then
    "$@" {BROKER_LOCK_FD}>&-
  else
    "$@"
  fi
}

# The pid stored in a pid file, or nothing.
read_pid() {
  [[ -s $1 ]] || return 0
  tr -dc '0-9' <"$1"
}

# True when pid is a live process whose command line contains marker.
# A zombie has an empty command line, so it counts as dead.
pid_alive_with() {
  local pid=$1 marker=$2
  [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker"
}

# True when something accepts TCP connections on host:port.
port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

# Which process listens on a TCP port (for error messages).
port_owner() {
  ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(([^)]*))' | head -n 1 || true
}

# SIGTERM, wait up to $3 seconds, then SIGKILL and wait again.
stop_pid() {
  local pid=$1 marker=$2 grace=$3 deadline
  pid_alive_with "$pid" "$marker" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + grace))
  while pid_alive_with "$pid" "$marker" && ((SECONDS < deadline)); do sleep 0.2; done
  if pid_alive_with "$pid" "$marker"; then
    warn "pid $pid still alive after ${grace}s of SIGTERM: sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 15))
    while pid_alive_with "$pid" "$marker" && ((SECONDS < deadline)); do sleep 0.2; done
    pid_alive_with "$pid" "$marker" && die "pid $pid survived SIGKILL"
  fi
  return 0
}

# The stop command of a broker started from jars: SIGTERM the process `running_pid` (defined by the
# sourcing script) finds, SIGKILL after $2 seconds, and remove $PID_FILE either way.
stop_jar_broker() {
  local marker=$1 grace=$2 pid started
  started="$(now_ms)"
  pid="$(running_pid)"
  if [[ -z $pid ]]; then
    rm -f "$PID_FILE"
    say "not running"
    return 0
  fi
  stop_pid "$pid" "$marker" "$grace"
  rm -f "$PID_FILE"
  say "stopped (pid $pid, in $(elapsed_since "$started"))"
}

# Start a command detached from this shell (own session, stdin closed,
# output appended to a file); its pid (that of the exec'd command) goes
# to the pid file.
spawn_detached() {
  local pid_file=$1 out_file=$2
  shift 2
  rm -f "$pid_file"
  # The subshell drops the lock and execs: no process of this script may
  # outlive it holding the lock.
  # shellcheck disable=SC2016 # $$ and "$@" expand in the child shell
  (
    if [[ -n $BROKER_LOCK_FD ]]; then exec {BROKER_LOCK_FD}>&-; fi
    exec nohup setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pid_file" "$@" \
      </dev/null >>"$out_file" 2>&1
  ) &

  for _ in $(seq 1 50); do
    [[ -s $pid_file ]] && return 0
    sleep 0.1
  done
  die "process did not record its pid in $pid_file"
}

# Print the last lines of each given file that exists (loud failure).
dump_tail() {
  local lines=$1 f
  shift
  for f in "$@"; do
    [[ -s $f ]] || continue
    printf '%s: ---- last %d lines of %s ----\n' "${BROKER_NAME:-broker}" "$lines" "$f" >&2
    tail -n "$lines" "$f" >&2
  done
}

# Byte size of a file (0 if missing): an offset for dump_since.
file_size() { stat -c %s "$1" 2>/dev/null || echo 0; }

# Print the last lines written to a file after byte offset (loud failure).
dump_since() {
  local lines=$1 file=$2 offset=$3
  [[ -s $file ]] || return 0
  ((offset <= $(file_size "$file"))) || offset=0
  printf '%s: ---- last %d lines written to %s by this start ----\n' "${BROKER_NAME:-broker}" "$lines" "$file" >&2
  tail -c +"$((offset + 1))" "$file" | tail -n "$lines" >&2
}

# Resolve Maven artifacts (group:artifact:version ...) and their runtime
# dependencies into the folder lib_dir. Skipped when lib_dir is complete.
resolve_jars() {
  local lib_dir=$1 work coords g a v
  shift
  [[ -f $lib_dir/.resolved ]] && return 0
  command -v mvn >/dev/null || die "mvn not found (needed once to fetch jars into $lib_dir)"
  work="$(dirname "$lib_dir")/resolve"
  rm -rf "$work" "$lib_dir.partial"
  mkdir -p "$work"
  {
    printf '%s\n' '<project xmlns="http://maven.apache.org/POM/4.0.0">' \
      '  <modelVersion>4.0.0</modelVersion>' \
      '  <groupId>dev.omnibus.brokers</groupId>' \
      "  <artifactId>${BROKER_NAME:-broker}-runtime</artifactId>" \
      '  <version>0</version>' \
      '  <packaging>pom</packaging>' \
      '  <dependencies>'
    for coords in "$@"; do
      IFS=: read -r g a v <<<"$coords"
      printf '    <dependency><groupId>%s</groupId><artifactId>%s</artifactId><version>%s</version></dependency>\n' \
        "$g" "$a" "$v"
    done
    printf '%s\n' '  </dependencies>' '</project>'
  } >"$work/pom.xml"
  if ! mvn -B -ntp -f "$work/pom.xml" \
    "$MAVEN_DEPENDENCY_PLUGIN:copy-dependencies" \
    -DincludeScope=runtime -DoutputDirectory="$lib_dir.partial" \
    >"$work/mvn.log" 2>&1; then
    dump_tail 40 "$work/mvn.log"
    die "resolving $* failed (full log: $work/mvn.log)"
  fi
  touch "$lib_dir.partial/.resolved"
  rm -rf "$lib_dir"
  mv "$lib_dir.partial" "$lib_dir"
}

# --- start bookkeeping shared by the broker scripts ----------------------
# A script sets OUT_FILE, SERVER_LOG and MARKER, records the byte offsets of
# its logs when a start begins and the pid it spawned; a failed start then
# shows only what this start wrote and leaves no half-started server behind.
OUT_OFFSET=0
LOG_OFFSET=0
SPAWNED_PID=

# Lines this start wrote to the server log.
new_log() { tail -c +"$((LOG_OFFSET + 1))" "$SERVER_LOG" 2>/dev/null; }

# True when this start wrote a line containing $1 to the server log. grep
# reads to the end: `grep -q` would close the pipe at the first match, and
# with pipefail the SIGPIPE to tail (when much was logged after the match,
# as when Kafka loads many groups) would read as "not found".
new_log_has() { new_log | grep -F -- "$1" >/dev/null; }

# shellcheck disable=SC2153 # MARKER, OUT_FILE and SERVER_LOG are set by the sourcing script.
fail_start() {
  warn "$1"
  dump_since 20 "$OUT_FILE" "$OUT_OFFSET"
  dump_since 40 "$SERVER_LOG" "$LOG_OFFSET"
  if [[ -n $SPAWNED_PID ]]; then
    warn "stopping the process this start launched (pid $SPAWNED_PID)"
    stop_pid "$SPAWNED_PID" "$MARKER" 20 || true
  fi
  exit 1
}

# --- 3-node clusters --------------------------------------------------------
# Exit with a usage line unless $1 names a node of a 3-node cluster; $2 is
# the subcommand, for the message.
node_arg() {
  [[ ${1:-} =~ ^[123]$ ]] || {
    echo "usage: $0 $2 1|2|3" >&2
    exit 2
  }
}

# --- RabbitMQ nodes from the Debian rabbitmq-server package ---------------
# One implementation for every private node: rabbitmq-private.sh and
# rabbitmq-tls.sh (one node each, through rabbit_main) and
# rabbitmq-cluster.sh (three nodes, through rabbit_launch, rabbit_await and
# rabbit_stop). The /usr/sbin wrappers run the real scripts as user rabbitmq
# (via su when called by root), so every node and rabbitmqctl share
# /var/lib/rabbitmq/.erlang.cookie.
# Before calling these, the script sets NODE, HOST, PORT, DIST_PORT and DIR,
# calls rabbit_node_env, and defines write_config (usually a call of
# rabbit_write_config). It may define node_ready (an extra readiness check,
# e.g. a TLS listener), node_started (run after every successful start,
# under the lock) and node_url (what the report lines name).
RABBITMQ_SERVER=/usr/sbin/rabbitmq-server
RABBITMQCTL=/usr/sbin/rabbitmqctl

# The paths, deadlines and exported RABBITMQ_* variables of the current
# node. They keep it apart from every other node: the env file replaces
# /etc/rabbitmq/rabbitmq-env.conf (whose NODENAME is the shared node's), the
# config file /etc/rabbitmq/rabbitmq.conf (whose listener is 5672).
rabbit_node_env() {
  START_DEADLINE="${OMNIBUS_RABBITMQ_START_DEADLINE:-90}"
  STOP_GRACE=60
  PID_FILE="$DIR/$NODE.pid"
  LOG_DIR="$DIR/log"
  NODE_LOG="$LOG_DIR/$NODE.log"
  STARTUP_OUT="$DIR/startup.out"
  AWAIT_OUT="$DIR/await_startup.out"
  export RABBITMQ_CONF_ENV_FILE="$DIR/rabbitmq-env.conf"
  export RABBITMQ_CONFIG_FILE="$DIR/rabbitmq.conf"
  export RABBITMQ_ADVANCED_CONFIG_FILE="$DIR/advanced.config"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/enabled_plugins"
  export RABBITMQ_NODENAME="$NODE"
  export RABBITMQ_NODE_IP_ADDRESS="$HOST"
  export RABBITMQ_NODE_PORT="$PORT"
  export RABBITMQ_DIST_PORT="$DIST_PORT"
  export RABBITMQ_MNESIA_BASE="$DIR/mnesia"
  export RABBITMQ_LOG_BASE="$LOG_DIR"
  export RABBITMQ_PID_FILE="$PID_FILE"
}

rabbit_check_user() {
  [[ -x $RABBITMQ_SERVER && -x $RABBITMQCTL ]] || die "the rabbitmq-server package is not installed"
  local me
  me="$(id -un)"
  [[ $me == root || $me == rabbitmq ]] || die "run as root or rabbitmq (the Debian wrappers refuse other users)"
}

# rabbitmqctl against the current node, never waiting forever.
rabbit_ctl() { timeout 60 "$RABBITMQCTL" -q -n "$NODE" "$@"; }

# True when pid is a live beam.smp of the current node (its environment
# names this node and this data folder).
rabbit_is_our_node() {
  local pid=$1 env
  pid_alive_with "$pid" beam.smp || return 1
  env="$(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null)" || return 1
  grep -qx "RABBITMQ_NODENAME=$NODE" <<<"$env" &&
    grep -qx "RABBITMQ_MNESIA_BASE=$RABBITMQ_MNESIA_BASE" <<<"$env"
}

# The current node's OS pid when it is alive: from its pid file, or (while
# it boots, before it writes that file) from the process table.
rabbit_running_pid() {
  local pid
  pid="$(read_pid "$PID_FILE")"
  if [[ -n $pid ]] && rabbit_is_our_node "$pid"; then
    printf '%s\n' "$pid"
    return 0
  fi
  for pid in $(pgrep -x beam.smp || true); do
    if rabbit_is_our_node "$pid"; then
      printf '%s\n' "$pid"
      return 0
    fi
  done
  return 0
}

# An AMQP 0-9-1 protocol header sent to host $1, port $2 gets a
# Connection.Start method frame back.
amqp_answers() {
  local first
  first="$(timeout 5 bash -c "exec 3<>/dev/tcp/$1/$2 && printf 'AMQP\\x00\\x00\\x09\\x01' >&3 && head -c 1 <&3" 2>/dev/null |
    od -An -tx1 | tr -d ' ')" || return 1
  [[ $first == 01 ]]
}

# The same over TLS, verifying the server's certificate against CA file $3.
amqps_answers() {
  local first
  first="$(printf 'AMQP\x00\x00\x09\x01' |
    timeout 5 openssl s_client -quiet -connect "$1:$2" -CAfile "$3" -verify_return_error 2>/dev/null |
    head -c 1 | od -An -tx1 | tr -d ' ')" || true
  [[ $first == 01 ]]
}

# What the report lines name: the caller's node_url, or the AMQP listener.
rabbit_url() {
  if declare -F node_url >/dev/null; then node_url; else printf 'amqp://%s:%s' "$HOST" "$PORT"; fi
}

# Every check that says the current node serves clients (AMQP, plus the
# caller's node_ready).
rabbit_answers() {
  amqp_answers "$HOST" "$PORT" || return 1
  if declare -F node_ready >/dev/null; then node_ready; fi
}

# Write the current node's env, config and plugins files; the lines on
# stdin are added to the config. The node runs as rabbitmq and dies
# silently when it cannot write its folders: they are checked here.
rabbit_write_config() {
  local extra
  extra="$(cat)"
  mkdir -p "$DIR" "$RABBITMQ_MNESIA_BASE" "$LOG_DIR"
  cat >"$RABBITMQ_CONF_ENV_FILE" <<ENV
# Generated by scripts/brokers/$BROKER_NAME.sh
NODENAME=$NODE
NODE_IP_ADDRESS=$HOST
NODE_PORT=$PORT
DIST_PORT=$DIST_PORT
ERL_EPMD_ADDRESS=127.0.0.1
export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"
ENV
  cat >"$RABBITMQ_CONFIG_FILE" <<CONF
# Generated by scripts/brokers/$BROKER_NAME.sh
listeners.tcp.1 = $HOST:$PORT
# guest/guest may connect from loopback only (the default, stated here).
loopback_users.guest = true
log.console = false
log.file.level = info
$extra
CONF
  printf '[].\n' >"$RABBITMQ_ENABLED_PLUGINS_FILE"
  # (The pid file is written by the node into $DIR itself.)
  if [[ $(id -u) == 0 ]]; then
    chown -R rabbitmq:rabbitmq "$DIR"
    su rabbitmq -s /bin/sh -c "test -w '$DIR' && test -w '$RABBITMQ_MNESIA_BASE' && test -w '$LOG_DIR'" ||
      die "user rabbitmq cannot write $DIR (is a parent folder closed to it?)"
  fi
}

# A failed start of the current node: what this start wrote to its logs,
# and no half-started node left behind (the next start begins afresh).
RABBIT_LAUNCHED=0
rabbit_fail_start() {
  local pid
  warn "$1"
  dump_since 20 "$STARTUP_OUT" "$OUT_OFFSET"
  dump_tail 15 "$AWAIT_OUT"
  dump_since 30 "$NODE_LOG" "$LOG_OFFSET"
  pid="$(rabbit_running_pid)"
  if ((RABBIT_LAUNCHED)) && [[ -n $pid ]]; then
    warn "stopping the node this start launched (pid $pid)"
    stop_pid "$pid" beam.smp 20 || true
  fi
  exit 1
}

# Launch the current node unless it runs (returns at once).
rabbit_launch() {
  [[ -n $(rabbit_running_pid) ]] && return 0
  if port_open "$HOST" "$PORT" || port_open "$HOST" "$DIST_PORT"; then
    die "port $PORT or $DIST_PORT is taken by a process this script did not start: $(port_owner "$PORT")$(port_owner "$DIST_PORT")"
  fi
  write_config
  rm -f "$PID_FILE" "$AWAIT_OUT"
  OUT_OFFSET="$(file_size "$STARTUP_OUT")"
  LOG_OFFSET="$(file_size "$NODE_LOG")"
  printf '\n==== %s starting %s ====\n' "$(date -Is)" "$NODE" >>"$STARTUP_OUT"
  RABBIT_LAUNCHED=1
  without_lock "$RABBITMQ_SERVER" -detached >>"$STARTUP_OUT" 2>&1 ||
    rabbit_fail_start "rabbitmq-server -detached failed"
}

# Wait until the current node has booted and answers (rabbit_answers).
# await_startup fails at once while the node is not yet registered with
# epmd: retry it, and give up early if the process is gone.
rabbit_await() {
  local launched=$SECONDS deadline=$((SECONDS + START_DEADLINE))
  until timeout 60 "$RABBITMQCTL" -q -n "$NODE" await_startup --timeout "$((deadline - SECONDS))" \
    >"$AWAIT_OUT" 2>&1; do
    if [[ -z $(rabbit_running_pid) ]] && ((SECONDS > launched + 5)); then
      rabbit_fail_start "node $NODE: its process exited during startup"
    fi
    ((SECONDS + 1 < deadline)) || rabbit_fail_start "node $NODE did not start within ${START_DEADLINE}s"
    sleep 0.5
  done
  deadline=$((SECONDS + 10))
  until rabbit_answers; do
    ((SECONDS < deadline)) || rabbit_fail_start "node $NODE is up but $(rabbit_url) does not answer"
    sleep 0.25
  done
}

# Start the current node (or check the running one) and wait until it
# answers; then the caller's node_started.
rabbit_start() {
  local started pid was
  started="$(now_ms)"
  rabbit_check_user
  was="$(rabbit_running_pid)"
  rabbit_launch
  rabbit_await
  pid="$(rabbit_running_pid)"
  [[ -n $pid ]] || rabbit_fail_start "node $NODE started but its pid file $PID_FILE names no live process"
  if declare -F node_started >/dev/null; then node_started; fi
  if [[ -n $was ]]; then
    say "already running ($NODE, pid $pid, $(rabbit_url))"
  else
    say "up ($NODE, pid $pid, $(rabbit_url), ready in $(elapsed_since "$started"))"
  fi
}

# Stop the current node and make sure its process is gone.
rabbit_stop() {
  local pid started
  started="$(now_ms)"
  rabbit_check_user
  pid="$(rabbit_running_pid)"
  if [[ -z $pid ]]; then
    say "not running"
    return 0
  fi
  # A frozen (SIGSTOPped) node cannot stop itself.
  kill -CONT "$pid" 2>/dev/null || true
  # rabbitmqctl stop <pid file> returns once the OS process has exited.
  if ! timeout "$STOP_GRACE" "$RABBITMQCTL" -q -n "$NODE" stop "$PID_FILE" >>"$STARTUP_OUT" 2>&1; then
    warn "rabbitmqctl stop failed or timed out: signalling pid $pid"
  fi
  # Make sure the process is really gone before anyone starts it again.
  stop_pid "$pid" beam.smp 20
  say "stopped ($NODE, pid $pid, in $(elapsed_since "$started"))"
}

rabbit_status() {
  local pid
  rabbit_check_user
  pid="$(rabbit_running_pid)"
  if [[ -z $pid ]]; then
    say "stopped"
    return 3
  fi
  if rabbit_answers; then
    say "running ($NODE, pid $pid, $(rabbit_url))"
  else
    warn "node $NODE (pid $pid) is running but does not answer"
    return 1
  fi
}

# The command line of a single-node script.
rabbit_main() {
  case "${1:-}" in
    up | start)
      take_lock "$BROKER_NAME"
      rabbit_start
      ;;
    down | stop)
      take_lock "$BROKER_NAME"
      rabbit_stop
      ;;
    restart)
      take_lock "$BROKER_NAME"
      rabbit_stop >/dev/null
      rabbit_start
      ;;
    status) rabbit_status ;;
    # The node's OS pid (empty when it is not running): what the chaos run SIGKILLs and SIGSTOPs.
    pid) rabbit_running_pid ;;
    *)
      echo "usage: $0 up|down|status|restart|pid" >&2
      exit 2
      ;;
  esac
}
