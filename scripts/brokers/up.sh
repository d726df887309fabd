#!/usr/bin/env bash
# Start a set of brokers (default: all) and wait until each answers.
# Usage: up.sh [all|rabbitmq|rabbitmq-private|kafka|sqs|redis|postgres|fauxqs|nats|nats-private|rabbitmq-cluster|kafka-cluster|kafka-private|elasticmq-private|chaos-net|rabbitmq-tls|kafka-tls]...
# A broker whose endpoint variable points elsewhere is left alone:
#   AMQP_URL (shared RabbitMQ), KAFKA_BROKERS (Kafka), SQS_ENDPOINT (ElasticMQ),
#   REDIS_URL (shared Redis), DATABASE_URL (PostgreSQL),
#   AWS_ENDPOINT_URL (fauxqs: SNS + SQS + S3), NATS_URL (shared NATS).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$HERE/each.sh" up "$@"
