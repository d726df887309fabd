#!/usr/bin/env bash
# A private RabbitMQ node (omnibus-test@localhost, AMQP 127.0.0.1:5673)
# beside the shared one on 5672, for tests that stop, restart or kill the
# broker. Uses the Debian rabbitmq-server package; never touches the
# shared node rabbit@localhost. The node handling lives in lib.sh.
# Usage: rabbitmq-private.sh up|down|status|restart|pid
set -euo pipefail

# shellcheck disable=SC2034 # read by lib.sh
BROKER_NAME=rabbitmq-private
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

NODE=omnibus-test@localhost
HOST=127.0.0.1
PORT=5673
DIST_PORT=25673
DIR="$OMNIBUS_BROKER_DATA/rabbitmq-private"
rabbit_node_env

write_config() { rabbit_write_config </dev/null; }

rabbit_main "$@"
