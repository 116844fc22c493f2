//! Settings of the profile consumer, loaded with `vero_service::settings` from
//! `config/profile-consumer/` (every key documented in `default.toml`). Unknown keys
//! are rejected; the ClickHouse password never appears in `Debug` output.

use std::time::Duration;

use rdkafka::ClientConfig;
use serde::Deserialize;
use vero_clickhouse::ClickHouseSettings;
use vero_model::profile::RECENT_REQUESTS_MAX_BYTES;
use vero_model::request_key::MAX_WINDOW_MS;
use vero_service::group_protocol::GroupProtocol;
use vero_service::kafka_properties::{self, KafkaProperties, Reserved};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub clickhouse: ClickHouseSettings,
    /// Where the nodes of `clickhouse.cluster` answer HTTP (unused without a cluster).
    #[serde(default)]
    pub cluster: vero_shards::NodeSettings,
    pub batch: BatchSettings,
    pub retry: RetrySettings,
    pub dedup: DedupSettings,
    pub state: StateSettings,
    pub ops: OpsSettings,
}

/// Where and in how much memory the profiles are kept (`crate::state`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSettings {
    /// The local store's directory, one per instance (a lock refuses a second
    /// process). Empty: a fresh temporary directory removed at stop, so every start
    /// reads the profiles topic from its beginning.
    pub dir: std::path::PathBuf,
    /// Memory for profiles: decoded profiles plus the store's caches and memtables.
    pub memory_mb: u64,
    /// A checkpoint older than this that others wrote after is not resumed from (a
    /// tombstone may have been compacted away): at most the profiles topic's
    /// `delete.retention.ms`.
    pub max_checkpoint_age_ms: u64,
}

/// Not counting a client's repeated request (`crate::profile::dedup`): the same key
/// and meaning as the event sink's `dedup.window_ms`, so both drop the same events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupSettings {
    /// A track event repeating a request applied less than this long apart (by
    /// received_at) is not applied; 0 turns it off. At most 7 days.
    pub window_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    pub brokers: String,
    pub group_id: String,
    /// `classic` (default) or `consumer` (KIP-848): vero_service::group_protocol.
    #[serde(default)]
    pub group_protocol: GroupProtocol,
    pub events_topic: String,
    pub profiles_topic: String,
    pub handoff_topic: String,
    pub dlq_topic: String,
    /// Create the profiles and handoff topics at start when missing.
    pub create_topics: bool,
    /// Replication factor of created topics; -1 = the broker's default.
    pub replication_factor: i32,
    pub session_timeout_ms: u64,
    /// librdkafka `max.poll.interval.ms`: a member that does not poll for this long
    /// leaves the group, and it is the rebalance timeout sent with JoinGroup (how long
    /// a rebalance waits for members that do not rejoin, e.g. one killed with -9).
    pub max_poll_interval_ms: u64,
    /// librdkafka `group.instance.id` (static membership, KIP-345); empty = dynamic
    /// membership. A restarted instance with the same id takes its partitions back
    /// without a rebalance of the others.
    #[serde(default)]
    pub group_instance_id: String,
    /// Upper bound to wait for one produced record's acknowledgement.
    pub produce_timeout_ms: u64,
    /// `false` only for a Kafka-compatible service without idempotent producers:
    /// see `vero_service::producer_retries`.
    pub idempotent_producer: bool,
    /// Upper bound of one attempt to read a profiles partition into the local store
    /// (its progress is committed as it goes: a retry continues from there).
    pub restore_timeout_ms: u64,
    /// Largest profile record (encoded value) written to the profiles and handoff
    /// topics; a record that would make a profile larger is dead-lettered.
    pub max_profile_bytes: usize,
    /// Extra librdkafka properties (SASL, TLS, tuning) for every client of the service:
    /// the group consumer, the producer, the restore consumer and the admin/metadata
    /// clients. Secret values are redacted in `Debug`; [`RESERVED`] lists what is refused.
    pub properties: KafkaProperties,
}

/// What `kafka.properties` may not set in the profile consumer: the group consumer's
/// offset guarantees ([`kafka_properties::GROUP_CONSUMER`]), the producer's delivery
/// guarantees ([`kafka_properties::PRODUCER`]) and [`CO_PARTITIONING`].
pub const RESERVED: &[&[Reserved]] = &[kafka_properties::GROUP_CONSUMER, kafka_properties::PRODUCER, CO_PARTITIONING];

/// Properties the co-partitioned state handling depends on: one member must own
/// events partition `p` together with handoff partition `p` (range assignment, the
/// classic protocol), and a new group must read the events topic from its start.
pub const CO_PARTITIONING: &[Reserved] = &[
    Reserved::new(
        "partition.assignment.strategy",
        "the consumer needs events and handoff partition p on one member (range assignment)",
    ),
    Reserved::new("group.protocol", "use kafka.group_protocol (either keeps range assignment)"),
    Reserved::new("group.remote.assignor", "the consumer needs range assignment (co-partitioning)"),
    Reserved::new("auto.offset.reset", "a new group reads the events topic from the start (earliest)"),
    Reserved::new("auto.commit.interval.ms", "stored offsets are committed every second"),
];

