#!/bin/sh
# Create the pipeline's topics, idempotently, set their configs (also on topics that
# already existed: `--if-not-exists` alone would never correct one created with the
# broker's defaults), then check partition counts and replication factors.
# One copy for both deployments: the compose one-shot `kafka-init` service mounts this
# file, the Kubernetes Job `vero-setup` gets it from a generated ConfigMap.
# Runs in the apache/kafka image.
#
#   vero.events      events + user commands, keyed by user id
#   vero.events.dlq  records a consumer could not process (reason in headers). Kept
#                    VERO_DLQ_RETENTION_MS (30 days by default; -1 = forever), not the
#                    broker's default 7 days: `event-sink replay-dlq` needs the letters
#                    after the cause is fixed, however long that takes.
#   vero.profiles    merged profiles, compacted, keyed by user id; co-partitioned
#                    with vero.events (same partition count), so a consumer that owns
#                    partition N of one owns partition N of the other.
#   vero.profiles.handoff  profiles moved by users/reidentify to the new id's
#                    partition; co-partitioned too.
#
# Environment: KAFKA_BOOTSTRAP (host:port), VERO_PARTITIONS, VERO_DLQ_PARTITIONS,
# VERO_REPLICATION_FACTOR, VERO_MIN_INSYNC_REPLICAS, VERO_DLQ_RETENTION_MS;
# KAFKA_BIN (the Kafka tools, /opt/kafka/bin; crates/deploy-check runs this script
# against stand-ins that record what it asks the broker).
set -eu
: "${KAFKA_BOOTSTRAP:=kafka:9092}"
: "${VERO_PARTITIONS:=12}"
: "${VERO_DLQ_PARTITIONS:=3}"
: "${VERO_REPLICATION_FACTOR:=1}"
: "${VERO_MIN_INSYNC_REPLICAS:=1}"
: "${VERO_DLQ_RETENTION_MS:=2592000000}"
: "${KAFKA_BIN:=/opt/kafka/bin}"
topics=$KAFKA_BIN/kafka-topics.sh
configs=$KAFKA_BIN/kafka-configs.sh

create() { # name partitions [k=v ...]: create when missing, then set the configs
  name=$1 partitions=$2
  shift 2
  "$topics" --bootstrap-server "$KAFKA_BOOTSTRAP" --create --if-not-exists --topic "$name" \
    --partitions "$partitions" --replication-factor "$VERO_REPLICATION_FACTOR"
  settings="min.insync.replicas=$VERO_MIN_INSYNC_REPLICAS"
  for setting in "$@"; do settings="$settings,$setting"; done
  "$configs" --bootstrap-server "$KAFKA_BOOTSTRAP" --alter --entity-type topics --entity-name "$name" \
    --add-config "$settings"
}

describe_field() { # topic field: the first value of `field: N` in --describe
  "$topics" --bootstrap-server "$KAFKA_BOOTSTRAP" --describe --topic "$1" \
    | sed -n "s/.*$2: *\([0-9][0-9]*\).*/\1/p" | head -n 1
}
partitions_of() { describe_field "$1" PartitionCount; }

create vero.events "$VERO_PARTITIONS"
create vero.events.dlq "$VERO_DLQ_PARTITIONS" "retention.ms=$VERO_DLQ_RETENTION_MS"
create vero.profiles "$VERO_PARTITIONS" cleanup.policy=compact min.compaction.lag.ms=60000
create vero.profiles.handoff "$VERO_PARTITIONS"

# Replication cannot be changed by a config: a topic created elsewhere with fewer
# replicas (e.g. by a profile consumer with kafka.create_topics on, with the broker's
# default replication) needs a partition reassignment (docs/operations.md, "Topics").
for topic in vero.events vero.events.dlq vero.profiles vero.profiles.handoff; do
  replicas=$(describe_field "$topic" ReplicationFactor)
  if [ "${replicas:-0}" -lt "$VERO_REPLICATION_FACTOR" ]; then
    echo "ERROR: $topic has replication factor ${replicas:-unknown}, want $VERO_REPLICATION_FACTOR: reassign its partitions (docs/operations.md)" >&2
    exit 1
  fi
done

events=$(partitions_of vero.events)
for topic in vero.profiles vero.profiles.handoff; do
  count=$(partitions_of "$topic")
  echo "vero.events has $events partitions, $topic has $count"
  if [ "$events" != "$count" ]; then
    echo "ERROR: $topic must have as many partitions as vero.events (see docs/operations.md)" >&2
    exit 1
  fi
done
