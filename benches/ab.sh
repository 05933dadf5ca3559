#!/usr/bin/env bash
# A/B two proxy binaries on the same backend, interleaved, with wrk on 127.0.0.1:
#   benches/ab.sh OLD_PROXY NEW_PROXY [CONNS=50] [PATH=/small] [ROUNDS=3]
# Environment: BACKEND=monoio|nginx|apache (default monoio), KEEPALIVE=N|auto (the upstream's
# `keepalive`, default 1024; auto leaves the proxy's default), WORKERS (default 1; B_WORKERS
# gives NEW_PROXY its own count, e.g. the same binary twice to compare 1 and 2 workers),
# BACKEND_THREADS (default 1),
# SECS (measured seconds per run, default 4), TASKSET_PROXY / TASKSET_LOAD (CPU lists for
# `taskset -c`: the proxy, and wrk plus the backend; default unpinned).
# Per run: req/s and p99 from wrk (SECS after a 1 s warm-up), the proxy's CPU per request
# (utime+stime from /proc/PID/stat) and TCP connects per request (machine-wide ActiveOpens
# from /proc/net/snmp minus wrk's connections), and the proxy threads' voluntary (sleeps) and
# involuntary (preempted) context switches per request. Non-2xx answers abort the run.
set -euo pipefail
cd "$(dirname "$0")/.."
A=$1 B=$2 C=${3:-50} P=${4:-/small} R=${5:-3}
BACKEND=${BACKEND:-monoio} KEEPALIVE=${KEEPALIVE:-1024} WORKERS=${WORKERS:-1} SECS=${SECS:-4}
B_WORKERS=${B_WORKERS:-$WORKERS}
cargo build --release --bins -p benches >/dev/null 2>&1
dir=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
# Command prefixes, not a shell function: `$!` of a backgrounded function is a subshell's pid,
# and killing it would leave the proxy running.
load=() proxy=()
[ -z "${TASKSET_LOAD:-}" ] || load=(taskset -c "$TASKSET_LOAD")
[ -z "${TASKSET_PROXY:-}" ] || proxy=(taskset -c "$TASKSET_PROXY")
"${load[@]}" target/release/loadbench backend --threads "${BACKEND_THREADS:-1}" --kind "$BACKEND" >"$dir/backend.out" &
pids+=($!)
for _ in $(seq 150); do grep -q PORT "$dir/backend.out" && break; sleep 0.1; done
bport=$(awk '/PORT/{print $2}' "$dir/backend.out")
port=$((20000 + RANDOM % 20000))
ka=""
[ "$KEEPALIVE" = auto ] || ka="keepalive = $KEEPALIVE"
for side in A B; do
  w=$WORKERS
  [ "$side" = A ] || w=$B_WORKERS
  cat >"$dir/proxy$side.toml" <<TOML
workers = $w
access_log = "off"
[upstream.b]
servers = [{ address = "127.0.0.1:$bport" }]
$ka
[[server]]
listen = ["127.0.0.1:$port"]
[[server.location]]
path = "/"
proxy_pass = "b"
TOML
done
hz=$(getconf CLK_TCK)
# Context switches of all the proxy's threads: a voluntary one per sleep in io_uring_enter, so
# per request they say how many requests each wake-up served.
ctxsw() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches/{v[$1]+=$2} END{printf "%d %d\n", v["voluntary_ctxt_switches:"], v["nonvoluntary_ctxt_switches:"]}'; }
opens() { awk '/^Tcp:/{n++; if (n==1) for (i=1;i<=NF;i++) if ($i=="ActiveOpens") c=i; if (n==2) print $c}' /proc/net/snmp; }
for _ in $(seq "$R"); do
  for side in A B; do
    bin=$A
    [ "$side" = A ] || bin=$B
    "${proxy[@]}" "$bin" --config "$dir/proxy$side.toml" >/dev/null 2>"$dir/proxy.err" &
    pid=$!
    for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port$P" && break; sleep 0.1; done
    "${load[@]}" wrk -t1 -c"$C" -d1s "http://127.0.0.1:$port$P" >/dev/null
    t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
    o0=$(opens)
    read -r v0 nv0 < <(ctxsw "$pid")
    out=$("${load[@]}" wrk -t1 -c"$C" -d"${SECS}s" --latency "http://127.0.0.1:$port$P")
    o1=$(opens)
    read -r v1 nv1 < <(ctxsw "$pid")
    t1=$(awk '{print $14+$15}' "/proc/$pid/stat")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    if grep -q Non-2xx <<<"$out"; then echo "ab: $bin answered non-2xx" >&2; exit 1; fi
    n=$(awk '/requests in/{print $1}' <<<"$out")
    awk -v b="$bin ($side)" -v c="$C" -v n="$n" -v t="$((t1 - t0))" -v hz="$hz" -v o="$((o1 - o0 - C))" \
      -v v="$((v1 - v0))" -v nv="$((nv1 - nv0))" '
      /Requests\/sec/{rps=$2} $1=="99%"{p99=$2}
      END{printf "%s c%s: %s req/s p99 %s cpu_us/req %.2f connects/req %.3f wakeups/req %.3f preempted/req %.3f\n", b, c, rps, p99, t*1e6/hz/n, (o<0?0:o)/n, v/n, nv/n}' <<<"$out"
  done
done
