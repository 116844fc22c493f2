//! End to end against Apache Kafka (one KRaft node from the test kit): the gateway's
//! producer settings (acks=all, idempotence, lz4, murmur2_random) work against it and
//! what it acknowledged can be read back. Fails (does not skip) when Kafka is missing.

mod common;

use std::time::Duration;

use common::*;
use vero_model::partition::partition_for_key;
use vero_testkit::kafka::KafkaCluster;
use vero_testkit::kafka_probe::read_topic;
use vero_testkit::unique_name;

const PARTITIONS: i32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_produced_to_a_real_broker_and_read_back() {
    let kafka = tokio::task::block_in_place(KafkaCluster::single).expect("Kafka starts (make deps installs it)");
    let topic = unique_name("gw_kafka");
    kafka.create_topic(&topic, PARTITIONS).await.expect("topic created");
    let mut settings = settings(kafka.bootstrap_servers(), &topic);
    settings.kafka.delivery_timeout_ms = 2000;
    let gw = start_kafka(settings).await;

    let ready =
        eventually(Duration::from_secs(30), || async { (get(&gw.url("/readyz")).await.status == 200).then_some(()) });
    assert!(ready.await.is_some(), "readyz sees the topic; log:\n{}", kafka.log(1));

    let users = ["1", "2", "user-3", "4", "five"];
    for (i, user) in users.iter().enumerate() {
        let reply = post_json(&gw.url("/api/v2/events/track"), &track_body(TOKEN, user, &format!("kafka_{i}"))).await;
        assert_eq!(reply.status, 200, "{}\nKafka log:\n{}", reply.body, kafka.log(1));
    }

    let bootstrap = kafka.bootstrap_servers().to_owned();
    let read_from = topic.clone();
    let records =
        tokio::task::spawn_blocking(move || read_topic(&bootstrap, &read_from, users.len(), Duration::from_secs(60)))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(records.len(), users.len(), "every acknowledged event is readable");
    for record in &records {
        let event = vero_model::decode_event(record.payload.as_deref().unwrap()).unwrap();
        assert_eq!(record.key_str(), event.user_id);
        assert_eq!(record.partition, partition_for_key(record.key.as_deref().unwrap(), PARTITIONS));
        assert_eq!(event.project, "shop");
        assert!(event.event_name.starts_with("kafka_"));
    }

    // The broker process goes away: a bounded 503, never a 200.
    drop(kafka);
    let started = std::time::Instant::now();
    let reply = post_json(&gw.url("/api/v2/events/track"), &track_body(TOKEN, "1", "after_broker_exit")).await;
    assert!(reply.expect_error(503).contains("could not be stored right now"), "{}", reply.body);
    assert!(started.elapsed() < Duration::from_secs(15), "503 after {:?}", started.elapsed());
    gw.stop().await.unwrap();
}
