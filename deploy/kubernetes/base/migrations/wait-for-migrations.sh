#!/bin/sh
# Init container of the consumers: wait until ClickHouse records every migration this
# image ships (/app/schemas/clickhouse/NNNN_*.sql) in vero.schema_migrations. The Job
# vero-setup applies them (`event-sink migrate`) only after it created the topics, so a
# consumer that passes this has its topics and its tables, and no replica runs the
# migrations itself. Runs in the vero-pipeline image (sh, curl) with the consumer's
# own VERO__CLICKHOUSE__URL/USER/PASSWORD. Waits as long as it takes: a pod stuck in
# Init:0/1 means the Job has not run for this version (docs/operations.md).
# VERO_SCHEMAS_DIR and VERO_WAIT_INTERVAL_S exist for crates/deploy-check's test.
set -eu
: "${VERO__CLICKHOUSE__URL:?not set}"
: "${VERO__CLICKHOUSE__USER:=default}"
: "${VERO__CLICKHOUSE__PASSWORD:=}"
: "${VERO_SCHEMAS_DIR:=/app/schemas/clickhouse}"
: "${VERO_WAIT_INTERVAL_S:=5}"
ids=$(ls "$VERO_SCHEMAS_DIR" | sed -n 's/^0*\([0-9][0-9]*\)_.*\.sql$/\1/p' | sort -un | paste -sd, -)
wanted=$(echo "$ids" | tr ',' '\n' | wc -l)
[ -n "$ids" ] || { echo "no migrations found in $VERO_SCHEMAS_DIR" >&2; exit 1; }
query="SELECT uniqExact(id) FROM vero.schema_migrations WHERE id IN ($ids)"
while :; do
  # The password goes in a header read from stdin, not on the command line.
  found=$(printf 'header = "X-ClickHouse-Key: %s"\n' "$VERO__CLICKHOUSE__PASSWORD" \
    | curl -fsS -K - -H "X-ClickHouse-User: $VERO__CLICKHOUSE__USER" \
        --data-binary "$query" "$VERO__CLICKHOUSE__URL/" 2>/dev/null || true)
  if [ "$found" = "$wanted" ]; then
    echo "ClickHouse has all $wanted migrations of this image ($ids)"
    exit 0
  fi
  echo "waiting for the Job vero-setup: ${found:-no answer or no vero.schema_migrations} of $wanted migrations ($ids) recorded"
  sleep "$VERO_WAIT_INTERVAL_S"
done
