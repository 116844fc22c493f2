//! `make run` keeps what it accepted (issue 11): `scripts/run-local.sh` itself, on its
//! own ports and data directory, with the workspace's binaries.
//!
//! Numbered requests (each retried until it gets a 200) go in while the event sink, the
//! profile consumer, the gateway and the broker are each killed with SIGKILL once (the
//! broker kept away for 8 s, so deliveries time out meanwhile): the supervisor must
//! bring every one back, and every acknowledged event must reach `vero.events`
//! exactly once and count once in the profiles. Then a Ctrl-C (SIGINT to the script's
//! process group, as a terminal sends it) stops everything, a second run must come up
//! with all of it still there, and take more; its output goes through a pipe to `cat`,
//! which that run's Ctrl-C kills as well, and everything must still stop, although
//! Ctrl-C comes twice. A third run is stopped by SIGTERM to its process group, twice.
//! After each stop, within a fixed bound, no port is served and no process is left.
//! The broker is Apache Kafka (`vero-dev-kafka`), the consumers in consumer groups.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use vero_loadgen::client::{Connection, Target};
use vero_testkit::process::ChildGuard;

/// Services `run-local.sh` supervises (their `/proc/<pid>/comm`, at most 15 bytes).
const SINK: &str = "event-sink";
const PROFILES: &str = "profile-consume";
const GATEWAY: &str = "ingest-gateway";
/// The Kafka broker's JVM (under `vero-dev-kafka`).
const BROKER: &str = "java";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// `scripts/run-local.sh` stops in two tiers of at most 35 s each (its `grace` + 5),
/// plus the script's own steps on a loaded machine.
const STOP_BOUND: Duration = Duration::from_secs(100);

/// Kafka, ClickHouse HTTP and native, gateway, sink ops, profiles ops, Kafka controller.
const PORTS: u16 = 7;

/// How the run's output leaves it.
#[derive(Clone, Copy)]
enum Output {
    /// Straight into the log file.
    File,
    /// `make run 2>&1 | cat`: through a pipe whose reader Ctrl-C kills too, so every
    /// later write of the script and the supervisors meets a closed pipe.
    PipedThroughCat,
}

/// One `make run` in the foreground of its own process group (the guard signals, and
/// on drop kills, the whole group).
struct LocalRun {
    child: ChildGuard,
    log: PathBuf,
    state: PathBuf,
}

impl LocalRun {
    fn start(state: &Path, base: u16, bins: &Path, log: PathBuf, output: Output) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt;
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
        // A Rust process ignores SIGPIPE and its children inherit that, and bash cannot
        // undo a signal ignored at its start: `env` gives the script a terminal's
        // default SIGPIPE, or a broken pipe could never hurt it here.
        let mut command = Command::new("env");
        command.args(["--default-signal=PIPE", "bash"]);
        match output {
            Output::File => command.arg("scripts/run-local.sh"),
            Output::PipedThroughCat => command.args(["-c", "bash scripts/run-local.sh 2>&1 | cat"]),
        };
        command
            .current_dir(workspace_root())
            .env("VERO_RUN_DIR", state)
            .env("VERO_RUN_PORT_BASE", base.to_string())
            .env("VERO_RUN_BIN_DIR", bins)
            .env("RUST_LOG", "info,rdkafka=warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0);
        let child = ChildGuard::spawn(&mut command).context("starting scripts/run-local.sh")?;
        Ok(Self { child, log, state: state.to_owned() })
    }

    fn pid(&self) -> i32 {
        self.child.pid() as i32
    }

