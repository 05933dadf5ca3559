#!/usr/bin/env bash
# Which flows change balancer when one of N equal-cost paths to a VIP is withdrawn and comes
# back, for the two kinds of kernel nexthop group a Linux router can use:
#   hash       hash-threshold ECMP: what FRR 8.4 (Debian 12) installs for BGP multipath routes
#   resilient  a resilient group (kernel 5.13+, `type resilient buckets 512 idle_timer 0`)
# A flow that changes balancer is a connection reset: the new balancer has no state for it.
#   benches/ecmp_remap.sh [FLOWS=2000]        (root; two scratch namespaces, removed on exit)
# Flows are (source port, port 80) tuples; `ip route get ... sport P dport 80 ipproto tcp` asks
# the kernel which path each takes with fib_multipath_hash_policy = 1, as the lab's router.
set -euo pipefail
FLOWS=${1:-2000}
NS=remap$$-r
PEER=remap$$-p
tmp=$(mktemp -d)
ip netns add "$NS"
ip netns add "$PEER"
cleanup() { ip netns del "$NS" 2>/dev/null || true; ip netns del "$PEER" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
ip -n "$NS" link add veth0 type veth peer name veth0 netns "$PEER"
ip -n "$NS" addr add 10.9.0.1/24 dev veth0
ip -n "$NS" link set veth0 up
ip -n "$PEER" link set veth0 up
ip netns exec "$NS" sysctl -qw net.ipv4.fib_multipath_hash_policy=1
for i in 1 2 3 4 5 6 7 8; do ip -n "$NS" nexthop add id "$i" via "10.9.0.1$i" dev veth0; done
for i in $(seq 0 $((FLOWS - 1))); do
  echo "route get 10.8.0.80 from 10.9.0.1 sport $((20000 + i)) dport 80 ipproto tcp"
done >"$tmp/flows"
paths() { ip -n "$NS" -batch "$tmp/flows" | grep -o 'via [0-9.]*' | cut -d' ' -f2; }
echo "paths  group      withdrawal: survivors' flows moved   return: flows moved (share)"
for n in 2 4 8; do
  all=$(seq -s/ 1 "$n")
  rest=$(seq -s/ 2 "$n")
  for kind in hash resilient; do
    t=()
    [ "$kind" = resilient ] && t=(type resilient buckets 512 idle_timer 0)
    ip -n "$NS" nexthop add id 100 group "$all" "${t[@]}"
    ip -n "$NS" route add 10.8.0.80/32 nhid 100
    paths >"$tmp/before"
    ip -n "$NS" nexthop replace id 100 group "$rest" "${t[@]}"
    paths >"$tmp/withdrawn"
    ip -n "$NS" nexthop replace id 100 group "$all" "${t[@]}"
    paths >"$tmp/back"
    survivors=$(grep -vc '^10.9.0.11$' "$tmp/before" || true)
    moved=$(paste "$tmp/before" "$tmp/withdrawn" | awk '$1 != "10.9.0.11" && $1 != $2' | wc -l)
    back=$(paste "$tmp/withdrawn" "$tmp/back" | awk '$1 != $2' | wc -l)
    printf '%-6s %-10s %5d of %5d (%3d %%)                  %5d of %d (%3d %%)\n' "$n" "$kind" \
      "$moved" "$survivors" $((100 * moved / survivors)) "$back" "$FLOWS" $((100 * back / FLOWS))
    ip -n "$NS" route del 10.8.0.80/32
    ip -n "$NS" nexthop del id 100
  done
done
