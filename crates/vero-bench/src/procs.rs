//! Child processes of the bench suite: a [`ChildGuard`] with a name and a log file,
//! stopped (SIGTERM, then SIGKILL) when dropped, plus what the suite reads about them
//! from `/proc` (resident memory, peak resident memory, CPU time).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use vero_testkit::process::ChildGuard;

/// A child process with its log in `<log_dir>/<name>.log`, stopped on drop.
pub struct Guard {
    pub name: String,
    child: ChildGuard,
    pub log: PathBuf,
}

impl Guard {
    pub fn spawn(name: &str, mut command: Command, log_dir: &Path) -> anyhow::Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        command.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file);
        let child = ChildGuard::spawn(&mut command).with_context(|| format!("starting {name}"))?;
        Ok(Self { name: name.into(), child, log })
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    /// Graceful stop: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let _ = self.child.terminate(grace);
    }

    /// `kill -9`: a crash, no clean shutdown.
    pub fn kill9(&mut self) {
        let _ = self.child.kill9();
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(15).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// A loopback port free right now, below the ephemeral range
/// ([`vero_testkit::ports`]).
pub fn free_port() -> anyhow::Result<u16> {
    vero_testkit::ports::free_port()
}

/// Wait until something accepts connections on `port`.
pub fn wait_for_port(port: u16, guard: &mut Guard, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if !guard.is_running() {
            anyhow::bail!("{} exited during start:\n{}", guard.name, guard.log_tail());
        }
        if Instant::now() > deadline {
            anyhow::bail!("{} did not listen on {port} within {timeout:?}:\n{}", guard.name, guard.log_tail());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `VmRSS` and `VmHWM` (peak) of a process, in KiB.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// User + system CPU seconds a process has used so far.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at ") ".
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The directory of the running executable: where `cargo build --release` put the
/// suite's sibling binaries.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().context("executable without a directory")?.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_memory_and_cpu() {
        let pid = std::process::id();
        let (rss, peak) = memory_kib(pid).unwrap();
        assert!(rss > 0 && peak >= rss);
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_secs(pid).is_some());
    }
}
