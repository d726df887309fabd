#!/usr/bin/env bash
# The SHARED RabbitMQ broker (Debian package, node rabbit@localhost,
# AMQP 127.0.0.1:5672). `up` starts it only when nothing answers on 5672;
# `down` never stops it (other users depend on it).
# Usage: rabbitmq.sh up|down|status
set -euo pipefail

# shellcheck disable=SC2034 # read by lib.sh
BROKER_NAME=rabbitmq
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

NODE=rabbit@localhost
HOST=127.0.0.1
PORT=5672
START_DEADLINE="${OMNIBUS_RABBITMQ_START_DEADLINE:-90}"
SERVER_BIN=/usr/sbin/rabbitmq-server
CTL_BIN=/usr/sbin/rabbitmqctl
STARTUP_OUT="$OMNIBUS_BROKER_DATA/rabbitmq-shared-startup.out"

# The shared node takes its settings from /etc/rabbitmq only: drop any
# RABBITMQ_* variables (e.g. a private node's) from this environment.
for var in "${!RABBITMQ_@}"; do unset "$var"; done

# An AMQP 0-9-1 protocol header gets a Connection.Start method frame back.
amqp_answers() {
  local first
  first="$(timeout 5 bash -c "exec 3<>/dev/tcp/$HOST/$PORT && printf 'AMQP\\x00\\x00\\x09\\x01' >&3 && head -c 1 <&3" 2>/dev/null |
    od -An -tx1 | tr -d ' ')" || return 1
  [[ $first == 01 ]]
}

start() {
  local started deadline
  started="$(now_ms)"
  if amqp_answers; then
    say "already running (shared, amqp://$HOST:$PORT)"
    return 0
  fi
  [[ -x $SERVER_BIN && -x $CTL_BIN ]] || die "nothing answers on $HOST:$PORT and the rabbitmq-server package is not installed"
  if port_open "$HOST" "$PORT"; then
    die "something listens on $HOST:$PORT but does not speak AMQP: $(port_owner "$PORT")"
  fi
  mkdir -p "$OMNIBUS_BROKER_DATA"
  # Start the node unless it is already booting.
  if ! timeout 30 "$CTL_BIN" -q -n "$NODE" ping >/dev/null 2>&1; then
    printf '\n==== %s starting %s ====\n' "$(date -Is)" "$NODE" >>"$STARTUP_OUT"
    without_lock "$SERVER_BIN" -detached >>"$STARTUP_OUT" 2>&1 || {
      dump_tail 20 "$STARTUP_OUT"
      die "rabbitmq-server -detached failed"
    }
  fi
  deadline=$((SECONDS + START_DEADLINE))
  until timeout 60 "$CTL_BIN" -q -n "$NODE" await_startup --timeout "$((deadline - SECONDS))" \
    >"$OMNIBUS_BROKER_DATA/rabbitmq-shared-await.out" 2>&1 && amqp_answers; do
    if ((SECONDS + 1 >= deadline)); then
      dump_tail 20 "$STARTUP_OUT" "$OMNIBUS_BROKER_DATA/rabbitmq-shared-await.out"
      dump_tail 30 "/var/log/rabbitmq/$NODE.log"
      die "shared node $NODE did not answer on $HOST:$PORT within ${START_DEADLINE}s"
    fi
    sleep 0.5
  done
  say "up (shared $NODE, amqp://$HOST:$PORT, ready in $(elapsed_since "$started"))"
}

status() {
  if amqp_answers; then
    say "running (shared, amqp://$HOST:$PORT)"
  else
    say "stopped (nothing answers AMQP on $HOST:$PORT)"
    return 3
  fi
}

main() {
  case "${1:-}" in
    up | start)
      take_lock rabbitmq-shared
      start
      ;;
    down | stop) say "shared broker left running (never stopped by these scripts)" ;;
    restart)
      die "refusing to restart the shared broker; use rabbitmq-private.sh for restart tests"
      ;;
    status) status ;;
    *)
      echo "usage: $0 up|down|status" >&2
      exit 2
      ;;
  esac
}

main "$@"
