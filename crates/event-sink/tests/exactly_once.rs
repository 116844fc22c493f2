//! Each event once in a plain `SELECT count() FROM vero.events` (no `FINAL`), against a
//! real ClickHouse server process and the shared Apache Kafka broker: a sink process killed
//! with SIGKILL in the middle of its batches and restarted, a rebalance while batches
//! are being written, and a client's repeated request (within the dedup window, after
//! it, and a request differing only in `data`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use uuid::Uuid;
use vero_model::TrackEvent;

const REPEATS: &str = "vero_sink_rows_skipped_total{reason=\"repeat\"}";

/// `n` distinct events, produced with up to 64 sends in flight.
async fn produce_many(setup: &Setup, range: std::ops::Range<usize>) {
    let producer = producer(setup);
    let events: Vec<TrackEvent> = range.map(event).collect();
    for chunk in events.chunks(64) {
        let sends = chunk.iter().map(|e| {
            let payload = vero_model::encode_event(e);
            let producer = producer.clone();
            let topic = setup.topic.clone();
            async move { produce(&producer, &topic, &e.user_id, &payload).await }
        });
        futures::future::join_all(sends).await;
    }
}

async fn exact_counts(setup: &Setup, expected: usize) {
    let expected = expected.to_string();
    setup.wait_for("SELECT uniqExact(event_id) FROM vero.events", &expected).await;
    // Not only eventually: with every event there, no row was ever written twice.
    assert_eq!(setup.query("SELECT count() FROM vero.events").await.trim(), expected, "plain count() is exact");
    let copies = setup
        .query("SELECT count() FROM (SELECT event_id FROM vero.events GROUP BY event_id HAVING count() > 1)")
        .await;
    assert_eq!(copies.trim(), "0");
    // Background merges of the ReplacingMergeTree could hide a copy from the checks
    // above; the request-keys table (plain MergeTree, one row per row ever inserted)
    // cannot: it proves that no row was inserted twice.
    let inserted = setup.query("SELECT count() FROM vero.events_request_keys").await;
    assert_eq!(inserted.trim(), expected, "rows ever inserted");
}

fn spawn_sink(setup: &Setup, commit_interval_ms: &str) -> (std::process::Child, std::net::SocketAddr) {
    let ops_port = vero_testkit::ports::free_port().unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_event-sink"))
        .env("VERO_CONFIG_DIR", config_dir())
        .envs(setup.env())
        .env("VERO__OPS__LISTEN", format!("127.0.0.1:{ops_port}"))
        .env("VERO__KAFKA__AUTO_COMMIT_INTERVAL_MS", commit_interval_ms)
        .env("VERO__DEDUP__WINDOW_MS", "0") // exactly-once by position alone
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    (child, std::net::SocketAddr::from(([127, 0, 0, 1], ops_port)))
}

/// The real binary, SIGKILLed while it is still writing batches of 40 (nothing
/// committed: auto-commit far in the future), then restarted: everything is
/// redelivered, the rows written before the kill are skipped, and a plain `count()`
/// equals the number of distinct events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_killed_mid_batch_and_restarted_leaves_count_exact() {
    const EVENTS: usize = 3000;
    let setup = setup(3).await;
    produce_many(&setup, 0..EVENTS).await;
    let (mut first, first_ops) = spawn_sink(&setup, "600000");
    wait_metric(first_ops, "vero_sink_rows_inserted_total", 400.0).await;
    first.kill().unwrap(); // SIGKILL: no flush, no commit, possibly inside an INSERT
    first.wait().unwrap();
    let before = setup.query("SELECT count() FROM vero.events").await.trim().parse::<usize>().unwrap();
    assert!((400..EVENTS).contains(&before), "killed in the middle: {before} of {EVENTS} rows written");

    let (mut second, second_ops) = spawn_sink(&setup, "1000");
    exact_counts(&setup, EVENTS).await;
    // An INSERT in flight at the kill may still complete on the server after `before`
    // was read, so the first process wrote at least `before` rows, maybe a batch more.
    let inserted = metric(second_ops, "vero_sink_rows_inserted_total").await as usize;
    assert!(inserted <= EVENTS - before, "the restart inserted {inserted}, but {before} were already written");
    // The restart did re-read what the first process had written, and skipped it.
    wait_metric(second_ops, "vero_sink_rows_skipped_total{reason=\"written\"}", (EVENTS - inserted) as f64).await;
    second.kill().unwrap();
    second.wait().unwrap();
}

