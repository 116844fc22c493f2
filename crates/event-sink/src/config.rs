//! The sink's settings, from `config/event-sink/` via `vero_service::settings`.
//! Unknown keys are rejected; the ClickHouse password never appears in `Debug`.

use std::path::Path;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::Deserialize;
use vero_clickhouse::ClickHouseSettings;
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
    pub retention: RetentionSettings,
    pub ops: OpsSettings,
}

/// How long ClickHouse keeps events (`vero_clickhouse::retention`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Events are deleted this many days after the gateway received them (a TTL on
    /// `vero.events`, set at start and by `event-sink migrate`); 0 keeps them forever.
    pub events_days: u32,
}

/// Dropping a client's repeated request (`crate::once`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupSettings {
    /// A request whose key was written less than this long before (by received_at)
    /// is not inserted again; 0 turns it off. At most [`MAX_DEDUP_WINDOW_MS`].
    pub window_ms: u64,
}

/// 7 days: `vero.events_request_keys` keeps keys for 8 (its TTL).
pub const MAX_DEDUP_WINDOW_MS: u64 = 7 * 24 * 3600 * 1000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    pub brokers: String,
    /// The topic the track events and user commands are consumed from (named
    /// `kafka.topic` before 0.2.0, like the gateway's; the old name is refused).
    pub events_topic: String,
    pub dlq_topic: String,
    /// `false` only for a Kafka-compatible service without idempotent producers:
    /// see `vero_service::producer_retries`.
    pub idempotent_producer: bool,
    pub group_id: String,
    /// `classic` (default) or `consumer` (KIP-848): vero_service::group_protocol.
    #[serde(default)]
    pub group_protocol: GroupProtocol,
    pub auto_offset_reset: String,
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
    pub auto_commit_interval_ms: u64,
    /// librdkafka `queued.max.messages.kbytes`: the bound on prefetched messages.
    pub queued_max_messages_kbytes: u32,
    /// librdkafka `fetch.queue.backoff.ms`: how long fetching waits once that bound is
    /// reached (librdkafka's 1 s default caps the sink at one prefetch bound per second).
    pub fetch_queue_backoff_ms: u32,
    /// librdkafka `fetch.wait.max.ms`: how long the broker holds a fetch that found no
    /// new data. Resuming paused partitions waits for such a fetch to come back.
    pub fetch_wait_max_ms: u32,
    /// Extra librdkafka properties (SASL, TLS, tuning) for every client of the sink:
    /// its consumer, the DLQ producer and `replay-dlq`'s consumer and producer. Secret
    /// values are redacted in `Debug`; [`RESERVED`] lists what is refused.
    pub properties: KafkaProperties,
}

/// What `kafka.properties` may not set in the sink: the group consumer's offset
/// guarantees ([`kafka_properties::GROUP_CONSUMER`]), the producers' delivery
/// guarantees ([`kafka_properties::PRODUCER`]) and the properties with a key of their
/// own ([`CONSUMER_OWN`]).
pub const RESERVED: &[&[Reserved]] = &[kafka_properties::GROUP_CONSUMER, kafka_properties::PRODUCER, CONSUMER_OWN];

/// librdkafka properties the sink's consumer takes from its own `kafka.*` keys.
pub const CONSUMER_OWN: &[Reserved] = &[
    Reserved::new("auto.offset.reset", "use kafka.auto_offset_reset"),
    Reserved::new("group.protocol", "use kafka.group_protocol"),
    Reserved::new("partition.assignment.strategy", "set by kafka.group_protocol"),
    Reserved::new("group.remote.assignor", "set by kafka.group_protocol"),
    Reserved::new("auto.commit.interval.ms", "use kafka.auto_commit_interval_ms"),
    Reserved::new("queued.max.messages.kbytes", "use kafka.queued_max_messages_kbytes"),
    Reserved::new("fetch.queue.backoff.ms", "use kafka.fetch_queue_backoff_ms"),
    Reserved::new("fetch.wait.max.ms", "use kafka.fetch_wait_max_ms"),
];

impl KafkaSettings {
    /// Apply `kafka.properties` to a client's configuration: call last, after the
    /// client's own settings (the reserved ones were refused at load).
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
    pub max_rows: usize,
    pub max_bytes: usize,
    /// No record waits longer than this for its INSERT.
    pub max_age_ms: u64,
    /// A batch is written early, as soon as the consumer has nothing more to read, if
    /// the previous write started at least this long ago: a burst is written when it
    /// has been read, a trickle still makes at most one INSERT per `min_interval_ms`.
    pub min_interval_ms: u64,
    /// LZ4-compress INSERT bodies: pays off when ClickHouse is behind a slow link; on
    /// the same host or a fast LAN it only costs CPU on both sides.
    pub compress_inserts: bool,
}

impl BatchSettings {
    pub fn max_age(&self) -> Duration {
        Duration::from_millis(self.max_age_ms)
    }

