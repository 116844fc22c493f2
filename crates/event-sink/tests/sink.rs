//! The sink against a real ClickHouse server process and librdkafka's mock cluster:
//! every field lands, outages and crashes lose nothing and show no duplicates through
//! the documented query (`FROM vero.events FINAL`), poison goes to the DLQ, and two
//! instances share the partitions.

mod common;

use std::time::{Duration, Instant};

use common::*;
use uuid::Uuid;
use vero_model::topics::dlq_headers;
use vero_testkit::kafka_probe::read_topic;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_lands_and_a_clickhouse_outage_loses_nothing() {
    let setup = setup(3).await;
    let (ops, shutdown, handle) = setup.start_sink().await;
    produce_events(&setup, 0..60).await;
    setup.wait_for("SELECT count() FROM vero.events FINAL", "60").await;

    // Every field of one event, as an analyst reads it.
    let e = event(7);
    let row = setup
        .query(
            "SELECT project, event_name, user_id, email, identity, data, extras, source, user_agent, \
             development_mode, received_at_ms, created_at_ms, event_time, received_at, kafka_partition >= 0 \
             FROM vero.events FINAL WHERE email = 'u7@example.com' FORMAT TSVRaw",
        )
        .await;
    let expected = [
        "demo",
        "purchased",
        &e.user_id,
        "u7@example.com",
        &e.identity_attributes,
        &e.data,
        &e.extras,
        "web",
        "vero-node/1.0",
        "0",
        "1700000000007",
        "1699999999007",
        "2023-11-14 22:13:19",
        "2023-11-14 22:13:20",
        "1",
    ]
    .join("\t");
    assert_eq!(row.trim_end(), expected);
    let ids = setup.query("SELECT toString(event_id) FROM vero.events FINAL WHERE email = 'u7@example.com'").await;
    assert_eq!(Uuid::parse_str(ids.trim()).unwrap().get_version_num(), 7);

    // ClickHouse dies mid-stream: the sink retries, pauses, and resumes after restart.
    let mut setup = setup;
    tokio::task::block_in_place(|| setup.clickhouse.kill()).unwrap();
    produce_events(&setup, 60..150).await;
    wait_metric(ops, "vero_sink_insert_retries_total", 1.0).await;
    let ready = ops_get(ops, "/readyz").await;
    assert!(ready.is_err(), "not ready while ClickHouse is down");
    tokio::task::block_in_place(|| setup.clickhouse.restart()).unwrap();
    setup.wait_for("SELECT count() FROM vero.events FINAL", "150").await;
    setup.wait_for("SELECT uniqExact(event_id) FROM vero.events", "150").await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), handle).await.unwrap().unwrap();
}

