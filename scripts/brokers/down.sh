#!/usr/bin/env bash
# Stop a set of brokers (default: all). The shared RabbitMQ is never
# stopped; brokers whose endpoint variable points elsewhere are left alone.
# Usage: down.sh [all|rabbitmq|rabbitmq-private|kafka|sqs|redis|nats|nats-private]...
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$HERE/each.sh" down "$@"