    pub fn min_interval(&self) -> Duration {
        Duration::from_millis(self.min_interval_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub shutdown_flush_timeout_ms: u64,
    /// On a cluster of several shards: how long a failing shard may hold a batch
    /// before its partitions are parked (rewound and paused until it answers) so the
    /// other shards' partitions go on (`crate::insert`).
    pub shard_park_after_ms: u64,
}

impl RetrySettings {
    /// A fresh backoff for one retried operation.
    pub fn backoff(&self) -> vero_service::backoff::Backoff {
        vero_service::backoff::Backoff::new(
            Duration::from_millis(self.initial_backoff_ms),
            Duration::from_millis(self.max_backoff_ms),
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsSettings {
    /// `host:port` of the `/metrics`, `/healthz`, `/readyz` listener (bound by `main`).
    pub listen: String,
}

impl Settings {
    /// Load from `dir` (normally `config/event-sink`) with the process environment.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let settings: Self = vero_service::settings::load(dir)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Load with an explicit environment (tests).
    pub fn load_with_env(
        dir: &Path,
        vero_env: Option<&str>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let settings: Self = vero_service::settings::load_with_env(dir, vero_env, vars)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Limits that would make the sink unbounded or spin are rejected at start.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.batch.max_rows > 0, "batch.max_rows must be positive");
        anyhow::ensure!(self.batch.max_bytes > 0, "batch.max_bytes must be positive");
        anyhow::ensure!(self.batch.max_age_ms > 0, "batch.max_age_ms must be positive");
        anyhow::ensure!(
            (1..=2_097_151).contains(&self.kafka.queued_max_messages_kbytes),
            "kafka.queued_max_messages_kbytes must be in 1..=2097151"
        );
        anyhow::ensure!(
            self.kafka.fetch_queue_backoff_ms <= 300_000,
            "kafka.fetch_queue_backoff_ms must be at most 300000"
        );
        anyhow::ensure!(self.kafka.fetch_wait_max_ms <= 300_000, "kafka.fetch_wait_max_ms must be at most 300000");
        self.kafka.properties.refuse("kafka.properties", RESERVED)?;
        anyhow::ensure!(
            self.dedup.window_ms <= MAX_DEDUP_WINDOW_MS,
            "dedup.window_ms must be at most {MAX_DEDUP_WINDOW_MS} (7 days)"
        );
        anyhow::ensure!(
            self.retention.events_days <= vero_clickhouse::retention::MAX_DAYS,
            "retention.events_days must be at most {} (0 keeps events forever)",
            vero_clickhouse::retention::MAX_DAYS
        );
        anyhow::ensure!(self.retry.initial_backoff_ms > 0, "retry.initial_backoff_ms must be positive");
        anyhow::ensure!(
            self.retry.max_backoff_ms >= self.retry.initial_backoff_ms,
            "retry.max_backoff_ms must be at least retry.initial_backoff_ms"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_config_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/event-sink")
    }

    #[test]
    fn committed_defaults_and_local_overlay_load() {
        let defaults = Settings::load_with_env(&repo_config_dir(), None, []).unwrap();
        assert_eq!(defaults.kafka.events_topic, vero_model::topics::EVENTS);
        assert_eq!(defaults.kafka.dlq_topic, vero_model::topics::EVENTS_DLQ);
        let local = Settings::load_with_env(&repo_config_dir(), Some("local"), []).unwrap();
        assert_eq!(local.clickhouse.url, "http://127.0.0.1:8123");
        assert_eq!(local.ops.listen, "127.0.0.1:9101");
    }

    #[test]
    fn environment_overrides_and_limits_are_checked() {
        let vars = [("VERO__BATCH__MAX_ROWS".to_string(), "0".to_string())];
        let err = Settings::load_with_env(&repo_config_dir(), None, vars).unwrap_err().to_string();
        assert!(err.contains("max_rows"), "{err}");
        let vars = [
            ("VERO__CLICKHOUSE__PASSWORD".to_string(), "s3cret".to_string()),
            ("VERO__KAFKA__BROKERS".to_string(), "a:9092,b:9092".to_string()),
        ];
        let settings = Settings::load_with_env(&repo_config_dir(), None, vars).unwrap();
        assert_eq!(settings.clickhouse.password, "s3cret");
        assert_eq!(settings.kafka.brokers, "a:9092,b:9092");
        assert!(!format!("{settings:?}").contains("s3cret"));
    }

    #[test]
    fn cluster_nodes_come_from_the_environment_as_a_comma_separated_list() {
        let defaults = Settings::load_with_env(&repo_config_dir(), None, []).unwrap();
        assert!(defaults.cluster.nodes.is_empty());
        let vars = [("VERO__CLUSTER__NODES".to_string(), "http://ch-1a:8123, http://ch-1b:8124".to_string())];
        let settings = Settings::load_with_env(&repo_config_dir(), None, vars).unwrap();
        assert_eq!(settings.cluster.nodes, ["http://ch-1a:8123", "http://ch-1b:8124"]);
    }

    #[test]
    fn kafka_properties_pass_through_and_guarantees_are_refused() {
        let vars = [
            ("VERO__KAFKA__PROPERTIES__SECURITY_PROTOCOL".to_string(), "SASL_SSL".to_string()),
            ("VERO__KAFKA__PROPERTIES__SASL_PASSWORD".to_string(), "hunter2".to_string()),
        ];
        let settings = Settings::load_with_env(&repo_config_dir(), None, vars).unwrap();
        let mut config = ClientConfig::new();
        settings.kafka.apply_properties(&mut config);
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(config.get("sasl.password"), Some("hunter2"));
        assert!(!format!("{settings:?}").contains("hunter2"), "secret property values are not printed");
        for (name, expected) in [
            ("ENABLE_AUTO_OFFSET_STORE", "`enable.auto.offset.store`"),
            ("ENABLE_AUTO_COMMIT", "`enable.auto.commit`"),
            ("ISOLATION_LEVEL", "`isolation.level`"),
            ("GROUP_ID", "use kafka.group_id"),
            ("ACKS", "`acks`"),
            ("ENABLE_IDEMPOTENCE", "`enable.idempotence`"),
            ("PARTITIONER", "`partitioner`"),
            ("AUTO_OFFSET_RESET", "use kafka.auto_offset_reset"),
        ] {
            let vars = [(format!("VERO__KAFKA__PROPERTIES__{name}"), "x".to_string())];
            let err = Settings::load_with_env(&repo_config_dir(), None, vars).unwrap_err().to_string();
            assert!(err.contains("kafka.properties: ") && err.contains(expected), "{name}: {err}");
        }
    }
}
