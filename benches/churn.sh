#!/usr/bin/env bash
# Upstream connects per request, exact, from the proxy's own /metrics:
#   benches/churn.sh [PROXY=target/release/proxy] [BACKEND=nginx] [KEEPALIVE=auto|N]
# One worker, the backend from `loadbench backend --kind BACKEND`, and for 200 then 1000 wrk
# clients: 1 s warm-up, then 3 s counted (proxy_upstream_connects_total and proxy_requests_total
# before and after). Everything on 127.0.0.1; processes stopped by pid.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/proxy} BACKEND=${2:-nginx} KA=${3:-auto}
cargo build --release --bins -p benches >/dev/null 2>&1
dir=$(mktemp -d)
target/release/loadbench backend --threads 1 --kind "$BACKEND" >"$dir/backend.out" &
bpid=$!
trap 'kill $bpid ${ppid:-} 2>/dev/null; wait 2>/dev/null; rm -rf $dir' EXIT
for _ in $(seq 150); do grep -q PORT "$dir/backend.out" && break; sleep 0.1; done
bport=$(awk '/PORT/{print $2}' "$dir/backend.out")
port=$((20000 + RANDOM % 20000)); admin=$((port + 1))
ka=""; [ "$KA" = auto ] || ka="keepalive = $KA"
printf 'workers = 1\naccess_log = "off"\nadmin = "127.0.0.1:%s"\n[upstream.b]\nservers = [{ address = "127.0.0.1:%s" }]\n%s\n[[server]]\nlisten = ["127.0.0.1:%s"]\n[[server.location]]\npath = "/"\nproxy_pass = "b"\n' $admin $bport "$ka" $port > "$dir/p.toml"
"$BIN" --config "$dir/p.toml" >/dev/null 2>&1 &
ppid=$!
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/small" && break; sleep 0.1; done
m() { curl -s "http://127.0.0.1:$admin/metrics" | awk -v k="$1" '$1==k{print $2} index($1,"proxy_requests_total{")==1 && k=="req"{s+=$2} END{if(k=="req")print s}'; }
for c in 200 1000; do
  wrk -t1 -c$c -d1s "http://127.0.0.1:$port/small" >/dev/null
  c0=$(m proxy_upstream_connects_total); r0=$(m req)
  wrk -t1 -c$c -d3s "http://127.0.0.1:$port/small" >/dev/null
  c1=$(m proxy_upstream_connects_total); r1=$(m req)
  echo "backend $BACKEND keepalive $KA c$c: requests $((r1-r0)) upstream connects $((c1-c0)) per request $(awk -v a=$((c1-c0)) -v b=$((r1-r0)) 'BEGIN{printf "%.4f", a/b}')"
done
