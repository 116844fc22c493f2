//! Merging against the mock cluster and a real ClickHouse: attributes over many
//! events with out-of-order client times, redelivery, and the commands of the users
//! endpoints.

mod common;

use common::{command, event, Pipeline};
use vero_model::UserAction;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_merge_over_many_events_in_any_arrival_order_and_redelivery_changes_nothing() {
    let pipeline = Pipeline::start();
    let group = vero_testkit::unique_name("group");
    let outputs = vero_testkit::unique_name("out");
    // 5 users x 40 events; client times arrive shuffled (the newest is not the last).
    let mut sent = 0;
    for round in 0..40_i64 {
        for user in 0..5 {
            let client_time = 1_000_000 + ((round * 7919) % 40) * 1_000;
            let identity = format!(r#"{{"plan":"p{}","round":{round},"user_{user}":true}}"#, (round * 7919) % 40);
            let mut e =
                event(&format!("user-{user}"), &format!("e{round}"), Some(client_time), 5_000_000 + round, &identity);
            e.email = Some(format!("user{user}@example.com"));
            pipeline.send_event(&e).await;
            sent += 1;
        }
    }
    let consumer = pipeline.start_consumer(pipeline.settings(&group, &outputs)).await;
    let sql = "SELECT user_id, email, event_count, visitParamExtractString(attributes, 'plan'), \
               visitParamExtractInt(attributes, 'round'), last_event_name, first_seen_ms, last_seen_ms \
               FROM vero.profiles FINAL WHERE deleted = 0 ORDER BY user_id FORMAT TSV";
    let answer =
        pipeline.wait_for_query(sql, |a| a.lines().count() == 5 && a.lines().all(|l| l.contains("\t40\t"))).await;
    // The newest client time is the round with (round * 7919) % 40 == 39.
    let newest = (0..40).find(|r| (r * 7919) % 40 == 39).unwrap();
    for (user, line) in answer.lines().enumerate() {
        let expected = format!("user-{user}\tuser{user}@example.com\t40\tp39\t{newest}\te{newest}\t1000000\t1039000");
        assert_eq!(line, expected);
    }
    assert_eq!(consumer.metric("vero_profiles_records_total").await, f64::from(sent));
    consumer.stop().await;

    // Redelivery: a new group re-reads every offset; state restored from the profiles
    // topic recognises them all as applied.
    let again = pipeline.start_consumer(pipeline.settings(&vero_testkit::unique_name("group"), &outputs)).await;
    again.wait_for_metric("vero_profiles_records_total{outcome=\"duplicate\"}", f64::from(sent)).await;
    assert_eq!(again.metric("vero_profiles_records_total{outcome=\"applied\"}").await, 0.0);
    again.stop().await;
    let after = pipeline.clickhouse.query(sql).unwrap();
    assert_eq!(after, answer, "redelivered records changed nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_commands_merge_attributes_tags_and_subscription() {
    let pipeline = Pipeline::start();
    let consumer = pipeline
        .start_consumer(pipeline.settings(&vero_testkit::unique_name("group"), &vero_testkit::unique_name("out")))
        .await;
    let mut track = command("42", UserAction::Track, 1_000);
    track.email = Some("jane@example.com".into());
    track.attributes = r#"{"plan":"free","lang":"en"}"#.into();
    pipeline.send_command(&track).await;
    let mut edit = command("42", UserAction::Edit, 2_000);
    edit.attributes = r#"{"plan":"pro"}"#.into();
    pipeline.send_command(&edit).await;
    let mut tags = command("42", UserAction::Tags, 3_000);
    tags.tags_add = vec!["vip".into(), "beta".into(), "trial".into()];
    pipeline.send_command(&tags).await;
    let mut untag = command("42", UserAction::Tags, 4_000);
    untag.tags_remove = vec!["trial".into()];
    pipeline.send_command(&untag).await;
    pipeline.send_command(&command("42", UserAction::Unsubscribe, 5_000)).await;
    pipeline.send_command(&command("42", UserAction::Resubscribe, 6_000)).await;
    pipeline.send_command(&command("42", UserAction::Unsubscribe, 7_000)).await;
    let sql = "SELECT email, visitParamExtractString(attributes, 'plan'), visitParamExtractString(attributes, 'lang'), tags, \
               subscribed, subscription_changed_at_ms, event_count FROM vero.profiles FINAL \
               WHERE project = 'shop' AND user_id = '42' AND deleted = 0 FORMAT TSV";
    pipeline.wait_for_query(sql, |a| a.contains("7000")).await;
    assert_eq!(pipeline.clickhouse.query(sql).unwrap(), "jane@example.com\tpro\ten\t['beta','vip']\t0\t7000\t0\n");
    // Analysts' queries from docs/profiles.md.
    let by_tag = "SELECT user_id FROM vero.profiles FINAL WHERE deleted = 0 AND has(tags, 'vip') FORMAT TSV";
    assert_eq!(pipeline.clickhouse.query(by_tag).unwrap(), "42\n");
    let by_email =
        "SELECT user_id FROM vero.profiles_live WHERE email = 'jane@example.com' AND project = 'shop' FORMAT TSV";
    assert_eq!(pipeline.clickhouse.query(by_email).unwrap(), "42\n");
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_records_and_bad_json_go_to_the_dead_letter_topic() {
    let pipeline = Pipeline::start();
    let outputs = vero_testkit::unique_name("out");
    let consumer = pipeline.start_consumer(pipeline.settings(&vero_testkit::unique_name("group"), &outputs)).await;
    pipeline.send("7", b"definitely not avro".to_vec()).await;
    pipeline.send_event(&event("7", "bad", None, 1, "[1,2]")).await;
    pipeline.send_event(&event("7", "good", None, 2, r#"{"ok":true}"#)).await;
    let sql = "SELECT event_count, last_event_name FROM vero.profiles FINAL WHERE user_id = '7' FORMAT TSV";
    pipeline.wait_for_query(sql, |a| a == "1\tgood\n").await;
    let letters = vero_testkit::kafka_probe::read_topic(
        pipeline.kafka.bootstrap_servers(),
        &format!("{outputs}.dlq"),
        2,
        common::DEADLINE,
    )
    .unwrap();
    assert_eq!(letters.len(), 2);
    assert!(letters[0].header_str("vero.dlq.reason").unwrap().starts_with("decode"));
    assert!(letters[1].header_str("vero.dlq.reason").unwrap().contains("identity_attributes"));
    assert_eq!(letters[1].header_str("vero.dlq.consumer"), Some("profile-consumer"));
    assert_eq!(consumer.metric("vero_profiles_records_total{outcome=\"dead_lettered\"}").await, 2.0);
    consumer.stop().await;
}
