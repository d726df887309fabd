#!/usr/bin/env bash
# Makes the test PKI for the TLS brokers (rabbitmq-tls, kafka-tls) with openssl, under
# $OMNIBUS_BROKER_DATA/certs (never in the repository):
#   ca.crt / ca.key                 the CA the brokers and clients trust
#   server.crt / server.key         the brokers' certificate: SANs 127.0.0.1 and localhost
#   server-keystore.pem             server.key + server.crt in one file (Kafka's PEM keystore)
#   client.crt / client.key         a client certificate from the same CA (mutual TLS)
#   client-keystore.pem             client.key + client.crt (the Kafka readiness probe)
#   wrong-ca.crt / wrong-ca.key     a second, unrelated CA: trusting it must fail verification
#   wrong-client.crt / .key         a client certificate from the wrong CA: a broker must refuse it
# Idempotent: files that exist and still verify are kept; anything missing, expiring within a
# day or not signed by its CA is made again (and what depends on it with it).
# Usage: certs.sh [dir]   prints the folder
set -euo pipefail

# shellcheck disable=SC2034 # read by lib.sh
BROKER_NAME=certs
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

DIR="${1:-$OMNIBUS_BROKER_DATA/certs}"
DAYS=825

command -v openssl >/dev/null || die "openssl not found"
mkdir -p "$DIR"
take_lock certs

# True when cert exists, is valid for another day and was issued by ca.
cert_ok() {
  local cert=$1 ca=$2
  [[ -s $cert && -s ${cert%.crt}.key ]] || return 1
  openssl x509 -in "$cert" -noout -checkend 86400 >/dev/null 2>&1 || return 1
  openssl verify -CAfile "$ca" "$cert" >/dev/null 2>&1
}

# A self-signed CA: name, subject.
make_ca() {
  local name=$1 subject=$2
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$DAYS" \
    -keyout "$DIR/$name.key" -out "$DIR/$name.crt" -subj "$subject" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" >/dev/null 2>&1 || die "openssl: making CA $name failed"
}

# A leaf certificate signed by a CA: name, CA name, subject, extensions.
make_leaf() {
  local name=$1 ca=$2 subject=$3 ext=$4 work
  work="$(mktemp -d)"
  printf '%s\n' "$ext" >"$work/ext.cnf"
  openssl req -new -newkey rsa:2048 -nodes -sha256 -keyout "$DIR/$name.key" -out "$work/req.csr" \
    -subj "$subject" >/dev/null 2>&1 || die "openssl: making the key of $name failed"
  openssl x509 -req -in "$work/req.csr" -CA "$DIR/$ca.crt" -CAkey "$DIR/$ca.key" -CAcreateserial \
    -days "$DAYS" -sha256 -extfile "$work/ext.cnf" -out "$DIR/$name.crt" >/dev/null 2>&1 ||
    die "openssl: signing $name with $ca failed"
  rm -rf "$work"
}

SERVER_EXT='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=IP:127.0.0.1,DNS:localhost'
CLIENT_EXT='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth'

made=()
if ! cert_ok "$DIR/ca.crt" "$DIR/ca.crt"; then
  make_ca ca "/CN=Omnibus test CA"
  rm -f "$DIR/server.crt" "$DIR/client.crt"
  made+=(ca)
fi
if ! cert_ok "$DIR/server.crt" "$DIR/ca.crt"; then
  make_leaf server ca "/CN=localhost" "$SERVER_EXT"
  made+=(server)
fi
if ! cert_ok "$DIR/client.crt" "$DIR/ca.crt"; then
  make_leaf client ca "/CN=omnibus-client" "$CLIENT_EXT"
  made+=(client)
fi
if ! cert_ok "$DIR/wrong-ca.crt" "$DIR/wrong-ca.crt"; then
  make_ca wrong-ca "/CN=Omnibus wrong CA"
  rm -f "$DIR/wrong-client.crt"
  made+=(wrong-ca)
fi
if ! cert_ok "$DIR/wrong-client.crt" "$DIR/wrong-ca.crt"; then
  make_leaf wrong-client wrong-ca "/CN=omnibus-wrong-client" "$CLIENT_EXT"
  made+=(wrong-client)
fi
# Kafka's PEM keystores: the (PKCS#8, unencrypted) key followed by its certificate.
cat "$DIR/server.key" "$DIR/server.crt" >"$DIR/server-keystore.pem"
cat "$DIR/client.key" "$DIR/client.crt" >"$DIR/client-keystore.pem"

# Keys are private to root and the rabbitmq group (the RabbitMQ node runs as user rabbitmq);
# certificates are public.
chmod 755 "$DIR"
chmod 644 "$DIR"/*.crt
chmod 640 "$DIR"/*.key "$DIR"/*-keystore.pem
if [[ $(id -u) == 0 ]] && getent group rabbitmq >/dev/null; then
  chgrp rabbitmq "$DIR"/*.key "$DIR"/*-keystore.pem
fi
if ((${#made[@]} > 0)); then
  say "made ${made[*]} in $DIR" >&2
fi
printf '%s\n' "$DIR"
