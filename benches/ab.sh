#!/usr/bin/env bash
# A/B two proxy binaries on the same backend, interleaved, with wrk on 127.0.0.1:
#   benches/ab.sh OLD_PROXY NEW_PROXY [CONNS=50] [PATH=/small] [ROUNDS=3]
# Per run: req/s and p99 from wrk (4 s after a 1 s warm-up) and the proxy's CPU per request
# (utime+stime from /proc/PID/stat, 10 ms ticks). Non-2xx answers abort the run.
set -euo pipefail
cd "$(dirname "$0")/.."
A=$1 B=$2 C=${3:-50} P=${4:-/small} R=${5:-3}
cargo build --release --bins -p benches >/dev/null 2>&1
dir=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
target/release/loadbench backend --threads 1 >"$dir/backend.out" &
pids+=($!)
for _ in $(seq 50); do grep -q PORT "$dir/backend.out" && break; sleep 0.1; done
bport=$(awk '/PORT/{print $2}' "$dir/backend.out")
port=$((20000 + RANDOM % 20000))
cat >"$dir/proxy.toml" <<TOML
workers = 1
access_log = "off"
[upstream.b]
servers = [{ address = "127.0.0.1:$bport" }]
keepalive = 1024
[[server]]
listen = ["127.0.0.1:$port"]
[[server.location]]
path = "/"
proxy_pass = "b"
TOML
hz=$(getconf CLK_TCK)
for _ in $(seq "$R"); do
  for bin in "$A" "$B"; do
    "$bin" --config "$dir/proxy.toml" 2>"$dir/proxy.err" &
    pid=$!
    for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port$P" && break; sleep 0.1; done
    wrk -t1 -c"$C" -d1s "http://127.0.0.1:$port$P" >/dev/null
    t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
    out=$(wrk -t1 -c"$C" -d4s --latency "http://127.0.0.1:$port$P")
    t1=$(awk '{print $14+$15}' "/proc/$pid/stat")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    if grep -q Non-2xx <<<"$out"; then echo "ab: $bin answered non-2xx" >&2; exit 1; fi
    n=$(awk '/requests in/{print $1}' <<<"$out")
    awk -v b="$bin" -v c="$C" -v n="$n" -v t="$((t1 - t0))" -v hz="$hz" '
      /Requests\/sec/{rps=$2} $1=="99%"{p99=$2}
      END{printf "%s c%s: %s req/s p99 %s cpu_us/req %.2f\n", b, c, rps, p99, t*1e6/hz/n}' <<<"$out"
  done
done
