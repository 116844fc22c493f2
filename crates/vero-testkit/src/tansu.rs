//! A real `tansu` broker process (Kafka-compatible, in-memory storage) on a free
//! loopback port in a temp dir, for end-to-end tests against a real broker process.
//!
//! The binary is `$TANSU_BIN`, else `~/.cargo/bin/tansu`, else `tansu` on `PATH`
//! (`make test` installs it). A missing binary is an error that says how to install
//! it, so tests needing tansu fail loudly instead of passing silently. The process is
//! killed when the [`Tansu`] handle drops.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 3;

pub struct Tansu {
    child: Child,
    bootstrap: String,
    dir: tempfile::TempDir,
}

/// Where the tansu binary is, or an error saying how to get it.
pub fn binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("TANSU_BIN") {
        let path = PathBuf::from(path);
        anyhow::ensure!(path.is_file(), "TANSU_BIN={} is not a file", path.display());
        return Ok(path);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let cargo_bin = PathBuf::from(home).join(".cargo/bin/tansu");
        if cargo_bin.is_file() {
            return Ok(cargo_bin);
        }
    }
    let on_path = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("tansu")).find(|p| p.is_file()));
    on_path.context(
        "the tansu broker binary was not found (looked at $TANSU_BIN, ~/.cargo/bin/tansu and PATH); install it \
         with `make deps` or `cargo install tansu --locked --features libsql,dynostore`",
    )
}

impl Tansu {
    /// Start a broker with `memory://tansu/` storage and wait until it accepts
    /// connections.
    pub fn start() -> anyhow::Result<Self> {
        let binary = binary()?;
        let mut last_error = None;
        // A free port can be taken by someone else between probing and binding: retry.
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&binary) {
                Ok(tansu) => return Ok(tansu),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    fn start_once(binary: &PathBuf) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let url = format!("tcp://127.0.0.1:{port}");
        let dir = tempfile::Builder::new().prefix("tansu-").tempdir()?;
        let log = std::fs::File::create(dir.path().join("tansu.log"))?;
        let child = Command::new(binary)
            .arg("broker")
            .args(["--cluster-id", &crate::unique_name("tansu")])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .current_dir(dir.path())
            .env("RUST_LOG", std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut tansu = Self { child, bootstrap: format!("127.0.0.1:{port}"), dir };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = tansu.child.try_wait()? {
                bail!("tansu exited during start-up ({status}); log:\n{}", tansu.log());
            }
            if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok() {
                return Ok(tansu);
            }
            if Instant::now() > deadline {
                bail!(
                    "tansu did not accept connections on port {port} within {START_TIMEOUT:?}; log:\n{}",
                    tansu.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `host:port` to give clients as `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// What the broker wrote to stdout/stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }

    /// Create `name` with `partitions` partitions (replication factor 1).
    pub async fn create_topic(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .context("creating an admin client")?;
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin.create_topics([&topic], &options).await.context("CreateTopics request")?;
        for result in results {
            result.map_err(|(topic, code)| anyhow::anyhow!("creating topic {topic}: {code}"))?;
        }
        Ok(())
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
