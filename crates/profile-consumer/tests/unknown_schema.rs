//! A record with a writer schema this build does not know (a gateway rolled out before
//! the consumers) is operator-fixable, not a bad record (issue 12): against the mock
//! cluster and a real ClickHouse, its partition stops at it — the records before it
//! applied and committed, it and the ones after it neither applied nor committed,
//! nothing dead-lettered — while the other partitions flow; `/readyz` names it and
//! `vero_profiles_blocked_partitions` counts it. A restart of the same build stops at
//! the same record again: it is never skipped.

mod common;

use std::time::Duration;

use common::{event, ids_on_different_partitions, Pipeline, PARTITIONS};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn summary(user: &str) -> String {
    format!("SELECT event_count, last_event_name FROM vero.profiles FINAL WHERE user_id = '{user}' FORMAT TSV")
}

/// The group's committed offset of `partition` of `topic` (-1: none).
fn committed(pipeline: &Pipeline, group: &str, topic: &str, partition: i32) -> i64 {
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", pipeline.kafka.bootstrap_servers())
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    let offsets = probe.committed_offsets(list, Duration::from_secs(10)).unwrap();
    match offsets.find_partition(topic, partition).map(|e| e.offset()) {
        Some(Offset::Offset(next)) => next,
        _ => -1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_writer_schema_stops_its_partition_without_a_dead_letter() {
    let pipeline = Pipeline::start();
    let (group, outputs) = (vero_testkit::unique_name("group"), vero_testkit::unique_name("out"));
    let (user, other) = ids_on_different_partitions("writer", "other-");
    let partition = vero_model::partition::partition_for_key(user.as_bytes(), PARTITIONS);
    let consumer = pipeline.start_consumer(pipeline.settings(&group, &outputs)).await;

    pipeline.send_event(&event(&user, "before", None, 1_000, "{}")).await;
    // As a newer gateway would write it: a fingerprint no schema of this build has.
    let mut newer = vero_model::encode_event(&event(&user, "newer", None, 2_000, "{}"));
    newer[2..10].copy_from_slice(&[0xee; 8]);
    pipeline.send(&user, newer).await;
    pipeline.send_event(&event(&user, "after", None, 3_000, "{}")).await;
    pipeline.send_event(&event(&other, "elsewhere", None, 3_000, "{}")).await;

    pipeline.wait_for_query(&summary(&other), |a| a == "1\telsewhere\n").await;
    pipeline.wait_for_query(&summary(&user), |a| a == "1\tbefore\n").await;
    consumer.wait_for_metric("vero_profiles_blocked_partitions", 1.0).await;
    let answer = consumer.readyz().await;
    let place = format!("{}/{partition} stopped at offset 1", pipeline.events_topic);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("operator action needed") && answer.contains(&place), "{answer}");
    assert!(answer.contains("unknown writer schema fingerprint eeeeeeeeeeeeeeee"), "{answer}");

    // Auto-commit runs every second: long enough for anything stored to be committed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(pipeline.clickhouse.query(&summary(&user)).unwrap(), "1\tbefore\n", "nothing from it on");
    assert_eq!(consumer.metric("vero_profiles_records_total{outcome=\"dead_lettered\"}").await, 0.0);
    let dlq = format!("{outputs}.dlq");
    let letters =
        vero_testkit::kafka_probe::read_topic(pipeline.kafka.bootstrap_servers(), &dlq, 1, Duration::from_secs(3))
            .unwrap();
    assert!(letters.is_empty(), "never dead-lettered: {} letter(s)", letters.len());
    let topic = pipeline.events_topic.clone();
    let next = tokio::task::block_in_place(|| committed(&pipeline, &group, &topic, partition));
    assert_eq!(next, 1, "committed up to the record, not past it");
    consumer.stop().await;

    // The same build, restarted, stops at the same record: it waits for the rollout.
    let again = pipeline.start_consumer(pipeline.settings(&group, &outputs)).await;
    again.wait_for_metric("vero_profiles_blocked_partitions", 1.0).await;
    assert_eq!(pipeline.clickhouse.query(&summary(&user)).unwrap(), "1\tbefore\n");
    assert!(again.readyz().await.starts_with("HTTP/1.1 503"));
    again.stop().await;
    let next = tokio::task::block_in_place(|| committed(&pipeline, &group, &topic, partition));
    assert_eq!(next, 1);
}
