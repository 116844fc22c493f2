#!/usr/bin/env bash
# `make run`: the whole pipeline on this machine, in the foreground, keeping its data.
#   Kafka: tansu, persistent (SQLite in .local/kafka/), on 127.0.0.1:9092
#   ClickHouse: HTTP 127.0.0.1:8123, native 9000, data in .local/clickhouse
#   ingest-gateway on http://127.0.0.1:8080 (token: your_auth_token)
#   event-sink (ops on :9101) and profile-consumer (ops on :9102)
# Release binaries. Every component runs under vero-supervise: one that exits (a crash,
# a kill -9) is logged and started again with backoff while the rest keep serving.
# Ctrl-C (or SIGTERM) stops them in reverse order; each one drains and commits first.
# Data is kept across runs; `make run-clean` (VERO_RUN_CLEAN=1) starts from empty.
# Why tansu and not the librdkafka mock cluster: docs/reliability.md.
# Knobs for the test that runs this script (crates/vero-chaos/tests/make_run.rs):
#   VERO_RUN_DIR=.local        where the data and run files are kept
#   VERO_RUN_PORT_BASE=N       ports N..N+5 instead of 9092 8123 9000 8080 9101 9102
#   VERO_RUN_BIN_DIR=DIR       use these binaries instead of building release ones
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
# A closed output (`make run 2>&1 | tee log`: Ctrl-C ends tee too) must not kill this
# script in the middle of stopping, which would leave Kafka and ClickHouse running:
# SIGPIPE is ignored and a log line that cannot be written is dropped.
trap '' PIPE
exec 9>&2
log() { printf '\033[1m[run]\033[0m %s\n' "$*" >&9 2>/dev/null || true; }

# ClickHouse and tansu when missing (idempotent; seconds on a warm machine).
scripts/install-deps.sh

state=${VERO_RUN_DIR:-.local}
if [ "${VERO_RUN_CLEAN:-0}" = 1 ]; then
  log "VERO_RUN_CLEAN=1: deleting the kept Kafka and ClickHouse data ($state/kafka, $state/clickhouse)"
  rm -rf "$state/kafka" "$state/clickhouse"
fi

if [ -n "${VERO_RUN_BIN_DIR:-}" ]; then
  bin=$VERO_RUN_BIN_DIR
else
  log "building release binaries (cargo build --release --bins)"
  cargo build --release --bins -q
  bin=target/release
fi
bin=$(realpath "$bin")
for name in vero-supervise vero-dev-topics vero-dev-clickhouse ingest-gateway event-sink profile-consumer; do
  if [ ! -x "$bin/$name" ]; then
    log "$bin/$name is missing: build the binaries first (cargo build --bins for target/debug)"
    exit 1
  fi
done
tansu_bin=$(command -v tansu || echo "$HOME/.cargo/bin/tansu")
mkdir -p "$state/run" "$state/kafka"
rm -f "$state/run/clickhouse.ready"

if [ -n "${VERO_RUN_PORT_BASE:-}" ]; then
  b=$VERO_RUN_PORT_BASE
  ports=($b $((b + 1)) $((b + 2)) $((b + 3)) $((b + 4)) $((b + 5)))
else
  ports=(9092 8123 9000 8080 9101 9102)
fi
kafka_port=${ports[0]} ch_http=${ports[1]} ch_tcp=${ports[2]} gateway_port=${ports[3]}
sink_ops=${ports[4]} profiles_ops=${ports[5]}
for port in "${ports[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    log "port $port is already in use (another make run?); stop that first"; exit 1
  fi
done

