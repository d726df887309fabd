#!/usr/bin/env bash
# A private single-node Apache Kafka (KRaft) for the TLS tests, from the jars kafka.sh resolves:
#   127.0.0.1:9395  SSL, and a client certificate from the test CA is required (mutual TLS)
#   127.0.0.1:9396  SASL_SSL with SCRAM-SHA-512 and SCRAM-SHA-256 (no client certificate needed)
#   127.0.0.1:9397  the controller (plaintext, loopback only)
# Certificates come from certs.sh. The SCRAM user `omnibus` gets a random password made on the
# first start, kept in $OMNIBUS_BROKER_DATA/kafka-tls/scram.password and written into the
# metadata log when the storage is formatted (StorageTool format --add-scram). The start, stop
# and probe handling is kafka.sh's (kafka-node.sh); this script keeps its listeners and secrets.
# Usage: kafka-tls.sh up|down|status|restart|pid|fetch
set -euo pipefail

# shellcheck disable=SC2034 # read by lib.sh and kafka-node.sh
BROKER_NAME=kafka-tls
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

# shellcheck disable=SC2034 # read by kafka-node.sh
{
  KAFKA_INSTANCE=kafka-tls
  HOST=127.0.0.1
  PORT=9395
  CONTROLLER_HOST=127.0.0.1
  CONTROLLER_PORT=9397
  KAFKA_HEAP="${OMNIBUS_KAFKA_TLS_HEAP:--Xmx512m}"
  EXTERNAL_HINT="Stop it (it is not the TLS tests' broker)."
}
# shellcheck source-path=SCRIPTDIR source=kafka-node.sh
. "$HERE/kafka-node.sh"

SASL_PORT=9396
SCRAM_USER=omnibus
CERTS="$OMNIBUS_BROKER_DATA/certs"
PASSWORD_FILE="$DATA_DIR/scram.password"
SSL_CLIENT_PROPS="$CONF_DIR/probe-ssl.properties"
SASL_CLIENT_PROPS="$CONF_DIR/probe-sasl.properties"

# shellcheck disable=SC2034 # read by kafka-node.sh
{
  # Two TLS listeners and SCRAM to be ready: slower than kafka.sh to answer on a loaded machine
  # (77 s from launch at load 30 here), so a longer default.
  START_DEADLINE="${OMNIBUS_KAFKA_TLS_START_DEADLINE:-180}"
  # Its own probe folder: compiling never disturbs a probe kafka.sh is running.
  PROBE_DIR="$CACHE_DIR/probe-tls"
  # Both listeners answer a real request: SSL with the client certificate, SASL_SSL as the
  # SCRAM user (so a start whose SCRAM credentials are missing is not "ready").
  PROBES=("$HOST:$PORT $SSL_CLIENT_PROPS" "$HOST:$SASL_PORT $SASL_CLIENT_PROPS")
  LISTEN_ADDRS=("$HOST:$PORT" "$HOST:$SASL_PORT" "$CONTROLLER_HOST:$CONTROLLER_PORT")
  ENDPOINTS="ssl $HOST:$PORT, sasl_ssl $HOST:$SASL_PORT"
}

password() { tr -d '[:space:]' <"$PASSWORD_FILE"; }

# The certificates, the SCRAM password (a new one only means something before the storage is
# formatted with it), the probe's client properties, and the SCRAM users for the format.
before_start() {
  mkdir -p "$CONF_DIR" "$KRAFT_DIR"
  bash "$HERE/certs.sh" "$CERTS" >/dev/null
  if [[ ! -s $PASSWORD_FILE ]]; then
    rm -rf "$KRAFT_DIR" && mkdir -p "$KRAFT_DIR"
    (umask 077 && openssl rand -hex 16 >"$PASSWORD_FILE.tmp")
    mv "$PASSWORD_FILE.tmp" "$PASSWORD_FILE"
  fi
  (
    umask 077
    cat >"$SSL_CLIENT_PROPS" <<PROPS
security.protocol=SSL
ssl.truststore.type=PEM
ssl.truststore.location=$CERTS/ca.crt
ssl.keystore.type=PEM
ssl.keystore.location=$CERTS/client-keystore.pem
PROPS
    cat >"$SASL_CLIENT_PROPS" <<PROPS
security.protocol=SASL_SSL
ssl.truststore.type=PEM
ssl.truststore.location=$CERTS/ca.crt
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$SCRAM_USER" password="$(password)";
PROPS
  )
  FORMAT_ARGS=(
    --add-scram "SCRAM-SHA-512=[name=$SCRAM_USER,password=$(password)]"
    --add-scram "SCRAM-SHA-256=[name=$SCRAM_USER,password=$(password)]"
  )
}

listener_props() {
  cat <<PROPS
listeners=SSL://$HOST:$PORT,SASL_SSL://$HOST:$SASL_PORT,CONTROLLER://$CONTROLLER_HOST:$CONTROLLER_PORT
advertised.listeners=SSL://$HOST:$PORT,SASL_SSL://$HOST:$SASL_PORT
inter.broker.listener.name=SSL
listener.security.protocol.map=SSL:SSL,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
ssl.keystore.type=PEM
ssl.keystore.location=$CERTS/server-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$CERTS/ca.crt
ssl.enabled.protocols=TLSv1.3,TLSv1.2
listener.name.ssl.ssl.client.auth=required
listener.name.sasl_ssl.ssl.client.auth=none
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
PROPS
}

kafka_main "$@"
