//! A real `tansu` broker process (Kafka-compatible) on a free loopback port in a temp
//! dir, for end-to-end tests against a real broker process.
//!
//! [`Tansu::start`] keeps data in memory; [`Tansu::start_persistent`] keeps it in a
//! SQLite file, so [`Tansu::kill`] + [`Tansu::restart`] (same port, same file) is a
//! broker crash and recovery with every acknowledged record still there.
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
    child: Option<Child>,
    binary: PathBuf,
    port: u16,
    storage: String,
    cluster_id: String,
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
        Self::start_with(|_| "memory://tansu/".to_owned())
    }

    /// Start a broker that stores every topic in `tansu.db` (SQLite) in its temp dir;
    /// the data survives [`Tansu::kill`] and [`Tansu::restart`].
    pub fn start_persistent() -> anyhow::Result<Self> {
        // tansu resolves the path after `sqlite://` against its working directory
        // (even a leading `/`), which is the temp dir.
        Self::start_with(|_| "sqlite://tansu.db".to_owned())
    }

    fn start_with(storage: impl Fn(&std::path::Path) -> String) -> anyhow::Result<Self> {
        let binary = binary()?;
        let mut last_error = None;
        // A free port can be taken by someone else between probing and binding: retry.
        for _ in 0..START_ATTEMPTS {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let dir = tempfile::Builder::new().prefix("tansu-").tempdir()?;
            let mut tansu = Self {
                child: None,
                binary: binary.clone(),
                port,
                storage: storage(dir.path()),
                cluster_id: crate::unique_name("tansu"),
                bootstrap: format!("127.0.0.1:{port}"),
                dir,
            };
            match tansu.spawn_and_wait() {
                Ok(()) => return Ok(tansu),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let port = self.port;
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("tansu.log"))?;
        let child = Command::new(&self.binary)
            .arg("broker")
            .args(["--cluster-id", &self.cluster_id])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", &self.storage])
            .current_dir(self.dir.path())
            .env("RUST_LOG", std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        let child = self.child.insert(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                bail!("tansu exited during start-up ({status}); log:\n{}", self.log());
            }
            if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("tansu did not accept connections on port {port} within {START_TIMEOUT:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9` the broker: what a crash looks like to clients.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM the broker and wait up to 20 s for it to exit (then kill it): a clean
    /// restart, as an operator's `systemctl restart` would do.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same port with the same storage (after [`Tansu::kill`]).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill(); // no-op after kill/stop
        self.spawn_and_wait()
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
        self.kill();
    }
}
