-- cluster/0001_events.sql for ClickHouse up to 18.x, with the differences of the
-- single-node 0001_events.v18.sql: no DateTime64 (second precision; the *_ms columns
-- keep milliseconds) and no data skipping index. Unlike the single-node 18.x table,
-- this one deduplicates repeated INSERT blocks: 18.x does that for replicated tables.
CREATE TABLE IF NOT EXISTS vero.events_local ON CLUSTER {cluster}
(
    event_id         UUID,
    project          String,
    event_name       String,
    user_id          String,
    email            Nullable(String),
    identity         String,
    data             String,
    extras           String,
    source           Nullable(String),
    user_agent       Nullable(String),
    development_mode UInt8,
    received_at_ms   Int64,
    created_at_ms    Nullable(Int64),
    received_at      DateTime('UTC') DEFAULT toDateTime(intDiv(received_at_ms, 1000), 'UTC'),
    event_time       DateTime('UTC') DEFAULT toDateTime(intDiv(ifNull(created_at_ms, received_at_ms), 1000), 'UTC'),
    kafka_partition  Int32,
    kafka_offset     Int64,
    inserted_at      DateTime('UTC') DEFAULT now(),
    request_key      UUID
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/vero/events', '{replica}')
PARTITION BY toYYYYMM(received_at)
ORDER BY (project, event_name, toDate(event_time), cityHash64(user_id), event_id)
SETTINGS replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS vero.events ON CLUSTER {cluster} AS vero.events_local
ENGINE = Distributed({cluster}, vero, events_local, kafka_partition);

CREATE VIEW IF NOT EXISTS vero.events_unique ON CLUSTER {cluster} AS SELECT * FROM vero.events FINAL;
