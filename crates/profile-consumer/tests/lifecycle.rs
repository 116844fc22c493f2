//! Restart with state restored (without replaying the events topic), partitions split
//! between two instances, reidentify and delete — against the mock cluster and a real
//! ClickHouse.

mod common;

use std::collections::BTreeMap;

use common::{command, event, ids_on_different_partitions, Pipeline};
use vero_model::profile::Profile;
use vero_model::UserAction;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_restores_profiles_and_consumes_only_new_records() {
    let pipeline = Pipeline::start();
    let (group, outputs) = (vero_testkit::unique_name("group"), vero_testkit::unique_name("out"));
    for i in 0..60_i64 {
        pipeline.send_event(&event(&format!("u{}", i % 6), "first", Some(i), i, &format!(r#"{{"n":{i}}}"#))).await;
    }
    let first = pipeline.start_consumer(pipeline.settings(&group, &outputs)).await;
    first.wait_for_metric("vero_profiles_records_total{outcome=\"applied\"}", 60.0).await;
    first.stop().await;

    for i in 60..66_i64 {
        pipeline.send_event(&event(&format!("u{}", i % 6), "second", Some(i), i, &format!(r#"{{"n":{i}}}"#))).await;
    }
    let second = pipeline.start_consumer(pipeline.settings(&group, &outputs)).await;
    let sql = "SELECT sum(event_count), countIf(last_event_name = 'second'), count() \
               FROM vero.profiles FINAL WHERE deleted = 0 FORMAT TSV";
    pipeline.wait_for_query(sql, |a| a == "66\t6\t6\n").await;
    // Only the 6 new records were consumed; the 60 earlier ones were not replayed.
    assert_eq!(second.metric("vero_profiles_records_total").await, 6.0);
    // A fresh store (`state.dir` empty): every profile came from the topic, at least once.
    assert!(second.metric("vero_profiles_restored_total").await >= 6.0, "every profile came from the topic");
    second.stop().await;
    let n =
        "SELECT user_id, visitParamExtractInt(attributes, 'n') FROM vero.profiles FINAL ORDER BY user_id FORMAT TSV";
    assert_eq!(pipeline.clickhouse.query(n).unwrap(), "u0\t60\nu1\t61\nu2\t62\nu3\t63\nu4\t64\nu5\t65\n");
}

/// Profiles without the write versions (wall-clock based, also recorded in
/// `merged_from`), keyed by profiles-topic key.
fn contents(profiles: BTreeMap<Vec<u8>, Profile>) -> BTreeMap<Vec<u8>, Profile> {
    profiles.into_iter().map(|(k, p)| (k, Profile { version: 0, merged_from: String::new(), ..p })).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_splitting_partitions_end_with_the_same_profiles_as_one() {
    let pipeline = Pipeline::start();
    let solo_out = vero_testkit::unique_name("solo");
    let solo = pipeline.start_consumer(pipeline.settings(&vero_testkit::unique_name("g1"), &solo_out)).await;
    let pair_out = vero_testkit::unique_name("pair");
    let pair_group = vero_testkit::unique_name("g2");
    let a = pipeline.start_consumer(pipeline.settings(&pair_group, &pair_out)).await;
    let b = pipeline.start_consumer(pipeline.settings(&pair_group, &pair_out)).await;
    // The split must be in place before any record exists: otherwise the first member
    // to join can consume everything before the second one's join rebalances the group
    // (seen under CI load), and the test would prove nothing about two instances.
    let started = std::time::Instant::now();
    while a.metric("vero_profiles_assigned_partitions").await == 0.0
        || b.metric("vero_profiles_assigned_partitions").await == 0.0
    {
        assert!(started.elapsed() < common::DEADLINE, "the pair never split the partitions");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    let (anon, known) = ids_on_different_partitions("anon-1", "known-");
    for i in 0..80_i64 {
        let user = format!("user-{}", i % 10);
        pipeline.send_event(&event(&user, "e", Some(1_000 - i), i, &format!(r#"{{"i":{i}}}"#))).await;
    }
    pipeline.send_event(&event(&anon, "visit", Some(5), 5, r#"{"lang":"en"}"#)).await;
    let mut reidentify = command(&anon, UserAction::Reidentify, 10);
    reidentify.new_id = Some(known.clone());
    pipeline.send_command(&reidentify).await;
    pipeline.send_event(&event(&known, "signup", Some(20), 20, r#"{"plan":"pro"}"#)).await;

    // 83 events-topic records + 1 handoff for each setup.
    solo.wait_for_metric("vero_profiles_records_total", 84.0).await;
    let started = std::time::Instant::now();
    while a.metric("vero_profiles_records_total").await + b.metric("vero_profiles_records_total").await < 84.0 {
        assert!(started.elapsed() < common::DEADLINE, "the pair did not consume everything");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(a.metric("vero_profiles_assigned_partitions").await > 0.0);
    assert!(b.metric("vero_profiles_assigned_partitions").await > 0.0);
    for running in [solo, a, b] {
        running.stop().await;
    }
    let one = contents(pipeline.read_profiles(&format!("{solo_out}.profiles")));
    let two = contents(pipeline.read_profiles(&format!("{pair_out}.profiles")));
    assert_eq!(one.len(), 11, "10 users + the reidentified one");
    assert_eq!(one, two);
    let merged = &one[&Profile::key_for("shop", &known)];
    assert_eq!((merged.event_count, merged.previous_ids.clone()), (2, vec![anon.clone()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reidentify_moves_the_profile_and_later_events_join_it() {
    let pipeline = Pipeline::start();
    let consumer = pipeline
        .start_consumer(pipeline.settings(&vero_testkit::unique_name("group"), &vero_testkit::unique_name("out")))
        .await;
    let (anon, known) = ids_on_different_partitions("anon-7", "customer-");
    let mut first = event(&anon, "visit", Some(1_000), 1_000, r#"{"lang":"en","plan":"trial"}"#);
    first.email = Some("jane@example.com".into());
    pipeline.send_event(&first).await;
    let mut tags = command(&anon, UserAction::Tags, 1_500);
    tags.tags_add = vec!["lead".into()];
    pipeline.send_command(&tags).await;
    let mut reidentify = command(&anon, UserAction::Reidentify, 2_000);
    reidentify.new_id = Some(known.clone());
    pipeline.send_command(&reidentify).await;
    pipeline.send_event(&event(&known, "purchase", Some(3_000), 3_000, r#"{"plan":"pro"}"#)).await;

    let sql = "SELECT user_id, email, event_count, visitParamExtractString(attributes, 'plan'), \
         visitParamExtractString(attributes, 'lang'), tags, previous_ids, first_seen_ms, last_event_name \
         FROM vero.profiles FINAL WHERE deleted = 0 AND project = 'shop' ORDER BY user_id FORMAT TSV";
    let expected = format!("{known}\tjane@example.com\t2\tpro\ten\t['lead']\t['{anon}']\t1000\tpurchase\n");
    pipeline.wait_for_query(sql, |a| a == expected).await;
    // The old id resolves to the new one for analysts (docs/profiles.md).
    let resolve = format!(
        "SELECT argMax(new_id, at_ms) FROM vero.user_aliases WHERE project = 'shop' AND old_id = '{anon}' FORMAT TSV"
    );
    assert_eq!(pipeline.clickhouse.query(&resolve).unwrap(), format!("{known}\n"));
    let ids = format!(
        "SELECT arrayJoin(arrayPushBack(previous_ids, user_id)) AS id FROM vero.profiles_live \
         WHERE project = 'shop' AND user_id = '{known}' ORDER BY id FORMAT TSV"
    );
    let mut both = [anon.clone(), known.clone()];
    both.sort();
    assert_eq!(pipeline.clickhouse.query(&ids).unwrap(), format!("{}\n{}\n", both[0], both[1]));
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_erases_the_profile_and_a_later_event_starts_a_new_one() {
    let pipeline = Pipeline::start();
    let outputs = vero_testkit::unique_name("out");
    let consumer = pipeline.start_consumer(pipeline.settings(&vero_testkit::unique_name("group"), &outputs)).await;
    let mut e = event("99", "visit", Some(1_000), 1_000, r#"{"secret":"s3"}"#);
    e.email = Some("gone@example.com".into());
    pipeline.send_event(&e).await;
    let live = "SELECT count() FROM vero.profiles FINAL WHERE user_id = '99' AND deleted = 0 FORMAT TSV";
    pipeline.wait_for_query(live, |a| a == "1\n").await;
    pipeline.send_command(&command("99", UserAction::Delete, 2_000)).await;
    pipeline.wait_for_query(live, |a| a == "0\n").await;
    // The mutation erases the personal data of the old rows, not just hides them.
    let leftovers = "SELECT count() FROM vero.profiles WHERE user_id = '99' AND email = 'gone@example.com' FORMAT TSV";
    pipeline.wait_for_query(leftovers, |a| a == "0\n").await;

    pipeline.send_event(&event("99", "comeback", Some(3_000), 3_000, r#"{"fresh":true}"#)).await;
    let sql = "SELECT event_count, email, attributes, first_seen_ms FROM vero.profiles FINAL \
               WHERE user_id = '99' AND deleted = 0 FORMAT TSV";
    pipeline.wait_for_query(sql, |a| a == "1\t\\N\t{\"fresh\":true}\t3000\n").await;
    consumer.stop().await;
    let topic = pipeline.read_profiles(&format!("{outputs}.profiles"));
    let profile = &topic[&Profile::key_for("shop", "99")];
    assert_eq!((profile.event_count, profile.email.clone()), (1, None), "tombstone, then a new profile");
}
