//! `event-sink replay-dlq` against librdkafka's mock cluster and a real ClickHouse
//! 18.16 server: dead-lettered records go back to their source topic with their
//! original key and value, the running sink writes them, the replay's offsets are
//! committed, and a second run replays nothing.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use vero_model::topics::dlq_headers;
use vero_testkit::kafka_probe::read_topic;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_replayed_once_into_the_source_topic_and_land() {
    let setup = setup(2).await;
    // Three letters as the sink writes them (e.g. refused while a column was missing).
    let producer = producer(&setup);
    let mut originals = Vec::new();
    for n in 0..3 {
        let e = event(n);
        let payload = vero_model::encode_event(&e);
        let offset = n.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: dlq_headers::REASON, value: Some("ClickHouse refused the row: ...") })
            .insert(Header { key: dlq_headers::SOURCE_TOPIC, value: Some(setup.topic.as_str()) })
            .insert(Header { key: dlq_headers::SOURCE_PARTITION, value: Some("0") })
            .insert(Header { key: dlq_headers::SOURCE_OFFSET, value: Some(offset.as_str()) })
            .insert(Header { key: dlq_headers::CONSUMER, value: Some("event-sink") });
        let record = FutureRecord::to(&setup.dlq).key(e.user_id.as_str()).payload(&payload).headers(headers);
        producer.send(record, Timeout::After(Duration::from_secs(30))).await.unwrap();
        originals.push((e.user_id.clone(), payload));
    }
    let (ops, shutdown, handle) = setup.start_sink().await;
    let settings = event_sink::Settings::load_with_env(&config_dir(), None, setup.env()).unwrap();

    let replayed = event_sink::replay_dlq(&settings.kafka, DEADLINE).await.unwrap();
    assert_eq!(replayed.total(), 3, "{replayed:?}");
    assert_eq!(replayed.records.get(&setup.topic), Some(&3));
    setup.wait_for("SELECT count() FROM vero.events FINAL", "3").await;
    wait_metric(ops, "vero_sink_rows_inserted_total", 3.0).await;

    // Original key and value, with the DLQ position in a header.
    let back =
        tokio::task::block_in_place(|| read_topic(setup.kafka.bootstrap_servers(), &setup.topic, 3, DEADLINE)).unwrap();
    assert_eq!(back.len(), 3);
    for record in &back {
        let original = originals.iter().find(|(_, p)| Some(p) == record.payload.as_ref()).expect("same payload");
        assert_eq!(record.key_str(), original.0);
        assert_eq!(
            record.partition,
            vero_model::partition::partition_for_key(original.0.as_bytes(), 2),
            "replayed to the partition the gateway chooses for the key (murmur2)"
        );
        let from = record.header_str(event_sink::replay::REPLAYED_FROM).unwrap();
        assert!(from.starts_with(&format!("{}/0/", setup.dlq)), "{from}");
    }

    // Committed: a second run replays nothing; a new letter is replayed alone.
    assert_eq!(event_sink::replay_dlq(&settings.kafka, DEADLINE).await.unwrap().total(), 0);
    let late = event(3);
    produce(&producer, &setup.dlq, &late.user_id, &vero_model::encode_event(&late)).await;
    let again = event_sink::replay_dlq(&settings.kafka, DEADLINE).await.unwrap();
    assert_eq!(again.records.get(&setup.topic), Some(&1), "no source header: the configured topic; {again:?}");
    setup.wait_for("SELECT count() FROM vero.events FINAL", "4").await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), handle).await.unwrap().unwrap();
}
