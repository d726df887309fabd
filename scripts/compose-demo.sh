#!/usr/bin/env bash
# Brings the brokers up with docker-compose (the locally built images unless OMNIBUS_*_IMAGE say
# otherwise), runs the demo against each, and takes them down again, whatever happened.
# Host ports default to spare ones so the machine's own brokers can keep theirs. They lie below Linux's
# ephemeral range (32768-60999), from which Docker draws the host ports of other containers (the
# testcontainers suite) and the kernel the local ports of outgoing connections: a fixed port in that range
# was once taken by one of them ("address already in use").
set -euo pipefail
cd "$(dirname "$0")/.."
export OMNIBUS_RABBITMQ_IMAGE="${OMNIBUS_RABBITMQ_IMAGE:-omnibus/rabbitmq:3.10}"
export OMNIBUS_KAFKA_IMAGE="${OMNIBUS_KAFKA_IMAGE:-omnibus/kafka:${OMNIBUS_KAFKA_VERSION:-4.1.2}}"
export OMNIBUS_ELASTICMQ_IMAGE="${OMNIBUS_ELASTICMQ_IMAGE:-omnibus/elasticmq:${OMNIBUS_ELASTICMQ_VERSION:-1.7.1}}"
export OMNIBUS_RABBITMQ_PORT="${OMNIBUS_RABBITMQ_PORT:-20672}"
export OMNIBUS_KAFKA_PORT="${OMNIBUS_KAFKA_PORT:-20092}"
export OMNIBUS_ELASTICMQ_PORT="${OMNIBUS_ELASTICMQ_PORT:-20324}"
project=omnibus-compose-demo
compose() { docker-compose -p "$project" "$@"; }
trap 'compose down -t 5 >/dev/null 2>&1 || true' EXIT

for port in "$OMNIBUS_RABBITMQ_PORT" "$OMNIBUS_KAFKA_PORT" "$OMNIBUS_ELASTICMQ_PORT"; do
  if ss -Htan "( sport = :$port )" | grep -q .; then
    echo "compose: port $port is in use; set OMNIBUS_RABBITMQ_PORT, OMNIBUS_KAFKA_PORT or OMNIBUS_ELASTICMQ_PORT" >&2
    exit 1
  fi
done
compose up -d >/dev/null
# Ready when each broker's own log says so (deadline, not a fixed sleep).
deadline=$((SECONDS + 240))
until compose logs kafka 2>/dev/null | grep -q 'Kafka Server started' &&
  compose logs rabbitmq 2>/dev/null | grep -q 'Server startup complete' &&
  curl -fsS "http://127.0.0.1:$OMNIBUS_ELASTICMQ_PORT/health" >/dev/null 2>&1; do
  if ((SECONDS >= deadline)); then
    compose ps
    compose logs --tail 30
    echo "compose: brokers not ready within 240s" >&2
    exit 1
  fi
  sleep 1
done
for url in "amqp://guest:guest@127.0.0.1:$OMNIBUS_RABBITMQ_PORT" "kafka://127.0.0.1:$OMNIBUS_KAFKA_PORT" \
  "sqs+http://127.0.0.1:$OMNIBUS_ELASTICMQ_PORT"; do
  echo "compose: demo on ${url%%:*}"
  OMNIBUS_URL="$url" pnpm demo >/dev/null
done
echo "compose: the demo passed on every broker in containers"
