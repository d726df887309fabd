#!/usr/bin/env bash
# A private RabbitMQ node for the TLS tests (omnibus-tls@localhost): AMQP on 127.0.0.1:5674,
# AMQPS on 127.0.0.1:5675 with the certificates of certs.sh, Erlang distribution on 25675.
# Besides guest it has a user `omnibus-tls` whose random password is made on the first start
# and kept in $OMNIBUS_BROKER_DATA/rabbitmq-tls/user.password (the credential-redaction tests
# read it from there). The node handling lives in lib.sh; never touches other nodes.
# Usage: rabbitmq-tls.sh up|down|status|restart|pid
set -euo pipefail

# shellcheck disable=SC2034 # read by lib.sh
BROKER_NAME=rabbitmq-tls
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

NODE=omnibus-tls@localhost
HOST=127.0.0.1
PORT=5674
TLS_PORT=5675
DIST_PORT=25675
DIR="$OMNIBUS_BROKER_DATA/rabbitmq-tls"
CERTS="$OMNIBUS_BROKER_DATA/certs"
TLS_USER=omnibus-tls
PASSWORD_FILE="$DIR/user.password"
rabbit_node_env

write_config() {
  bash "$HERE/certs.sh" "$CERTS" >/dev/null
  rabbit_write_config <<CONF
listeners.ssl.1 = $HOST:$TLS_PORT
ssl_options.cacertfile = $CERTS/ca.crt
ssl_options.certfile = $CERTS/server.crt
ssl_options.keyfile = $CERTS/server.key
# A client certificate is checked against the CA when one is sent, but not required.
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
ssl_options.versions.1 = tlsv1.3
ssl_options.versions.2 = tlsv1.2
CONF
}

node_url() { printf 'amqp://%s:%s, amqps://%s:%s' "$HOST" "$PORT" "$HOST" "$TLS_PORT"; }

# The TLS listener completes a verified handshake and speaks AMQP.
node_ready() { amqps_answers "$HOST" "$TLS_PORT" "$CERTS/ca.crt"; }

# The password user exists with the stored password (made once, random).
node_started() {
  local password
  if [[ ! -s $PASSWORD_FILE ]]; then
    (umask 077 && openssl rand -hex 16 >"$PASSWORD_FILE.tmp")
    mv "$PASSWORD_FILE.tmp" "$PASSWORD_FILE"
  fi
  password="$(tr -d '[:space:]' <"$PASSWORD_FILE")"
  rabbit_ctl authenticate_user "$TLS_USER" "$password" >/dev/null 2>&1 && return 0
  if rabbit_ctl list_users --no-table-headers 2>/dev/null | cut -f1 | grep -qx "$TLS_USER"; then
    rabbit_ctl change_password "$TLS_USER" "$password" >/dev/null
  else
    rabbit_ctl add_user "$TLS_USER" "$password" >/dev/null
  fi
  rabbit_ctl set_permissions -p / "$TLS_USER" '.*' '.*' '.*' >/dev/null
}

rabbit_main "$@"