/// With an age limit far beyond the test's deadline, rows still land: a batch is
/// written as soon as the consumer has read everything there is, not when it is old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_written_once_read_without_waiting_for_the_age_limit() {
    let setup = setup(2).await;
    let overrides = [("VERO__BATCH__MAX_AGE_MS", "3600000"), ("VERO__BATCH__MAX_ROWS", "100000")];
    let (ops, shutdown, handle) = setup.start_sink_with(&overrides).await;
    produce_events(&setup, 0..50).await;
    setup.wait_for("SELECT count() FROM vero.events FINAL", "50").await;
    produce_events(&setup, 50..120).await;
    setup.wait_for("SELECT count() FROM vero.events FINAL", "120").await;
    wait_metric(ops, "vero_sink_batches_inserted_total", 2.0).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), handle).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_goes_to_the_dlq_and_the_partition_keeps_flowing() {
    let setup = setup(1).await;
    let (ops, shutdown, handle) = setup.start_sink().await;
    produce_events(&setup, 0..5).await;
    let producer = producer(&setup);
    produce(&producer, &setup.topic, "user-x", b"definitely not avro").await;
    let mut bad_time = event(99);
    bad_time.created_at = Some(-5);
    produce(&producer, &setup.topic, "user-y", &vero_model::encode_event(&bad_time)).await;
    produce_events(&setup, 5..10).await;
    setup.wait_for("SELECT count() FROM vero.events FINAL", "10").await;

    let dlq = read_topic(setup.kafka.bootstrap_servers(), &setup.dlq, 2, DEADLINE).unwrap();
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    let poison = &dlq[0];
    assert_eq!(poison.payload.as_deref(), Some(&b"definitely not avro"[..]));
    assert_eq!(poison.key_str(), "user-x");
    assert!(poison.header_str(dlq_headers::REASON).unwrap().contains("not a TrackEvent"));
    assert_eq!(poison.header_str(dlq_headers::SOURCE_TOPIC), Some(setup.topic.as_str()));
    assert_eq!(poison.header_str(dlq_headers::SOURCE_PARTITION), Some("0"));
    assert_eq!(poison.header_str(dlq_headers::SOURCE_OFFSET), Some("5"));
    assert_eq!(poison.header_str(dlq_headers::CONSUMER), Some("event-sink"));
    assert!(dlq[1].header_str(dlq_headers::REASON).unwrap().contains("extras.created_at"));
    assert_eq!(dlq[1].header_str(dlq_headers::SOURCE_OFFSET), Some("6"));
    wait_metric(ops, "vero_sink_dlq_records_total", 2.0).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), handle).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_partitions_and_each_event_is_seen_once() {
    let setup = setup(4).await;
    let (ops_a, stop_a, a) = setup.start_sink().await;
    let (ops_b, stop_b, b) = setup.start_sink().await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (pa, pb) = (
            metric(ops_a, "vero_sink_assigned_partitions").await,
            metric(ops_b, "vero_sink_assigned_partitions").await,
        );
        if pa > 0.0 && pb > 0.0 && pa + pb == 4.0 {
            break;
        }
        assert!(Instant::now() < deadline, "partitions never split between the instances ({pa} + {pb})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    produce_events(&setup, 0..200).await;
    setup.wait_for("SELECT count() FROM vero.events FINAL", "200").await;
    setup.wait_for("SELECT uniqExact(event_id) FROM vero.events", "200").await;
    assert!(metric(ops_a, "vero_sink_rows_inserted_total").await > 0.0);
    assert!(metric(ops_b, "vero_sink_rows_inserted_total").await > 0.0);
    stop_a.cancel();
    stop_b.cancel();
    tokio::time::timeout(Duration::from_secs(30), a).await.unwrap().unwrap();
    tokio::time::timeout(Duration::from_secs(30), b).await.unwrap().unwrap();
}

/// The real binary, killed with SIGKILL after it inserted rows whose offsets were not
/// committed yet (auto-commit far in the future): the restarted process reads them
/// again and skips them (already written), so each event is one row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sink_process_redelivers_without_visible_duplicates() {
    let setup = setup(2).await;
    let spawn = |commit_interval_ms: &str| {
        let ops_port = vero_testkit::ports::free_port().unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_event-sink"))
            .env("VERO_CONFIG_DIR", config_dir())
            .envs(setup.env())
            .env("VERO__OPS__LISTEN", format!("127.0.0.1:{ops_port}"))
            .env("VERO__KAFKA__AUTO_COMMIT_INTERVAL_MS", commit_interval_ms)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        (child, std::net::SocketAddr::from(([127, 0, 0, 1], ops_port)))
    };
    let (mut first, first_ops) = spawn("600000");
    produce_events(&setup, 0..100).await;
    wait_metric(first_ops, "vero_sink_rows_inserted_total", 100.0).await;
    first.kill().unwrap(); // SIGKILL: no flush, no commit
    first.wait().unwrap();

    let (mut second, second_ops) = spawn("1000");
    // Redelivered, and skipped: already written.
    wait_metric(second_ops, "vero_sink_rows_skipped_total{reason=\"written\"}", 100.0).await;
    produce_events(&setup, 100..120).await;
    setup.wait_for("SELECT count() FROM vero.events FINAL", "120").await;
    setup.wait_for("SELECT uniqExact(event_id) FROM vero.events", "120").await;
    assert_eq!(setup.query("SELECT count() FROM vero.events").await.trim(), "120", "no copy, even before merges");
    // Rows are visible in ClickHouse a moment before the INSERT's metrics count them.
    wait_metric(second_ops, "vero_sink_rows_inserted_total", 20.0).await;
    assert_eq!(metric(second_ops, "vero_sink_rows_inserted_total").await, 20.0);
    // SIGTERM: flush, commit, exit 0.
    let status = std::process::Command::new("kill").arg("-TERM").arg(second.id().to_string()).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + DEADLINE;
    let exit = loop {
        if let Some(exit) = second.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "sink did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exit.success(), "{exit:?}");
}

/// A dead letter the DLQ topic refuses for good (here: larger than the producer's
/// `message.max.bytes`) goes there without its value instead of being retried forever;
/// the partition keeps flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_too_large_for_the_dlq_goes_without_its_value() {
    let setup = setup(1).await;
    let (ops, shutdown, handle) =
        setup.start_sink_with(&[("VERO__KAFKA__PROPERTIES__MESSAGE_MAX_BYTES", "10000")]).await;
    let producer = producer(&setup);
    produce(&producer, &setup.topic, "user-x", &vec![b'x'; 20_000]).await;
    produce_events(&setup, 0..5).await;
    setup.wait_for("SELECT count() FROM vero.events FINAL", "5").await;

    let dlq = read_topic(setup.kafka.bootstrap_servers(), &setup.dlq, 1, DEADLINE).unwrap();
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0].payload, None, "the value is dropped");
    assert_eq!(dlq[0].key_str(), "user-x");
    let reason = dlq[0].header_str(dlq_headers::REASON).unwrap();
    assert!(reason.contains("not a TrackEvent") && reason.contains("value dropped"), "{reason}");
    assert_eq!(dlq[0].header_str(dlq_headers::SOURCE_OFFSET), Some("0"));
    wait_metric(ops, "vero_sink_dlq_records_total", 1.0).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), handle).await.unwrap().unwrap();
}
