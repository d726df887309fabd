#!/usr/bin/env bash
# Docker for the containers mode, on a machine that reaches no image registry:
#   scripts/docker.sh install  install docker.io, debootstrap and docker-compose from Debian's packages when missing
#   scripts/docker.sh start    start dockerd when no engine answers (root)
#   scripts/docker.sh images   build the Debian base (debootstrap + docker import) and the broker images
#   scripts/docker.sh setup    all three
#   scripts/docker.sh stop     stop the dockerd this script started
#   scripts/docker.sh status   exit 0 when a Docker engine answers
#   scripts/docker.sh clean    remove every container the test suites labelled omnibus.test
# Images are rebuilt only when their inputs change (a hash of the build context is kept as a label).
# Honours DOCKER_HOST (unix:// only) for the engine it starts or talks to.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
BROKER_NAME=docker
# shellcheck source=brokers/lib.sh
source "$here/brokers/lib.sh"

WORK="${OMNIBUS_DOCKER_WORK:-/tmp/omnibus-docker}"
BASE_IMAGE="omnibus/debian:bookworm"
JRE_IMAGE="omnibus/jre:17"
KAFKA_VERSION="${OMNIBUS_KAFKA_VERSION:-4.1.2}"
ELASTICMQ_VERSION="${OMNIBUS_ELASTICMQ_VERSION:-1.7.1}"

engine_answers() { docker info >/dev/null 2>&1; }

install_packages() {
  local missing=()
  command -v docker >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  ((${#missing[@]} == 0)) && return 0
  [[ $(id -u) == 0 ]] || die "missing ${missing[*]}: install them (apt-get install ${missing[*]}) or run as root"
  say "installing ${missing[*]} from Debian's packages"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

start_engine() {
  engine_answers && return 0
  [[ $(id -u) == 0 ]] || die "no Docker engine answers and only root can start dockerd here"
  mkdir -p "$WORK"
  local args=() started
  if [[ -n ${DOCKER_HOST:-} ]]; then
    [[ $DOCKER_HOST == unix://* ]] || die "DOCKER_HOST=$DOCKER_HOST: only a unix socket can be started here"
    args+=(-H "$DOCKER_HOST" --pidfile "$WORK/dockerd.pid" --exec-root "$WORK/exec")
  fi
  say "starting dockerd (log: $WORK/dockerd.log)"
  started=$(now_ms)
  setsid nohup dockerd "${args[@]}" >"$WORK/dockerd.log" 2>&1 </dev/null &
  local deadline=$((SECONDS + ${OMNIBUS_DOCKER_START_DEADLINE:-60}))
  until engine_answers; do
    if ((SECONDS >= deadline)); then
      dump_tail 30 "$WORK/dockerd.log"
      die "dockerd did not answer within ${OMNIBUS_DOCKER_START_DEADLINE:-60}s"
    fi
    sleep 0.5
  done
  say "dockerd answers after $(elapsed_since "$started")"
}

# The Debian mirror this machine's apt already uses, for debootstrap.
debian_mirror() {
  local uri
  uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n 1)
  [[ -n $uri ]] || uri=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | head -n 1)
  [[ -n $uri ]] || die "no Debian mirror found in /etc/apt sources"
  printf '%s' "$uri"
}

image_label() { docker image inspect -f "{{ index .Config.Labels \"omnibus.inputs\" }}" "$1" 2>/dev/null || true; }

build_base() {
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then return 0; fi
  local dir="$WORK/rootfs" started
  started=$(now_ms)
  rm -rf "$dir"
  say "debootstrap bookworm (minbase) into $dir"
  debootstrap --variant=minbase bookworm "$dir" "$(debian_mirror)" >"$WORK/debootstrap.log" 2>&1 ||
    { dump_tail 30 "$WORK/debootstrap.log"; die "debootstrap failed"; }
  tar -C "$dir" -c . | docker import - "$BASE_IMAGE" >/dev/null
  rm -rf "$dir"
  say "base image $BASE_IMAGE made in $(elapsed_since "$started")"
}

# build_image NAME CONTEXT_DIR [--build-arg …]: builds when the context's hash differs from the image's label.
build_image() {
  local name=$1 context=$2
  shift 2
  local hash started
  hash=$( (cd "$context" && find . -type f -printf '%p %s\n' | sort && find . -type f ! -name '*.jar' -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16)
  hash="$hash-$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE" | cut -c8-19)"
  if [[ $(image_label "$name") == "$hash" ]]; then
    say "$name up to date"
    return 0
  fi
  started=$(now_ms)
  docker build -q --label "omnibus.inputs=$hash" -t "$name" "$@" "$context" >"$WORK/build-${name//[\/:]/_}.log" 2>&1 ||
    { dump_tail 40 "$WORK/build-${name//[\/:]/_}.log"; die "building $name failed"; }
  say "$name built in $(elapsed_since "$started")"
}

# A build context with the jars a broker script resolved (hard links where possible, copies otherwise).
jar_context() {
  local name=$1 lib=$2 dir="$WORK/context/$1"
  rm -rf "$dir"
  mkdir -p "$dir/lib"
  cp -r "$root/docker/$name/." "$dir/"
  cp -l "$lib"/*.jar "$dir/lib/" 2>/dev/null || cp "$lib"/*.jar "$dir/lib/"
  printf '%s' "$dir"
}

images() {
  engine_answers || die "no Docker engine answers${DOCKER_HOST:+ at $DOCKER_HOST}: start one (scripts/docker.sh start)"
  mkdir -p "$WORK"
  build_base
  bash "$here/brokers/kafka.sh" fetch >/dev/null
  bash "$here/brokers/elasticmq.sh" fetch >/dev/null
  build_image "$JRE_IMAGE" "$root/docker/jre"
  build_image omnibus/rabbitmq:3.10 "$root/docker/rabbitmq"
  build_image "omnibus/kafka:$KAFKA_VERSION" \
    "$(jar_context kafka "$OMNIBUS_BROKER_CACHE/kafka-$KAFKA_VERSION/lib")"
  build_image "omnibus/elasticmq:$ELASTICMQ_VERSION" \
    "$(jar_context elasticmq "$OMNIBUS_BROKER_CACHE/elasticmq-$ELASTICMQ_VERSION/lib")"
}

stop_engine() {
  local pid
  pid=$(read_pid "$WORK/dockerd.pid")
  [[ -n $pid ]] || pid=$(read_pid /var/run/docker.pid)
  [[ -n $pid ]] || { say "no dockerd started here"; return 0; }
  stop_pid "$pid" dockerd 30
  say "dockerd stopped"
}

case "${1:-}" in
  install) install_packages ;;
  start)
    install_packages
    start_engine
    ;;
  images) images ;;
  setup)
    install_packages
    start_engine
    images
    ;;
  stop) stop_engine ;;
  status) engine_answers ;;
  clean)
    ids=$(docker ps -aq --filter label=omnibus.test 2>/dev/null || true)
    [[ -z $ids ]] || docker rm -f $ids >/dev/null
    ;;
  *)
    echo "usage: scripts/docker.sh install|start|images|setup|stop|status|clean" >&2
    exit 2
    ;;
esac
