#!/usr/bin/env bash
# Proves the containers mode leaves nothing behind even when the suite dies: starts it, waits until its
# first container runs, SIGKILLs the test runner (vitest) mid-suite, then checks that the runner failed
# and that no container with its label is left. Also checks the clear failure when no engine answers.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "containers mode with no Docker engine:"
if DOCKER_HOST=unix:///nonexistent/docker.sock node scripts/test.mjs containers >"$log" 2>&1; then
  cat "$log"
  echo "FAIL: the containers mode passed without a Docker engine" >&2
  exit 1
fi
grep -q 'no Docker engine answers' "$log" || { cat "$log"; echo "FAIL: no clear message" >&2; exit 1; }
echo "  fails with: $(grep -m1 'no Docker engine answers' "$log")"

echo "containers mode killed mid-suite:"
before=$(docker ps -aq --filter label=omnibus.test | wc -l)
OMNIBUS_CONTAINER_TRANSPORTS=rabbitmq setsid node scripts/test.mjs containers >"$log" 2>&1 &
runner=$!
deadline=$((SECONDS + 300))
until (($(docker ps -q --filter label=omnibus.test | wc -l) > before)); do
  ((SECONDS < deadline)) || { cat "$log"; echo "FAIL: no container started within 300s" >&2; exit 1; }
  kill -0 "$runner" 2>/dev/null || { cat "$log"; echo "FAIL: the runner ended before a container started" >&2; exit 1; }
  sleep 1
done
# The test runner is the runner's child: kill it as a crash would, and let the runner clean up.
pkill -KILL -f 'vitest run --project conformance:rabbitmq' || true
status=0
wait "$runner" || status=$?
left=$(docker ps -aq --filter label=omnibus.test | wc -l)
grep -E '^containers:' "$log" | sed 's/^/  /'
((status != 0)) || { echo "FAIL: the runner reported success after its suite was killed" >&2; exit 1; }
((left == before)) || { docker ps --filter label=omnibus.test; echo "FAIL: $((left - before)) container(s) left" >&2; exit 1; }
echo "  the runner failed (exit $status) and left no container"
