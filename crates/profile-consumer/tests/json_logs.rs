//! Logs as the deployments run them (`VERO_LOG_FORMAT=json`): the real binary writes
//! one JSON object per line, and a failure is logged with the error in its own
//! `error` field while the message stays a fixed text (so logs group by message and
//! the error can be filtered on). Provoked with a ClickHouse that cannot be reached:
//! the migration step logs a warning per retry until SIGTERM, then exits 0.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A local port nothing listens on.
fn closed_port() -> u16 {
    vero_testkit::ports::free_port().unwrap()
}

#[test]
fn json_lines_with_the_error_as_a_field() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_profile-consumer"))
        .env("VERO_CONFIG_DIR", Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/profile-consumer"))
        .env_remove("VERO_ENV")
        .env("VERO_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("VERO__OPS__LISTEN", "127.0.0.1:0")
        .env("VERO__CLICKHOUSE__URL", format!("http://127.0.0.1:{}", closed_port()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let warning = loop {
        let line = received.recv_timeout(deadline.saturating_duration_since(Instant::now())).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("no warning with an error field within 60 s; stdout:\n{}", seen.join("\n"))
        });
        let object: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        seen.push(line);
        if object["level"] == "WARN" && object.get("error").is_some() {
            break object;
        }
    };
    let error = warning["error"].as_str().expect("the error is rendered as a string");
    let message = warning["message"].as_str().expect("a message");
    assert!(!error.is_empty(), "{warning}");
    assert!(!message.contains(error), "the error is interpolated into the message too: {warning}");
    // The retry policy every service shares logs the retries (`vero_service::retry`).
    let ours = |target: &str| target.starts_with("profile_consumer") || target.starts_with("vero_service");
    assert!(warning["target"].as_str().is_some_and(ours), "{warning}");
    assert!(seen.iter().any(|l| l.contains(r#""message":"starting""#)), "{}", seen.join("\n"));

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "profile-consumer did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    for line in received.try_iter() {
        serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
    }
}
