//! A restore that cannot read a profile stops, visibly, instead of starting the user
//! over (issue 12): against the mock cluster and a real ClickHouse, an undecodable
//! value on the profiles topic keeps the partition's records unapplied, `/readyz` 503
//! names topic, partition and offset, `vero_profiles_needs_operator` is 1; once an
//! operator writes a tombstone for that key the restore goes through by itself.

mod common;

use std::time::Duration;

use common::{event, Pipeline, DEADLINE, PARTITIONS};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use vero_model::profile::Profile;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_profile_stops_the_restore_until_an_operator_fixes_it() {
    let pipeline = Pipeline::start();
    let (group, outputs) = (vero_testkit::unique_name("group"), vero_testkit::unique_name("out"));
    let profiles_topic = format!("{outputs}.profiles");
    let first = pipeline.start_consumer(pipeline.settings(&group, &outputs)).await;
    pipeline.send_event(&event("good", "visit", Some(1_000), 1_000, "{}")).await;
    let count = "SELECT event_count FROM vero.profiles FINAL WHERE user_id = 'good' FORMAT TSV";
    pipeline.wait_for_query(count, |a| a == "1\n").await;
    first.stop().await;

    // A value on the profiles topic this build cannot decode, on good's partition.
    let partition = vero_model::partition::partition_for_key(b"good", PARTITIONS);
    let broken_key = Profile::key_for("shop", "broken");
    let delivery = pipeline
        .producer
        .send(
            FutureRecord::to(&profiles_topic).partition(partition).key(&broken_key).payload(&b"not a profile"[..]),
            Timeout::Never,
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let offset = delivery.offset;
    pipeline.send_event(&event("good", "visit", Some(2_000), 2_000, "{}")).await;

    let second = pipeline.start_consumer(pipeline.settings(&group, &outputs)).await;
    second.wait_for_metric("vero_profiles_needs_operator", 1.0).await;
    let answer = second.readyz().await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let place = format!("{profiles_topic}/{partition} offset {offset}");
    assert!(answer.contains("operator action needed") && answer.contains(&place), "{answer}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(second.metric("vero_profiles_records_total").await, 0.0, "nothing applied on a partial restore");
    assert_eq!(pipeline.clickhouse.query(count).unwrap(), "1\n");

    // The operator's fix: a tombstone for that key. The restore goes through by itself.
    pipeline
        .producer
        .send(FutureRecord::<[u8], [u8]>::to(&profiles_topic).partition(partition).key(&broken_key[..]), Timeout::Never)
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    pipeline.wait_for_query(count, |a| a == "2\n").await;
    second.wait_for_metric("vero_profiles_records_total{outcome=\"applied\"}", 1.0).await;
    assert_eq!(second.metric("vero_profiles_needs_operator").await, 0.0);
    let started = std::time::Instant::now();
    while !second.readyz().await.starts_with("HTTP/1.1 200") {
        assert!(started.elapsed() < DEADLINE, "ready again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    second.stop().await;
}
