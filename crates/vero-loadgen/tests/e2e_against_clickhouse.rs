//! The end-to-end checker against a real ClickHouse server: it finds a run's events by
//! their markers, and tells found, missing, duplicated and stray events apart.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use vero_loadgen::e2e::{AckLog, Checker};
use vero_loadgen::LoadConfig;
use vero_testkit::clickhouse::ClickHouseServer;

fn row(event_id: &str, run: &str, seq: u64) -> String {
    format!("('{event_id}', '{{\"loadgen_run\":\"{run}\",\"loadgen_seq\":{seq},\"item\":\"x\"}}')")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_missing_duplicated_and_stray_events() {
    let server = tokio::task::spawn_blocking(ClickHouseServer::start).await.unwrap().unwrap();
    let db = vero_testkit::unique_name("lg");
    server.query(&format!("CREATE DATABASE {db}")).unwrap();
    server
        .query(&format!("CREATE TABLE {db}.events (event_id UUID, data String) ENGINE = MergeTree ORDER BY event_id"))
        .unwrap();
    let ids = [
        "00000000-0000-7000-8000-000000000001",
        "00000000-0000-7000-8000-000000000002",
        "00000000-0000-7000-8000-000000000003",
        "00000000-0000-7000-8000-000000000004",
        "00000000-0000-7000-8000-000000000005",
    ];
    let rows = [
        row(ids[0], "run-a", 0),
        // seq 1: stored twice by a redelivery (same event id) ...
        row(ids[1], "run-a", 1),
        row(ids[1], "run-a", 1),
        // ... seq 2: produced twice by the gateway (two event ids).
        row(ids[2], "run-a", 2),
        row(ids[3], "run-a", 2),
        // seq 9: stored but never acknowledged; another run's event is ignored.
        row(ids[4], "run-a", 9),
        row(ids[4], "run-b", 3),
    ];
    server.query(&format!("INSERT INTO {db}.events VALUES {}", rows.join(", "))).unwrap();

    let mut config = LoadConfig::for_url("http://127.0.0.1:1/").e2e;
    config.clickhouse_table = format!("{db}.events");
    config.e2e_timeout = 1.0;
    config.poll_interval_ms = 50;
    let checker = Checker::new(&server.http_url(), &config, "run-a").unwrap();
    let acks = Arc::new(AckLog::default());
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    for seq in [0, 1, 2, 3] {
        acks.record(seq, now_ms);
    }
    let load_over = CancellationToken::new();
    load_over.cancel();
    let report = checker.watch(acks, load_over, CancellationToken::new()).await.unwrap();
    assert_eq!(report.last_query_error, None);
    assert_eq!((report.acked, report.found, report.missing), (4, 3, 1), "{report:?}");
    assert_eq!((report.duplicate_rows, report.duplicate_event_ids), (2, 1), "{report:?}");
    assert_eq!(report.stored_without_ack, 1);
    assert_eq!(report.ingest_to_queryable_ms.count, 3);
    assert!(report.ingest_to_queryable_ms.max < 60_000.0, "{report:?}");
    assert!(report.waited_secs >= 1.0, "waited for the missing event until the deadline");
}

#[tokio::test]
async fn a_failing_query_is_reported_not_hidden() {
    let server = tokio::task::spawn_blocking(ClickHouseServer::start).await.unwrap().unwrap();
    let mut config = LoadConfig::for_url("http://127.0.0.1:1/").e2e;
    config.clickhouse_table = "no_such_db.events".into();
    config.e2e_timeout = 0.2;
    let checker = Checker::new(&server.http_url(), &config, "run").unwrap();
    let acks = Arc::new(AckLog::default());
    acks.record(0, 1);
    let load_over = CancellationToken::new();
    load_over.cancel();
    let report = checker.watch(acks, load_over, CancellationToken::new()).await.unwrap();
    assert_eq!(report.missing, 1);
    assert!(report.last_query_error.as_deref().unwrap_or_default().contains("no_such_db"), "{report:?}");
}
