#!/usr/bin/env bash
# `make bench`: build in release mode, run the criterion microbenchmarks, then the
# bench suite (crates/vero-bench/src/suite), which writes docs/benchmarks.md.
# Knobs (environment):
#   VERO_BENCH_SECS=20           measured seconds per HTTP run (plus VERO_BENCH_WARMUP_SECS=3)
#   VERO_BENCH_OVERLOAD_SECS=300 length of the overload run (shorten for a quick look)
#   VERO_BENCH_RECORDS=200000    records for the produce-path and sink comparisons
#   VERO_BENCH_E2E_RATE=2000     open-loop req/s of the end-to-end run
# Everything listens on 127.0.0.1 only; every step is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
log() { printf '[bench] %s\n' "$*" >&2; }

scripts/install-deps.sh
# More connections than the default 1024 descriptors: 512-connection overload plus servers.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

log "building release binaries"
cargo build --release -p vero-bench -p vero-loadgen -p ingest-gateway -p event-sink -p vero-testkit --bins
log "criterion microbenchmarks"
cargo bench -p vero-bench --bench micro -- --noplot
log "bench suite (this takes a while; VERO_BENCH_OVERLOAD_SECS=${VERO_BENCH_OVERLOAD_SECS:-300} s of overload included)"
VERO_BENCH_COMMAND="${VERO_BENCH_COMMAND:-make bench}" target/release/bench-suite docs/benchmarks.md target/criterion
log "done: docs/benchmarks.md"
