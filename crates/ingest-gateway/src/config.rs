//! The gateway's settings, loaded with [`vero_service::settings`] from
//! `config/gateway/default.toml` (+ `$VERO_ENV.toml`, + `VERO__…` variables).
//!
//! Guarantees: unknown keys are rejected by serde, and [`Settings::validate`] rejects
//! values that would make the gateway misbehave (no projects, zero limits, duplicate
//! tokens, …) with an error that names the offending key. Token values are never
//! part of any error message or `Debug` output.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure};
use serde::Deserialize;
use vero_service::kafka_properties::{self, KafkaProperties, Reserved};

/// The folder under `config/` holding the gateway's files.
pub const SERVICE: &str = "gateway";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub http: HttpSettings,
    /// Where the operator endpoints live (`[ops]`; absent = next to the API).
    #[serde(default)]
    pub ops: OpsSettings,
    pub kafka: KafkaSettings,
    pub rate_limit: RateLimitSettings,
    /// Bounds on what one request may add to a profile (`[limits]`).
    pub limits: crate::limits::LimitsSettings,
    pub projects: Vec<Project>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub listen: String,
    pub max_body_bytes: usize,
    pub max_decompressed_bytes: usize,
    /// `events/batch`: most events in one batch (413 above it).
    pub batch_max_events: usize,
    /// `events/batch`: largest body, on the wire and after gzip (413 above it).
    pub batch_max_body_bytes: usize,
    pub max_connections: usize,
    pub header_read_timeout_ms: u64,
    pub body_read_timeout_ms: u64,
    pub retry_after_secs: u64,
    pub shutdown_grace_ms: u64,
    /// Tokio worker threads serving HTTP; 0 = one per CPU.
    pub worker_threads: usize,
    pub cors: CorsSettings,
    /// HTTPS on `listen` (`[http.tls]`, see `crate::http::tls`); unset: plain HTTP.
    #[serde(default)]
    pub tls: crate::http::tls::TlsSettings,
}

/// The operator endpoints `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsSettings {
    /// Their own listen address; empty = served on `http.listen` with the API.
    pub listen: String,
}

