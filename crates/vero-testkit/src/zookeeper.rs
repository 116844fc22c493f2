//! A real single-node ZooKeeper process for tests, from Debian's `zookeeper` package.
//!
//! ClickHouse 18.16 keeps the replication log of every `Replicated*MergeTree` table
//! and the `ON CLUSTER` DDL queue in ZooKeeper, so the cluster test kit
//! ([`crate::clickhouse_cluster`]) starts one of these first. [`ZooKeeper::start`]
//! writes a `zoo.cfg` (free loopback client port, temp data dir, short ticks, admin
//! server off) and runs the server's Java main class directly with the package's jars
//! (`/usr/share/java/zookeeper.jar` names its dependencies in its manifest), so no
//! system service, `/etc/zookeeper` or root is involved. It waits, bounded, until the
//! server serves sessions (the `stat` four-letter command shows its version); on
//! failure the error shows the end of the server's log.
//!
//! The process keeps its port and data for its whole life: [`ZooKeeper::kill`] then
//! [`ZooKeeper::restart`] is a coordinator crash and recovery. Dropping the handle
//! kills the process and removes the directory.
//!
//! `$VERO_ZOOKEEPER_JAR` overrides the jar; `java` is looked up on `PATH`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::process::{wait_started, ChildGuard};

/// JVM start plus ZooKeeper's own start on a loaded 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const MAIN_CLASS: &str = "org.apache.zookeeper.server.ZooKeeperServerMain";
/// slf4j-simple gives the server a log (on stderr, into `zookeeper.log`); without a
/// binding slf4j discards every line, and a failed start would show nothing.
const LOG_BINDING: &str = "/usr/share/java/slf4j-simple.jar";

pub struct ZooKeeper {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<ChildGuard>,
}

fn jar() -> anyhow::Result<PathBuf> {
    let jar = std::env::var_os("VERO_ZOOKEEPER_JAR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/java/zookeeper.jar"));
    anyhow::ensure!(
        jar.is_file(),
        "{} not found: install Debian's zookeeper package (scripts/install-deps.sh) or set VERO_ZOOKEEPER_JAR",
        jar.display()
    );
    Ok(jar)
}

impl ZooKeeper {
    /// Start a fresh server and wait until it serves sessions.
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("vero-zookeeper-").tempdir().context("creating temp dir")?;
        let port = crate::ports::free_port()?;
        let config = format!(
            "tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={}/data\nclientPort={port}\n\
             clientPortAddress=127.0.0.1\nmaxClientCnxns=0\nadmin.enableServer=false\n\
             4lw.commands.whitelist=ruok,stat\n",
            dir.path().display()
        );
        std::fs::write(dir.path().join("zoo.cfg"), config).context("writing zoo.cfg")?;
        let mut zk = Self { dir, port, child: None };
        zk.spawn_and_wait()?;
        Ok(zk)
    }

    /// The client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(ChildGuard::is_running)
    }

    /// Hard stop (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill9();
        }
    }

    /// Start again on the same port with the same data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn_and_wait()
    }

    fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let mut classpath = jar()?.display().to_string();
        if std::path::Path::new(LOG_BINDING).is_file() {
            classpath = format!("{classpath}:{LOG_BINDING}");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("zookeeper.log"))
            .context("opening zookeeper.log")?;
        // Tied to this process: a test binary killed by a signal leaves no server behind.
        let stdout = log.try_clone()?;
        let mut child = crate::process::spawn_tied("java", |command| {
            command
                .args(["-Xmx256m", "-XX:+UseSerialGC", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn"])
                .arg("-cp")
                .arg(classpath)
                .arg(MAIN_CLASS)
                .arg(self.dir.path().join("zoo.cfg"))
                .current_dir(self.dir.path())
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(log);
        })
        .context("starting java for ZooKeeper (is a JRE installed? scripts/install-deps.sh)")?;
        let port = self.port;
        // `ruok` answers `imok` before the server serves sessions ("ZooKeeperServer not
        // running" closes them, and ClickHouse 18.16 can crash on such a failed
        // connection); `stat` shows the version only once it serves.
        let serving = || four_letter(port, "stat").is_ok_and(|s| s.starts_with("Zookeeper version"));
        let waited = wait_started(&mut child, "ZooKeeper", "serve (four-letter stat)", START_TIMEOUT, serving);
        self.child = Some(child);
        waited.map_err(|e| anyhow!("{e}; log:\n{}", self.logs_tail()))
    }

    /// The end of the server's log, for failure messages.
    pub fn logs_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("zookeeper.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Send a four-letter command and read the whole answer.
fn four_letter(port: u16, command: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(command.as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_restarts_on_the_same_port() {
        let mut zk = ZooKeeper::start().unwrap();
        assert_eq!(four_letter(zk.port(), "ruok").unwrap(), "imok");
        let port = zk.port();
        zk.kill();
        assert!(four_letter(port, "ruok").is_err(), "a killed server must not answer");
        zk.restart().unwrap();
        assert_eq!((zk.port(), four_letter(port, "ruok").unwrap().as_str()), (port, "imok"));
    }
}
