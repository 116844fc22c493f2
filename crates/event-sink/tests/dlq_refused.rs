//! A dead-letter topic that does not exist, on a broker that does not create topics
//! on demand (as production brokers are set up): the letter is operator-fixable, not
//! a silent retry. `vero_sink_needs_operator` is 1 and `/readyz` names the DLQ topic,
//! nothing is committed past the poison record, and once the operator creates the
//! topic the letter lands and the sink is ready again. Runs its own broker (the
//! shared one creates topics on demand).

mod common;

use std::time::{Duration, Instant};

use common::*;
use vero_testkit::kafka::{KafkaCluster, KafkaSettings};
use vero_testkit::kafka_probe::read_topic;

/// The group's committed offset of partition 0, if any.
fn committed(setup: &Setup) -> Option<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let probe: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", setup.kafka.bootstrap_servers())
        .set("group.id", &setup.group)
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(&setup.topic, 0);
    let committed = probe.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    match committed.elements()[0].offset() {
        rdkafka::Offset::Offset(next) => Some(next),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dlq_topic_needs_an_operator_and_the_letter_waits_for_it() {
    let kafka = tokio::task::spawn_blocking(|| {
        KafkaCluster::start(KafkaSettings {
            properties: vec![("auto.create.topics.enable".into(), "false".into())],
            ..KafkaSettings::default()
        })
    })
    .await
    .unwrap()
    .unwrap();
    let kafka: &'static KafkaCluster = Box::leak(Box::new(kafka));
    let (topic, dlq, group) =
        (vero_testkit::unique_name("events"), vero_testkit::unique_name("dlq"), vero_testkit::unique_name("sink"));
    kafka.create_topic(&topic, 1).await.unwrap();
    let clickhouse =
        tokio::task::spawn_blocking(vero_testkit::clickhouse::ClickHouseServer::start).await.unwrap().unwrap();
    let setup = Setup { kafka, clickhouse, topic, dlq, group };
    // librdkafka gives up on a topic missing from the metadata after this long.
    let (ops, shutdown, handle) =
        setup.start_sink_with(&[("VERO__KAFKA__PROPERTIES__TOPIC_METADATA_PROPAGATION_MAX_MS", "2000")]).await;

    let producer = producer(&setup);
    produce(&producer, &setup.topic, "user-x", b"not avro").await;
    produce_events(&setup, 1..3).await;
    wait_metric(ops, "vero_sink_needs_operator", 1.0).await;
    let deadline = Instant::now() + DEADLINE;
    let ready = loop {
        let ready = ops_get(ops, "/readyz").await;
        match ready {
            Err(e) if e.to_string().contains("dead-letter topic") => break e.to_string(),
            _ if Instant::now() > deadline => panic!("/readyz never named the dead-letter topic: {ready:?}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    assert!(ready.contains("operator action needed") && ready.contains(&setup.dlq), "{ready}");
    assert_eq!(metric(ops, "vero_sink_dlq_records_total").await, 0.0);
    // The batch (rows first, then its letter) is not done: nothing is committed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(tokio::task::block_in_place(|| committed(&setup)), None, "committed past the waiting letter");

    // The operator creates the topic: the letter lands, the batch follows.
    setup.kafka.create_topic(&setup.dlq, 1).await.unwrap();
    wait_metric(ops, "vero_sink_dlq_records_total", 1.0).await;
    setup.wait_for("SELECT count() FROM vero.events", "2").await;
    assert_eq!(metric(ops, "vero_sink_needs_operator").await, 0.0);
    let letters = tokio::task::block_in_place(|| {
        read_topic(setup.kafka.bootstrap_servers(), &setup.dlq, 1, Duration::from_secs(10))
    })
    .unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), handle).await.unwrap().unwrap();
}