impl OpsSettings {
    /// The separate listener's address, when one is configured.
    pub fn own_listener(&self) -> Option<&str> {
        Some(self.listen.trim()).filter(|listen| !listen.is_empty())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    /// A TOML array, or a comma-separated string from the environment.
    #[serde(deserialize_with = "vero_service::settings::comma_list")]
    pub allowed_origins: Vec<String>,
    pub max_age_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    pub brokers: String,
    /// The topic track events and user commands are produced to (named `kafka.topic`
    /// before 0.2.0; the old name is refused with a message naming this one).
    pub events_topic: String,
    pub linger_ms: u64,
    pub queue_max_messages: u64,
    pub queue_max_kbytes: u64,
    pub delivery_timeout_ms: u64,
    pub message_max_bytes: u64,
    /// `false` only for a Kafka-compatible service without idempotent producers:
    /// see `vero_service::producer_retries`.
    pub idempotent_producer: bool,
    pub flush_timeout_ms: u64,
    pub readiness_cache_ms: u64,
    /// Extra librdkafka properties (SASL, TLS, tuning); secret values are redacted in
    /// `Debug`, and [`PRODUCER_OWN`] plus the producer guarantees are refused.
    pub properties: KafkaProperties,
}

/// librdkafka properties the gateway's producer takes from its own keys: refused in
/// `kafka.properties` (next to [`kafka_properties::PRODUCER`], the delivery guarantees).
pub const PRODUCER_OWN: &[Reserved] = &[
    Reserved::new("linger.ms", "use kafka.linger_ms"),
    Reserved::new("queue.buffering.max.messages", "use kafka.queue_max_messages"),
    Reserved::new("queue.buffering.max.kbytes", "use kafka.queue_max_kbytes"),
    Reserved::new("message.timeout.ms", "use kafka.delivery_timeout_ms"),
    Reserved::new("message.max.bytes", "use kafka.message_max_bytes (the 413 limit)"),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub enabled: bool,
    pub requests_per_second: u32,
    pub burst: u32,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Project {
    pub name: String,
    pub tokens: Vec<String>,
}

impl fmt::Debug for Project {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Project").field("name", &self.name).field("tokens", &self.tokens.len()).finish()
    }
}

impl Settings {
    /// Load from `dir` with the process environment, then validate.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let settings: Self = vero_service::settings::load(dir)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Load with an explicit environment (for tests), then validate.
    pub fn load_with_env(
        dir: &Path,
        vero_env: Option<&str>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let settings: Self = vero_service::settings::load_with_env(dir, vero_env, vars)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Reject settings the gateway cannot run with, naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        let h = &self.http;
        h.listen.parse::<SocketAddr>().map_err(|e| anyhow::anyhow!("http.listen = {:?}: {e}", h.listen))?;
        positive("http.max_body_bytes", h.max_body_bytes as u64)?;
        positive("http.max_decompressed_bytes", h.max_decompressed_bytes as u64)?;
        positive("http.batch_max_events", h.batch_max_events as u64)?;
        positive("http.batch_max_body_bytes", h.batch_max_body_bytes as u64)?;
        positive("http.max_connections", h.max_connections as u64)?;
        positive("http.header_read_timeout_ms", h.header_read_timeout_ms)?;
        positive("http.body_read_timeout_ms", h.body_read_timeout_ms)?;
        positive("http.retry_after_secs", h.retry_after_secs)?;
        h.tls.files()?;
        if let Some(ops) = self.ops.own_listener() {
            let address = ops.parse::<SocketAddr>().map_err(|e| anyhow::anyhow!("ops.listen = {ops:?}: {e}"))?;
            ensure!(
                address.port() == 0 || ops != h.listen.trim(),
                "ops.listen = {ops:?} is http.listen too: give the operator endpoints another port, or set \
                 ops.listen = \"\" to serve them next to the API"
            );
        }
        for origin in &h.cors.allowed_origins {
            ensure!(
                origin == "*" || origin.starts_with("http://") || origin.starts_with("https://"),
                "http.cors.allowed_origins: {origin:?} is neither \"*\" nor an http(s):// origin"
            );
            http::HeaderValue::from_str(origin)
                .map_err(|_| anyhow::anyhow!("http.cors.allowed_origins: {origin:?} is not a valid header value"))?;
        }
        let k = &self.kafka;
        ensure!(!k.brokers.trim().is_empty(), "kafka.brokers must not be empty");
        ensure!(!k.events_topic.trim().is_empty(), "kafka.events_topic must not be empty");
        k.properties.refuse("kafka.properties", &[kafka_properties::PRODUCER, PRODUCER_OWN])?;
        positive("kafka.queue_max_messages", k.queue_max_messages)?;
        positive("kafka.queue_max_kbytes", k.queue_max_kbytes)?;
        positive("kafka.delivery_timeout_ms", k.delivery_timeout_ms)?;
        positive("kafka.message_max_bytes", k.message_max_bytes)?;
        ensure!(
            k.delivery_timeout_ms > k.linger_ms,
            "kafka.delivery_timeout_ms ({}) must be larger than kafka.linger_ms ({})",
            k.delivery_timeout_ms,
            k.linger_ms
        );
        self.limits.validate()?;
        if self.rate_limit.enabled {
            positive("rate_limit.requests_per_second", u64::from(self.rate_limit.requests_per_second))?;
            positive("rate_limit.burst", u64::from(self.rate_limit.burst))?;
        }
        self.validate_projects()
    }

