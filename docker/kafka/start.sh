#!/bin/sh
# Writes server.properties from the environment, formats the log directory once, runs the broker.
#   KAFKA_PORT            client port, also the advertised one (publish it on the same host port)
#   KAFKA_ADVERTISED_HOST host clients use (default 127.0.0.1)
#   KAFKA_NODE_ID         node id (default 1)
#   KAFKA_VOTERS          controller quorum (default 1@localhost:9093)
#   KAFKA_CLUSTER_ID      the same on every node of a cluster (default: a fixed id for one node)
#   KAFKA_REPLICATION     replication factor for internal topics and the default (default 1)
#   KAFKA_MIN_ISR         min.insync.replicas (default 1)
#   KAFKA_INTER_HOST      host other brokers reach this one at (default: the advertised host)
#   KAFKA_INTER_PORT      port for broker-to-broker traffic (default 19092)
# Any other KAFKA_* variable sets a broker property the way the official apache/kafka image reads them
# (KAFKA_ADVERTISED_LISTENERS → advertised.listeners; a double underscore stands for one), so the same
# docker-compose.yml drives both images.
set -eu
PORT="${KAFKA_PORT:-9092}"
HOST="${KAFKA_ADVERTISED_HOST:-127.0.0.1}"
NODE="${KAFKA_NODE_ID:-1}"
VOTERS="${KAFKA_VOTERS:-1@localhost:9093}"
RF="${KAFKA_REPLICATION:-1}"
ISR="${KAFKA_MIN_ISR:-1}"
INTER_HOST="${KAFKA_INTER_HOST:-localhost}"
INTER_PORT="${KAFKA_INTER_PORT:-19092}"
CLUSTER="${KAFKA_CLUSTER_ID:-b21uaWJ1cy1rYWZrYS0xAA}"
mkdir -p /var/lib/kafka
cat > /opt/kafka/server.properties <<PROPS
process.roles=broker,controller
node.id=$NODE
controller.quorum.voters=$VOTERS
listeners=PLAINTEXT://0.0.0.0:$PORT,INTERNAL://0.0.0.0:$INTER_PORT,CONTROLLER://0.0.0.0:9093
advertised.listeners=PLAINTEXT://$HOST:$PORT,INTERNAL://$INTER_HOST:$INTER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=/var/lib/kafka
num.partitions=1
default.replication.factor=$RF
min.insync.replicas=$ISR
offsets.topic.replication.factor=$RF
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=$RF
transaction.state.log.min.isr=$ISR
share.coordinator.state.topic.replication.factor=$RF
share.coordinator.state.topic.min.isr=$ISR
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
# Later lines win in a Java properties file: the overrides go last.
env | sort | while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_PORT | KAFKA_ADVERTISED_HOST | KAFKA_VOTERS | KAFKA_CLUSTER_ID | KAFKA_REPLICATION | KAFKA_MIN_ISR | \
      KAFKA_INTER_HOST | KAFKA_INTER_PORT | KAFKA_HEAP | KAFKA_NODE_ID) ;;
    KAFKA_*)
      key=$(printf '%s' "${name#KAFKA_}" | sed 's/__/@/g; s/_/./g; s/@/_/g' | tr '[:upper:]' '[:lower:]')
      printf '%s=%s\n' "$key" "$value" >>/opt/kafka/server.properties
      ;;
  esac
done
JAVA="java -Dlog4j2.configurationFile=/opt/kafka/log4j2.xml"
if [ ! -f /var/lib/kafka/meta.properties ]; then
  $JAVA -Xmx256m -cp '/opt/kafka/lib/*' kafka.tools.StorageTool format -t "$CLUSTER" -c /opt/kafka/server.properties
fi
exec $JAVA ${KAFKA_HEAP:--Xmx512m} -XX:+UseG1GC -Djava.awt.headless=true -Dkafka.logs.dir=/var/lib/kafka \
  -cp '/opt/kafka/lib/*' kafka.Kafka /opt/kafka/server.properties
