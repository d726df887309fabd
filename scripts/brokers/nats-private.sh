#!/usr/bin/env bash
# A private NATS server with JetStream (127.0.0.1:4223, store under
# $OMNIBUS_BROKER_DATA/nats-private) beside the shared one on 4222, for tests
# that stop or restart the broker. Never touches the shared server.
# Usage: nats-private.sh up|down|status|restart|pid
set -euo pipefail

# shellcheck disable=SC2034 # read by lib.sh
BROKER_NAME=nats-private
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

HOST=127.0.0.1
PORT="${OMNIBUS_NATS_PRIVATE_PORT:-4223}"
START_DEADLINE="${OMNIBUS_NATS_START_DEADLINE:-30}"
STOP_GRACE=30
NATS_SERVER=/usr/sbin/nats-server
DIR="$OMNIBUS_BROKER_DATA/nats-private"
PID_FILE="$DIR/nats-server.pid"
# shellcheck disable=SC2034 # read by fail_start in lib.sh
OUT_FILE="$DIR/startup.out"
SERVER_LOG="$DIR/nats-server.log"
# What identifies our process in /proc/<pid>/cmdline.
MARKER="$DIR/store"

nats_answers() {
  local info
  info="$(timeout 5 bash -c "exec 3<>/dev/tcp/$HOST/$PORT && head -n 1 <&3" 2>/dev/null)" || return 1
  [[ $info == INFO* && $info == *'"jetstream":true'* ]]
}

running_pid() {
  local pid
  pid="$(read_pid "$PID_FILE")"
  if pid_alive_with "$pid" "$MARKER"; then echo "$pid"; fi
}

start() {
  local started deadline
  started="$(now_ms)"
  if [[ -n $(running_pid) ]] && nats_answers; then
    say "already running (nats://$HOST:$PORT)"
    return 0
  fi
  [[ -x $NATS_SERVER ]] || die "the nats-server package is not installed"
  if port_open "$HOST" "$PORT"; then
    die "$HOST:$PORT is taken by another process: $(port_owner "$PORT")"
  fi
  mkdir -p "$DIR/store"
  OUT_OFFSET="$(file_size "$OUT_FILE")"
  LOG_OFFSET="$(file_size "$SERVER_LOG")"
  spawn_detached "$PID_FILE" "$OUT_FILE" "$NATS_SERVER" -a "$HOST" -p "$PORT" -js \
    -sd "$MARKER" -l "$SERVER_LOG"
  SPAWNED_PID="$(read_pid "$PID_FILE")"
  deadline=$((SECONDS + START_DEADLINE))
  until nats_answers; do
    pid_alive_with "$SPAWNED_PID" "$MARKER" || fail_start "nats-server exited during start"
    ((SECONDS < deadline)) || fail_start "nats-server did not answer on $HOST:$PORT within ${START_DEADLINE}s"
    sleep 0.1
  done
  say "up (nats://$HOST:$PORT, pid $SPAWNED_PID, ready in $(elapsed_since "$started"))"
}

stop() {
  local pid started
  started="$(now_ms)"
  pid="$(running_pid)"
  if [[ -z $pid ]]; then
    rm -f "$PID_FILE"
    say "not running"
    return 0
  fi
  # SIGTERM: the server flushes its JetStream store and exits (the data stays in $DIR/store).
  stop_pid "$pid" "$MARKER" "$STOP_GRACE"
  rm -f "$PID_FILE"
  say "stopped (pid $pid, in $(elapsed_since "$started"))"
}

status() {
  local pid
  pid="$(running_pid)"
  if [[ -n $pid ]] && nats_answers; then
    say "running (nats://$HOST:$PORT, pid $pid)"
  else
    say "stopped"
    return 3
  fi
}

main() {
  case "${1:-}" in
    up | start)
      take_lock nats-private
      start
      ;;
    down | stop)
      take_lock nats-private
      stop
      ;;
    restart)
      take_lock nats-private
      stop
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
