-- The analysts' events table (current ClickHouse; 0001_events.v18.sql is the
-- variant for servers up to 18.x). Reasoning in docs/analytics.md.
--
-- Each event once: the sink writes every event once (0002_exactly_once.sql, and
-- docs/design.md "Exactly-once into ClickHouse"), so a plain SELECT counts each event
-- once. ReplacingMergeTree is a second line of defence: every sorting-key and
-- partition-key column is a pure function of the event (same event_id => same key),
-- so a row written twice anyway collapses in merges, and `FINAL` (or the view
-- vero.events_unique) hides it before the merge ran. non_replicated_deduplication_window
-- lets the server drop the sink's retry of a batch whose first attempt did land (same
-- insert_deduplication_token).
CREATE TABLE IF NOT EXISTS vero.events
(
    event_id         UUID,
    project          String,
    event_name       String,
    user_id          String,
    email            Nullable(String),
    -- JSON object texts, queryable with JSONExtract*/simpleJSONExtract* functions.
    identity         String,
    data             String,
    extras           String,
    source           Nullable(String),
    user_agent       Nullable(String),
    development_mode UInt8,
    -- Exact times as Unix epoch milliseconds (as the gateway recorded them).
    received_at_ms   Int64,
    created_at_ms    Nullable(Int64),
    -- Derived time columns for analysts: gateway receive time and the event's time
    -- (the client's `extras.created_at` when sent, else the receive time).
    received_at      DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(received_at_ms, 'UTC'),
    event_time       DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(ifNull(created_at_ms, received_at_ms), 'UTC'),
    -- Lineage: where the row came from in Kafka, and when the sink wrote it.
    kafka_partition  Int32,
    kafka_offset     Int64,
    inserted_at      DateTime('UTC') DEFAULT now(),
    INDEX user_id_bloom user_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (project, event_name, toDate(event_time), cityHash64(user_id), event_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- The same rows with FINAL applied (see above), for tools that want that guarantee.
CREATE VIEW IF NOT EXISTS vero.events_unique AS SELECT * FROM vero.events FINAL;
