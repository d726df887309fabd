#!/usr/bin/env bash
# The SHARED NATS server with JetStream (Debian package nats-server, 127.0.0.1:4222)
# used by @omnibus/nats's tests. `up` starts it only when nothing answers on 4222;
# `down` never stops it (other users depend on it). Restart tests use the private
# server of nats-private.sh.
# Usage: nats.sh up|down|status
set -euo pipefail

# shellcheck disable=SC2034 # read by lib.sh
BROKER_NAME=nats
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

HOST=127.0.0.1
PORT=4222
START_DEADLINE="${OMNIBUS_NATS_START_DEADLINE:-30}"
NATS_SERVER=/usr/sbin/nats-server
LOG_FILE=/var/log/nats-server.log

# A NATS server greets every connection with an INFO line; ours must have JetStream on.
nats_answers() {
  local info
  info="$(timeout 5 bash -c "exec 3<>/dev/tcp/$HOST/$PORT && head -n 1 <&3" 2>/dev/null)" || return 1
  [[ $info == INFO* && $info == *'"jetstream":true'* ]]
}

start() {
  local started deadline
  started="$(now_ms)"
  if nats_answers; then
    say "already running (shared, nats://$HOST:$PORT)"
    return 0
  fi
  [[ -x $NATS_SERVER ]] || die "nothing answers on $HOST:$PORT and the nats-server package is not installed"
  if port_open "$HOST" "$PORT"; then
    die "something listens on $HOST:$PORT but is not a NATS server with JetStream: $(port_owner "$PORT")"
  fi
  without_lock start-stop-daemon --start --oknodo --background --exec "$NATS_SERVER" -- \
    -a "$HOST" -p "$PORT" -js -sd /var/lib/nats-server -l "$LOG_FILE" || {
    dump_tail 20 "$LOG_FILE"
    die "nats-server failed to start"
  }
  deadline=$((SECONDS + START_DEADLINE))
  until nats_answers; do
    if ((SECONDS >= deadline)); then
      dump_tail 20 "$LOG_FILE"
      die "nats-server did not answer on $HOST:$PORT within ${START_DEADLINE}s"
    fi
    sleep 0.2
  done
  say "up (shared, nats://$HOST:$PORT, ready in $(elapsed_since "$started"))"
}

status() {
  if nats_answers; then
    say "running (shared, nats://$HOST:$PORT)"
  else
    say "stopped (no NATS server with JetStream answers on $HOST:$PORT)"
    return 3
  fi
}

main() {
  case "${1:-}" in
    up | start)
      take_lock nats-shared
      start
      ;;
    down | stop) say "shared NATS left running (never stopped by these scripts)" ;;
    restart) die "refusing to restart the shared NATS server; use nats-private.sh for that" ;;
    status) status ;;
    *)
      echo "usage: $0 up|down|status" >&2
      exit 2
      ;;
  esac
}

main "$@"
