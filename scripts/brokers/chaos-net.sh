#!/usr/bin/env bash
# The chaos run's private network: a network namespace for the client processes, joined to the host by a
# veth pair (host 10.201.0.1/24 <-> namespace 10.201.0.2/24), so that a partition between clients and
# broker is a real packet drop and never touches loopback or any other interface.
#
# Brokers reach the namespace in one of two ways:
#   - kafka-private and elasticmq-private listen on the host end, 10.201.0.1, themselves;
#   - rabbitmq-private (5673) and nats-private (4223) listen on 127.0.0.1 only
#     (other suites use them there), so connections from the namespace to 10.201.0.1:<port> are
#     destination-NATed to 127.0.0.1:<port> in the kernel (nftables; no proxy process, so the broker sees
#     the client's own TCP connection and a partition hits it as it would hit a real one).
#
# Usage: chaos-net.sh up|down|status
#        chaos-net.sh partition   drop every packet between the namespace and the host (both directions)
#        chaos-net.sh heal        remove that drop
#        chaos-net.sh exec CMD…   run CMD inside the namespace
# Needs root, iproute2 (ip) and nftables (nft): `apt-get install iproute2 nftables`.
set -euo pipefail

# shellcheck disable=SC2034 # read by lib.sh
BROKER_NAME=chaos-net
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

NS=omnibus-chaos
HOST_IF=omb-chaos0
NS_IF=omb-chaos1
HOST_ADDR=10.201.0.1
NS_ADDR=10.201.0.2
PREFIX=24
# Host-side nft table (NAT toward loopback) and the namespace's own table (the partition).
NAT_TABLE=omnibus_chaos_nat
PARTITION_TABLE=omnibus_chaos_partition
NAT_PORTS=(5673 4223)

need_tools() {
  [[ $(id -u) == 0 ]] || die "needs root (network namespaces, veth, nftables)"
  command -v ip >/dev/null || die "ip not found: apt-get install iproute2"
  command -v nft >/dev/null || die "nft not found: apt-get install nftables"
}

ns_exists() { ip netns list 2>/dev/null | grep -qw -- "$NS"; }

# The namespace, its veth pair with addresses, and the NAT rules, all present and up.
is_up() {
  ns_exists || return 1
  ip -br addr show dev "$HOST_IF" 2>/dev/null | grep -q "$HOST_ADDR/$PREFIX" || return 1
  ip -n "$NS" -br addr show dev "$NS_IF" 2>/dev/null | grep -q "$NS_ADDR/$PREFIX" || return 1
  nft list table ip "$NAT_TABLE" >/dev/null 2>&1
}

write_nat() {
  local rules="" port
  for port in "${NAT_PORTS[@]}"; do
    rules+="    iifname \"$HOST_IF\" ip daddr $HOST_ADDR tcp dport $port dnat to 127.0.0.1:$port"$'\n'
  done
  nft delete table ip "$NAT_TABLE" 2>/dev/null || true
  nft -f - <<NFT
table ip $NAT_TABLE {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
$rules  }
}
NFT
}

up() {
  local started
  started="$(now_ms)"
  need_tools
  if is_up; then
    say "already up ($NS: $NS_ADDR <-> host $HOST_ADDR)"
    return 0
  fi
  # A half-made network from an interrupted run is rebuilt from scratch.
  down_quiet
  ip netns add "$NS"
  ip link add "$HOST_IF" type veth peer name "$NS_IF" netns "$NS"
  ip addr add "$HOST_ADDR/$PREFIX" dev "$HOST_IF"
  ip link set "$HOST_IF" up
  ip -n "$NS" addr add "$NS_ADDR/$PREFIX" dev "$NS_IF"
  ip -n "$NS" link set "$NS_IF" up
  ip -n "$NS" link set lo up
  # DNAT to 127.0.0.1 needs the kernel to accept loopback destinations on this interface.
  sysctl -qw "net.ipv4.conf.$HOST_IF.route_localnet=1"
  write_nat
  say "up ($NS: $NS_ADDR <-> host $HOST_ADDR; NAT to loopback for ports ${NAT_PORTS[*]}; in $(elapsed_since "$started"))"
}

down_quiet() {
  nft delete table ip "$NAT_TABLE" 2>/dev/null || true
  # Deleting the namespace deletes its veth end, and with it the host end.
  if ns_exists; then ip netns del "$NS"; fi
  if ip link show "$HOST_IF" >/dev/null 2>&1; then ip link del "$HOST_IF"; fi
  return 0
}

down() {
  need_tools
  down_quiet
  say "down"
}

partition() {
  need_tools
  is_up || die "not up: run chaos-net.sh up first"
  ip netns exec "$NS" nft delete table inet "$PARTITION_TABLE" 2>/dev/null || true
  ip netns exec "$NS" nft -f - <<NFT
table inet $PARTITION_TABLE {
  chain input { type filter hook input priority 0; policy accept; iifname "$NS_IF" drop; }
  chain output { type filter hook output priority 0; policy accept; oifname "$NS_IF" drop; }
}
NFT
  say "partitioned ($NS <-/-> host)"
}

heal() {
  need_tools
  ip netns exec "$NS" nft delete table inet "$PARTITION_TABLE" 2>/dev/null || true
  say "healed"
}

status() {
  need_tools
  if ! is_up; then
    say "down"
    return 3
  fi
  if ip netns exec "$NS" nft list table inet "$PARTITION_TABLE" >/dev/null 2>&1; then
    say "up, PARTITIONED ($NS: $NS_ADDR <-> host $HOST_ADDR)"
  else
    say "up ($NS: $NS_ADDR <-> host $HOST_ADDR)"
  fi
}

main() {
  case "${1:-}" in
    up | start)
      take_lock chaos-net
      up
      ;;
    down | stop)
      take_lock chaos-net
      down
      ;;
    status) status ;;
    partition) partition ;;
    heal) heal ;;
    exec)
      shift
      need_tools
      exec ip netns exec "$NS" "$@"
      ;;
    *)
      echo "usage: $0 up|down|status|partition|heal|exec CMD…" >&2
      exit 2
      ;;
  esac
}

main "$@"
