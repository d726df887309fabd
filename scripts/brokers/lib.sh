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
