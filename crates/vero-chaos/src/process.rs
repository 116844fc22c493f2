//! One pipeline service (`ingest-gateway`, `event-sink`, `profile-consumer`) as a
//! separate OS process, with the faults a harness needs: `kill -9`, SIGSTOP/SIGCONT,
//! SIGTERM, and a restart with the same configuration (what a supervisor does).
//!
//! Each process writes its log to `<dir>/<name>.log` (appended across restarts, with
//! a marker line per start), so a failed run can be read afterwards. The signals, the
//! waits and the kill on drop are [`vero_testkit::process::ChildGuard`]'s.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use vero_testkit::process::ChildGuard;

pub struct ServiceProcess {
    pub name: String,
    binary: PathBuf,
    env: BTreeMap<String, String>,
    log: PathBuf,
    child: Option<ChildGuard>,
    starts: u32,
}

impl ServiceProcess {
    /// Prepare (not start) `binary` as `name` with `env` on top of a clean environment
    /// (PATH and HOME only, so the developer's own VERO__* never leak in).
    pub fn new(name: &str, binary: PathBuf, env: BTreeMap<String, String>, log_dir: &Path) -> Self {
        Self { name: name.into(), binary, env, log: log_dir.join(format!("{name}.log")), child: None, starts: 0 }
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "{} is already running", self.name);
        let mut log = OpenOptions::new().create(true).append(true).open(&self.log)?;
        self.starts += 1;
        writeln!(log, "==== vero-chaos: start #{} of {} ====", self.starts, self.name)?;
        let mut command = Command::new(&self.binary);
        command.env_clear();
        for key in ["PATH", "HOME"] {
            if let Some(value) = std::env::var_os(key) {
                command.env(key, value);
            }
        }
        command.envs(&self.env).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let child = ChildGuard::spawn(&mut command)
            .with_context(|| format!("starting {} ({})", self.name, self.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    fn running(&self) -> anyhow::Result<&ChildGuard> {
        self.child.as_ref().with_context(|| format!("{} is not running", self.name))
    }

    /// `kill -9`: no flush, no commit, no goodbye to the group.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        self.running()?;
        if let Some(mut child) = self.child.take() {
            child.kill9().with_context(|| format!("kill -9 of {}", self.name))?;
        }
        Ok(())
    }

    /// Freeze the process (it keeps its sockets but answers nothing).
    pub fn freeze(&self) -> anyhow::Result<()> {
        self.running()?.freeze().with_context(|| format!("sending SIGSTOP to {}", self.name))
    }

    pub fn thaw(&self) -> anyhow::Result<()> {
        self.running()?.thaw().with_context(|| format!("sending SIGCONT to {}", self.name))
    }

    /// SIGTERM and wait up to `grace` for a clean exit, then `kill -9`.
    pub fn terminate(&mut self, grace: Duration) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.terminate(grace).with_context(|| format!("stopping {}", self.name))?;
        }
        Ok(())
    }

    /// Whether the process is alive; a process that exited on its own is reaped
    /// and reported (the caller decides whether that is a finding).
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status.to_string())
            }
            _ => None,
        }
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }
}
