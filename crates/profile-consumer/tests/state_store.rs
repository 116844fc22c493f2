//! The local profile store (`crate::state`) against Apache Kafka and ClickHouse: a
//! consumer restarted on the same `state.dir` resumes from its checkpoint and reads
//! only what the profiles topic gained meanwhile, and that tail wins over what it had
//! stored (here another member's newer profile of a user, written while it was down).

mod common;

use common::{event, Pipeline};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_the_same_store_reads_only_what_the_profiles_topic_gained() {
    let pipeline = Pipeline::start();
    let (group, outputs) = (vero_testkit::unique_name("group"), vero_testkit::unique_name("out"));
    let profiles_topic = format!("{outputs}.profiles");
    let dir = tempfile::tempdir().unwrap();
    let settings = || {
        let mut s = pipeline.settings(&group, &outputs);
        s.state.dir = dir.path().to_owned();
        s
    };
    for i in 0..60_i64 {
        pipeline.send_event(&event(&format!("u{}", i % 6), "first", Some(i), i, "{}")).await;
    }
    let first = pipeline.start_consumer(settings()).await;
    first.wait_for_metric("vero_profiles_records_total{outcome=\"applied\"}", 60.0).await;
    assert!(first.metric("vero_profiles_restore_duration_seconds_count{from=\"beginning\"}").await >= 1.0);
    first.stop().await;

    // While it is down, another member writes a newer profile of u0.
    pipeline
        .write_profile_as_another_member(&profiles_topic, "u0", |theirs| {
            assert_eq!(theirs.event_count, 10);
            theirs.event_count = 100;
        })
        .await;

    let second = pipeline.start_consumer(settings()).await;
    pipeline.send_event(&event("u0", "second", Some(100), 100, "{}")).await;
    let count = "SELECT event_count FROM vero.profiles FINAL WHERE user_id = 'u0' FORMAT TSV";
    pipeline.wait_for_query(count, |a| a == "101\n").await;
    assert_eq!(
        second.metric("vero_profiles_restore_records_read_total").await,
        1.0,
        "only the record written while it was down was read"
    );
    assert_eq!(second.metric("vero_profiles_restore_duration_seconds_count{from=\"checkpoint\"}").await, 1.0);
    assert_eq!(second.metric("vero_profiles_restore_duration_seconds_count{from=\"beginning\"}").await, 0.0);
    second.stop().await;
}
