#!/bin/sh
# Runs the node in the foreground. For a cluster, every node gets the same RABBITMQ_ERLANG_COOKIE and
# joins RABBITMQ_JOIN (a node name such as rabbit@rmq1) once it is up.
set -eu
if [ -n "${RABBITMQ_ERLANG_COOKIE:-}" ]; then
  printf '%s' "$RABBITMQ_ERLANG_COOKIE" > /var/lib/rabbitmq/.erlang.cookie
  chown rabbitmq:rabbitmq /var/lib/rabbitmq/.erlang.cookie
  chmod 400 /var/lib/rabbitmq/.erlang.cookie
fi
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /var/log/rabbitmq
if [ -n "${RABBITMQ_JOIN:-}" ]; then
  (
    rabbitmqctl await_startup >/dev/null 2>&1 || rabbitmqctl await_startup
    rabbitmqctl stop_app
    until rabbitmqctl join_cluster "$RABBITMQ_JOIN"; do sleep 1; done
    rabbitmqctl start_app
    echo "omnibus: joined $RABBITMQ_JOIN"
  ) &
fi
exec rabbitmq-server
