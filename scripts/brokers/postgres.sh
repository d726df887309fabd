#!/usr/bin/env bash
# The SHARED PostgreSQL server (Debian package, cluster "main", 127.0.0.1:5432,
# trust auth). `up` starts the cluster only when nothing answers on 5432 and
# makes sure the `test` database exists; `down` never stops it (other users
# depend on it). Tests that cut connections use pg_terminate_backend instead.
# Usage: postgres.sh up|down|status
set -euo pipefail

# shellcheck disable=SC2034 # read by lib.sh
BROKER_NAME=postgres
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

HOST=127.0.0.1
PORT=5432
USER_NAME=postgres
DATABASE=test
START_DEADLINE="${OMNIBUS_POSTGRES_START_DEADLINE:-60}"
STARTUP_OUT="$OMNIBUS_BROKER_DATA/postgres-startup.out"

# Answers when a real query runs, not just when the port is open.
pg_answers() {
  timeout 10 psql -X -q -h "$HOST" -p "$PORT" -U "$USER_NAME" -d postgres -Atc 'SELECT 1' 2>/dev/null | grep -qx 1
}

ensure_database() {
  local exists
  exists="$(timeout 10 psql -X -h "$HOST" -p "$PORT" -U "$USER_NAME" -d postgres -Atc \
    "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'" 2>/dev/null)" ||
    die "could not list databases on $HOST:$PORT"
  if [[ $exists != 1 ]]; then
    timeout 30 psql -X -q -h "$HOST" -p "$PORT" -U "$USER_NAME" -d postgres -c "CREATE DATABASE $DATABASE" >/dev/null ||
      die "could not create database $DATABASE"
  fi
}

start() {
  local started deadline version
  started="$(now_ms)"
  if pg_answers; then
    ensure_database
    say "already running (shared, postgres://$USER_NAME@$HOST:$PORT/$DATABASE)"
    return 0
  fi
  command -v pg_ctlcluster >/dev/null || die "nothing answers on $HOST:$PORT and postgresql-common is not installed"
  if port_open "$HOST" "$PORT"; then
    die "something listens on $HOST:$PORT but does not answer queries: $(port_owner "$PORT")"
  fi
  # One cluster version is installed on machines of this kind (15 today).
  version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)"
  [[ -n $version ]] || die "no cluster under /etc/postgresql"
  mkdir -p "$OMNIBUS_BROKER_DATA"
  printf '\n==== %s starting cluster %s/main ====\n' "$(date -Is)" "$version" >>"$STARTUP_OUT"
  without_lock pg_ctlcluster --skip-systemctl-redirect "$version" main start >>"$STARTUP_OUT" 2>&1 || {
    dump_tail 20 "$STARTUP_OUT" "/var/log/postgresql/postgresql-$version-main.log"
    die "pg_ctlcluster $version main start failed"
  }
  deadline=$((SECONDS + START_DEADLINE))
  until pg_answers; do
    if ((SECONDS >= deadline)); then
      dump_tail 30 "/var/log/postgresql/postgresql-$version-main.log"
      die "cluster $version/main did not answer on $HOST:$PORT within ${START_DEADLINE}s"
    fi
    sleep 0.2
  done
  ensure_database
  say "up (shared cluster $version/main, postgres://$USER_NAME@$HOST:$PORT/$DATABASE, ready in $(elapsed_since "$started"))"
}

status() {
  if pg_answers; then
    say "running (shared, postgres://$USER_NAME@$HOST:$PORT)"
  elif port_open "$HOST" "$PORT"; then
    say "listening on $HOST:$PORT but not answering queries"
    return 1
  else
    say "stopped (nothing answers on $HOST:$PORT)"
    return 3
  fi
}

main() {
  case "${1:-}" in
    up | start)
      take_lock postgres-shared
      start
      ;;
    down | stop) say "shared server left running (never stopped by these scripts)" ;;
    restart)
      die "refusing to restart the shared server; cut connections with pg_terminate_backend instead"
      ;;
    status) status ;;
    *)
      echo "usage: $0 up|down|status" >&2
      exit 2
      ;;
  esac
}

main "$@"
