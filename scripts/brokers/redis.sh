#!/usr/bin/env bash
# The SHARED Redis (Debian package redis-server, 127.0.0.1:6379, no persistence)
# used by @omnibus/redis's tests. `up` starts it only when nothing answers PING
# on 6379; `down` never stops it (other users depend on it). Tests that kill or
# restart Redis start private redis-servers of their own on free ports.
# Usage: redis.sh up|down|status
set -euo pipefail

# shellcheck disable=SC2034 # read by lib.sh
BROKER_NAME=redis
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

HOST=127.0.0.1
# Overridable only to exercise the start path beside a running shared Redis.
PORT="${OMNIBUS_REDIS_PORT:-6379}"
START_DEADLINE="${OMNIBUS_REDIS_START_DEADLINE:-30}"
REDIS_SERVER="$(command -v redis-server || echo /usr/bin/redis-server)"
DATA_DIR=/var/lib/redis
LOG_FILE=/var/log/redis/ci.log

# The inline protocol: PING gets "+PONG" back (an instance that wants a password
# answers "-NOAUTH": it runs, but it is not the one the tests expect).
redis_answers() {
  local reply
  reply="$(timeout 5 bash -c "exec 3<>/dev/tcp/$HOST/$PORT && printf 'PING\\r\\n' >&3 && head -c 5 <&3" 2>/dev/null)" || return 1
  [[ $reply == +PONG ]]
}

start() {
  local started deadline
  started="$(now_ms)"
  if redis_answers; then
    say "already running (shared, redis://$HOST:$PORT)"
    return 0
  fi
  [[ -x $REDIS_SERVER ]] || die "nothing answers on $HOST:$PORT and the redis-server package is not installed"
  if port_open "$HOST" "$PORT"; then
    die "something listens on $HOST:$PORT but does not answer PING: $(port_owner "$PORT")"
  fi
  mkdir -p "$DATA_DIR" "$(dirname "$LOG_FILE")"
  printf '\n==== %s starting redis-server on %s ====\n' "$(date -Is)" "$PORT" >>"$LOG_FILE"
  # "-::1": bind IPv6 loopback when the machine has it, without failing when it does not.
  without_lock "$REDIS_SERVER" --daemonize yes --bind 127.0.0.1 -::1 --port "$PORT" \
    --save "" --appendonly no --dir "$DATA_DIR" --logfile "$LOG_FILE" || {
    dump_tail 20 "$LOG_FILE"
    die "redis-server failed to start"
  }
  deadline=$((SECONDS + START_DEADLINE))
  until redis_answers; do
    if ((SECONDS >= deadline)); then
      dump_tail 20 "$LOG_FILE"
      die "redis-server did not answer on $HOST:$PORT within ${START_DEADLINE}s"
    fi
    sleep 0.2
  done
  say "up (shared, redis://$HOST:$PORT, ready in $(elapsed_since "$started"))"
}

status() {
  if redis_answers; then
    say "running (shared, redis://$HOST:$PORT)"
  else
    say "stopped (nothing answers PING on $HOST:$PORT)"
    return 3
  fi
}

main() {
  case "${1:-}" in
    up | start)
      take_lock redis-shared
      start
      ;;
    down | stop) say "shared Redis left running (never stopped by these scripts)" ;;
    restart)
      die "refusing to restart the shared Redis; tests start private redis-servers for that"
      ;;
    status) status ;;
    *)
      echo "usage: $0 up|down|status" >&2
      exit 2
      ;;
  esac
}

main "$@"
