//! The API listener's optional TLS (`[http.tls]`): HTTPS with a certificate chain and
//! key from PEM files, through OpenSSL (the libssl librdkafka uses).
//!
//! * The files are read at start; a missing or bad one stops the start naming its key.
//! * Reloaded without dropping a connection: on SIGHUP, and when either file's
//!   modification time or size changes (checked every [`RELOAD_CHECK`]; a Kubernetes
//!   Secret update swaps both files at once). Connections already open keep the
//!   certificate they were made with; new ones get the new one. A reload that fails
//!   (half-written file, key not matching) is logged and the previous certificate
//!   stays.
//! * The handshake runs on the connection's own task, bounded by
//!   `http.header_read_timeout_ms`, so a slow or silent client never holds up
//!   `accept`.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_openssl::SslStream;
use tokio_util::sync::CancellationToken;

/// How often the certificate and key files are checked for a change.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// `[http.tls]`: both files, or neither (plain HTTP).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM: the server certificate followed by its intermediates.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM: the certificate's private key (unencrypted).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

impl TlsSettings {
    /// The two files, `None` for plain HTTP; an error when only one is set.
    pub fn files(&self) -> anyhow::Result<Option<(&Path, &Path)>> {
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (None, None) => Ok(None),
            _ => anyhow::bail!("http.tls: set cert_file and key_file together (or neither, for plain HTTP)"),
        }
    }
}

/// What a change of the files is noticed by.
type Stamp = Option<(SystemTime, u64, SystemTime, u64)>;

/// The acceptor of new connections, replaced on reload.
pub struct Tls {
    acceptor: RwLock<Arc<SslAcceptor>>,
    cert: PathBuf,
    key: PathBuf,
    stamp: Mutex<Stamp>,
}

impl Tls {
    /// Read the files of `settings` (`None` for plain HTTP).
    pub fn load(settings: &TlsSettings) -> anyhow::Result<Option<Arc<Self>>> {
        let Some((cert, key)) = settings.files()? else { return Ok(None) };
        let stamp = stamp(cert, key);
        let acceptor = build(cert, key).map_err(anyhow::Error::msg)?;
        Ok(Some(Arc::new(Self {
            acceptor: RwLock::new(Arc::new(acceptor)),
            cert: cert.to_owned(),
            key: key.to_owned(),
            stamp: Mutex::new(stamp),
        })))
    }

    /// Read the files again; keep the current certificate if they do not load.
    pub fn reload(&self, why: &str) -> bool {
        *self.stamp.lock().expect("stamp lock") = stamp(&self.cert, &self.key);
        match build(&self.cert, &self.key) {
            Ok(acceptor) => {
                *self.acceptor.write().expect("acceptor lock") = Arc::new(acceptor);
                tracing::info!(why, cert = %self.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::error!(why, error = %e, "TLS certificate not reloaded; serving the previous one");
                false
            }
        }
    }

    /// Reload on SIGHUP and when the files change, until `shutdown`.
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler; the TLS files are still checked for changes");
                None
            }
        };
        let mut check = tokio::time::interval(RELOAD_CHECK);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                    self.reload("SIGHUP");
                }
                _ = check.tick() => {
                    let now = stamp(&self.cert, &self.key);
                    let changed = *self.stamp.lock().expect("stamp lock") != now;
                    if changed {
                        self.reload("the certificate or key file changed");
                    }
                }
            }
        }
    }

    /// The TLS handshake of an accepted connection, within `timeout`.
    pub async fn accept(&self, stream: TcpStream, timeout: Duration) -> Result<SslStream<TcpStream>, String> {
        let acceptor = self.acceptor.read().expect("acceptor lock").clone();
        let ssl = openssl::ssl::Ssl::new(acceptor.context()).map_err(|e| e.to_string())?;
        let mut stream = SslStream::new(ssl, stream).map_err(|e| e.to_string())?;
        match tokio::time::timeout(timeout, Pin::new(&mut stream).accept()).await {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no TLS handshake within {timeout:?}")),
        }
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let of =
        |path: &Path| std::fs::metadata(path).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
    let ((cert_time, cert_len), (key_time, key_len)) = (of(cert)?, of(key)?);
    Some((cert_time, cert_len, key_time, key_len))
}

/// An acceptor for the files (Mozilla's "intermediate" settings: TLS 1.2 and 1.3);
/// errors name the key and file.
fn build(cert: &Path, key: &Path) -> Result<SslAcceptor, String> {
    let named = |name: &str, path: &Path| {
        let (name, path) = (name.to_owned(), path.display().to_string());
        move |e: openssl::error::ErrorStack| format!("http.tls.{name} = {path}: {e}")
    };
    for (name, path) in [("cert_file", cert), ("key_file", key)] {
        std::fs::File::open(path).map_err(|e| format!("http.tls.{name} = {}: {e}", path.display()))?;
    }
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).map_err(|e| e.to_string())?;
    builder.set_certificate_chain_file(cert).map_err(named("cert_file", cert))?;
    builder.set_private_key_file(key, SslFiletype::PEM).map_err(named("key_file", key))?;
    builder.check_private_key().map_err(named("key_file", key))?;
    Ok(builder.build())
}
