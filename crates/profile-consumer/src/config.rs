//! Settings of the profile consumer, loaded with `vero_service::settings` from
//! `config/profile-consumer/` (every key documented in `default.toml`). Unknown keys
//! are rejected; the ClickHouse password never appears in `Debug` output.

use std::time::Duration;

use serde::Deserialize;
use vero_clickhouse::ClickHouseSettings;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub clickhouse: ClickHouseSettings,
    pub batch: BatchSettings,
    pub retry: RetrySettings,
    pub ops: OpsSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    pub brokers: String,
    pub group_id: String,
    pub events_topic: String,
    pub profiles_topic: String,
    pub handoff_topic: String,
    pub dlq_topic: String,
    /// Create the profiles and handoff topics at start when missing.
    pub create_topics: bool,
    /// Replication factor of created topics; -1 = the broker's default.
    pub replication_factor: i32,
    pub session_timeout_ms: u64,
    /// Upper bound to wait for one produced record's acknowledgement.
    pub produce_timeout_ms: u64,
    /// Upper bound to read one profiles partition back on assignment.
    pub restore_timeout_ms: u64,
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
            self.retry.initial_backoff_ms > 0 && self.retry.initial_backoff_ms <= self.retry.max_backoff_ms,
            "retry.initial_backoff_ms must be positive and at most retry.max_backoff_ms"
        );
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
                events_topic: vero_model::topics::EVENTS.into(),
                profiles_topic: vero_model::topics::PROFILES.into(),
                handoff_topic: "vero.profiles.handoff".into(),
                dlq_topic: vero_model::topics::EVENTS_DLQ.into(),
                create_topics: true,
                replication_factor: 1,
                session_timeout_ms: 6_000,
                produce_timeout_ms: 30_000,
                restore_timeout_ms: 60_000,
            },
            clickhouse: ClickHouseSettings::local(clickhouse_url),
            batch: BatchSettings { max_records: 500, linger_ms: 50 },
            retry: RetrySettings { initial_backoff_ms: 50, max_backoff_ms: 1_000 },
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
    }
}
