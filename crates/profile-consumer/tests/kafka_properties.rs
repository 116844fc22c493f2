//! `kafka.properties` reaches the profile consumer's Kafka clients, against
//! librdkafka's mock cluster and a real ClickHouse server: a value librdkafka refuses
//! for a consumer (`fetch.max.bytes` below `message.max.bytes`) stops the start at the
//! topic metadata client, one it refuses for an idempotent producer
//! (`max.in.flight.requests.per.connection` above 5) at the producer, each with
//! librdkafka's message naming the property; with valid extra properties (a secret
//! among them) profiles are restored, merged and written as usual.

mod common;

use common::{event, Pipeline, DEADLINE};
use vero_service::kafka_properties::KafkaProperties;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_of_the_profile_consumer_applies_kafka_properties() {
    let pipeline = Pipeline::start();
    let (group, outputs) = (vero_testkit::unique_name("group"), vero_testkit::unique_name("out"));
    for (name, value, expected) in [
        ("fetch.max.bytes", "1000", "`fetch.max.bytes` must be >= `message.max.bytes`"),
        ("max.in.flight.requests.per.connection", "10", "`max.in.flight` must be set <= 5"),
    ] {
        let mut settings = pipeline.settings(&group, &outputs);
        settings.kafka.properties = KafkaProperties::from_pairs([(name, value)]).unwrap();
        let running = pipeline.start_consumer(settings).await;
        let result = tokio::time::timeout(DEADLINE, running.task).await.expect("the start fails, it does not hang");
        let err = format!("{:#}", result.unwrap().expect_err("the start must fail"));
        assert!(err.contains(expected), "{name}={value}: {err}");
    }

    for i in 0..4_i64 {
        pipeline.send_event(&event(&format!("u{i}"), "seen", Some(i), i, "{}")).await;
    }
    let mut settings = pipeline.settings(&group, &outputs);
    settings.kafka.properties = KafkaProperties::from_pairs([
        ("client.id", "vero-profiles-under-test"),
        ("security.protocol", "plaintext"),
        ("sasl.password", "unused-but-secret"),
    ])
    .unwrap();
    settings.validate().unwrap();
    let running = pipeline.start_consumer(settings).await;
    running.wait_for_metric("vero_profiles_records_total{outcome=\"applied\"}", 4.0).await;
    pipeline.wait_for_query("SELECT count() FROM vero.profiles FINAL FORMAT TSV", |a| a == "4\n").await;
    running.stop().await;
}
