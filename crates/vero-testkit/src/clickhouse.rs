//! A real `clickhouse-server` process for tests, in a temp dir on free ports.
//!
//! [`ClickHouseServer::start`] writes a minimal `config.xml`/`users.xml` (loopback
//! only, user `default` without password, UTC, small caches) into a fresh temp dir
//! and starts the server binary found on `PATH` (or `/usr/sbin`, or
//! `$VERO_CLICKHOUSE_SERVER`). The server keeps its ports and data dir for its whole
//! life, so [`ClickHouseServer::stop`] / [`ClickHouseServer::kill`] followed by
//! [`ClickHouseServer::restart`] brings the same database back where clients expect
//! it. Dropping the handle kills the process and removes the directory.
//!
//! [`ClickHouseServer::start_with`] adds XML of the caller's inside `<yandex>` of the
//! config (the cluster test kit, [`crate::clickhouse_cluster`], passes
//! `<remote_servers>`, `<macros>`, `<zookeeper>`, ...) on ports the caller chose.
//!
//! [`ClickHouseServer::query`] is a tiny blocking HTTP client (text in, text out) so
//! tests can check what analysts would see without depending on the code under test.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use crate::process::{wait_started, ChildGuard};

/// How long a (re)start may take on a loaded 2-core machine before we give up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct ClickHouseServer {
    dir: PathBuf,
    /// Owns (and on drop removes) `dir` when it is a temp dir.
    _temp: Option<tempfile::TempDir>,
    binary: PathBuf,
    http_port: u16,
    tcp_port: u16,
    child: Option<ChildGuard>,
}

impl ClickHouseServer {
    /// Start a fresh server and wait until it answers `/ping`.
    pub fn start() -> anyhow::Result<Self> {
        let temp = tempfile::Builder::new().prefix("vero-clickhouse-").tempdir().context("creating temp dir")?;
        let ports = crate::ports::free_ports(2)?;
        let (http_port, tcp_port) = (ports[0], ports[1]);
        Self::launch(temp.path().to_owned(), Some(temp), http_port, tcp_port, "")
    }

    /// Start a fresh server in a temp dir on the given ports with `extra_config` (XML
    /// elements) added to its `config.xml`, and wait until it answers `/ping`.
    pub fn start_with(http_port: u16, tcp_port: u16, extra_config: &str) -> anyhow::Result<Self> {
        let temp = tempfile::Builder::new().prefix("vero-clickhouse-").tempdir().context("creating temp dir")?;
        Self::launch(temp.path().to_owned(), Some(temp), http_port, tcp_port, extra_config)
    }

