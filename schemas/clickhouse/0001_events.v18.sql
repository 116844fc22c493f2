-- The analysts' events table for ClickHouse up to 18.x (the Debian package the tests
-- run). Same columns and keys as 0001_events.sql except: no DateTime64 (received_at
-- and event_time have second precision; the *_ms columns keep milliseconds), no data
-- skipping index, and no insert deduplication setting (18.x only deduplicates
-- replicated tables). A row written twice anyway
-- still collapses through ReplacingMergeTree/FINAL.
CREATE TABLE IF NOT EXISTS vero.events
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
    inserted_at      DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (project, event_name, toDate(event_time), cityHash64(user_id), event_id);

CREATE VIEW IF NOT EXISTS vero.events_unique AS SELECT * FROM vero.events FINAL;
