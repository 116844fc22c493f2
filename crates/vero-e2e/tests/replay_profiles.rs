//! `event-sink replay-dlq` does not double-count profiles (issue 12): the DLQ is shared
//! by both consumers, and a letter of the event sink names a record the profile
//! consumer applied already. Through the whole pipeline (gateway → mock Kafka → both
//! consumers → ClickHouse), with the replay run after the dedup window elapsed (so the
//! request-key rule cannot hide a second count): the sink's letter, replayed, leaves the
//! profile as it was; a letter of the profile consumer itself, replayed, is applied by
//! it and skipped by the sink (which wrote that event already).

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use serde_json::json;
use vero_e2e::{Pipeline, TOKEN};
use vero_model::topics::dlq_headers;

const DEADLINE: Duration = Duration::from_secs(90);
const WINDOW_MS: u64 = 1_000;

fn summary(user: &str) -> String {
    format!(
        "SELECT event_count, last_event_name FROM vero.profiles FINAL \
         WHERE user_id = '{user}' AND deleted = 0 FORMAT TSV"
    )
}

/// A dead letter as `consumer` writes it: the source record's key and value, and the
/// `vero.dlq.*` headers pointing at it.
async fn dead_letter(pipeline: &Pipeline, consumer: &str, key: &[u8], payload: &[u8], source: (i32, i64)) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", pipeline.kafka.bootstrap_servers())
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let (partition, offset) = (source.0.to_string(), source.1.to_string());
    let headers = OwnedHeaders::new()
        .insert(Header { key: dlq_headers::REASON, value: Some("ClickHouse refused the row: ...") })
        .insert(Header { key: dlq_headers::SOURCE_TOPIC, value: Some(pipeline.topic.as_str()) })
        .insert(Header { key: dlq_headers::SOURCE_PARTITION, value: Some(partition.as_str()) })
        .insert(Header { key: dlq_headers::SOURCE_OFFSET, value: Some(offset.as_str()) })
        .insert(Header { key: dlq_headers::CONSUMER, value: Some(consumer) });
    let record = FutureRecord::to(&pipeline.dlq).key(key).payload(payload).headers(headers);
    producer.send(record, Timeout::After(DEADLINE)).await.map_err(|(e, _)| e).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replayed_letters_of_the_sink_leave_profiles_alone() {
    let window = WINDOW_MS.to_string();
    let pipeline = Pipeline::start_with(2, &[("VERO__DEDUP__WINDOW_MS", &window)]).await.unwrap();
    let track = |name: &str| json!({"auth_token": TOKEN, "identity": {"id": "7"}, "event_name": name});
    let answer = pipeline.post_json("/api/v2/events/track", &track("purchased")).await.unwrap();
    assert_eq!(answer.0, 200, "{answer:?}");
    assert_eq!(pipeline.wait_for(&summary("7"), "1\tpurchased", DEADLINE).await, "1\tpurchased");

    // The sink's letter of that very record (say ClickHouse refused its row at first).
    let topic = pipeline.topic.clone();
    let bootstrap = pipeline.kafka.bootstrap_servers().to_owned();
    let records = tokio::task::spawn_blocking(move || {
        vero_testkit::kafka_probe::read_topic(&bootstrap, &topic, 1, DEADLINE).unwrap()
    })
    .await
    .unwrap();
    let original = &records[0];
    let key = original.key.clone().unwrap();
    dead_letter(
        &pipeline,
        "event-sink",
        &key,
        original.payload.as_ref().unwrap(),
        (original.partition, original.offset),
    )
    .await;
    // A letter of the profile consumer: an event it dead-lettered and never applied.
    let mut unapplied = vero_model::decode_event(original.payload.as_ref().unwrap()).unwrap();
    unapplied.event_name = "refunded".into();
    unapplied.received_at += 1;
    dead_letter(&pipeline, "profile-consumer", &key, &vero_model::encode_event(&unapplied), (original.partition, 99))
        .await;

    // Replayed once the dedup window is over: the request key no longer hides a repeat.
    tokio::time::sleep(Duration::from_millis(WINDOW_MS + 500)).await;
    let sink_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/event-sink");
    let vars = [
        ("VERO__KAFKA__BROKERS", pipeline.kafka.bootstrap_servers()),
        ("VERO__KAFKA__EVENTS_TOPIC", pipeline.topic.as_str()),
        ("VERO__KAFKA__DLQ_TOPIC", pipeline.dlq.as_str()),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let sink = event_sink::Settings::load_with_env(&sink_dir, None, vars).unwrap();
    let replayed = event_sink::replay_dlq(&sink.kafka, DEADLINE).await.unwrap();
    assert_eq!(replayed.total(), 2, "{replayed:?}");

    // A later request is behind both replayed records on the user's partition.
    let answer = pipeline.post_json("/api/v2/events/track", &track("marker")).await.unwrap();
    assert_eq!(answer.0, 200, "{answer:?}");
    let expected = "3\tmarker";
    assert_eq!(
        pipeline.wait_for(&summary("7"), expected, DEADLINE).await,
        expected,
        "purchased once, the profile consumer's own letter applied, the marker"
    );
    // The sink skips the profile consumer's letter: it had written that event already.
    let rows = "SELECT event_name, count() FROM vero.events WHERE user_id = '7' AND event_name != 'purchased' \
                GROUP BY event_name ORDER BY event_name FORMAT TSV";
    assert_eq!(
        pipeline.wait_for(rows, "marker\t1", DEADLINE).await,
        "marker\t1",
        "no row for the profile consumer's letter"
    );
    let replayed_records = tokio::task::spawn_blocking({
        let (bootstrap, topic) = (pipeline.kafka.bootstrap_servers().to_owned(), pipeline.topic.clone());
        move || vero_testkit::kafka_probe::read_topic(&bootstrap, &topic, 4, DEADLINE).unwrap()
    })
    .await
    .unwrap();
    let owners: Vec<&str> =
        replayed_records.iter().filter_map(|r| r.header_str(dlq_headers::REPLAYED_FOR)).collect::<Vec<_>>();
    assert_eq!(owners.len(), 2, "each replayed record names the consumer it is for");
    assert!(owners.contains(&"event-sink") && owners.contains(&"profile-consumer"), "{owners:?}");
    pipeline.stop().await.unwrap();
}
