//! The load generator against the trivial baseline server, in-process on port 0:
//! every request is counted once, under the right status, and pacing holds.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use vero_bench::trivial_server::{self, Counters};
use vero_loadgen::LoadConfig;

async fn start_baseline(token: &str) -> (String, Arc<Counters>, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/v2/events/track", listener.local_addr().unwrap());
    let counters = Arc::new(Counters::default());
    let shutdown = CancellationToken::new();
    tokio::spawn(trivial_server::run(listener, token.into(), counters.clone(), shutdown.clone()));
    (url, counters, shutdown)
}

#[tokio::test]
async fn counts_every_request_of_a_closed_loop_run() {
    let (url, counters, shutdown) = start_baseline("your_auth_token").await;
    let mut config = LoadConfig::for_url(&url);
    config.requests = Some(600);
    config.connections = 8;
    let report = vero_loadgen::run(config, CancellationToken::new()).await.unwrap();
    assert_eq!(report.requests, 600, "{report}");
    assert_eq!(report.ok, 600, "{report}");
    assert_eq!(report.count(200), 600);
    assert_eq!(report.error_count(), 0);
    assert_eq!(report.latency_ms.count, 600);
    assert_eq!(report.ok_latency_ms.count, 600);
    assert!(report.latency_ms.p50 > 0.0 && report.latency_ms.p99 >= report.latency_ms.p50);
    assert!(report.ok_rps > 0.0);
    assert_eq!(counters.accepted.load(Ordering::Relaxed), 600, "the server saw each request once");
    shutdown.cancel();
}

#[tokio::test]
async fn rejected_requests_are_counted_under_their_status() {
    let (url, counters, shutdown) = start_baseline("the_real_token").await;
    let mut config = LoadConfig::for_url(&url);
    config.requests = Some(50);
    config.connections = 4;
    let report = vero_loadgen::run(config, CancellationToken::new()).await.unwrap();
    assert_eq!(report.count(401), 50, "{report}");
    assert_eq!(report.ok, 0);
    assert_eq!(report.ok_latency_ms.count, 0);
    assert_eq!(counters.accepted.load(Ordering::Relaxed), 0);
    shutdown.cancel();
}

#[tokio::test]
async fn open_loop_paces_requests_and_warmup_is_not_reported() {
    let (url, counters, shutdown) = start_baseline("your_auth_token").await;
    let mut config = LoadConfig::for_url(&url);
    config.requests = Some(100);
    config.rate = Some(200.0);
    config.warmup = 0.1;
    config.connections = 4;
    let started = Instant::now();
    let report = vero_loadgen::run(config, CancellationToken::new()).await.unwrap();
    // 100 requests scheduled 5 ms apart: the last one cannot start before ~495 ms.
    assert!(started.elapsed() >= Duration::from_millis(490), "{:?}", started.elapsed());
    assert_eq!(report.requests + report.warmup_requests, 100, "{report}");
    assert!(report.warmup_requests >= 15 && report.warmup_requests <= 25, "{report}");
    assert_eq!(counters.accepted.load(Ordering::Relaxed), 100);
    shutdown.cancel();
}

#[tokio::test]
async fn an_unreachable_target_is_reported_as_connect_errors() {
    // Bind then drop: the port is (almost certainly) closed afterwards.
    let port = vero_testkit::ports::free_port().unwrap();
    let mut config = LoadConfig::for_url(&format!("http://127.0.0.1:{port}/api/v2/events/track"));
    config.requests = Some(10);
    config.connections = 2;
    let report = vero_loadgen::run(config, CancellationToken::new()).await.unwrap();
    assert_eq!(report.errors.get("connect").copied(), Some(10), "{report}");
    assert_eq!(report.requests, 10);
}

#[tokio::test]
async fn duration_bounded_runs_stop() {
    let (url, _counters, shutdown) = start_baseline("your_auth_token").await;
    let mut config = LoadConfig::for_url(&url);
    config.duration = Some(0.5);
    config.connections = 2;
    let report = tokio::time::timeout(Duration::from_secs(30), vero_loadgen::run(config, CancellationToken::new()))
        .await
        .expect("a 0.5 s run ends")
        .unwrap();
    assert!(report.ok > 0, "{report}");
    assert!(report.elapsed_secs < 15.0, "{report}");
    shutdown.cancel();
}
