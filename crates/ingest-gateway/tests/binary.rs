//! The `ingest-gateway` binary as an operator runs it: refuses to start without
//! projects, serves with the `local` overlay, exits 0 on SIGTERM after flushing.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use vero_testkit::mock_kafka::MockKafka;
use vero_testkit::unique_name;

fn gateway_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ingest-gateway"));
    command
        .env("VERO_CONFIG_DIR", Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/gateway"))
        .env_remove("VERO_ENV")
        .env("VERO_LOG_FORMAT", "text")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    command
}

#[test]
fn refuses_to_start_without_projects_and_says_how_to_add_one() {
    let output = gateway_command().env("VERO__HTTP__LISTEN", "127.0.0.1:0").output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no project is configured") && stderr.contains("[[projects]]"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_and_exits_zero_on_sigterm() {
    let kafka = MockKafka::start(1).unwrap();
    let topic = unique_name("gw_bin");
    kafka.create_topic(&topic, 2).unwrap();
    let mut child = gateway_command()
        .env("VERO_ENV", "local")
        .env("VERO__HTTP__LISTEN", "127.0.0.1:0")
        .env("VERO__KAFKA__BROKERS", kafka.bootstrap_servers())
        .env("VERO__KAFKA__EVENTS_TOPIC", &topic)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The address is in the "listening" log line (port 0 was asked for).
    let stdout = child.stdout.take().unwrap();
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("address=").nth(1) {
                let _ = found.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
            }
        }
    });
    let address = address.recv_timeout(Duration::from_secs(60)).expect("the gateway logs its address");
    let url = format!("http://{address}/api/v2/events/track");
    let reply = post_json(&url, &track_body("your_auth_token", "1", "from_binary")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the gateway did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
}
