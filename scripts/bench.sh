#!/usr/bin/env bash
# `make bench`: build in release mode, run the criterion microbenchmarks, then the
# bench suite (crates/vero-bench/src/suite), which writes docs/benchmarks.md.
# Knobs (environment):
#   VERO_BENCH_SECS=20           measured seconds per HTTP run (plus VERO_BENCH_WARMUP_SECS=3)
#   VERO_BENCH_OVERLOAD_SECS=300 length of the overload run (shorten for a quick look)
#   VERO_BENCH_RECORDS=200000    records for the produce-path and sink comparisons
#   VERO_BENCH_E2E_RATE=2000     open-loop req/s of the end-to-end run
#   VERO_BENCH_CLUSTER_ROUNDS=3  interleaved rounds (one node, then a 2x2 cluster) of the cluster step
#   VERO_BENCH_PROFILE_RATIO_USERS=1000000  users (one event each) of the profiles step's throughput
#                                comparison: the all-in-memory consumer of 5a7e9c2 vs today's, 2 rounds
#   VERO_BENCH_PROFILE_USERS=10000000       users of the profiles step's scale run (then its restart
#                                after kill -9 and its moved-partitions restore)
#   VERO_BENCH_STEPS=http,dedup  run only these steps (http produce sink e2e overload dedup cluster batch profiles micro);
#                                the sections of the others are kept from docs/benchmarks.md
# Everything listens on 127.0.0.1 only; every step is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
log() { printf '[bench] %s\n' "$*" >&2; }

scripts/install-deps.sh
# More connections than the default 1024 descriptors: 512-connection overload plus servers.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

log "building release binaries"
cargo build --release -p vero-bench -p vero-loadgen -p ingest-gateway -p event-sink -p vero-testkit -p profile-consumer --bins
# The dedup step's baseline: today's gateway without its request-id handling (the two
# calls of crates/ingest-gateway/src/track/message_id.rs removed), built from a copy of
# the source in its own target dir (kept between runs), so the ratio is that cost alone.
wants() { [[ -z "${VERO_BENCH_STEPS:-}" || ",${VERO_BENCH_STEPS}," == *",$1,"* ]]; }
if wants dedup; then
  baseline_src=target/bench/baseline-src
  rm -rf "$baseline_src"; mkdir -p "$baseline_src"
  cp -r Cargo.toml Cargo.lock crates config schemas "$baseline_src"/
  calls='message_id::merge_header|message_id::validate'
  removed=$(grep -rEc "$calls" "$baseline_src/crates/ingest-gateway/src" | awk -F: '{n += $2} END {print n}')
  if [[ "$removed" != 2 ]]; then
    log "expected 2 request-id calls in the gateway, found $removed: update the dedup baseline in scripts/bench.sh"; exit 1
  fi
  grep -rlE "$calls" "$baseline_src/crates/ingest-gateway/src" | xargs sed -i -E "/$calls/d"
  log "building the baseline gateway (no request-id handling; the first build takes a few minutes)"
  (cd "$baseline_src" && CARGO_TARGET_DIR="$PWD/../baseline-target" cargo build --release -p ingest-gateway --bin ingest-gateway)
  export VERO_BENCH_BASELINE_GATEWAY="$PWD/target/bench/baseline-target/release/ingest-gateway"
  export VERO_BENCH_BASELINE_CONFIG="$PWD/$baseline_src/config/gateway"
fi
# The profiles step's baseline: the profile consumer of 5a7e9c2, the last commit that
# held every profile in memory, with its own config dir (it refuses today's [state]).
if wants profiles; then
  profiles_src=target/bench/profiles-baseline-src
  rm -rf "$profiles_src"; mkdir -p "$profiles_src"
  git archive 5a7e9c2 | tar -x -C "$profiles_src"
  log "building the baseline profile consumer (5a7e9c2, all in memory)"
  (cd "$profiles_src" && CARGO_TARGET_DIR="$PWD/../baseline-target" cargo build --release -p profile-consumer --bin profile-consumer)
  export VERO_BENCH_BASELINE_PROFILE_CONSUMER="$PWD/target/bench/baseline-target/release/profile-consumer"
  export VERO_BENCH_BASELINE_PROFILE_CONFIG="$PWD/$profiles_src/config/profile-consumer"
fi
if wants micro; then
  log "criterion microbenchmarks"
  cargo bench -p vero-bench --bench micro -- --noplot
fi
log "bench suite (this takes a while; VERO_BENCH_OVERLOAD_SECS=${VERO_BENCH_OVERLOAD_SECS:-300} s of overload included)"
VERO_BENCH_COMMAND="${VERO_BENCH_COMMAND:-make bench}" target/release/bench-suite docs/benchmarks.md target/criterion
log "done: docs/benchmarks.md"
