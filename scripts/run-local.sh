#!/usr/bin/env bash
# `make run`: the whole pipeline on this machine, in the foreground, keeping its data.
#   Kafka: Apache Kafka (one KRaft node, vero-dev-kafka), data in .local/kafka/, on
#          127.0.0.1:9092 (controller 9093); consumers in real consumer groups
#   ClickHouse: HTTP 127.0.0.1:8123, native 9000, data in .local/clickhouse
#   ingest-gateway on http://127.0.0.1:8080 (token: your_auth_token)
#   event-sink (ops on :9101) and profile-consumer (ops on :9102)
# Release binaries. Every component runs under vero-supervise: one that exits (a crash,
# a kill -9) is logged and started again with backoff while the rest keep serving.
# Ctrl-C (or SIGTERM) stops them in reverse order; each one drains and commits first.
# The stop is bounded: a component that has not exited within its grace is killed, and
# further Ctrl-Cs or SIGTERMs during the stop are ignored (they must not cut it short
# and orphan Kafka or ClickHouse, which run in sessions of their own).
# Data is kept across runs; `make run-clean` (VERO_RUN_CLEAN=1) starts from empty.
# Knobs for the test that runs this script (crates/vero-chaos/tests/make_run.rs):
#   VERO_RUN_DIR=.local        where the data and run files are kept
#   VERO_RUN_PORT_BASE=N       ports N..N+6 instead of 9092 8123 9000 8080 9101 9102 9093
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

# ClickHouse and Apache Kafka when missing (idempotent; seconds on a warm machine).
scripts/install-deps.sh

state=${VERO_RUN_DIR:-.local}
if [ "${VERO_RUN_CLEAN:-0}" = 1 ]; then
  log "VERO_RUN_CLEAN=1: deleting the kept Kafka, ClickHouse and profile-state data ($state/kafka, $state/clickhouse, $state/profile-state)"
  rm -rf "$state/kafka" "$state/clickhouse" "$state/profile-state"
fi

if [ -n "${VERO_RUN_BIN_DIR:-}" ]; then
  bin=$VERO_RUN_BIN_DIR
else
  log "building release binaries (cargo build --release --bins)"
  cargo build --release --bins -q
  bin=target/release
fi
bin=$(realpath "$bin")
for name in vero-supervise vero-dev-kafka vero-dev-topics vero-dev-clickhouse ingest-gateway event-sink profile-consumer; do
  if [ ! -x "$bin/$name" ]; then
    log "$bin/$name is missing: build the binaries first (cargo build --bins for target/debug)"
    exit 1
  fi
done
mkdir -p "$state/run" "$state/kafka"
rm -f "$state/run/clickhouse.ready" "$state/run/kafka.ready"

if [ -n "${VERO_RUN_PORT_BASE:-}" ]; then
  b=$VERO_RUN_PORT_BASE
  ports=($b $((b + 1)) $((b + 2)) $((b + 3)) $((b + 4)) $((b + 5)) $((b + 6)))
else
  ports=(9092 8123 9000 8080 9101 9102 9093)
fi
kafka_port=${ports[0]} ch_http=${ports[1]} ch_tcp=${ports[2]} gateway_port=${ports[3]}
sink_ops=${ports[4]} profiles_ops=${ports[5]} kafka_controller=${ports[6]}
for port in "${ports[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    log "port $port is already in use (another make run?); stop that first"; exit 1
  fi
done

# Supervised components, in two tiers: the services (gateway and consumers) and what
# they need (Kafka, ClickHouse). Each supervisor gives its command --grace seconds
# after SIGTERM; the stop kills a supervisor that outlives that by 5 s.
services=() infra=()
grace=30
alive() { [ -e "/proc/$1" ] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }
any_alive() { local pid; for pid in "$@"; do alive "$pid" && return 0; done; return 1; }
stop_tier() { # pids...: SIGTERM to all at once, then wait, bounded
  local pid
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  # A deadline on the clock, not a count of polls: on a loaded machine each poll
  # (a grep per process and a sleep) takes longer than its 0.1 s.
  local deadline=$((SECONDS + grace + 5))
  while any_alive "$@" && ((SECONDS < deadline)); do sleep 0.1; done
  for pid in "$@"; do
    if alive "$pid"; then
      log "$(tr -d '\0' <"/proc/$pid/cmdline" | cut -c1-80) did not stop within $((grace + 5)) s: killing it"
      # Kafka's and ClickHouse's supervisors lead process groups of their own (setsid).
      [ "$(ps -o pgid= -p "$pid" | tr -d ' ')" = "$pid" ] && pkill -KILL -g "$pid" 2>/dev/null
      pkill -KILL -P "$pid" 2>/dev/null || true
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
}
stop_all() {
  # Ignore further signals (a second Ctrl-C, make forwarding SIGTERM): resetting them
  # to their default would let one end this script in the middle of the stop.
  trap '' INT TERM
  trap - EXIT
  log "stopping"
  # The services first, together: the consumers drain and commit while Kafka and
  # ClickHouse are still up; then those two. At most 2 × (grace + 5) s in all.
  [ ${#services[@]} -eq 0 ] || stop_tier "${services[@]}"
  [ ${#infra[@]} -eq 0 ] || stop_tier "${infra[@]}"
  log "stopped; data kept in $state/ (make run-clean starts empty)"
  exit 0
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
setsid "$bin/vero-supervise" --name kafka --grace $grace -- "$bin/vero-dev-kafka" \
  --dir "$state/kafka" --port "$kafka_port" --controller-port "$kafka_controller" --ready "$state/run/kafka.ready" &
infra+=($!)
wait_for "Apache Kafka on $kafka (its log: $state/kafka/node-1/kafka.log)" test -e "$state/run/kafka.ready"
"$bin/vero-dev-topics" "$kafka"
export VERO__KAFKA__BROKERS=$kafka

VERO_DEV_CLICKHOUSE_HTTP_PORT=$ch_http VERO_DEV_CLICKHOUSE_TCP_PORT=$ch_tcp \
  setsid "$bin/vero-supervise" --name clickhouse --grace $grace -- "$bin/vero-dev-clickhouse" "$state/clickhouse" "$state/run/clickhouse.ready" &
infra+=($!)
wait_for "ClickHouse on 127.0.0.1:$ch_http" test -e "$state/run/clickhouse.ready"

export VERO_ENV=local
clickhouse_url=http://127.0.0.1:$ch_http
VERO_CONFIG_DIR=config/gateway VERO__HTTP__LISTEN=127.0.0.1:$gateway_port \
  "$bin/vero-supervise" --name gateway --grace $grace -- "$bin/ingest-gateway" &
services+=($!)
VERO_CONFIG_DIR=config/event-sink VERO__CLICKHOUSE__URL=$clickhouse_url VERO__OPS__LISTEN=127.0.0.1:$sink_ops \
  "$bin/vero-supervise" --name event-sink --grace $grace -- "$bin/event-sink" &
services+=($!)
VERO_CONFIG_DIR=config/profile-consumer VERO__CLICKHOUSE__URL=$clickhouse_url VERO__OPS__LISTEN=127.0.0.1:$profiles_ops \
  VERO__STATE__DIR="$state/profile-state" \
  "$bin/vero-supervise" --name profile-consumer --grace $grace -- "$bin/profile-consumer" &
services+=($!)
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
wait "${services[@]}" "${infra[@]}" || true
