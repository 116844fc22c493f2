-- Profiles for analysts, written by profile-consumer (docs/profiles.md). The same SQL
-- runs on ClickHouse 18.16 and current releases (no DateTime64: times are Unix epoch
-- milliseconds, convert with toDateTime(intDiv(x, 1000))).
--
-- ReplacingMergeTree(version): every write is a full row with a higher version, so
-- `FROM vero.profiles FINAL WHERE deleted = 0` shows each live profile once, as last
-- written. A deleted profile has a `deleted = 1` row without personal data, and its
-- older rows are erased by a mutation.
CREATE TABLE IF NOT EXISTS vero.profiles
(
    project                    String,
    user_id                    String,
    email                      Nullable(String),
    -- JSON object text of every identity attribute (email included).
    attributes                 String,
    tags                       Array(String),
    subscribed                 UInt8,
    subscription_changed_at_ms Nullable(Int64),
    first_seen_ms              Nullable(Int64),
    last_seen_ms               Nullable(Int64),
    event_count                UInt64,
    last_event_name            Nullable(String),
    -- Ids this person had before users/reidentify moved them here.
    previous_ids               Array(String),
    deleted                    UInt8,
    version                    UInt64,
    updated_at                 DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (project, user_id);

-- Live profiles, each once, for tools that cannot add FINAL themselves.
CREATE VIEW IF NOT EXISTS vero.profiles_live AS SELECT * FROM vero.profiles FINAL WHERE deleted = 0;

-- users/reidentify: old_id is known as new_id from `at_ms` on.
CREATE TABLE IF NOT EXISTS vero.user_aliases
(
    project         String,
    old_id          String,
    new_id          String,
    at_ms           Int64,
    kafka_partition Int32,
    kafka_offset    Int64,
    inserted_at     DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree
ORDER BY (project, old_id, new_id, at_ms);