pids=()
stop_all() {
  trap - INT TERM EXIT
  log "stopping"
  # Reverse start order, one at a time: the consumers drain and commit while Kafka and
  # ClickHouse are still up, then those two stop.
  for ((i=${#pids[@]}-1; i>=0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  log "stopped; data kept in $state/ (make run-clean starts empty)"
}
trap stop_all INT TERM EXIT

wait_for() { # description, command...
  local what=$1; shift
  for _ in $(seq 1 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  log "timed out waiting for $what"; exit 1
}

# Kafka and ClickHouse run in their own sessions so that Ctrl-C (sent to the whole
# foreground process group) reaches only the services; stop_all stops these two last.
kafka=127.0.0.1:$kafka_port
# tansu resolves sqlite:// paths against its working directory (even a leading `/`),
# so it runs in the Kafka data directory.
(cd "$state/kafka" && exec setsid "$bin/vero-supervise" --name kafka -- "$tansu_bin" broker \
  --cluster-id vero-local \
  --listener-url "tcp://$kafka" --advertised-listener-url "tcp://$kafka" \
  --storage-engine "sqlite://tansu.db") & pids+=($!)
wait_for "Kafka (tansu) on $kafka" bash -c "exec 3<>/dev/tcp/127.0.0.1/$kafka_port"
"$bin/vero-dev-topics" "$kafka"
export VERO__KAFKA__BROKERS=$kafka
# tansu 0.6 wedges for good on the producer epoch librdkafka raises after the broker
# was away longer than a delivery timeout: no broker-side duplicate check here; the
# consumers drop a retry's copy by request key (vero_service::producer_retries).
export VERO__KAFKA__IDEMPOTENT_PRODUCER=false

VERO_DEV_CLICKHOUSE_HTTP_PORT=$ch_http VERO_DEV_CLICKHOUSE_TCP_PORT=$ch_tcp \
  setsid "$bin/vero-supervise" --name clickhouse -- "$bin/vero-dev-clickhouse" "$state/clickhouse" "$state/run/clickhouse.ready" & pids+=($!)
wait_for "ClickHouse on 127.0.0.1:$ch_http" test -e "$state/run/clickhouse.ready"

export VERO_ENV=local
clickhouse_url=http://127.0.0.1:$ch_http
VERO_CONFIG_DIR=config/gateway VERO__HTTP__LISTEN=127.0.0.1:$gateway_port \
  "$bin/vero-supervise" --name gateway -- "$bin/ingest-gateway" & pids+=($!)
VERO_CONFIG_DIR=config/event-sink VERO__CLICKHOUSE__URL=$clickhouse_url VERO__OPS__LISTEN=127.0.0.1:$sink_ops \
  "$bin/vero-supervise" --name event-sink -- "$bin/event-sink" & pids+=($!)
VERO_CONFIG_DIR=config/profile-consumer VERO__CLICKHOUSE__URL=$clickhouse_url VERO__OPS__LISTEN=127.0.0.1:$profiles_ops \
  "$bin/vero-supervise" --name profile-consumer -- "$bin/profile-consumer" & pids+=($!)
wait_for "the gateway on 127.0.0.1:$gateway_port" curl -sf "http://127.0.0.1:$gateway_port/readyz"

cat >&2 <<'MSG'

  The pipeline is up. Send Vero's documented example:

    curl -s http://127.0.0.1:8080/api/v2/events/track -H 'Content-Type: application/json' \
      -d '{"auth_token":"your_auth_token","identity":{"id":"1","email":"janedoe@getvero.com"},"event_name":"user_signed_up","data":{"item":"Blue shoes","price":40.00}}'

  Then see it in ClickHouse (within ~2 s):

    clickhouse-client --query "SELECT event_name, user_id, email, data FROM vero.events ORDER BY received_at DESC LIMIT 10 FORMAT PrettyCompact"

  and the merged profile:

    clickhouse-client --query "SELECT * FROM vero.profiles_live WHERE user_id = '1' FORMAT Vertical"

  Metrics: http://127.0.0.1:8080/metrics, :9101/metrics (sink), :9102/metrics (profiles).
  A component that exits is restarted. Ctrl-C stops everything; data is kept.

MSG
# Supervisors only exit when stopped; wait for the signal.
wait "${pids[@]}" || true
