-- Cluster schema of 0001_events.sql (current ClickHouse; 0001_events.v18.sql is the
-- variant for servers up to 18.x). Used instead of the single-node files when
-- `clickhouse.cluster` is set; `{cluster}` is replaced by that name, while `{shard}`
-- and `{replica}` are each server's own <macros>. Reasoning in docs/design.md,
-- "Cluster schema".
--
-- Each node holds its shard's rows in vero.events_local; vero.events, the name
-- analysts query, is a Distributed table over every shard's events_local. A row
-- belongs to shard kafka_partition % shard count (shards in shard_num order, weight
-- 1), which is the Distributed sharding key, so an INSERT through vero.events lands
-- where the sink writes it: on the shard of the user's Kafka partition.
--
-- Columns and keys are those of the single-node table after every migration
-- (request_key of 0002 included, at the end as there): a cluster starts on the cluster
-- schema, so there is no older cluster table to ALTER. replicated_deduplication_window:
-- an INSERT repeating one of the last 1000 blocks of its shard is dropped (the sink's
-- retry of a batch whose first attempt did land), as non_replicated_deduplication_window
-- does on one node.
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
    received_at      DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(received_at_ms, 'UTC'),
    event_time       DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(ifNull(created_at_ms, received_at_ms), 'UTC'),
    kafka_partition  Int32,
    kafka_offset     Int64,
    inserted_at      DateTime('UTC') DEFAULT now(),
    request_key      UUID,
    INDEX user_id_bloom user_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/vero/events', '{replica}')
PARTITION BY toYYYYMM(received_at)
ORDER BY (project, event_name, toDate(event_time), cityHash64(user_id), event_id)
SETTINGS replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS vero.events ON CLUSTER {cluster} AS vero.events_local
ENGINE = Distributed({cluster}, vero, events_local, kafka_partition);

-- Each event once, for tools that cannot add FINAL themselves. FINAL runs on every
-- shard: an event's copies share its partition, hence its shard.
CREATE VIEW IF NOT EXISTS vero.events_unique ON CLUSTER {cluster} AS SELECT * FROM vero.events FINAL;
