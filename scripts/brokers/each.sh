#!/usr/bin/env bash
# Run one action (up|down|status) over a set of brokers, in parallel, and
# print each broker's report in a fixed order. Used by up.sh and down.sh.
# Usage: each.sh up|down|status [all|rabbitmq|rabbitmq-private|kafka|sqs|redis|postgres|fauxqs|nats|nats-private|rabbitmq-cluster|kafka-cluster|kafka-private|elasticmq-private|chaos-net|rabbitmq-tls|kafka-tls]...
# The 3-node clusters, the chaos run's private brokers and the TLS brokers are never part of `all`: they run only when named.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ALL=(rabbitmq rabbitmq-private kafka sqs redis postgres fauxqs nats nats-private)
NAMED_ONLY=(rabbitmq-cluster kafka-cluster kafka-private elasticmq-private chaos-net rabbitmq-tls kafka-tls)

usage() {
  local IFS='|'
  echo "usage: $0 up|down|status [all|${ALL[*]}|${NAMED_ONLY[*]}]..." >&2
  exit 2
}

action="${1:-}"
[[ $action == up || $action == down || $action == status ]] || usage
shift
(($# > 0)) || set -- all

targets=()
add() {
  local t
  for t in "${targets[@]}"; do [[ $t == "$1" ]] && return 0; done
  targets+=("$1")
}
for arg in "$@"; do
  case "$arg" in
    all) for t in "${ALL[@]}"; do add "$t"; done ;;
    rabbitmq | rabbitmq-private | kafka | redis | postgres | fauxqs | nats | nats-private | rabbitmq-cluster | kafka-cluster | kafka-private | elasticmq-private | chaos-net | rabbitmq-tls | kafka-tls) add "$arg" ;;
    sqs | elasticmq) add sqs ;;
    *) usage ;;
  esac
done

script_for() {
  case "$1" in
    rabbitmq) echo rabbitmq.sh ;;
    rabbitmq-private) echo rabbitmq-private.sh ;;
    kafka) echo kafka.sh ;;
    rabbitmq-cluster) echo rabbitmq-cluster.sh ;;
    kafka-cluster) echo kafka-cluster.sh ;;
    kafka-private) echo kafka-private.sh ;;
    elasticmq-private) echo elasticmq-private.sh ;;
    chaos-net) echo chaos-net.sh ;;
    rabbitmq-tls) echo rabbitmq-tls.sh ;;
    kafka-tls) echo kafka-tls.sh ;;
    sqs) echo elasticmq.sh ;;
    redis) echo redis.sh ;;
    postgres) echo postgres.sh ;;
    fauxqs) echo fauxqs.sh ;;
    nats) echo nats.sh ;;
    nats-private) echo nats-private.sh ;;
  esac
}

# The variable that, when set, says a broker is provided elsewhere.
external_var_for() {
  case "$1" in
    rabbitmq) echo AMQP_URL ;;
    kafka) echo KAFKA_BROKERS ;;
    sqs) echo SQS_ENDPOINT ;;
    redis) echo REDIS_URL ;;
    postgres) echo DATABASE_URL ;;
    fauxqs) echo AWS_ENDPOINT_URL ;;
    nats) echo NATS_URL ;;
    *) echo "" ;;
  esac
}

started_ms=$(date +%s%3N)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

pids=()
for t in "${targets[@]}"; do
  var="$(external_var_for "$t")"
  if [[ -n $var && -n ${!var:-} ]]; then
    # Credentials in the URL are masked (user:***@).
    echo "$t: skipped ($var=$(sed -E 's#(://[^/:@]*):[^@]*@#\1:***@#' <<<"${!var}") is used instead)" >"$work/$t.out"
    pids+=("")
    continue
  fi
  "$HERE/$(script_for "$t")" "$action" >"$work/$t.out" 2>&1 &
  pids+=("$!")
done

rc=0
for i in "${!targets[@]}"; do
  t="${targets[$i]}"
  if [[ -n ${pids[$i]} ]] && ! wait "${pids[$i]}"; then
    rc=1
    if [[ $action == status ]]; then
      cat "$work/$t.out"
      continue
    fi
    cat "$work/$t.out" >&2
    echo "$t: FAILED ($action)" >&2
  else
    cat "$work/$t.out"
  fi
done
ms=$(($(date +%s%3N) - started_ms))
if ((rc == 0)); then
  printf 'brokers: %s done in %d.%ds\n' "$action" $((ms / 1000)) $(((ms % 1000) / 100))
fi
exit "$rc"
