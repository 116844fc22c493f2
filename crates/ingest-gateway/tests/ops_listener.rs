//! The operator endpoints (`/metrics`, `/healthz`, `/readyz`) on their own listener
//! (`ops.listen`): served there, 404 on the public API port, while the API answers
//! only on its port. Without `ops.listen` they stay next to the API, as before.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ingest_gateway::publish::MemoryPublisher;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use vero_testkit::mock_kafka::MockKafka;
use vero_testkit::unique_name;

const TRACK: &str = "/api/v2/events/track";
const OPS_PATHS: [&str; 3] = ["/metrics", "/healthz", "/readyz"];

#[tokio::test]
async fn a_separate_ops_listener_takes_the_operator_endpoints_off_the_api_port() {
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (api_url, ops_url) =
        (format!("http://{}", api.local_addr().unwrap()), format!("http://{}", ops.local_addr().unwrap()));
    let publisher = Arc::new(MemoryPublisher::new());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(ingest_gateway::serve_with_ops(
        settings("unused:9092", "unused"),
        api,
        Some(ops),
        publisher.clone(),
        shutdown.clone(),
    ));

    let reply = post_json(&format!("{api_url}{TRACK}"), &track_body(TOKEN, "1", "ops_split")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(get(&format!("{api_url}/api/v2/heartbeat")).await.status, 200);
    for path in OPS_PATHS {
        let on_ops = get(&format!("{ops_url}{path}")).await;
        assert_eq!(on_ops.status, 200, "{path} on the ops port: {}", on_ops.body);
        let on_api = get(&format!("{api_url}{path}")).await;
        assert_eq!(on_api.status, 404, "{path} on the API port: {}", on_api.body);
    }
    let metrics = get(&format!("{ops_url}/metrics")).await;
    assert_eq!(metrics.header("content-type"), Some("text/plain; version=0.0.4"));
    assert!(
        metrics.body.lines().any(|l| l.starts_with("vero_gateway_events_accepted_total") && l.ends_with(" 1")),
        "the API's event is counted on the ops port:\n{}",
        metrics.body
    );
    // The 404s above are counted as unknown routes, like any other.
    assert!(metrics.body.contains(r#"route="unknown",status="404""#), "{}", metrics.body);
    for path in [TRACK, "/api/v2/heartbeat"] {
        assert_eq!(get(&format!("{ops_url}{path}")).await.status, 404, "{path} is not served on the ops port");
    }

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(60), task).await.unwrap().unwrap().unwrap();
    assert_eq!(publisher.records().len(), 1);
}

#[tokio::test]
async fn without_ops_listen_the_operator_endpoints_stay_on_the_api_port() {
    let settings = settings("unused:9092", "unused");
    assert_eq!(settings.ops.own_listener(), None, "the default keeps today's single port");
    let (gw, _sink) = start_memory(settings).await;
    for path in OPS_PATHS {
        assert_eq!(get(&gw.url(path)).await.status, 200, "{path}");
    }
    gw.stop().await.unwrap();
}

/// The binary with `VERO__OPS__LISTEN`: the setting as deployments pass it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_binds_ops_listen_from_its_config() {
    let kafka = MockKafka::start(1).unwrap();
    let topic = unique_name("gw_ops");
    kafka.create_topic(&topic, 1).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ingest-gateway"))
        .env("VERO_CONFIG_DIR", Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/gateway"))
        .env("VERO_ENV", "local")
        .env("VERO_LOG_FORMAT", "text")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env("VERO__HTTP__LISTEN", "127.0.0.1:0")
        .env("VERO__OPS__LISTEN", "127.0.0.1:0")
        .env("VERO__KAFKA__BROKERS", kafka.bootstrap_servers())
        .env("VERO__KAFKA__EVENTS_TOPIC", &topic)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Both addresses are logged (port 0 was asked for): `address=` API, `ops=` ops.
    let stdout = child.stdout.take().unwrap();
    let (found, addresses) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            for field in ["address=", "ops="] {
                if let Some(rest) = line.split(field).nth(1) {
                    let _ = found.send((field, rest.split_whitespace().next().unwrap_or_default().to_owned()));
                }
            }
        }
    });
    let (mut api, mut ops) = (None, None);
    while api.is_none() || ops.is_none() {
        let (field, address) = addresses.recv_timeout(Duration::from_secs(60)).expect("the gateway logs its addresses");
        *if field == "ops=" { &mut ops } else { &mut api } = Some(address);
    }
    let (api, ops) = (api.unwrap(), ops.unwrap());
    assert_ne!(api, ops);
    let metrics = get(&format!("http://{ops}/metrics")).await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("vero_gateway_"), "{}", metrics.body);
    assert_eq!(get(&format!("http://{api}/metrics")).await.status, 404);
    let ready = eventually(Duration::from_secs(30), || async {
        Some(get(&format!("http://{ops}/readyz")).await).filter(|r| r.status == 200)
    })
    .await;
    assert!(ready.is_some(), "/readyz on the ops port turns 200 once Kafka answers");

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
