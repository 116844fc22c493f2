#!/bin/sh
# Create the pipeline's topics, idempotently, then check their partition counts.
# One copy for both deployments: the compose one-shot `kafka-init` service mounts this
# file, the Kubernetes Job `vero-create-topics` gets it from a generated ConfigMap.
# Runs in the apache/kafka image.
#
#   vero.events      events + user commands, keyed by user id
#   vero.events.dlq  records a consumer could not process (reason in headers)
#   vero.profiles    merged profiles, compacted, keyed by user id; co-partitioned
#                    with vero.events (same partition count), so a consumer that owns
#                    partition N of one owns partition N of the other.
#   vero.profiles.handoff  profiles moved by users/reidentify to the new id's
#                    partition; co-partitioned too.
#
# Environment: KAFKA_BOOTSTRAP (host:port), VERO_PARTITIONS, VERO_DLQ_PARTITIONS,
# VERO_REPLICATION_FACTOR, VERO_MIN_INSYNC_REPLICAS.
set -eu
: "${KAFKA_BOOTSTRAP:=kafka:9092}"
: "${VERO_PARTITIONS:=12}"
: "${VERO_DLQ_PARTITIONS:=3}"
: "${VERO_REPLICATION_FACTOR:=1}"
: "${VERO_MIN_INSYNC_REPLICAS:=1}"
topics=/opt/kafka/bin/kafka-topics.sh

create() { # name partitions [--config k=v ...]
  name=$1 partitions=$2
  shift 2
  "$topics" --bootstrap-server "$KAFKA_BOOTSTRAP" --create --if-not-exists --topic "$name" \
    --partitions "$partitions" --replication-factor "$VERO_REPLICATION_FACTOR" \
    --config "min.insync.replicas=$VERO_MIN_INSYNC_REPLICAS" "$@"
}

partitions_of() {
  "$topics" --bootstrap-server "$KAFKA_BOOTSTRAP" --describe --topic "$1" \
    | sed -n 's/.*PartitionCount: *\([0-9][0-9]*\).*/\1/p' | head -n 1
}

create vero.events "$VERO_PARTITIONS"
create vero.events.dlq "$VERO_DLQ_PARTITIONS"
create vero.profiles "$VERO_PARTITIONS" --config cleanup.policy=compact --config min.compaction.lag.ms=60000
create vero.profiles.handoff "$VERO_PARTITIONS"

events=$(partitions_of vero.events)
for topic in vero.profiles vero.profiles.handoff; do
  count=$(partitions_of "$topic")
  echo "vero.events has $events partitions, $topic has $count"
  if [ "$events" != "$count" ]; then
    echo "ERROR: $topic must have as many partitions as vero.events (see docs/operations.md)" >&2
    exit 1
  fi
done