    /// The script's and the supervisors' own lines (what the stop did), then the last
    /// 60 lines of everything (a service's error flood cannot hide the former).
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let steps: Vec<&str> =
            lines.iter().copied().filter(|l| l.contains("[run]") || l.contains("[supervise]")).collect();
        format!(
            "--- [run] and [supervise] lines:\n{}\n--- last lines:\n{}",
            steps[steps.len().saturating_sub(60)..].join("\n"),
            lines[lines.len().saturating_sub(60)..].join("\n")
        )
    }

    /// Ctrl-C: SIGINT to the whole foreground group; the script stops the rest.
    fn interrupt_and_wait(&mut self, timeout: Duration) -> anyhow::Result<()> {
        self.signal_and_wait(&[Signal::SIGINT], timeout)
    }

    /// Each of `signals` to the whole process group, a second apart (Ctrl-C twice, or
    /// the SIGTERM of `timeout` or a process manager followed by the one make
    /// forwards), then wait for the script to end.
    fn signal_and_wait(&mut self, signals: &[Signal], timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        for (i, signal) in signals.iter().enumerate() {
            if i > 0 {
                std::thread::sleep(Duration::from_secs(1));
            }
            self.child.signal(*signal)?;
        }
        if self.child.wait_timeout((started + timeout).saturating_duration_since(Instant::now()))?.is_some() {
            return Ok(());
        }
        bail!("make run did not stop within {timeout:?} of {signals:?}:\n{}", self.log_tail())
    }
}

