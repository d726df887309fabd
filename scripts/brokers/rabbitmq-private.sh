#!/usr/bin/env bash
# A private RabbitMQ node (omnibus-test@localhost, AMQP 127.0.0.1:5673)
# beside the shared one on 5672, for tests that stop, restart or kill the
# broker. Uses the Debian rabbitmq-server package; never touches the
# shared node rabbit@localhost.
# Usage: rabbitmq-private.sh up|down|status|restart|pid
set -euo pipefail

# shellcheck disable=SC2034 # read by lib.sh
BROKER_NAME=rabbitmq-private
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

NODE=omnibus-test@localhost
HOST=127.0.0.1
PORT=5673
DIST_PORT=25673
START_DEADLINE="${OMNIBUS_RABBITMQ_START_DEADLINE:-90}"
STOP_GRACE=60

DIR="$OMNIBUS_BROKER_DATA/rabbitmq-private"
PID_FILE="$DIR/$NODE.pid"
LOG_DIR="$DIR/log"
NODE_LOG="$LOG_DIR/$NODE.log"
STARTUP_OUT="$DIR/startup.out"
AWAIT_OUT="$DIR/await_startup.out"

# Everything that makes this node separate from the shared one. The env
# file replaces /etc/rabbitmq/rabbitmq-env.conf (whose NODENAME is the
# shared node's); the config file replaces /etc/rabbitmq/rabbitmq.conf
# (whose listener is 5672).
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

write_config() {
  rabbit_write_config </dev/null
}

start() {
  local started pid
  started="$(now_ms)"
  rabbit_check_user
  pid="$(rabbit_running_pid)"
  if [[ -n $pid ]]; then
    timeout 60 "$RABBITMQCTL" -q -n "$NODE" await_startup --timeout 60 >/dev/null 2>&1 ||
      rabbit_fail_start "node $NODE (pid $pid) is running but did not finish starting"
    amqp_answers "$HOST" "$PORT" ||
      rabbit_fail_start "node $NODE (pid $pid) is up but AMQP $HOST:$PORT does not answer"
    say "already running ($NODE, pid $pid, amqp://$HOST:$PORT)"
    return 0
  fi
  rabbit_launch
  rabbit_await
  pid="$(rabbit_running_pid)"
  [[ -n $pid ]] || rabbit_fail_start "node $NODE started but its pid file $PID_FILE names no live process"
  say "up ($NODE, pid $pid, amqp://$HOST:$PORT, ready in $(elapsed_since "$started"))"
}

stop() {
  local pid started
  started="$(now_ms)"
  rabbit_check_user
  pid="$(rabbit_running_pid)"
  if [[ -z $pid ]]; then
    say "not running"
    return 0
  fi
  # rabbitmqctl stop <pid file> returns once the OS process has exited.
  if ! timeout "$STOP_GRACE" "$RABBITMQCTL" -q -n "$NODE" stop "$PID_FILE" >>"$STARTUP_OUT" 2>&1; then
    warn "rabbitmqctl stop failed or timed out: signalling pid $pid"
    stop_pid "$pid" beam.smp 20
  fi
  # Make sure the process is really gone before anyone starts it again.
  stop_pid "$pid" beam.smp 20
  say "stopped ($NODE, pid $pid, in $(elapsed_since "$started"))"
}

status() {
  local pid
  rabbit_check_user
  pid="$(rabbit_running_pid)"
  if [[ -z $pid ]]; then
    say "stopped"
    return 3
  fi
  if amqp_answers "$HOST" "$PORT"; then
    say "running ($NODE, pid $pid, amqp://$HOST:$PORT)"
  else
    warn "node $NODE (pid $pid) is running but does not answer"
    return 1
  fi
}

main() {
  case "${1:-}" in
    up | start)
      take_lock rabbitmq-private
      start
      ;;
    down | stop)
      take_lock rabbitmq-private
      stop
      ;;
    restart)
      take_lock rabbitmq-private
      stop >/dev/null
      start
      ;;
    status) status ;;
    # The server's OS pid (empty when it is not running): what the chaos run SIGKILLs and SIGSTOPs.
    pid) running_pid ;;
    *)
      echo "usage: $0 up|down|status|restart|pid" >&2
      exit 2
      ;;
  esac
}

main "$@"
