-- Cluster schema of 0002_exactly_once.sql (the sink's exactly-once bookkeeping;
-- 0002_exactly_once.v18.sql is the 18.x variant). request_key is already a
-- column of cluster/0001's events_local.
--
-- The materialized views are per node: each attaches to its node's events_local and
-- writes its node's *_local target, so the INSERT that lands a shard's rows also
-- records that shard's progress, on the same replica, in the same way as on one node.
-- Replicas that receive the rows by replication do not run the view; they receive the
-- view's rows by replication of the (replicated) target instead. The Distributed
-- tables under the single-node names are for reading from any node.
CREATE TABLE IF NOT EXISTS vero.events_written_local ON CLUSTER {cluster}
(
    kafka_partition Int32,
    kafka_offset    Int64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/vero/events_written', '{replica}', kafka_offset)
ORDER BY kafka_partition;

CREATE TABLE IF NOT EXISTS vero.events_written ON CLUSTER {cluster} AS vero.events_written_local
ENGINE = Distributed({cluster}, vero, events_written_local, kafka_partition);

CREATE MATERIALIZED VIEW IF NOT EXISTS vero.events_written_mv ON CLUSTER {cluster} TO vero.events_written_local AS
SELECT kafka_partition, max(kafka_offset) AS kafka_offset FROM vero.events_local GROUP BY kafka_partition;

CREATE TABLE IF NOT EXISTS vero.events_request_keys_local ON CLUSTER {cluster}
(
    kafka_partition Int32,
    request_key     UUID,
    received_at_ms  Int64,
    kafka_offset    Int64
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/vero/events_request_keys', '{replica}')
PARTITION BY toYYYYMMDD(toDateTime(intDiv(received_at_ms, 1000), 'UTC'))
ORDER BY (kafka_partition, request_key)
TTL toDateTime(intDiv(received_at_ms, 1000), 'UTC') + INTERVAL 8 DAY
SETTINGS index_granularity = 1024;

CREATE TABLE IF NOT EXISTS vero.events_request_keys ON CLUSTER {cluster} AS vero.events_request_keys_local
ENGINE = Distributed({cluster}, vero, events_request_keys_local, kafka_partition);

CREATE MATERIALIZED VIEW IF NOT EXISTS vero.events_request_keys_mv ON CLUSTER {cluster} TO vero.events_request_keys_local AS
SELECT kafka_partition, request_key, received_at_ms, kafka_offset FROM vero.events_local;
