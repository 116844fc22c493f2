#!/usr/bin/env bash
# `make run`: the whole pipeline on this machine, in the foreground.
#   embedded Kafka (librdkafka mock cluster, in memory)  -> address in .local/run/kafka.bootstrap
#   ClickHouse, HTTP on 127.0.0.1:8123, data in .local/clickhouse (fresh each run)
#   ingest-gateway on http://127.0.0.1:8080 (token: your_auth_token)
#   event-sink (ops on :9101) and profile-consumer (ops on :9102)
# Ctrl-C (or SIGTERM) stops them in reverse order; each one drains and commits first.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
log() { printf '\033[1m[run]\033[0m %s\n' "$*" >&2; }

if ! command -v clickhouse-server >/dev/null 2>&1; then
  log "installing ClickHouse from Debian's packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null
fi

log "building (cargo build --bins)"
cargo build --bins -q
bin=target/debug
mkdir -p .local/run
rm -f .local/run/kafka.bootstrap .local/run/clickhouse.ready

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
  log "stopped"
}
trap stop_all INT TERM EXIT

wait_for() { # description, command...
  local what=$1; shift
  for _ in $(seq 1 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  log "timed out waiting for $what"; exit 1
}

# Kafka and ClickHouse run in their own sessions so that Ctrl-C (sent to the whole
# foreground process group) reaches only the services; stop_all stops these two last.
setsid "$bin/vero-dev-broker" .local/run/kafka.bootstrap & pids+=($!)
wait_for "the embedded Kafka" test -s .local/run/kafka.bootstrap
export VERO__KAFKA__BROKERS="$(cat .local/run/kafka.bootstrap)"

# A fresh ClickHouse database on every run: the embedded Kafka keeps nothing across
# runs, and profiles are restored from Kafka, so old ClickHouse data would disagree.
rm -rf .local/clickhouse
setsid "$bin/vero-dev-clickhouse" .local/clickhouse .local/run/clickhouse.ready & pids+=($!)
wait_for "ClickHouse on 127.0.0.1:8123" test -e .local/run/clickhouse.ready

export VERO_ENV=local
VERO_CONFIG_DIR=config/gateway "$bin/ingest-gateway" & pids+=($!)
VERO_CONFIG_DIR=config/event-sink "$bin/event-sink" & pids+=($!)
VERO_CONFIG_DIR=config/profile-consumer "$bin/profile-consumer" & pids+=($!)
wait_for "the gateway on 127.0.0.1:8080" curl -sf http://127.0.0.1:8080/readyz

cat >&2 <<'MSG'

  The pipeline is up. Send Vero's documented example:

    curl -s http://127.0.0.1:8080/api/v2/events/track -H 'Content-Type: application/json' \
      -d '{"auth_token":"your_auth_token","identity":{"id":"1","email":"janedoe@getvero.com"},"event_name":"user_signed_up","data":{"item":"Blue shoes","price":40.00}}'

  Then see it in ClickHouse (within ~2 s):

    clickhouse-client --query "SELECT event_name, user_id, email, data FROM vero.events FINAL ORDER BY received_at DESC LIMIT 10 FORMAT PrettyCompact"

  and the merged profile:

    clickhouse-client --query "SELECT * FROM vero.profiles_live WHERE user_id = '1' FORMAT Vertical"

  Metrics: http://127.0.0.1:8080/metrics, :9101/metrics (sink), :9102/metrics (profiles). Ctrl-C stops.

MSG
wait -n "${pids[@]}" || true
log "a component exited; shutting the rest down"
