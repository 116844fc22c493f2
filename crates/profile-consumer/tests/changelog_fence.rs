//! The profiles topic fences a member's writes (`consume::changelog`): when another
//! member wrote a partition's profiles since this one last knew its end (what a
//! member the group dropped while it was frozen finds on waking up), this member does
//! not write its own older state over it. It leaves the partition out of the write,
//! rewinds it, restores the other member's profiles and applies its records on top.
//!
//! Shown against Apache Kafka and ClickHouse: a consumer counts one event of a user;
//! then "another member" writes that user's profile with a count of 100 (already past
//! the first event's offset) to the profiles topic. The next event must give 101. Without the
//! fence the consumer writes its own in-memory count, 2.

mod common;

use common::{event, Pipeline};
use vero_model::profile::Profile;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_another_member_wrote_is_not_overwritten_with_an_older_state() {
    let pipeline = Pipeline::start();
    let (group, outputs) = (vero_testkit::unique_name("group"), vero_testkit::unique_name("out"));
    let profiles_topic = format!("{outputs}.profiles");
    let consumer = pipeline.start_consumer(pipeline.settings(&group, &outputs)).await;
    pipeline.send_event(&event("ada", "visit", Some(1_000), 1_000, "{}")).await;
    let count = "SELECT event_count FROM vero.profiles FINAL WHERE user_id = 'ada' FORMAT TSV";
    pipeline.wait_for_query(count, |a| a == "1\n").await;

    // Another member's newer state of ada, written to ada's partition.
    pipeline.write_profile_as_another_member(&profiles_topic, "ada", |theirs| theirs.event_count = 100).await;

    pipeline.send_event(&event("ada", "visit", Some(2_000), 2_000, "{}")).await;
    let answer = pipeline.wait_for_query(count, |a| a != "1\n").await;
    assert_eq!(answer, "101\n", "the other member's profile, plus the new event");
    assert!(consumer.metric("vero_profiles_partitions_fenced_total").await >= 1.0);
    assert_eq!(pipeline.read_profiles(&profiles_topic)[&Profile::key_for("shop", "ada")].event_count, 101);
    consumer.stop().await;
}
