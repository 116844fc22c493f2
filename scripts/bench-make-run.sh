#!/usr/bin/env bash
# The gateway inside `make run` (Apache Kafka, ClickHouse and both consumers on the same
# 2 cores) against the trivial hyper server, measured in the same run, alternating:
#   scripts/bench-make-run.sh            (release binaries; VERO_BENCH_SECS=8 per run,
#                                         VERO_BENCH_ROUNDS=2, VERO_BENCH_CONNECTIONS="256 32")
# Prints a Markdown table (for docs/benchmarks.md). Everything on 127.0.0.1; the local
# run uses its own ports and a temp data dir and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
secs=${VERO_BENCH_SECS:-8} rounds=${VERO_BENCH_ROUNDS:-2} conns=${VERO_BENCH_CONNECTIONS:-256 32}
log() { printf '[bench-make-run] %s\n' "$*" >&2; }

cargo build --release --bins -q
state=$(mktemp -d /tmp/vero-bench-run-XXXX)
base=24100 trivial_port=24190
log "make run on ports $base.. (data in $state, log in $state/run.log)"
VERO_RUN_DIR=$state VERO_RUN_PORT_BASE=$base VERO_RUN_BIN_DIR=target/release \
  setsid bash scripts/run-local.sh >"$state/run.log" 2>&1 &
run=$!
target/release/trivial-server "127.0.0.1:$trivial_port" >"$state/trivial.log" 2>&1 &
trivial=$!
cleanup() { kill -TERM -- "-$run" 2>/dev/null || true; kill "$trivial" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$((base + 3))/readyz" >/dev/null && break; sleep 0.5; done
curl -sf "http://127.0.0.1:$((base + 3))/readyz" >/dev/null || { log "make run not ready"; tail -30 "$state/run.log"; exit 1; }

measure() { # url connections -> "req/s p99_ms"
  target/release/vero-loadgen --url "$1" --connections "$2" --duration "$secs" --warmup 2 --quiet \
    --json "$state/report.json" >/dev/null 2>&1
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%.0f %.1f" % (r["ok_rps"], r["ok_latency_ms"]["p99"]))' \
    "$state/report.json"
}
echo "| connections | round | gateway in make run req/s | trivial req/s | ratio | gateway p99 ms |"
echo "|---|---|---:|---:|---:|---:|"
for c in $conns; do
  for r in $(seq 1 "$rounds"); do
    read -r g gp99 < <(measure "http://127.0.0.1:$((base + 3))/api/v2/events/track" "$c")
    read -r t _ < <(measure "http://127.0.0.1:$trivial_port/api/v2/events/track" "$c")
    echo "| $c | $r | $g | $t | $(python3 -c "print(f'{$g/$t:.2f}')") | $gp99 |"
  done
done