impl Drop for LocalRun {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.signal(Signal::SIGINT);
            std::thread::sleep(Duration::from_secs(20));
            for pid in descendants(self.pid()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = self.child.kill9();
        }
        // What a broken stop left behind, no longer below the script (reparented).
        for pid in leftovers(&self.state) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Processes of a run that is over: anything still working in, or started with a path
/// into, its state directory (Kafka's node runs in `kafka/node-1/`, ClickHouse gets
/// `clickhouse/`).
fn leftovers(state: &Path) -> Vec<i32> {
    let needle = state.to_string_lossy().into_owned();
    processes()
        .into_iter()
        .filter(|(pid, _, _)| *pid != std::process::id() as i32)
        .filter(|(pid, _, _)| {
            let proc = PathBuf::from(format!("/proc/{pid}"));
            let cwd = std::fs::read_link(proc.join("cwd")).unwrap_or_default();
            let cmdline = std::fs::read(proc.join("cmdline")).unwrap_or_default();
            cwd.starts_with(state) || String::from_utf8_lossy(&cmdline).contains(&needle)
        })
        .map(|(pid, _, _)| pid)
        .collect()
}

/// After a Ctrl-C: no port of the run is served and no process of it is left.
fn assert_all_stopped(base: u16, state: &Path) -> anyhow::Result<()> {
    let open: Vec<u16> =
        (base..base + PORTS).filter(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok()).collect();
    anyhow::ensure!(open.is_empty(), "ports still served after Ctrl-C (a component kept running): {open:?}");
    let left: Vec<String> = leftovers(state)
        .into_iter()
        .map(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_owned())
        .collect();
    anyhow::ensure!(left.is_empty(), "processes still running after Ctrl-C: {left:?}");
    Ok(())
}

/// `(pid, parent pid, comm)` of every process, from `/proc`.
fn processes() -> Vec<(i32, i32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (comm) state ppid ...`; comm may contain spaces and parentheses.
            let (left, right) = (stat.find('(')?, stat.rfind(')')?);
            let comm = stat[left + 1..right].to_owned();
            let ppid = stat[right + 2..].split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid, comm))
        })
        .collect()
}

/// Every process below `root` (children, their children, ...).
fn descendants(root: i32) -> Vec<i32> {
    let all = processes();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(all.iter().filter(|(_, ppid, _)| *ppid == parent).map(|(pid, _, _)| *pid));
        i += 1;
    }
    found.remove(0);
    found
}

/// The pid of the service `comm` under `root`, waiting until it runs.
fn service_pid(root: i32, comm: &str, timeout: Duration) -> anyhow::Result<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        let all = processes();
        let below = descendants(root);
        if let Some((pid, _, _)) = all.iter().find(|(pid, _, c)| c == comm && below.contains(pid)) {
            return Ok(*pid);
        }
        if Instant::now() > deadline {
            bail!("no {comm} process under make run after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// SIGKILL the service and wait until the supervisor started a new one.
fn kill_and_await_restart(run: &LocalRun, comm: &str) -> anyhow::Result<()> {
    let old = service_pid(run.pid(), comm, Duration::from_secs(30))?;
    kill(Pid::from_raw(old), Signal::SIGKILL)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let new = service_pid(run.pid(), comm, Duration::from_secs(60))?;
        if new != old {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{comm} was not restarted within 60 s:\n{}", run.log_tail());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// SIGKILL of the broker's JVM with its supervisor frozen, so the broker stays away
/// for `down` while requests `from..to` are sent: the gateway's deliveries time out
/// (503, retried by the client), which makes librdkafka raise its idempotent
/// producer's epoch. Then the supervisor continues and starts the broker again.
async fn broker_crash_under_load(run: &LocalRun, base: u16, from: u64, to: u64, down: Duration) -> anyhow::Result<()> {
    let broker = service_pid(run.pid(), BROKER, Duration::from_secs(30))?;
    // java's parent is setpriv's exec'd self: vero-dev-kafka; its parent the supervisor.
    let parent = |child: i32| processes().into_iter().find(|(pid, _, _)| *pid == child).map(|(_, ppid, _)| ppid);
    let supervisor = parent(broker).and_then(parent);
    let supervisor = Pid::from_raw(supervisor.context("the broker's supervisor")?);
    kill(supervisor, Signal::SIGSTOP)?;
    kill(Pid::from_raw(broker), Signal::SIGKILL)?;
    let sending = tokio::spawn(send(base, from, to));
    tokio::time::sleep(down).await;
    kill(supervisor, Signal::SIGCONT)?;
    sending.await?
}

fn clickhouse(base: u16, sql: &str) -> anyhow::Result<String> {
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--max-time", "10", "--data-binary", sql])
        .arg(format!("http://127.0.0.1:{}/", base + 1))
        .output()?;
    anyhow::ensure!(out.status.success(), "ClickHouse: {}", String::from_utf8_lossy(&out.stdout));
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// What ClickHouse holds: events (plain count), distinct request numbers among them,
/// and the profiles' summed event counts.
#[derive(Debug, PartialEq)]
struct Counts {
    events: u64,
    distinct: u64,
    profiles: u64,
}

fn counts(base: u16) -> Option<Counts> {
    let events =
        clickhouse(base, "SELECT count(), uniqExact(visitParamExtractInt(data, 'seq')) FROM vero.events FORMAT TSV")
            .ok()?;
    let (events, distinct) = events.split_once('\t')?;
    let profiles =
        clickhouse(base, "SELECT sum(event_count) FROM vero.profiles FINAL WHERE deleted = 0").ok()?.parse().ok()?;
    Some(Counts { events: events.parse().ok()?, distinct: distinct.parse().ok()?, profiles })
}

fn await_counts(run: &LocalRun, base: u16, want: u64, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    while Instant::now() < deadline {
        last = counts(base);
        if last == Some(Counts { events: want, distinct: want, profiles: want }) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bail!("expected {want} events, distinct and in the profiles; have {last:?} after {timeout:?}:\n{}", run.log_tail())
}

/// Progress on stderr (shown with `--nocapture` and in CI logs on failure).
fn phase(started: Instant, what: &str) {
    eprintln!("[make_run {:>6.1} s] {what}", started.elapsed().as_secs_f64());
}

/// Requests `from..to`, one at a time, each retried until it gets a 200. The timeout is
/// long so that a retry only follows a refused or broken connection (the gateway was
/// killed between requests), never a request the gateway may still have accepted:
/// a duplicate in `vero.events` is then the pipeline's fault, not the client's.
async fn send(base: u16, from: u64, to: u64) -> anyhow::Result<()> {
    let target =
        Target::parse(&format!("http://127.0.0.1:{}/api/v2/events/track", base + 3)).map_err(anyhow::Error::msg)?;
    let mut connection = Connection::default();
    for seq in from..to {
        let body = serde_json::json!({
            "auth_token": "your_auth_token",
            "identity": {"id": format!("user-{}", seq % 7)},
            "event_name": "make_run_checked",
            "data": {"seq": seq},
        });
        let body = Bytes::from(body.to_string());
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let outcome = connection.post_json(&target, body.clone(), Duration::from_secs(60)).await;
            match outcome {
                Ok(200) => break,
                Err(vero_loadgen::client::RequestError::Timeout) => {
                    bail!("request {seq} got no answer in 60 s: a retry could duplicate it, so the run stops here")
                }
                outcome if Instant::now() > deadline => bail!("request {seq} got no 200 in 120 s (last: {outcome:?})"),
                _ => {
                    connection = Connection::default();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    Ok(())
}

async fn await_ready(run: &mut LocalRun, base: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(240);
    let ready = format!("http://127.0.0.1:{}/readyz", base + 3);
    while Instant::now() < deadline {
        if let Some(status) = run.child.try_wait()? {
            bail!("make run exited ({status}) before it was ready:\n{}", run.log_tail());
        }
        if Command::new("curl").args(["-sf", "--max-time", "2", &ready]).output()?.status.success() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("make run not ready after 240 s:\n{}", run.log_tail())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn make_run_keeps_every_acknowledged_event_through_crashes_and_restarts() -> anyhow::Result<()> {
    let bins = vero_chaos::rig::bin_dir()?;
    let state = tempfile::Builder::new().prefix("vero-make-run-").tempdir()?;
    let log = state.path().join("make-run.log");
    let base = vero_testkit::ports::free_port_range(PORTS)?;

    let started = Instant::now();
    phase(started, &format!("starting make run on ports {base}..{}", base + PORTS - 1));
    let mut run = LocalRun::start(state.path(), base, &bins, log.clone(), Output::File)?;
    await_ready(&mut run, base).await?;
    phase(started, "ready; requests 0..40");
    send(base, 0, 40).await?;
    phase(started, "kill -9 of the event sink");
    kill_and_await_restart(&run, SINK)?;
    send(base, 40, 80).await?;
    phase(started, "kill -9 of the profile consumer");
    kill_and_await_restart(&run, PROFILES)?;
    send(base, 80, 120).await?;
    // Between requests (none in flight), so no retry can repeat an accepted request.
    phase(started, "kill -9 of the gateway");
    kill_and_await_restart(&run, GATEWAY)?;
    send(base, 120, 160).await?;
    phase(started, "kill -9 of the broker, kept down 8 s while requests time out");
    broker_crash_under_load(&run, base, 160, 200, Duration::from_secs(8)).await?;
    phase(started, "200 acknowledged; waiting for ClickHouse");
    await_counts(&run, base, 200, Duration::from_secs(180))?;
    phase(started, "Ctrl-C");
    run.interrupt_and_wait(STOP_BOUND)?;
    assert_all_stopped(base, state.path())?;
    drop(run);

    // The second run as `make run 2>&1 | cat`: its Ctrl-C also kills the reader of its
    // output, and the stop must still reach Kafka and ClickHouse.
    phase(started, "second make run on the same data, output piped through cat");
    let mut again = LocalRun::start(state.path(), base, &bins, log, Output::PipedThroughCat)?;
    await_ready(&mut again, base).await?;
    await_counts(&again, base, 200, Duration::from_secs(120))?;
    send(base, 200, 210).await?;
    await_counts(&again, base, 210, Duration::from_secs(120))?;
    phase(started, "Ctrl-C twice");
    again.signal_and_wait(&[Signal::SIGINT, Signal::SIGINT], STOP_BOUND)?;
    assert_all_stopped(base, state.path())?;
    drop(again);

    // A third run stopped as `timeout`, `kill -- -PGID` or a process manager does:
    // SIGTERM to the group, and a second one (make forwards one to the script).
    phase(started, "third make run, stopped by SIGTERM to its process group, twice");
    let mut third = LocalRun::start(state.path(), base, &bins, state.path().join("third.log"), Output::File)?;
    await_ready(&mut third, base).await?;
    await_counts(&third, base, 210, Duration::from_secs(120))?;
    third.signal_and_wait(&[Signal::SIGTERM, Signal::SIGTERM], STOP_BOUND)?;
    assert_all_stopped(base, state.path())?;
    phase(started, "done");
    Ok(())
}
