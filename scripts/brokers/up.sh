#!/usr/bin/env bash
# Start a set of brokers (default: all) and wait until each answers.
# Usage: up.sh [all|rabbitmq|rabbitmq-private|kafka|sqs|rabbitmq-cluster|kafka-cluster]...
# A broker whose endpoint variable points elsewhere is left alone:
#   AMQP_URL (shared RabbitMQ), KAFKA_BROKERS (Kafka), SQS_ENDPOINT (ElasticMQ).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$HERE/each.sh" up "$@"