impl KafkaSettings {
    /// Apply `kafka.properties` to a client's configuration: call last, after the
    /// client's own settings (the reserved ones were refused by `Settings::validate`).
    pub fn apply_properties<'c>(&self, config: &'c mut ClientConfig) -> &'c mut ClientConfig {
        for (name, value) in self.properties.iter() {
            config.set(name, value);
        }
        config
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSettings {
    /// Records applied before the profiles they touched are written.
    pub max_records: usize,
    /// How long a batch waits for more records once it has one.
    pub linger_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// On a cluster of several shards: how long a failing shard may hold a batch
    /// before its partitions are parked (state dropped, rewound, paused until it
    /// answers) so the other shards' partitions go on (`crate::consume::park`).
    pub shard_park_after_ms: u64,
}

impl RetrySettings {
    /// A fresh backoff for one retried operation.
    pub fn backoff(&self) -> vero_service::backoff::Backoff {
        vero_service::backoff::Backoff::new(
            std::time::Duration::from_millis(self.initial_backoff_ms),
            std::time::Duration::from_millis(self.max_backoff_ms),
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsSettings {
    /// Address of `/metrics`, `/healthz`, `/readyz`.
    pub listen: String,
}

impl KafkaSettings {
    pub fn produce_timeout(&self) -> Duration {
        Duration::from_millis(self.produce_timeout_ms)
    }

    pub fn restore_timeout(&self) -> Duration {
        Duration::from_millis(self.restore_timeout_ms)
    }
}

impl Settings {
    /// Reject values that would make the service misbehave instead of failing later.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.batch.max_records > 0, "batch.max_records must be at least 1");
        anyhow::ensure!(
            self.kafka.max_profile_bytes >= RECENT_REQUESTS_MAX_BYTES + 1024,
            "kafka.max_profile_bytes must be at least {} (1024 plus the {RECENT_REQUESTS_MAX_BYTES} bytes reserved \
             for a profile's dedup state)",
            RECENT_REQUESTS_MAX_BYTES + 1024
        );
        anyhow::ensure!(self.state.memory_mb >= 16, "state.memory_mb must be at least 16");
        anyhow::ensure!(
            self.dedup.window_ms <= MAX_WINDOW_MS,
            "dedup.window_ms must be at most {MAX_WINDOW_MS} (7 days)"
        );
        anyhow::ensure!(
            self.retry.initial_backoff_ms > 0 && self.retry.initial_backoff_ms <= self.retry.max_backoff_ms,
            "retry.initial_backoff_ms must be positive and at most retry.max_backoff_ms"
        );
        self.kafka.properties.refuse("kafka.properties", RESERVED)?;
        let topics =
            [&self.kafka.events_topic, &self.kafka.profiles_topic, &self.kafka.handoff_topic, &self.kafka.dlq_topic];
        for (i, a) in topics.iter().enumerate() {
            anyhow::ensure!(!a.is_empty(), "kafka topic names must not be empty");
            anyhow::ensure!(topics[i + 1..].iter().all(|b| a != b), "kafka topic `{a}` is configured twice");
        }
        Ok(())
    }

    /// Settings for tests: every value as in `default.toml`, pointed at `brokers` and
    /// `clickhouse_url`.
    pub fn for_tests(brokers: &str, clickhouse_url: &str, group_id: &str) -> Self {
        Self {
            kafka: KafkaSettings {
                brokers: brokers.into(),
                group_id: group_id.into(),
                group_protocol: GroupProtocol::default(),
                events_topic: vero_model::topics::EVENTS.into(),
                profiles_topic: vero_model::topics::PROFILES.into(),
                handoff_topic: "vero.profiles.handoff".into(),
                dlq_topic: vero_model::topics::EVENTS_DLQ.into(),
                create_topics: true,
                replication_factor: 1,
                session_timeout_ms: 6_000,
                max_poll_interval_ms: 30_000,
                group_instance_id: String::new(),
                produce_timeout_ms: 30_000,
                idempotent_producer: true,
                restore_timeout_ms: 60_000,
                max_profile_bytes: 900_000,
                properties: KafkaProperties::default(),
            },
            clickhouse: ClickHouseSettings::local(clickhouse_url),
            cluster: vero_shards::NodeSettings::default(),
            batch: BatchSettings { max_records: 500, linger_ms: 50 },
            retry: RetrySettings { initial_backoff_ms: 50, max_backoff_ms: 1_000, shard_park_after_ms: 5_000 },
            dedup: DedupSettings { window_ms: 300_000 },
            state: StateSettings { dir: Default::default(), memory_mb: 64, max_checkpoint_age_ms: 43_200_000 },
            ops: OpsSettings { listen: "127.0.0.1:0".into() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_config() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/profile-consumer")
    }

    #[test]
    fn the_committed_config_files_load() {
        let settings: Settings = vero_service::settings::load_with_env(&repo_config(), None, []).unwrap();
        settings.validate().unwrap();
        assert_eq!(settings.kafka.profiles_topic, vero_model::topics::PROFILES);
        let local: Settings = vero_service::settings::load_with_env(&repo_config(), Some("local"), []).unwrap();
        assert_eq!(local.clickhouse.url, "http://127.0.0.1:8123");
        assert_eq!(local.ops.listen, "127.0.0.1:9102");
    }

    #[test]
    fn typos_and_bad_values_fail() {
        let vars = [("VERO__KAFKA__GRUOP_ID".to_string(), "x".to_string())];
        assert!(vero_service::settings::load_with_env::<Settings>(&repo_config(), None, vars).is_err());
        let mut settings = Settings::for_tests("b", "http://c", "g");
        settings.kafka.handoff_topic = settings.kafka.profiles_topic.clone();
        assert!(settings.validate().unwrap_err().to_string().contains("twice"));
        let mut settings = Settings::for_tests("b", "http://c", "g");
        settings.dedup.window_ms = MAX_WINDOW_MS + 1;
        assert!(settings.validate().unwrap_err().to_string().contains("dedup.window_ms"));
        settings.dedup.window_ms = MAX_WINDOW_MS;
        settings.kafka.max_profile_bytes = RECENT_REQUESTS_MAX_BYTES;
        assert!(settings.validate().unwrap_err().to_string().contains("reserved"));
    }

    #[test]
    fn an_empty_state_dir_from_the_environment_means_a_temporary_store() {
        let settings: Settings = vero_service::settings::load_with_env(&repo_config(), None, []).unwrap();
        assert_eq!(settings.state.dir, std::path::Path::new("/var/lib/vero/profile-consumer"));
        let vars = [("VERO__STATE__DIR".to_string(), String::new())];
        let settings: Settings = vero_service::settings::load_with_env(&repo_config(), None, vars).unwrap();
        assert_eq!(settings.state.dir, std::path::Path::new(""));
    }

    #[test]
    fn cluster_nodes_come_from_the_environment_as_a_comma_separated_list() {
        let vars = [("VERO__CLUSTER__NODES".to_string(), "http://ch-1a:8123,http://ch-2a:8123".to_string())];
        let settings: Settings = vero_service::settings::load_with_env(&repo_config(), None, vars).unwrap();
        assert_eq!(settings.cluster.nodes, ["http://ch-1a:8123", "http://ch-2a:8123"]);
    }

    #[test]
    fn kafka_properties_pass_through_and_guarantees_are_refused() {
        let vars = [
            ("VERO__KAFKA__PROPERTIES__SECURITY_PROTOCOL".to_string(), "SSL".to_string()),
            ("VERO__KAFKA__PROPERTIES__SSL_KEY_PASSWORD".to_string(), "hunter2".to_string()),
        ];
        let settings: Settings = vero_service::settings::load_with_env(&repo_config(), None, vars).unwrap();
        settings.validate().unwrap();
        let mut config = ClientConfig::new();
        settings.kafka.apply_properties(&mut config);
        assert_eq!(config.get("security.protocol"), Some("SSL"));
        assert_eq!(config.get("ssl.key.password"), Some("hunter2"));
        assert!(!format!("{settings:?}").contains("hunter2"), "secret property values are not printed");
        for (name, expected) in [
            ("ENABLE_AUTO_OFFSET_STORE", "`enable.auto.offset.store`"),
            ("AUTO_COMMIT_ENABLE", "`auto.commit.enable` (librdkafka's alias of `enable.auto.commit`)"),
            ("ISOLATION_LEVEL", "`isolation.level`"),
            ("BOOTSTRAP_SERVERS", "use kafka.brokers"),
            ("REQUEST_REQUIRED_ACKS", "alias of `acks`"),
            ("ENABLE_IDEMPOTENCE", "`enable.idempotence`"),
            ("PARTITIONER", "`partitioner`"),
            ("PARTITION_ASSIGNMENT_STRATEGY", "range assignment"),
            ("GROUP_PROTOCOL", "use kafka.group_protocol"),
        ] {
            let vars = [(format!("VERO__KAFKA__PROPERTIES__{name}"), "x".to_string())];
            let settings: Settings = vero_service::settings::load_with_env(&repo_config(), None, vars).unwrap();
            let err = settings.validate().unwrap_err().to_string();
            assert!(err.contains("kafka.properties: ") && err.contains(expected), "{name}: {err}");
        }
    }
}
