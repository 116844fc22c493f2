-- 0002_exactly_once.sql for ClickHouse up to 18.x. Differences: ADD COLUMN has no
-- IF NOT EXISTS on 18.x (the migration runner skips an ADD COLUMN whose column
-- exists, see crates/vero-clickhouse/src/migrations.rs), and tables have no TTL
-- (drop old days of vero.events_request_keys by hand:
-- ALTER TABLE vero.events_request_keys DROP PARTITION <YYYYMMDD>).
ALTER TABLE vero.events ADD COLUMN request_key UUID;

CREATE TABLE IF NOT EXISTS vero.events_written
(
    kafka_partition Int32,
    kafka_offset    Int64
)
ENGINE = ReplacingMergeTree(kafka_offset)
ORDER BY kafka_partition;

CREATE MATERIALIZED VIEW IF NOT EXISTS vero.events_written_mv TO vero.events_written AS
SELECT kafka_partition, max(kafka_offset) AS kafka_offset FROM vero.events GROUP BY kafka_partition;

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
SETTINGS index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS vero.events_request_keys_mv TO vero.events_request_keys AS
SELECT kafka_partition, request_key, received_at_ms, kafka_offset FROM vero.events;
