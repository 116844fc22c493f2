//! Topic setup against a real broker (Apache Kafka, one KRaft node from the test kit): the profiles and handoff topics
//! are created with the events topic's partition count, an existing setup is accepted
//! as is, and a topic with another partition count is refused (co-partitioning).

use profile_consumer::kafka::topics::{ensure, partition_count};
use profile_consumer::Settings;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use vero_service::kafka_security::Watch;
use vero_testkit::kafka::KafkaCluster;
use vero_testkit::unique_name;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_co_partitioned_topics_on_a_real_broker() {
    let kafka = tokio::task::spawn_blocking(KafkaCluster::single).await.unwrap().unwrap();
    let brokers = kafka.bootstrap_servers().to_owned();
    let mut settings = Settings::for_tests(&brokers, "http://127.0.0.1:1", &unique_name("group"));
    settings.kafka.events_topic = unique_name("events");
    settings.kafka.profiles_topic = unique_name("profiles");
    settings.kafka.handoff_topic = unique_name("handoff");
    kafka.create_topic(&settings.kafka.events_topic, 3).await.unwrap();

    assert_eq!(ensure(&settings.kafka, &Watch::new("test", None, None)).await.unwrap(), 3);
    for topic in [&settings.kafka.profiles_topic, &settings.kafka.handoff_topic] {
        let (kafka, topic) = (settings.kafka.clone(), topic.clone());
        let count = tokio::task::spawn_blocking(move || partition_count(&kafka, &topic)).await.unwrap().unwrap();
        assert_eq!(count, Some(3), "created with the events topic's partition count");
    }
    assert_eq!(cleanup_policy(&brokers, &settings.kafka.profiles_topic).await.as_deref(), Some("compact"));

    // A second start finds them and accepts them.
    assert_eq!(ensure(&settings.kafka, &Watch::new("test", None, None)).await.unwrap(), 3);

    // A handoff topic with another partition count breaks co-partitioning: refused.
    settings.kafka.handoff_topic = unique_name("handoff_wrong");
    kafka.create_topic(&settings.kafka.handoff_topic, 2).await.unwrap();
    let error = ensure(&settings.kafka, &Watch::new("test", None, None)).await.unwrap_err().to_string();
    assert!(error.contains("co-partitioned"), "{error}");
}

/// The topic's `cleanup.policy` as the broker reports it (DescribeConfigs).
async fn cleanup_policy(brokers: &str, topic: &str) -> Option<String> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let results = admin.describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new()).await.unwrap();
    let resource = results.into_iter().next()?.ok()?;
    resource.get("cleanup.policy").and_then(|entry| entry.value.clone())
}
