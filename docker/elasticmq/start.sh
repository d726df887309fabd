#!/bin/sh
# Queue URLs carry node-address, so it must be what clients reach: publish SQS_PORT on the same host port.
set -eu
PORT="${SQS_PORT:-9324}"
cat > /opt/elasticmq/elasticmq.conf <<CONF
include classpath("application.conf")
node-address { protocol = "http", host = "${SQS_HOST:-127.0.0.1}", port = $PORT, context-path = "" }
generate-node-address = false
rest-sqs { enabled = true, bind-port = $PORT, bind-hostname = "0.0.0.0", sqs-limits = strict }
aws { region = "${SQS_REGION:-us-east-1}", accountId = "000000000000" }
CONF
exec java ${ELASTICMQ_HEAP:--Xmx384m} -XX:+UseSerialGC -Dconfig.file=/opt/elasticmq/elasticmq.conf \
  -cp '/opt/elasticmq/lib/*' org.elasticmq.server.Main
