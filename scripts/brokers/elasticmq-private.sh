#!/usr/bin/env bash
# A private ElasticMQ (SQS-compatible) for the chaos run (pnpm chaos), beside
# the shared one on 9324: http://10.201.0.1:9334, the host end of the chaos
# network (chaos-net.sh, created by `up` if missing), so that clients inside
# its namespace can be cut off from it. The same jars and code as
# elasticmq.sh (elasticmq-node.sh); queues and messages in an H2 store under
# $OMNIBUS_BROKER_DATA/elasticmq-private, kept by `up` too (the chaos run
# SIGKILLs the server and starts it again with `up`).
# Usage: elasticmq-private.sh up|down|status|restart|pid|fetch
set -euo pipefail

# shellcheck disable=SC2034 # read by lib.sh and elasticmq-node.sh
BROKER_NAME=elasticmq-private
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

# shellcheck disable=SC2034 # read by elasticmq-node.sh
{
  ELASTICMQ_INSTANCE=elasticmq-private
  HOST=10.201.0.1
  PORT=9334
  KEEP_DATA=1
  EXTERNAL_HINT="Stop it (it is not the chaos run's broker)."
}
# The listener binds to the chaos network's host address: make sure it exists.
before_start() { "$HERE/chaos-net.sh" up >/dev/null; }
# shellcheck source-path=SCRIPTDIR source=elasticmq-node.sh
. "$HERE/elasticmq-node.sh"

elasticmq_main "$@"
