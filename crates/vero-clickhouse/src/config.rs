//! Connection settings, deserialized from a service's `[clickhouse]` config section.
//!
//! Files are read when the settings are loaded, so a missing or unreadable one stops
//! the start with a message naming its key: `password_file` (read into `password`) and
//! `[clickhouse.tls]`'s CA, client certificate and key (made into the OpenSSL
//! connector every client of the service, on every node of a cluster, connects with).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_openssl::client::legacy::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod};
use serde::Deserialize;

#[derive(Clone, Deserialize)]
#[serde(try_from = "Raw")]
pub struct ClickHouseSettings {
    /// HTTP interface, e.g. `http://127.0.0.1:8123`, or `https://…:8443` (TLS).
    pub url: String,
    pub user: String,
    /// Never logged: `Debug` prints `<redacted>` when set. From `password_file` when
    /// that is set.
    pub password: String,
    /// Upper bound for one request (query or insert), in milliseconds.
    pub request_timeout_ms: u64,
    /// Name of the ClickHouse cluster (a `<remote_servers>` entry) to run the cluster
    /// schema on: sharded `*_local` Replicated tables with Distributed tables under
    /// today's names (docs/design.md, "Cluster schema"). `None`, the default, is the
    /// single-node schema. Env `VERO__CLICKHOUSE__CLUSTER`; shared by both consumers.
    pub cluster: Option<String>,
    /// TLS of an `https://` url (`[clickhouse.tls]`).
    pub tls: ClickHouseTls,
}

/// `[clickhouse]` as written: [`ClickHouseSettings`] with files not read yet.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    url: String,
    user: String,
    #[serde(default)]
    password: String,
    /// A file holding the password (a mounted secret); its content without a trailing
    /// newline. Not with `password`.
    #[serde(default)]
    password_file: Option<PathBuf>,
    request_timeout_ms: u64,
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    tls: TlsFiles,
}

impl TryFrom<Raw> for ClickHouseSettings {
    type Error = String;

    fn try_from(raw: Raw) -> Result<Self, String> {
        let password = match (&raw.password_file, raw.password.is_empty()) {
            (Some(_), false) => return Err("clickhouse: set password or password_file, not both".into()),
            (Some(file), true) => read_secret(file, "clickhouse.password_file")?,
            (None, _) => raw.password,
        };
        let https = raw.url.starts_with("https://");
        let tls = if https || raw.tls != TlsFiles::default() {
            ClickHouseTls::from_files(raw.tls)?
        } else {
            ClickHouseTls::default()
        };
        Ok(Self {
            url: raw.url,
            user: raw.user,
            password,
            request_timeout_ms: raw.request_timeout_ms,
            cluster: raw.cluster,
            tls,
        })
    }
}

/// The content of a secret file without its trailing newline; errors name `key` and
/// the path, never the content.
pub fn read_secret(path: &Path, key: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?;
    Ok(text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text).to_owned())
}

/// `[clickhouse.tls]`: PEM files for HTTPS. Unset, an `https://` url is verified
/// against the system's CAs (Debian's ca-certificates) without a client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// CA certificates that verify the server, in addition to the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (chain), for a server that requires one; with `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM, unencrypted).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// The TLS connector made from [`TlsFiles`] (`None` for plain HTTP).
#[derive(Clone, Default)]
pub struct ClickHouseTls {
    pub files: TlsFiles,
    connector: Option<HttpsConnector<HttpConnector>>,
}

/// TCP keepalive of ClickHouse connections (as the `clickhouse` crate's own client).
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

impl ClickHouseTls {
    /// Read the files and build the connector; errors name the key and the file.
    pub fn from_files(files: TlsFiles) -> Result<Self, String> {
        let mut ssl = SslConnector::builder(SslMethod::tls_client()).map_err(|e| format!("OpenSSL: {e}"))?;
        if let Some(ca) = &files.ca_file {
            readable(ca, "ca_file")?;
            ssl.set_ca_file(ca).map_err(|e| openssl_error("ca_file", ca, e))?;
        }
        match (&files.cert_file, &files.key_file) {
            (Some(cert), Some(key)) => {
                readable(cert, "cert_file")?;
                readable(key, "key_file")?;
                ssl.set_certificate_chain_file(cert).map_err(|e| openssl_error("cert_file", cert, e))?;
                ssl.set_private_key_file(key, SslFiletype::PEM).map_err(|e| openssl_error("key_file", key, e))?;
                ssl.check_private_key().map_err(|e| openssl_error("key_file", key, e))?;
            }
            (None, None) => {}
            _ => return Err("clickhouse.tls: cert_file and key_file go together".into()),
        }
        let mut http = HttpConnector::new();
        http.set_keepalive(Some(TCP_KEEPALIVE));
        http.enforce_http(false);
        let connector = HttpsConnector::with_connector(http, ssl).map_err(|e| format!("OpenSSL: {e}"))?;
        Ok(Self { files, connector: Some(connector) })
    }

    /// The connector, when the url is `https://` or files were given.
    pub fn connector(&self) -> Option<&HttpsConnector<HttpConnector>> {
        self.connector.as_ref()
    }
}

fn openssl_error(key: &str, path: &Path, error: openssl::error::ErrorStack) -> String {
    format!("clickhouse.tls.{key}: {}: {error}", path.display())
}

fn readable(path: &Path, key: &str) -> Result<(), String> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| format!("clickhouse.tls.{key}: cannot read {}: {e}", path.display()))
}

impl fmt::Debug for ClickHouseTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClickHouseTls").field("files", &self.files).field("https", &self.connector.is_some()).finish()
    }
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
            tls: ClickHouseTls::default(),
        }
    }

    /// [`ClickHouseSettings::local`] over HTTPS: the server's certificate verified
    /// against `ca_file`.
    pub fn https(url: impl Into<String>, ca_file: &Path) -> Result<Self, String> {
        let tls = ClickHouseTls::from_files(TlsFiles { ca_file: Some(ca_file.to_owned()), ..TlsFiles::default() })?;
        Ok(Self { tls, ..Self::local(url) })
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
            .field("tls", &self.tls)
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