/// A second instance joins while the first is writing, and then the first leaves:
/// two rebalances in the middle of batches, partitions moving both ways. Each event is
/// one row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalances_mid_batch_leave_count_exact() {
    const EVENTS: usize = 3000;
    let setup = setup(4).await;
    produce_many(&setup, 0..EVENTS).await;
    // Slow commits: the partitions moving to the other instance are read again from
    // far behind what was written.
    // Exactly-once by position alone: the client-repeat check is off.
    let slow_commit = [("VERO__KAFKA__AUTO_COMMIT_INTERVAL_MS", "600000"), ("VERO__DEDUP__WINDOW_MS", "0")];
    let (ops_a, stop_a, a) = setup.start_sink_with(&slow_commit).await;
    wait_metric(ops_a, "vero_sink_rows_inserted_total", 300.0).await;
    let (ops_b, stop_b, b) = setup.start_sink_with(&slow_commit).await;
    wait_metric(ops_b, "vero_sink_assigned_partitions", 1.0).await;
    produce_many(&setup, EVENTS..EVENTS + 500).await;
    wait_metric(ops_b, "vero_sink_rows_inserted_total", 1.0).await;
    stop_a.cancel(); // leaves the group: its partitions move to b
    tokio::time::timeout(Duration::from_secs(60), a).await.unwrap().unwrap();
    produce_many(&setup, EVENTS + 500..EVENTS + 1000).await;
    exact_counts(&setup, EVENTS + 1000).await;
    assert!(metric(ops_b, "vero_sink_rows_inserted_total").await > 0.0);
    stop_b.cancel();
    tokio::time::timeout(Duration::from_secs(60), b).await.unwrap().unwrap();
}

/// A client retry as it reaches Kafka: the same request again (new event_id, later
/// received_at). Within the window it is no row; after it, it is a new one; a request
/// differing only in `data` always is; an explicit `extras.message_id` decides alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_request_is_one_row_within_the_window_only() {
    let setup = setup(2).await;
    let (ops, shutdown, handle) = setup.start_sink_with(&[("VERO__DEDUP__WINDOW_MS", "60000")]).await;
    let producer = producer(&setup);
    let send = |e: TrackEvent| {
        let producer = producer.clone();
        let topic = setup.topic.clone();
        async move { produce(&producer, &topic, &e.user_id, &vero_model::encode_event(&e)).await }
    };
    let first = event(1);
    let retry = |after_ms: i64| TrackEvent {
        event_id: Uuid::now_v7(),
        received_at: first.received_at + after_ms,
        ..first.clone()
    };
    send(first.clone()).await;
    setup.wait_for("SELECT count() FROM vero.events", "1").await;
    // A later batch: found in ClickHouse.
    send(retry(1_000)).await;
    wait_metric(ops, REPEATS, 1.0).await;
    // The same batch: two repeats in a row.
    send(retry(2_000)).await;
    send(retry(59_999)).await;
    wait_metric(ops, REPEATS, 3.0).await;
    assert_eq!(setup.query("SELECT count() FROM vero.events").await.trim(), "1");

    // The window has elapsed: a new event (and its own repeat is dropped again).
    send(retry(60_000)).await;
    send(retry(61_000)).await;
    // Only `data` differs: another request.
    let mut other_data = retry(500);
    other_data.data = r#"{"item":"Red shoes"}"#.into();
    send(other_data).await;
    setup.wait_for("SELECT count() FROM vero.events", "3").await;
    wait_metric(ops, REPEATS, 4.0).await;

    // An explicit id: the same id with other data is a repeat, another id is not.
    let mut keyed = event(2);
    keyed.extras = r#"{"message_id":"order-17"}"#.into();
    let mut same_id = keyed.clone();
    (same_id.event_id, same_id.data, same_id.received_at) =
        (Uuid::now_v7(), r#"{"x":1}"#.into(), keyed.received_at + 10);
    let mut other_id = same_id.clone();
    (other_id.event_id, other_id.extras) = (Uuid::now_v7(), r#"{"message_id":"order-18"}"#.into());
    send(keyed).await;
    send(same_id).await;
    send(other_id).await;
    setup.wait_for("SELECT count() FROM vero.events", "5").await;
    wait_metric(ops, REPEATS, 5.0).await;
    let repeats = setup.query("SELECT count() FROM vero.events WHERE data = '{\"x\":1}'").await;
    assert_eq!(repeats.trim(), "1", "only the order-18 one of the two");

    // The restarted sink remembers (the keys are in ClickHouse, not in memory).
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), handle).await.unwrap().unwrap();
    let (ops, shutdown, handle) = setup.start_sink_with(&[("VERO__DEDUP__WINDOW_MS", "60000")]).await;
    send(retry(3_000)).await;
    wait_metric(ops, REPEATS, 1.0).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        assert_eq!(setup.query("SELECT count() FROM vero.events").await.trim(), "5");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), handle).await.unwrap().unwrap();
}
