#!/usr/bin/env bash
# fauxqs (an SNS + SQS + S3 emulator from npm) on 127.0.0.1:4566, run as its own
# process under Node 24 (it needs node:sqlite, which Node 20 lacks); Node 24 comes
# from the npm registry through `npx node@24`. State is in memory: every start is empty.
# Usage: fauxqs.sh up|down|status|restart
set -euo pipefail

# shellcheck disable=SC2034 # read by lib.sh
BROKER_NAME=fauxqs
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

ROOT="$(cd "$HERE/../.." && pwd)"
NODE_SPEC="${OMNIBUS_FAUXQS_NODE:-node@24}"
START_DEADLINE="${OMNIBUS_FAUXQS_START_DEADLINE:-60}"
STOP_GRACE=15
HOST=127.0.0.1
PORT="${OMNIBUS_FAUXQS_PORT:-4566}"
ENDPOINT="http://$HOST:$PORT"

DATA_DIR="$OMNIBUS_BROKER_DATA/fauxqs"
LOG_DIR="$DATA_DIR/logs"
PID_FILE="$DATA_DIR/fauxqs.pid"
OUT_FILE="$LOG_DIR/fauxqs.out"
# fauxqs writes one output file (no separate server log): fail_start shows it once.
SERVER_LOG=""
LAUNCHER="$HERE/fauxqs-server.mjs"
MARKER="$LAUNCHER"

running_pid() {
  local pid
  pid="$(read_pid "$PID_FILE")"
  pid_alive_with "$pid" "$MARKER" || pid="$(pgrep -f -- "$MARKER" | head -n 1 || true)"
  pid_alive_with "$pid" "$MARKER" && printf '%s\n' "$pid"
  return 0
}

# A real SQS ListQueues (JSON protocol) and a real SNS ListTopics (query protocol) both answer.
answers() {
  curl -fsS --max-time 3 -o /dev/null -X POST "$ENDPOINT/" \
    -H 'X-Amz-Target: AmazonSQS.ListQueues' -H 'Content-Type: application/x-amz-json-1.0' --data '{}' 2>/dev/null &&
    curl -fsS --max-time 3 -o /dev/null -X POST "$ENDPOINT/" \
      -H 'Content-Type: application/x-www-form-urlencoded' --data 'Action=ListTopics&Version=2010-03-31' 2>/dev/null
}

# The Node 24 binary, fetched once into npx's cache; exec'd directly so the pid file names the server itself.
node24() {
  local bin
  bin="$(cd "$ROOT" && npx -y "$NODE_SPEC" -p 'process.execPath' 2>>"$OUT_FILE")" ||
    fail_start "could not get $NODE_SPEC through npx (see $OUT_FILE)"
  [[ -x $bin ]] || fail_start "npx $NODE_SPEC printed no usable node binary: $bin"
  printf '%s\n' "$bin"
}

start() {
  local started pid deadline bin
  started="$(now_ms)"
  pid="$(running_pid)"
  if [[ -n $pid ]]; then
    deadline=$((SECONDS + 30))
    until answers; do
      ((SECONDS < deadline)) || fail_start "process $pid is running but $ENDPOINT does not answer"
      sleep 0.25
    done
    say "already running (pid $pid, $ENDPOINT)"
    return 0
  fi
  if port_open "$HOST" "$PORT"; then
    die "port $PORT is taken by a process this script did not start: $(port_owner "$PORT"). Stop it, or set AWS_ENDPOINT_URL to use it."
  fi
  command -v curl >/dev/null || die "curl not found"
  [[ -f $ROOT/node_modules/fauxqs/package.json ]] || die "fauxqs is not installed: run pnpm install"
  mkdir -p "$LOG_DIR"
  OUT_OFFSET="$(file_size "$OUT_FILE")"
  LOG_OFFSET=$OUT_OFFSET
  printf '\n==== %s starting fauxqs ====\n' "$(date -Is)" >>"$OUT_FILE"
  bin="$(node24)"
  FAUXQS_PORT=$PORT FAUXQS_LOGGER=false spawn_detached "$PID_FILE" "$OUT_FILE" "$bin" "$LAUNCHER"
  pid="$(read_pid "$PID_FILE")"
  SPAWNED_PID=$pid
  deadline=$((SECONDS + START_DEADLINE))
  until answers; do
    pid_alive_with "$pid" "$MARKER" || fail_start "process $pid exited during startup"
    ((SECONDS < deadline)) || fail_start "$ENDPOINT did not answer within ${START_DEADLINE}s"
    sleep 0.25
  done
  say "up (pid $pid, $ENDPOINT, fauxqs $(node -p "require('$ROOT/node_modules/fauxqs/package.json').version"), ready in $(elapsed_since "$started"))"
}

stop() { stop_jar_broker "$MARKER" "$STOP_GRACE"; }

status() {
  local pid
  pid="$(running_pid)"
  if [[ -z $pid ]]; then
    say "stopped"
    return 3
  fi
  if answers; then
    say "running (pid $pid, $ENDPOINT)"
  else
    warn "process $pid is running but $ENDPOINT does not answer"
    return 1
  fi
}

main() {
  case "${1:-}" in
    up | start)
      take_lock fauxqs
      start
      ;;
    down | stop)
      take_lock fauxqs
      stop
      ;;
    restart)
      take_lock fauxqs
      stop >/dev/null
      start
      ;;
    status) status ;;
    *)
      echo "usage: $0 up|down|status|restart" >&2
      exit 2
      ;;
  esac
}

main "$@"
