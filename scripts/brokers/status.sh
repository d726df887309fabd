#!/usr/bin/env bash
# Report whether each broker of a set (default: all) runs and answers.
# Exit status 0 when all do. Usage: status.sh [all|rabbitmq|rabbitmq-private|kafka|sqs|redis|postgres|fauxqs|nats|nats-private|rabbitmq-cluster|kafka-cluster|kafka-private|elasticmq-private|chaos-net|rabbitmq-tls|kafka-tls]...
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$HERE/each.sh" status "$@"
