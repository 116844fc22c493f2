-- Each event once in plain `SELECT count() FROM vero.events` (reasoning in
-- docs/design.md, "Exactly-once into ClickHouse" and "Idempotent retries"). The
-- 0002_exactly_once.v18.sql variant differs only where 18.x lacks a feature.
--
-- request_key: the identity of the client request (vero_model::request_key), written
-- by the sink with every row; a repeat within the dedup window is never inserted.
ALTER TABLE vero.events ADD COLUMN IF NOT EXISTS request_key UUID;

-- How far each Kafka partition has been written: filled by the same INSERT as the
-- rows (materialized view), so "rows written" and "progress recorded" cannot
-- disagree. The sink skips every record at or below a partition's written offset.
CREATE TABLE IF NOT EXISTS vero.events_written
(
    kafka_partition Int32,
    kafka_offset    Int64
)
ENGINE = ReplacingMergeTree(kafka_offset)
ORDER BY kafka_partition;

CREATE MATERIALIZED VIEW IF NOT EXISTS vero.events_written_mv TO vero.events_written AS
SELECT kafka_partition, max(kafka_offset) AS kafka_offset FROM vero.events GROUP BY kafka_partition;

-- Request keys written, looked up by the sink per batch (by partition, key and a
-- received_at range). Kept 8 days: the dedup window is at most 7.
CREATE TABLE IF NOT EXISTS vero.events_request_keys
(
    kafka_partition Int32,
    request_key     UUID,
    received_at_ms  Int64,
    kafka_offset    Int64
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(toDateTime(intDiv(received_at_ms, 1000), 'UTC'))
ORDER BY (kafka_partition, request_key)
TTL toDateTime(intDiv(received_at_ms, 1000), 'UTC') + INTERVAL 8 DAY
SETTINGS index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS vero.events_request_keys_mv TO vero.events_request_keys AS
SELECT kafka_partition, request_key, received_at_ms, kafka_offset FROM vero.events;
