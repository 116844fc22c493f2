-- Cluster schema of 0100_profiles.sql (the same SQL on 18.16 and current ClickHouse).
-- Reasoning in docs/design.md, "Cluster schema".
--
-- A profile lives on the shard of its user's Kafka partition (partition % shard
-- count), next to the user's events, so per-user joins of events and profiles stay
-- on one shard. The profile consumer writes it there, to profiles_local, knowing the
-- partition of the record it applied. The table has no partition column, so
-- ClickHouse cannot compute that shard: the Distributed vero.profiles has no sharding
-- key, which makes ClickHouse refuse an INSERT through it ("no sharding key") instead
-- of placing a profile on another shard than its user's events. It is for reading.
CREATE TABLE IF NOT EXISTS vero.profiles_local ON CLUSTER {cluster}
(
    project                    String,
    user_id                    String,
    email                      Nullable(String),
    attributes                 String,
    tags                       Array(String),
    subscribed                 UInt8,
    subscription_changed_at_ms Nullable(Int64),
    first_seen_ms              Nullable(Int64),
    last_seen_ms               Nullable(Int64),
    event_count                UInt64,
    last_event_name            Nullable(String),
    previous_ids               Array(String),
    deleted                    UInt8,
    version                    UInt64,
    updated_at                 DateTime('UTC') DEFAULT now()
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/vero/profiles', '{replica}', version)
ORDER BY (project, user_id);

CREATE TABLE IF NOT EXISTS vero.profiles ON CLUSTER {cluster} AS vero.profiles_local
ENGINE = Distributed({cluster}, vero, profiles_local);

-- Live profiles, each once: FINAL per shard, and a user's rows share one shard.
CREATE VIEW IF NOT EXISTS vero.profiles_live ON CLUSTER {cluster} AS
SELECT * FROM vero.profiles FINAL WHERE deleted = 0;

-- users/reidentify aliases, on the shard of the command's partition.
CREATE TABLE IF NOT EXISTS vero.user_aliases_local ON CLUSTER {cluster}
(
    project         String,
    old_id          String,
    new_id          String,
    at_ms           Int64,
    kafka_partition Int32,
    kafka_offset    Int64,
    inserted_at     DateTime('UTC') DEFAULT now()
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/vero/user_aliases', '{replica}')
ORDER BY (project, old_id, new_id, at_ms);

CREATE TABLE IF NOT EXISTS vero.user_aliases ON CLUSTER {cluster} AS vero.user_aliases_local
ENGINE = Distributed({cluster}, vero, user_aliases_local, kafka_partition);
