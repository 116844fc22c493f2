//! The failure policy (docs/operations.md, "Failure policy") against a real ClickHouse
//! 18.16 server process and librdkafka's mock cluster: what an operator must fix
//! (a dropped table) pauses the sink — nothing dead-lettered, nothing committed past
//! the last written record, `/readyz` and `vero_sink_needs_operator` say so — and the
//! documented recovery (`event-sink migrate`) brings every event sent meanwhile into
//! ClickHouse, once.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use vero_testkit::kafka_probe::read_topic;

/// Sum of the group's committed offsets over `partitions` partitions of `topic`.
fn committed_total(setup: &Setup, partitions: i32) -> i64 {
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", setup.kafka.bootstrap_servers())
        .set("group.id", &setup.group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(&setup.topic, p);
    }
    let committed = probe.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(next) => next,
            _ => 0,
        })
        .sum()
}

async fn readiness(ops: std::net::SocketAddr) -> Result<String, String> {
    ops_get(ops, "/readyz").await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_table_pauses_the_sink_and_migrate_brings_every_event_back() {
    let setup = setup(2).await;
    let (ops, shutdown, handle) = setup.start_sink().await;
    produce_events(&setup, 0..50).await;
    setup.wait_for("SELECT count() FROM vero.events FINAL", "50").await;
    // Let the auto-commit (1 s) cover the first 50.
    let deadline = std::time::Instant::now() + DEADLINE;
    while tokio::task::block_in_place(|| committed_total(&setup, 2)) < 50 {
        assert!(std::time::Instant::now() < deadline, "the first 50 were never committed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // An operator drops the table while events keep arriving.
    setup.clickhouse.query("DROP TABLE vero.events").unwrap();
    produce_events(&setup, 50..120).await;
    wait_metric(ops, "vero_sink_needs_operator", 1.0).await;
    wait_metric(ops, "vero_sink_write_failures_total{class=\"operator\"}", 2.0).await;
    let ready = readiness(ops).await;
    assert!(matches!(&ready, Err(e) if e.contains("operator action needed") && e.contains("Code: 60")), "{ready:?}");
    // Several retries later: still nothing dead-lettered, nothing committed past the 50.
    wait_metric(ops, "vero_sink_insert_retries_total", 4.0).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(metric(ops, "vero_sink_dlq_records_total").await, 0.0);
    assert_eq!(metric(ops, "vero_sink_write_failures_total{class=\"invalid\"}").await, 0.0);
    assert_eq!(tokio::task::block_in_place(|| committed_total(&setup, 2)), 50);
    assert_eq!(metric(ops, "vero_sink_consumption_paused").await, 1.0, "paused while retrying");

    // The documented recovery: `event-sink migrate` re-creates what is missing although
    // vero.schema_migrations still records the migration.
    let settings = event_sink::Settings::load_with_env(&config_dir(), None, setup.env()).unwrap();
    let migrated = event_sink::migrate(&settings).await.unwrap();
    assert!(migrated.applied.iter().any(|a| a.id == 1 && a.repaired), "{migrated:?}");

    // Every event sent meanwhile lands, once (no FINAL needed: nothing was inserted twice).
    setup.wait_for("SELECT count() FROM vero.events", "70").await;
    setup
        .wait_for("SELECT uniqExact(event_id), min(received_at_ms) FROM vero.events FORMAT TSV", "70\t1700000000050")
        .await;
    wait_metric(ops, "vero_sink_rows_inserted_total", 120.0).await;
    assert_eq!(metric(ops, "vero_sink_needs_operator").await, 0.0);
    assert!(readiness(ops).await.is_ok());
    let deadline = std::time::Instant::now() + DEADLINE;
    while tokio::task::block_in_place(|| committed_total(&setup, 2)) < 120 {
        assert!(std::time::Instant::now() < deadline, "offsets were never committed after the recovery");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dlq = tokio::task::block_in_place(|| {
        read_topic(setup.kafka.bootstrap_servers(), &setup.dlq, 1, Duration::from_secs(3))
    })
    .unwrap();
    assert!(dlq.is_empty(), "nothing may be dead-lettered: {dlq:?}");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), handle).await.unwrap().unwrap();
}

/// A record written with a schema this build does not know (a gateway rolled out
/// before the consumers) is not a bad record: its partition stops there, nothing is
/// dead-lettered or committed past it, and the other partitions keep flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_writer_schema_stops_its_partition_without_dead_lettering() {
    use rdkafka::producer::FutureRecord;
    use rdkafka::util::Timeout;

    let setup = setup(2).await;
    let (ops, shutdown, handle) = setup.start_sink().await;
    let producer = producer(&setup);
    let send = |partition: i32, payload: Vec<u8>| {
        let producer = producer.clone();
        let topic = setup.topic.clone();
        async move {
            let record = FutureRecord::to(&topic).partition(partition).key("k").payload(&payload);
            producer.send(record, Timeout::After(Duration::from_secs(30))).await.unwrap();
        }
    };
    for n in 0..5 {
        send(0, vero_model::encode_event(&event(n))).await;
    }
    // Single-object header with a fingerprint no schema of this build has.
    let mut unknown = vec![0xC3, 0x01];
    unknown.extend_from_slice(&[0xAB; 8]);
    unknown.extend_from_slice(b"\x02\x04datum");
    send(0, unknown).await;
    for n in 5..10 {
        send(0, vero_model::encode_event(&event(n))).await;
    }
    for n in 10..20 {
        send(1, vero_model::encode_event(&event(n))).await;
    }
    setup.wait_for("SELECT count() FROM vero.events WHERE kafka_partition = 1", "10").await;
    setup.wait_for("SELECT count() FROM vero.events WHERE kafka_partition = 0", "5").await;
    wait_metric(ops, "vero_sink_blocked_partitions", 1.0).await;
    let ready = readiness(ops).await;
    assert!(
        matches!(&ready, Err(e) if e.contains("/0 stopped at offset 5") && e.contains("unknown writer schema")),
        "{ready:?}"
    );
    // Partition 1 keeps flowing while partition 0 stays stopped.
    for n in 20..30 {
        send(1, vero_model::encode_event(&event(n))).await;
    }
    setup.wait_for("SELECT count() FROM vero.events WHERE kafka_partition = 1", "20").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(setup.query("SELECT count() FROM vero.events WHERE kafka_partition = 0").await.trim(), "5");
    assert_eq!(metric(ops, "vero_sink_dlq_records_total").await, 0.0);
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", setup.kafka.bootstrap_servers())
        .set("group.id", &setup.group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&setup.topic, 0);
    let committed = tokio::task::block_in_place(|| probe.committed_offsets(tpl, Duration::from_secs(10))).unwrap();
    assert_eq!(committed.elements()[0].offset(), Offset::Offset(5), "committed up to the unknown record, not past it");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), handle).await.unwrap().unwrap();
}
