#!/usr/bin/env bash
# Stop a set of brokers (default: all). The shared RabbitMQ, Redis, PostgreSQL
# and NATS are never stopped; brokers whose endpoint variable points elsewhere are left alone.
# Usage: down.sh [all|rabbitmq|rabbitmq-private|kafka|sqs|redis|postgres|fauxqs|nats|nats-private|rabbitmq-cluster|kafka-cluster|kafka-private|elasticmq-private|chaos-net|rabbitmq-tls|kafka-tls]...
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$HERE/each.sh" down "$@"