    fn validate_projects(&self) -> anyhow::Result<()> {
        if self.projects.is_empty() {
            bail!(
                "projects: no project is configured, so no token could ever be accepted. Add one to a config \
                 file, e.g. config/gateway/$VERO_ENV.toml:\n  [[projects]]\n  name = \"shop\"\n  tokens = \
                 [\"<a long random secret>\"]"
            );
        }
        let mut seen_names = std::collections::HashSet::new();
        let mut seen_tokens = std::collections::HashSet::new();
        for (i, project) in self.projects.iter().enumerate() {
            ensure!(!project.name.trim().is_empty(), "projects[{i}].name must not be empty");
            ensure!(seen_names.insert(&project.name), "projects[{i}].name {:?} is used twice", project.name);
            ensure!(
                !project.tokens.is_empty(),
                "projects[{i}].tokens ({:?}) must list at least one token",
                project.name
            );
            for (j, token) in project.tokens.iter().enumerate() {
                // Messages name the position, never the token.
                ensure!(!token.is_empty(), "projects[{i}].tokens[{j}] ({:?}) must not be empty", project.name);
                ensure!(
                    seen_tokens.insert(token.as_str()),
                    "projects[{i}].tokens[{j}] ({:?}) is also configured earlier; tokens must be unique",
                    project.name
                );
            }
        }
        Ok(())
    }
}

impl HttpSettings {
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// `worker_threads`, with 0 resolved to the number of CPUs.
    pub fn worker_threads(&self) -> usize {
        match self.worker_threads {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            n => n,
        }
    }
}

fn positive(key: &str, value: u64) -> anyhow::Result<()> {
    ensure!(value > 0, "{key} must be greater than 0");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_config() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/gateway")
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_refuse_to_start_without_projects_and_say_how_to_add_one() {
        let err = Settings::load_with_env(&repo_config(), None, []).unwrap_err().to_string();
        assert!(err.contains("projects") && err.contains("[[projects]]"), "{err}");
    }

    #[test]
    fn local_overlay_accepts_the_documented_token() {
        let s = Settings::load_with_env(&repo_config(), Some("local"), []).unwrap();
        assert_eq!(s.http.listen, "127.0.0.1:8080");
        assert_eq!(s.projects[0].name, "local");
        assert_eq!(s.projects[0].tokens, ["your_auth_token"]);
        assert_eq!(s.kafka.events_topic, vero_model::topics::EVENTS);
        assert!(!s.rate_limit.enabled, "rate limiting is off by default");
    }

    #[test]
    fn environment_overrides_apply_including_comma_lists() {
        let env = vars(&[
            ("VERO__KAFKA__BROKERS", "k1:9092,k2:9092"),
            ("VERO__KAFKA__LINGER_MS", "20"),
            ("VERO__HTTP__LISTEN", "127.0.0.1:9999"),
            ("VERO__HTTP__CORS__ALLOWED_ORIGINS", "https://a.example,https://b.example"),
        ]);
        let s = Settings::load_with_env(&repo_config(), Some("local"), env).unwrap();
        assert_eq!(s.kafka.brokers, "k1:9092,k2:9092");
        assert_eq!(s.kafka.linger_ms, 20);
        assert_eq!(s.http.listen, "127.0.0.1:9999");
        assert_eq!(s.http.cors.allowed_origins, ["https://a.example", "https://b.example"]);
    }

    #[test]
    fn wrong_values_name_their_key() {
        let cases = [
            ("VERO__HTTP__LISTEN", "not-an-address", "http.listen"),
            ("VERO__HTTP__MAX_BODY_BYTES", "0", "http.max_body_bytes"),
            ("VERO__KAFKA__LINGER_MS", "fast", "linger_ms"),
            ("VERO__KAFKA__DELIVERY_TIMEOUT_MS", "1", "kafka.delivery_timeout_ms"),
            ("VERO__KAFKA__BROKRES", "x", "brokres"),
            ("VERO__HTTP__CORS__ALLOWED_ORIGINS", "ftp://x", "http.cors.allowed_origins"),
        ];
        for (key, value, expected) in cases {
            let err =
                Settings::load_with_env(&repo_config(), Some("local"), vars(&[(key, value)])).unwrap_err().to_string();
            assert!(err.contains(expected), "{key}={value}: {err}");
        }
    }

    #[test]
    fn ops_endpoints_stay_on_the_api_port_unless_ops_listen_is_set() {
        let s = Settings::load_with_env(&repo_config(), Some("local"), []).unwrap();
        assert_eq!(s.ops.own_listener(), None, "default: /metrics next to the API, as before");
        let s = Settings::load_with_env(&repo_config(), Some("local"), vars(&[("VERO__OPS__LISTEN", "0.0.0.0:9100")]))
            .unwrap();
        assert_eq!(s.ops.own_listener(), Some("0.0.0.0:9100"));
        for (value, expected) in [("nowhere", "ops.listen"), ("127.0.0.1:8080", "is http.listen too")] {
            let err = Settings::load_with_env(&repo_config(), Some("local"), vars(&[("VERO__OPS__LISTEN", value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{value}: {err}");
        }
    }

    #[test]
    fn librdkafka_properties_pass_through_with_dotted_names() {
        let dir = tempfile::tempdir().unwrap();
        let defaults = std::fs::read_to_string(repo_config().join("default.toml")).unwrap();
        std::fs::write(dir.path().join("default.toml"), defaults).unwrap();
        std::fs::write(
            dir.path().join("props.toml"),
            "[kafka.properties]\n\"security.protocol\" = \"plaintext\"\n\"batch.num.messages\" = 5000\n\
             \"sasl.password\" = \"hunter2\"\n[[projects]]\nname = \"a\"\ntokens = [\"t\"]\n",
        )
        .unwrap();
        let s = Settings::load_with_env(dir.path(), Some("props"), []).unwrap();
        let config = crate::publish::kafka::producer_config(&s.kafka);
        assert_eq!(config.get("security.protocol"), Some("plaintext"));
        assert_eq!(config.get("batch.num.messages"), Some("5000"));
        assert_eq!(config.get("acks"), Some("all"));
        assert!(!format!("{s:?}").contains("hunter2"), "property values are not printed");
    }

    #[test]
    fn properties_the_guarantees_depend_on_are_refused_at_start() {
        for (name, value, expected) in [
            ("ACKS", "1", "`acks` cannot be set here: a record counts as written only after acks=all"),
            ("ENABLE_IDEMPOTENCE", "false", "`enable.idempotence`"),
            ("PARTITIONER", "random", "`partitioner`"),
            ("LINGER_MS", "50", "use kafka.linger_ms"),
            ("DELIVERY_TIMEOUT_MS", "50", "`delivery.timeout.ms` (librdkafka's alias of `message.timeout.ms`)"),
            ("BOOTSTRAP_SERVERS", "x:1", "use kafka.brokers"),
        ] {
            let var = format!("VERO__KAFKA__PROPERTIES__{name}");
            let err =
                Settings::load_with_env(&repo_config(), Some("local"), vars(&[(&var, value)])).unwrap_err().to_string();
            assert!(err.contains(expected), "{var}: {err}");
        }
        let s = Settings::load_with_env(
            &repo_config(),
            Some("local"),
            vars(&[("VERO__KAFKA__PROPERTIES__COMPRESSION_TYPE", "zstd")]),
        )
        .unwrap();
        let config = crate::publish::kafka::producer_config(&s.kafka);
        assert_eq!(config.get("compression.type"), Some("zstd"), "other built-in defaults can be overridden");
    }

    #[test]
    fn duplicate_tokens_are_rejected_without_printing_them() {
        let dir = tempfile::tempdir().unwrap();
        let defaults = std::fs::read_to_string(repo_config().join("default.toml")).unwrap();
        std::fs::write(dir.path().join("default.toml"), defaults).unwrap();
        std::fs::write(
            dir.path().join("dup.toml"),
            "[[projects]]\nname = \"a\"\ntokens = [\"s3cret\"]\n[[projects]]\nname = \"b\"\ntokens = [\"s3cret\"]\n",
        )
        .unwrap();
        let err = Settings::load_with_env(dir.path(), Some("dup"), []).unwrap_err().to_string();
        assert!(err.contains("projects[1].tokens[0]") && !err.contains("s3cret"), "{err}");
        let s: Settings = vero_service::settings::load_with_env(dir.path(), Some("dup"), []).unwrap();
        assert!(!format!("{s:?}").contains("s3cret"), "Debug must not print tokens");
    }
}
