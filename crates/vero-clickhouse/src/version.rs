//! The server's version, read once at start, to choose SQL variants and settings the
//! server understands.

use clickhouse::Client;

use crate::error::Failure;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
}

impl ServerVersion {
    /// Ask the server (`SELECT version()`).
    pub async fn detect(client: &Client) -> Result<Self, Failure> {
        let text: String = client.query("SELECT version()").fetch_one().await.map_err(Failure::from)?;
        Self::parse(&text).ok_or_else(|| Failure::Invalid(format!("unrecognised server version {text:?}")))
    }

    /// Parse `18.16.1` or `25.3.2.39`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Self { major, minor })
    }

    /// `insert_deduplication_token` with `non_replicated_deduplication_window`
    /// (ClickHouse 22.2 and later) lets a repeated insert of the same batch be dropped
    /// by the server.
    pub fn supports_insert_deduplication_token(self) -> bool {
        self >= Self { major: 22, minor: 2 }
    }
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_old_and_new_version_strings() {
        assert_eq!(ServerVersion::parse("18.16.1"), Some(ServerVersion { major: 18, minor: 16 }));
        assert_eq!(ServerVersion::parse("25.3.2.39\n"), Some(ServerVersion { major: 25, minor: 3 }));
        assert_eq!(ServerVersion::parse("banana"), None);
        assert!(!ServerVersion { major: 18, minor: 16 }.supports_insert_deduplication_token());
        assert!(ServerVersion { major: 24, minor: 1 }.supports_insert_deduplication_token());
    }
}
