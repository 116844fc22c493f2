//! `vero-supervise`, the process supervisor of `make run`, as a real process: a command
//! that exits is started again, SIGTERM reaches the command and the supervisor exits
//! with its status, and a command that ignores SIGTERM is killed after `--grace`.
//!
//! These tests also make `cargo test` build this crate's binaries (`CARGO_BIN_EXE_*`),
//! which the make-run test starts as processes.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn supervise(name: &str, grace: &str, script: &str, log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_vero-supervise"))
        .args(["--name", name, "--grace", grace, "--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap()
}

/// Wait until `log` holds `count` lines containing `needle`; panics with the log after 20 s.
fn await_lines(log: &Path, needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.lines().filter(|line| line.contains(needle)).count() >= count {
            return;
        }
        assert!(Instant::now() < deadline, "waited 20 s for {count} lines with {needle:?}; output:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn terminate_and_wait(child: &mut Child) -> Option<i32> {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(Instant::now() < deadline, "the supervisor did not exit within 20 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_command_that_exits_is_restarted_with_its_output_prefixed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("out.log");
    let mut child = supervise("job", "5", "echo hello; exit 3", &log);
    await_lines(&log, "[job] hello", 2);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("job: exited (exit status: 3); restart #1 in 1 s"), "output:\n{text}");
    // Stopped while waiting for the next restart: a clean exit.
    assert_eq!(terminate_and_wait(&mut child), Some(0));
}

#[test]
fn sigterm_reaches_the_command_and_its_status_is_the_supervisors() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("out.log");
    let script = "trap 'echo draining; exit 7' TERM; echo ready; while true; do sleep 0.1; done";
    let mut child = supervise("job", "10", script, &log);
    await_lines(&log, "[job] ready", 1);
    assert_eq!(terminate_and_wait(&mut child), Some(7));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("[job] draining"), "output:\n{text}");
    assert!(!text.contains("restart #"), "nothing is restarted while stopping; output:\n{text}");
}

#[test]
fn a_command_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("out.log");
    let script = "trap '' TERM; echo ready; while true; do sleep 0.1; done";
    let mut child = supervise("job", "1", script, &log);
    await_lines(&log, "[job] ready", 1);
    // Killed by a signal: no exit code of its own, so the supervisor reports 1.
    assert_eq!(terminate_and_wait(&mut child), Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("job: did not stop within 1 s; killing it"), "output:\n{text}");
}
