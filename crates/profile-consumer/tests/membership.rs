//! Group membership and fencing while writes retry (issue 12), against the mock
//! cluster and a real ClickHouse server that is killed and restarted:
//! * a write retried for longer than `max.poll.interval.ms` does not get the instance
//!   evicted (it keeps polling, partitions paused), and every event lands afterwards;
//! * an instance that lost partitions while its write was retrying never writes
//!   profiles of those partitions (neither to ClickHouse nor to the profiles topic).

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{event, Pipeline, DEADLINE, PARTITIONS};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::ClientConfig;
use vero_model::profile::decode_profile;

/// librdkafka `max.poll.interval.ms` of the tests (its minimum is the session timeout,
/// and heartbeats go every 3 s): a write retried for 14 s outlives it twice.
const MAX_POLL: Duration = Duration::from_millis(6_000);

/// Short session and poll interval, one batch per burst of events.
fn short_timeouts(settings: &mut profile_consumer::Settings) {
    settings.kafka.session_timeout_ms = 6_000;
    settings.kafka.max_poll_interval_ms = MAX_POLL.as_millis() as u64;
    settings.retry.max_backoff_ms = 500;
    // The events a test sends at once go into one batch: the write in hand holds them.
    settings.batch.linger_ms = 1_000;
}

fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < DEADLINE, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn send_users(pipeline: &Pipeline, prefix: &str, count: usize, at: i64) {
    for i in 0..count {
        pipeline.send_event(&event(&format!("{prefix}{i}"), "visit", Some(at), at, "{}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_retried_past_max_poll_interval_keeps_the_partitions() {
    let mut pipeline = Pipeline::start();
    let mut settings = pipeline.settings(&vero_testkit::unique_name("group"), &vero_testkit::unique_name("out"));
    short_timeouts(&mut settings);
    let consumer = pipeline.start_consumer(settings).await;
    send_users(&pipeline, "before-", 8, 1_000).await;
    let total = "SELECT sum(event_count), count() FROM vero.profiles FINAL WHERE deleted = 0 FORMAT TSV";
    pipeline.wait_for_query(total, |a| a == "8\t8\n").await;

    tokio::task::block_in_place(|| pipeline.clickhouse.kill()).unwrap();
    send_users(&pipeline, "during-", 8, 2_000).await;
    consumer.wait_for_metric("vero_profiles_records_total{outcome=\"applied\"}", 16.0).await;
    consumer.wait_for_metric("vero_profiles_write_retries_total", 1.0).await;
    // The write keeps failing for well over max.poll.interval.ms.
    tokio::time::sleep(MAX_POLL * 2 + Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| pipeline.clickhouse.restart()).unwrap();

    pipeline.wait_for_query(total, |a| a == "16\t16\n").await;
    // An evicted instance would see its revoke with its next poll, right after the write.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(consumer.metric("vero_profiles_partitions_revoked_total").await, 0.0, "never evicted");
    assert_eq!(consumer.metric("vero_profiles_records_total").await, 16.0, "nothing redelivered");
    assert_eq!(consumer.metric("vero_profiles_consumption_paused").await, 0.0, "resumed");
    // And it goes on consuming.
    send_users(&pipeline, "after-", 4, 3_000).await;
    pipeline.wait_for_query(total, |a| a == "20\t20\n").await;
    consumer.stop().await;
}

/// Another member of the group that takes its share of the partitions and neither
/// writes nor commits anything: whatever the instance under test writes for those
/// partitions while this one owns them is a fencing failure.
fn intruder(pipeline: &Pipeline, settings: &profile_consumer::Settings) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", pipeline.kafka.bootstrap_servers())
        .set("group.id", &settings.kafka.group_id)
        .set("partition.assignment.strategy", "range")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", settings.kafka.session_timeout_ms.to_string())
        .set("max.poll.interval.ms", MAX_POLL.as_millis().to_string())
        .create()
        .unwrap();
    consumer.subscribe(&[&settings.kafka.events_topic, &settings.kafka.handoff_topic]).unwrap();
    consumer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_lost_partitions_while_retrying_writes_none_of_them() {
    let mut pipeline = Pipeline::start();
    let (group, outputs) = (vero_testkit::unique_name("group"), vero_testkit::unique_name("out"));
    let mut settings = pipeline.settings(&group, &outputs);
    short_timeouts(&mut settings);
    let consumer = pipeline.start_consumer(settings.clone()).await;
    send_users(&pipeline, "warm-", 4, 500).await;
    let warm = "SELECT count() FROM vero.profiles FINAL WHERE user_id LIKE 'warm-%' FORMAT TSV";
    pipeline.wait_for_query(warm, |a| a == "4\n").await;
    consumer.wait_for_metric("vero_profiles_assigned_partitions", f64::from(PARTITIONS)).await;

    tokio::task::block_in_place(|| pipeline.clickhouse.kill()).unwrap();
    let users: Vec<String> = (0..12).map(|i| format!("u{i}")).collect();
    send_users(&pipeline, "u", users.len(), 1_000).await;
    consumer.wait_for_metric("vero_profiles_records_total{outcome=\"applied\"}", 16.0).await;
    consumer.wait_for_metric("vero_profiles_write_retries_total", 1.0).await;
    // Everything the consumer holds now was applied before this moment.
    let joined = now_micros();
    let other = std::sync::Arc::new(intruder(&pipeline, &settings));
    let polling = {
        let other = other.clone();
        tokio::spawn(async move {
            loop {
                let _ = other.recv().await;
            }
        })
    };
    let taken = || other.assignment().map(|a| a.elements().iter().map(|e| e.partition()).collect()).unwrap_or_default();
    wait_until("the partitions are split", async || {
        let taken: Vec<i32> = taken();
        !taken.is_empty() && consumer.metric("vero_profiles_partitions_revoked_total").await > 0.0
    })
    .await;
    let taken: Vec<i32> = taken();
    let kept: Vec<&String> = users
        .iter()
        .filter(|u| !taken.contains(&vero_model::partition::partition_for_key(u.as_bytes(), PARTITIONS)))
        .collect();
    assert!(kept.len() < users.len(), "the other member owns some users' partitions");
    tokio::task::block_in_place(|| pipeline.clickhouse.restart()).unwrap();

    // The consumer writes the partitions it kept (read again from the group's offsets)...
    let total = "SELECT sum(event_count), count() FROM vero.profiles FINAL \
                 WHERE deleted = 0 AND user_id LIKE 'u%' FORMAT TSV";
    let expected = format!("{0}\t{0}\n", kept.len());
    pipeline.wait_for_query(total, |a| a == expected).await;
    consumer.wait_for_metric("vero_profiles_written_total", 4.0 + kept.len() as f64).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // ...and nothing it applied before the rebalance: every row is newer.
    let stale = format!("SELECT count() FROM vero.profiles WHERE user_id LIKE 'u%' AND version <= {joined} FORMAT TSV");
    assert_eq!(pipeline.clickhouse.query(&stale).unwrap(), "0\n", "stale rows in ClickHouse");
    assert_eq!(pipeline.clickhouse.query(total).unwrap(), expected, "profiles of partitions it lost");

    // The other member leaves: the consumer takes everything back and writes the rest.
    polling.abort();
    let _ = polling.await;
    drop(other);
    let all = format!("{0}\t{0}\n", users.len());
    pipeline.wait_for_query(total, |a| a == all).await;
    consumer.stop().await;
    assert_eq!(pipeline.clickhouse.query(&stale).unwrap(), "0\n", "stale rows in ClickHouse");
    let records = vero_testkit::kafka_probe::read_topic(
        pipeline.kafka.bootstrap_servers(),
        &format!("{outputs}.profiles"),
        4 + users.len(),
        Duration::from_secs(5),
    )
    .unwrap();
    let profiles: Vec<_> = records
        .iter()
        .map(|r| (r, decode_profile(r.payload.as_deref().unwrap()).unwrap()))
        .filter(|(_, p)| p.user_id.starts_with('u'))
        .collect();
    assert_eq!(profiles.len(), users.len(), "one profile record per user");
    for (record, profile) in profiles {
        assert!(
            profile.version > joined,
            "profile of {} at partition {} offset {} was applied before the rebalance",
            profile.user_id,
            record.partition,
            record.offset
        );
    }
}
