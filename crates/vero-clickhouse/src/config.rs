//! Connection settings, deserialized from a service's `[clickhouse]` config section.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseSettings {
    /// HTTP interface, e.g. `http://127.0.0.1:8123`.
    #[serde(deserialize_with = "env_text")]
    pub url: String,
    #[serde(deserialize_with = "env_text")]
    pub user: String,
    /// Never logged: `Debug` prints `<redacted>` when set.
    #[serde(default, deserialize_with = "env_text")]
    pub password: String,
    /// Upper bound for one request (query or insert), in milliseconds.
    pub request_timeout_ms: u64,
}

impl ClickHouseSettings {
    /// Settings for an unauthenticated local/test server at `url`.
    pub fn local(url: impl Into<String>) -> Self {
        Self { url: url.into(), user: "default".into(), password: String::new(), request_timeout_ms: 30_000 }
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
            .finish()
    }
}

/// A string setting that may arrive as a list.
///
/// `vero_service::settings` sets a list separator on the environment source, and the
/// `config` crate then turns *every* `VERO__*` string into a list (`"a,b"` into
/// `["a", "b"]`, `"x"` into `["x"]`). This accepts both shapes and joins lists back
/// with `,`, so `VERO__KAFKA__BROKERS=a:9092,b:9092` keeps its meaning.
pub fn env_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Text::deserialize(deserializer)? {
        Text::One(s) => s,
        Text::Many(parts) => parts.join(","),
    })
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
