#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft, combined broker+controller) on
# 127.0.0.1:9092, run from jars resolved from Maven Central.
# Usage: kafka.sh up|down|status|restart|pid|fetch   (fetch: only resolve the jars)
set -euo pipefail

# shellcheck disable=SC2034 # read by lib.sh and kafka-node.sh
BROKER_NAME=kafka
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

# shellcheck disable=SC2034 # read by kafka-node.sh
{
  KAFKA_INSTANCE=kafka
  HOST=127.0.0.1
  PORT=9092
  CONTROLLER_HOST=127.0.0.1
  CONTROLLER_PORT=9093
  KAFKA_HEAP="${OMNIBUS_KAFKA_HEAP:--Xmx768m}"
  EXTERNAL_HINT="Stop it, or set KAFKA_BROKERS to use it."
}
# shellcheck source-path=SCRIPTDIR source=kafka-node.sh
. "$HERE/kafka-node.sh"

kafka_main "$@"
