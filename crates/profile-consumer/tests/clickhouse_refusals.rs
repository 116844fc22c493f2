//! ClickHouse refusing profile rows (issue 12), against the mock cluster and a real
//! ClickHouse 18.16 server: a dropped `vero.profiles` is operator-fixable — the
//! consumer keeps running, pauses, retries, says so on `/readyz` and
//! `vero_profiles_needs_operator`, dead-letters nothing, and the migrations (what
//! `event-sink migrate` and every consumer start run) re-create the table, after which
//! every profile changed meanwhile lands; a row ClickHouse refuses for good is a bad
//! record — its record is dead-lettered with the server's reason, the other profiles
//! of the batch are written, and the profile continues as last written.

mod common;

use std::time::Duration;

use common::{event, Pipeline};

fn summary(user: &str) -> String {
    format!("SELECT event_count, last_event_name FROM vero.profiles FINAL WHERE user_id = '{user}' FORMAT TSV")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_profiles_table_pauses_until_the_migrations_re_create_it() {
    let pipeline = Pipeline::start();
    let outputs = vero_testkit::unique_name("out");
    let settings = pipeline.settings(&vero_testkit::unique_name("group"), &outputs);
    let clickhouse = vero_clickhouse::client::build(&settings.clickhouse);
    let consumer = pipeline.start_consumer(settings).await;
    pipeline.send_event(&event("u1", "first", None, 1_000, "{}")).await;
    pipeline.wait_for_query(&summary("u1"), |a| a == "1\tfirst\n").await;

    pipeline.clickhouse.query("DROP TABLE vero.profiles").unwrap();
    pipeline.send_event(&event("u1", "second", None, 2_000, "{}")).await;
    pipeline.send_event(&event("u2", "meanwhile", None, 2_000, "{}")).await;
    consumer.wait_for_metric("vero_profiles_needs_operator", 1.0).await;
    consumer.wait_for_metric("vero_profiles_write_retries_total", 3.0).await;
    let ready = consumer.readyz().await;
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(ready.contains("operator action needed") && ready.contains("Code: 60"), "{ready}");
    consumer.wait_for_metric("vero_profiles_consumption_paused", 1.0).await;
    assert_eq!(consumer.metric("vero_profiles_records_total{outcome=\"dead_lettered\"}").await, 0.0);
    assert_eq!(consumer.metric("vero_profiles_write_failures_total{class=\"invalid\"}").await, 0.0);
    assert!(!consumer.task.is_finished(), "the consumer keeps running");

    // The documented recovery: the migrations re-create what is missing.
    let version = vero_clickhouse::ServerVersion::detect(&clickhouse).await.unwrap();
    let migrations = vero_clickhouse::migrations::embedded().unwrap();
    let applied = vero_clickhouse::migrations::apply(&clickhouse, version, &migrations).await.unwrap();
    assert!(applied.iter().any(|a| a.repaired), "{applied:?}");
    pipeline.wait_for_query(&summary("u1"), |a| a == "2\tsecond\n").await;
    pipeline.wait_for_query(&summary("u2"), |a| a == "1\tmeanwhile\n").await;
    // Eventually: the repair re-creates the tables one statement at a time, and a write
    // between two of them (likelier on a loaded machine) is refused once more.
    consumer.wait_for_metric_eq("vero_profiles_consumption_paused", 0.0).await;
    consumer.wait_for_metric_eq("vero_profiles_needs_operator", 0.0).await;
    let started = std::time::Instant::now();
    while !consumer.readyz().await.starts_with("HTTP/1.1 200") {
        assert!(started.elapsed() < common::DEADLINE, "ready again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_row_clickhouse_refuses_for_good_is_dead_lettered() {
    let pipeline = Pipeline::start();
    let outputs = vero_testkit::unique_name("out");
    let consumer = pipeline.start_consumer(pipeline.settings(&vero_testkit::unique_name("group"), &outputs)).await;
    pipeline.send_event(&event("poison", "first", None, 1_000, "{}")).await;
    pipeline.wait_for_query(&summary("poison"), |a| a == "1\tfirst\n").await;

    // From now on every INSERT holding a row of `poison` fails with a data error
    // (FUNCTION_THROW_IF_VALUE_IS_NON_ZERO): a row that can never be written.
    pipeline
        .clickhouse
        .query(
            "CREATE MATERIALIZED VIEW vero.refuse_poison ENGINE = Memory AS \
             SELECT throwIf(user_id = 'poison' AND deleted = 0) AS refused FROM vero.profiles",
        )
        .unwrap();
    for user in ["good-1", "poison", "good-2"] {
        pipeline.send_event(&event(user, "second", None, 2_000, "{}")).await;
    }
    pipeline.wait_for_query(&summary("good-1"), |a| a == "1\tsecond\n").await;
    pipeline.wait_for_query(&summary("good-2"), |a| a == "1\tsecond\n").await;
    consumer.wait_for_metric("vero_profiles_records_total{outcome=\"dead_lettered\"}", 1.0).await;
    let letters = vero_testkit::kafka_probe::read_topic(
        pipeline.kafka.bootstrap_servers(),
        &format!("{outputs}.dlq"),
        1,
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].key_str(), "poison");
    let reason = letters[0].header_str("vero.dlq.reason").unwrap_or_default();
    assert!(
        reason.contains("ClickHouse refused the profile row this record changed") && reason.contains("Code: 395"),
        "{reason}"
    );
    assert!(!consumer.task.is_finished(), "the consumer keeps running");

    // Once ClickHouse takes the rows again, the profile goes on from its last written
    // state: the refused event is not in it.
    pipeline.clickhouse.query("DROP TABLE vero.refuse_poison").unwrap();
    pipeline.send_event(&event("poison", "third", None, 3_000, "{}")).await;
    pipeline.wait_for_query(&summary("poison"), |a| a == "2\tthird\n").await;
    let topic = pipeline.read_profiles(&format!("{outputs}.profiles"));
    let profile = &topic[&vero_model::profile::Profile::key_for("shop", "poison")];
    assert_eq!((profile.event_count, profile.last_event_name.as_deref()), (2, Some("third")));
    consumer.stop().await;
}
