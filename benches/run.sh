#!/usr/bin/env bash
# Build release binaries and run the load benchmark (our proxy vs nginx vs HAProxy vs direct).
#   benches/run.sh                 full run (under 10 minutes), results in target/loadbench/
#   benches/run.sh --quick         under a minute
#   benches/run.sh --workers 2     the scaling comparison
# Needs Debian's nginx, haproxy and wrk (./run installs them). Everything stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bins -p proxy -p benches
exec target/release/loadbench "$@"
