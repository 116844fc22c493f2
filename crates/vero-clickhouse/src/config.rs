//! Connection settings, deserialized from a service's `[clickhouse]` config section.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseSettings {
    /// HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    pub user: String,
    /// Never logged: `Debug` prints `<redacted>` when set.
    #[serde(default)]
    pub password: String,
    /// Upper bound for one request (query or insert), in milliseconds.
    pub request_timeout_ms: u64,
    /// Name of the ClickHouse cluster (a `<remote_servers>` entry) to run the cluster
    /// schema on: sharded `*_local` Replicated tables with Distributed tables under
    /// today's names (docs/design.md, "Cluster schema"). `None`, the default, is the
    /// single-node schema. Env `VERO__CLICKHOUSE__CLUSTER`; shared by both consumers.
    #[serde(default)]
    pub cluster: Option<String>,
}

impl ClickHouseSettings {
    /// Settings for an unauthenticated local/test server at `url`.
    pub fn local(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            user: "default".into(),
            password: String::new(),
            request_timeout_ms: 30_000,
            cluster: None,
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

impl fmt::Debug for ClickHouseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClickHouseSettings")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &if self.password.is_empty() { "<empty>" } else { "<redacted>" })
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("cluster", &self.cluster)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_the_password() {
        let settings = ClickHouseSettings { password: "hunter2".into(), ..ClickHouseSettings::local("http://x") };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2") && shown.contains("<redacted>"), "{shown}");
    }
}
