#!/usr/bin/env bash
# ElasticMQ (SQS-compatible) on 127.0.0.1:9324, run from jars resolved
# from Maven Central. Queues and messages are stored in an H2 file under
# the data dir: `restart` keeps them (and waits until all are restored);
# `up` from stopped starts empty unless OMNIBUS_ELASTICMQ_KEEP_DATA=1.
# OMNIBUS_ELASTICMQ_PERSIST=0 keeps everything in memory only.
# Usage: elasticmq.sh up|down|status|restart|pid|fetch   (fetch: only resolve the jars)
set -euo pipefail

# shellcheck disable=SC2034 # read by lib.sh and elasticmq-node.sh
BROKER_NAME=elasticmq
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

# shellcheck disable=SC2034 # read by elasticmq-node.sh
{
  ELASTICMQ_INSTANCE=elasticmq
  HOST=127.0.0.1
  PORT=9324
  KEEP_DATA="${OMNIBUS_ELASTICMQ_KEEP_DATA:-0}"
  EXTERNAL_HINT="Stop it, or set SQS_ENDPOINT to use it."
}
# shellcheck source-path=SCRIPTDIR source=elasticmq-node.sh
. "$HERE/elasticmq-node.sh"

elasticmq_main "$@"
