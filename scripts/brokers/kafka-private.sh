#!/usr/bin/env bash
# A private single-node Apache Kafka for the chaos run (pnpm chaos), beside
# the shared one on 9092: clients on 10.201.0.1:9492, the host end of the
# chaos network (chaos-net.sh, created by `up` if missing), so that clients
# inside its namespace can be cut off from it; controller on 127.0.0.1:9493.
# The same jars and code as kafka.sh (kafka-node.sh); data under
# $OMNIBUS_BROKER_DATA/kafka-private. The chaos run SIGKILLs and SIGSTOPs it.
# Usage: kafka-private.sh up|down|status|restart|pid|fetch
set -euo pipefail

# shellcheck disable=SC2034 # read by lib.sh and kafka-node.sh
BROKER_NAME=kafka-private
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

# shellcheck disable=SC2034 # read by kafka-node.sh
{
  KAFKA_INSTANCE=kafka-private
  HOST=10.201.0.1
  PORT=9492
  CONTROLLER_HOST=127.0.0.1
  CONTROLLER_PORT=9493
  KAFKA_HEAP="${OMNIBUS_KAFKA_PRIVATE_HEAP:--Xmx512m}"
  EXTERNAL_HINT="Stop it (it is not the chaos run's broker)."
}
# The listener binds to the chaos network's host address: make sure it exists.
before_start() { "$HERE/chaos-net.sh" up >/dev/null; }
# shellcheck source-path=SCRIPTDIR source=kafka-node.sh
. "$HERE/kafka-node.sh"

kafka_main "$@"