    /// Start a server that keeps its data in `dir` (created if missing) on the given
    /// ports; the data outlives the process (`make run` uses this).
    pub fn start_in(dir: &Path, http_port: u16, tcp_port: u16) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir.canonicalize()?;
        Self::launch(dir, None, http_port, tcp_port, "")
    }

    fn launch(
        dir: PathBuf,
        temp: Option<tempfile::TempDir>,
        http_port: u16,
        tcp_port: u16,
        extra_config: &str,
    ) -> anyhow::Result<Self> {
        let binary = find_binary()?;
        write_config(&dir, http_port, tcp_port, extra_config)?;
        let mut server = Self { dir, _temp: temp, binary, http_port, tcp_port, child: None };
        server.spawn_and_wait()?;
        Ok(server)
    }

    /// `http://127.0.0.1:<port>`, the HTTP interface clients use.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The native protocol port (for `clickhouse-client --port`).
    pub fn tcp_port(&self) -> u16 {
        self.tcp_port
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.as_path()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(ChildGuard::is_running)
    }

    /// Graceful stop (SIGTERM), waiting for the process to exit.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.terminate(Duration::from_secs(30))?;
        }
        Ok(())
    }

    /// Hard stop (SIGKILL): what a crash or OOM kill looks like to clients.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill9();
        }
        Ok(())
    }

    /// Start again on the same ports with the same data directory.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.spawn_and_wait()
    }

    /// Run one statement over HTTP; the response body on 200, an error with the
    /// server's message otherwise.
    pub fn query(&self, sql: &str) -> anyhow::Result<String> {
        http_post(self.http_port, sql, Duration::from_secs(60))
    }

    fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let config = self.dir.as_path().join("config.xml");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.as_path().join("stdout.log"))
            .context("opening server stdout log")?;
        // Tied to this process like the Kafka nodes: a test binary killed by a signal
        // leaves no server behind.
        let stdout = log.try_clone()?;
        let binary = self.binary.to_string_lossy().into_owned();
        let mut child = crate::process::spawn_tied(&binary, |command| {
            command
                .arg(format!("--config-file={}", config.display()))
                .current_dir(self.dir.as_path())
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(log);
        })
        .with_context(|| format!("starting {}", self.binary.display()))?;
        let port = self.http_port;
        let ping = || matches!(http_get_ping(port), Ok(body) if body.starts_with("Ok."));
        let waited = wait_started(&mut child, "clickhouse-server", "answer /ping", START_TIMEOUT, ping);
        self.child = Some(child);
        waited.map_err(|e| anyhow!("{e}; logs:\n{}", self.logs_tail()))
    }

    /// The end of the server's error log, for failure messages.
    pub fn logs_tail(&self) -> String {
        let mut out = String::new();
        for name in ["stdout.log", "server.err.log"] {
            let text = std::fs::read_to_string(self.dir.as_path().join(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            out.push_str(&format!("--- {name}\n"));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for ClickHouseServer {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

fn find_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("VERO_CLICKHOUSE_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("clickhouse-server"))
        .find(|candidate| candidate.is_file())
        .context("clickhouse-server not found on PATH or in /usr/sbin (run scripts/install-deps.sh)")
}

fn write_config(dir: &Path, http_port: u16, tcp_port: u16, extra_config: &str) -> anyhow::Result<()> {
    let d = dir.display();
    let config = format!(
        r#"<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{d}/server.log</log>
        <errorlog>{d}/server.err.log</errorlog>
        <console>0</console>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <path>{d}/data/</path>
    <tmp_path>{d}/tmp/</tmp_path>
    <user_files_path>{d}/user_files/</user_files_path>
    <format_schema_path>{d}/format_schemas/</format_schema_path>
    <users_config>{d}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
    <mlock_executable>false</mlock_executable>
{extra_config}
</yandex>
"#
    );
    let users = r#"<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"#;
    std::fs::write(dir.join("config.xml"), config).context("writing config.xml")?;
    std::fs::write(dir.join("users.xml"), users).context("writing users.xml")?;
    Ok(())
}

fn http_get_ping(port: u16) -> anyhow::Result<String> {
    let (status, body) = http_exchange(port, "GET /ping HTTP/1.0\r\n\r\n".as_bytes(), Duration::from_secs(2))?;
    anyhow::ensure!(status == 200, "ping answered {status}");
    Ok(body)
}

/// [`ClickHouseServer::query`] for a server known by its HTTP port only, with a short
/// timeout: for samplers that run beside a test and must not hold it up.
pub fn query_port(http_port: u16, sql: &str) -> anyhow::Result<String> {
    http_post(http_port, sql, Duration::from_secs(5))
}

fn http_post(port: u16, sql: &str, timeout: Duration) -> anyhow::Result<String> {
    let mut request =
        format!("POST / HTTP/1.0\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n", sql.len()).into_bytes();
    request.extend_from_slice(sql.as_bytes());
    let (status, body) = http_exchange(port, &request, timeout)?;
    if status != 200 {
        bail!("ClickHouse answered {status}: {}", body.trim());
    }
    Ok(body)
}

/// One HTTP/1.0 exchange (the server closes the connection after the response, so
/// no chunked decoding is needed).
fn http_exchange(port: u16, request: &[u8], timeout: Duration) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(request)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").context("HTTP response without header end")?;
    let status =
        head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("HTTP response without a status code")?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_queries_and_restarts_on_the_same_port_with_its_data() {
        let mut server = ClickHouseServer::start().unwrap();
        assert!(server.query("SELECT version()").unwrap().trim().chars().next().unwrap().is_ascii_digit());
        server.query("CREATE TABLE default.t (x UInt32) ENGINE = MergeTree ORDER BY x").unwrap();
        server.query("INSERT INTO default.t VALUES (1), (2)").unwrap();
        let port = server.http_port();
        server.kill().unwrap();
        assert!(server.query("SELECT 1").is_err(), "killed server must not answer");
        server.restart().unwrap();
        assert_eq!(server.http_port(), port);
        assert_eq!(server.query("SELECT count() FROM default.t").unwrap().trim(), "2");
        let err = server.query("SELECT nosuchfunction()").unwrap_err().to_string();
        assert!(err.contains("500") || err.contains("404"), "{err}");
        server.stop().unwrap();
        assert!(!server.is_running());
    }
}
