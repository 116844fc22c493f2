//! Bad records at the write boundary (issue 12), against the mock cluster and a real
//! ClickHouse: a record that would make a profile too large to write, or a delete
//! whose erase mutation ClickHouse refuses, is dead-lettered with its reason and
//! committed; the consumer neither stops nor loops, and the other records go on.

mod common;

use std::time::Duration;

use common::{command, event, Pipeline};
use vero_model::UserAction;
use vero_service::kafka_properties::KafkaProperties;

fn tags(prefix: &str, count: usize, bytes: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i:03}{}", "t".repeat(bytes - prefix.len() - 3))).collect()
}

/// The dead letters on `topic`, as (reason, source offset).
fn letters(pipeline: &Pipeline, topic: &str, expected: usize) -> Vec<(String, String)> {
    vero_testkit::kafka_probe::read_topic(pipeline.kafka.bootstrap_servers(), topic, expected, Duration::from_secs(10))
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.header_str("vero.dlq.reason").unwrap_or_default().to_owned(),
                r.header_str("vero.dlq.source.offset").unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn tag_count(pipeline: &Pipeline, user: &str, expected: usize) {
    let sql = format!(
        "SELECT length(tags), event_count FROM vero.profiles FINAL WHERE user_id = '{user}' AND deleted = 0 FORMAT TSV"
    );
    pipeline.wait_for_query(&sql, |a| a.starts_with(&format!("{expected}\t"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_would_exceed_max_profile_bytes_is_dead_lettered() {
    let pipeline = Pipeline::start();
    let outputs = vero_testkit::unique_name("out");
    let mut settings = pipeline.settings(&vero_testkit::unique_name("group"), &outputs);
    // 8 000 bytes for the profile itself, on top of the share reserved for its dedup state.
    settings.kafka.max_profile_bytes = 8_000 + vero_model::profile::RECENT_REQUESTS_MAX_BYTES;
    let consumer = pipeline.start_consumer(settings).await;

    let mut first = command("big", UserAction::Tags, 1_000);
    first.tags_add = tags("a", 40, 100);
    pipeline.send_command(&first).await;
    tag_count(&pipeline, "big", 40).await;
    let mut second = command("big", UserAction::Tags, 2_000);
    second.tags_add = tags("b", 40, 100);
    pipeline.send_command(&second).await;
    consumer.wait_for_metric("vero_profiles_records_total{outcome=\"dead_lettered\"}", 1.0).await;
    // The profile goes on from its last written state.
    pipeline.send_event(&event("big", "visit", Some(3_000), 3_000, "{}")).await;
    let sql = "SELECT length(tags), event_count FROM vero.profiles FINAL WHERE user_id = 'big' FORMAT TSV";
    pipeline.wait_for_query(sql, |a| a == "40\t1\n").await;
    consumer.wait_for_metric("vero_profiles_records_total{outcome=\"applied\"}", 3.0).await;

    let dead = letters(&pipeline, &format!("{outputs}.dlq"), 1);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].0.contains("above kafka.max_profile_bytes (55003) less the 47003 bytes"), "{dead:?}");
    assert_eq!(dead[0].1, "1", "the second command (offset 1 of its partition) is the letter");
    let topic = pipeline.read_profiles(&format!("{outputs}.profiles"));
    let profile = &topic[&vero_model::profile::Profile::key_for("shop", "big")];
    assert_eq!((profile.tags.len(), profile.event_count), (40, 1));
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_kafka_refuses_as_too_large_dead_letters_its_records() {
    let pipeline = Pipeline::start();
    let outputs = vero_testkit::unique_name("out");
    let mut settings = pipeline.settings(&vero_testkit::unique_name("group"), &outputs);
    // The producer refuses records over 10 000 bytes (MessageSizeTooLarge) while the
    // consumer's own bound would let them through.
    settings.kafka.properties = KafkaProperties::from_pairs([("message.max.bytes", "10000")]).unwrap();
    let consumer = pipeline.start_consumer(settings).await;

    let mut first = command("huge", UserAction::Tags, 1_000);
    first.tags_add = tags("a", 40, 100);
    pipeline.send_command(&first).await;
    tag_count(&pipeline, "huge", 40).await;
    let mut second = command("huge", UserAction::Tags, 2_000);
    second.tags_add = tags("b", 80, 100);
    pipeline.send_command(&second).await;
    consumer.wait_for_metric("vero_profiles_records_total{outcome=\"dead_lettered\"}", 1.0).await;
    let dead = letters(&pipeline, &format!("{outputs}.dlq"), 1);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].0.contains("Kafka refused the profile this record changed"), "{dead:?}");
    assert_eq!(dead[0].1, "1");
    pipeline.send_event(&event("huge", "visit", Some(3_000), 3_000, "{}")).await;
    let topic_profile = || {
        pipeline.read_profiles(&format!("{outputs}.profiles"))[&vero_model::profile::Profile::key_for("shop", "huge")]
            .clone()
    };
    let started = std::time::Instant::now();
    while topic_profile().event_count != 1 {
        assert!(started.elapsed() < common::DEADLINE, "the profile did not go on");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(topic_profile().tags.len(), 40, "continued from the profile as last written");
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_whose_erase_exceeds_max_query_size_is_dead_lettered() {
    let pipeline = Pipeline::start();
    let outputs = vero_testkit::unique_name("out");
    let consumer = pipeline.start_consumer(pipeline.settings(&vero_testkit::unique_name("group"), &outputs)).await;
    // 300 KB: the mutation's text exceeds ClickHouse's default max_query_size (256 KiB).
    let long_id = "L".repeat(300_000);
    let mut e = event("short", "visit", Some(1_000), 1_000, "{}");
    e.email = Some("short@example.com".into());
    pipeline.send_event(&e).await;
    pipeline.send_event(&event(&long_id, "visit", Some(1_000), 1_000, "{}")).await;
    let live = "SELECT count() FROM vero.profiles FINAL WHERE deleted = 0 FORMAT TSV";
    pipeline.wait_for_query(live, |a| a == "2\n").await;
    pipeline.send_command(&command(&long_id, UserAction::Delete, 2_000)).await;
    pipeline.send_command(&command("short", UserAction::Delete, 2_000)).await;
    pipeline.wait_for_query(live, |a| a == "0\n").await;
    consumer.wait_for_metric("vero_profiles_written_total", 4.0).await;

    // The short id is erased for good; the long id's delete is a dead letter.
    let leftovers = "SELECT count() FROM vero.profiles WHERE email = 'short@example.com' FORMAT TSV";
    pipeline.wait_for_query(leftovers, |a| a == "0\n").await;
    let dead = letters(&pipeline, &format!("{outputs}.dlq"), 1);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].0.contains("ClickHouse refused the erase mutation"), "{dead:?}");
    assert!(dead[0].0.contains("62"), "the code is named: {dead:?}");
    // It keeps consuming.
    pipeline.send_event(&event("after", "visit", Some(3_000), 3_000, "{}")).await;
    pipeline.wait_for_query(live, |a| a == "1\n").await;
    consumer.stop().await;
}
