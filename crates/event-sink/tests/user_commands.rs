//! User commands on the events topic, against a real ClickHouse server process (18.16)
//! and librdkafka's mock cluster, plus the delete mutation on current ClickHouse (chdb):
//! a `Delete` erases the user's earlier events and spares later ones, also when the
//! topic is replayed; every other command is skipped without the DLQ and its offset
//! is committed.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use uuid::Uuid;
use vero_clickhouse::migrations::{self, statements};
use vero_clickhouse::ServerVersion;
use vero_model::{TrackEvent, UserAction, UserCommand};

fn named_event(project: &str, user_id: &str, name: &str) -> TrackEvent {
    TrackEvent { project: project.into(), user_id: user_id.into(), event_name: name.into(), ..event(1) }
}

fn command(project: &str, user_id: &str, action: UserAction) -> UserCommand {
    UserCommand {
        command_id: Uuid::now_v7(),
        received_at: 1_700_000_000_000,
        project: project.into(),
        action,
        user_id: user_id.into(),
        email: None,
        attributes: r#"{"plan":"pro"}"#.into(),
        tags_add: vec!["vip".into()],
        tags_remove: vec![],
        new_id: (action == UserAction::Reidentify).then(|| format!("{user_id}-new")),
        user_agent: None,
    }
}

async fn send_event(setup: &Setup, e: &TrackEvent) {
    produce(&producer(setup), &setup.topic, &e.user_id, &vero_model::encode_event(e)).await;
}

async fn send_command(setup: &Setup, c: &UserCommand) {
    produce(&producer(setup), &setup.topic, &c.user_id, &vero_model::encode(c)).await;
}

const VISIBLE: &str = "SELECT project, user_id, event_name FROM vero.events FINAL \
                       ORDER BY project, user_id, event_name FORMAT TSV";
const PENDING_MUTATIONS: &str =
    "SELECT count() FROM system.mutations WHERE database = 'vero' AND table = 'events' AND is_done = 0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_erases_the_users_earlier_events_and_spares_later_ones_even_on_replay() {
    let setup = setup(2).await;
    let (ops, shutdown, handle) = setup.start_sink().await;
    for (project, user, name) in [
        ("demo", "alice", "before_1"),
        ("demo", "bob", "b_1"),
        ("demo", "alice", "before_2"),
        ("demo", "bob", "b_2"),
        ("other", "alice", "other_project"),
    ] {
        send_event(&setup, &named_event(project, user, name)).await;
    }
    setup.wait_for("SELECT count() FROM vero.events FINAL", "5").await;
    // Alice's history from before a partition-count change sits on another partition;
    // it has no order relative to the delete and must be erased too.
    tokio::task::block_in_place(|| {
        setup.clickhouse.query(
            "INSERT INTO vero.events (event_id, project, event_name, user_id, email, identity, data, extras, \
             source, user_agent, development_mode, received_at_ms, created_at_ms, kafka_partition, kafka_offset) \
             VALUES ('0190a000-0000-7000-8000-000000000001', 'demo', 'history', 'alice', NULL, '{}', '{}', '{}', \
             NULL, NULL, 0, 1700000000000, NULL, 99, 0)",
        )
    })
    .unwrap();

    // The delete and an event right behind it (usually in the same batch), then one in
    // a later batch.
    send_command(&setup, &command("demo", "alice", UserAction::Delete)).await;
    send_event(&setup, &named_event("demo", "alice", "after_1")).await;
    wait_metric(ops, "vero_sink_user_deletes_total", 1.0).await;
    send_event(&setup, &named_event("demo", "alice", "after_2")).await;

    let expected =
        "demo\talice\tafter_1\ndemo\talice\tafter_2\ndemo\tbob\tb_1\ndemo\tbob\tb_2\nother\talice\tother_project";
    setup.wait_for(VISIBLE, expected).await;
    setup.wait_for(PENDING_MUTATIONS, "0").await;
    let mutations = setup.query("SELECT count() FROM system.mutations WHERE table = 'events'").await;
    assert_eq!(mutations.trim(), "1", "one delete, one mutation");

    // Redelivery: a fresh group replays the whole topic. Every event is at or below its
    // partition's written offset, so none is inserted again (Alice's erased events do
    // not come back), and the delete is re-submitted after her later events are stored.
    let (replay_ops, replay_stop, replay) = setup.start_sink_in_group(&vero_testkit::unique_name("replay")).await;
    wait_metric(replay_ops, "vero_sink_rows_skipped_total{reason=\"written\"}", 7.0).await;
    assert_eq!(metric(replay_ops, "vero_sink_rows_inserted_total").await, 0.0);
    wait_metric(replay_ops, "vero_sink_user_deletes_total", 1.0).await;
    setup.wait_for(PENDING_MUTATIONS, "0").await;
    assert_eq!(setup.query(VISIBLE).await.trim(), expected, "a replay ends in the same state");
    assert_eq!(metric(ops, "vero_sink_dlq_records_total").await, 0.0);

    for (stop, handle) in [(shutdown, handle), (replay_stop, replay)] {
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), handle).await.unwrap().unwrap();
    }
}

const ALIASES: &str = "SELECT project, old_id, new_id FROM vero.user_aliases FINAL ORDER BY project, old_id FORMAT TSV";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_erases_the_ids_before_a_reidentify_and_their_aliases_and_completion_is_observable() {
    let setup = setup(2).await;
    let (ops, shutdown, handle) = setup.start_sink().await;
    setup.wait_for("SELECT count() FROM system.tables WHERE database = 'vero' AND name = 'user_aliases'", "1").await;
    // A mutation that can never finish (its condition fails on the row): it stays
    // pending, so the gauge must count it.
    for sql in [
        "CREATE TABLE vero.stuck (x String) ENGINE = MergeTree ORDER BY x",
        "INSERT INTO vero.stuck VALUES ('not a number')",
        "ALTER TABLE vero.stuck DELETE WHERE toUInt8(x) = 1",
    ] {
        tokio::task::block_in_place(|| setup.clickhouse.query(sql)).unwrap();
    }
    let deadline = Instant::now() + DEADLINE;
    while metric(ops, "vero_sink_erasures_pending").await != 1.0 {
        assert!(Instant::now() < deadline, "vero_sink_erasures_pending never counted the pending mutation");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    for (user, name) in [("anon-0", "a_0"), ("anon-1", "a_1"), ("alice", "al"), ("bob-old", "b_0"), ("bob", "b")] {
        send_event(&setup, &named_event("demo", user, name)).await;
    }
    setup.wait_for("SELECT count() FROM vero.events FINAL", "5").await;
    // What the profile consumer records on users/reidentify: anon-0 became anon-1,
    // which became alice; bob-old became bob; in another project, anon-1 became alice.
    tokio::task::block_in_place(|| {
        setup.clickhouse.query(
            "INSERT INTO vero.user_aliases (project, old_id, new_id, at_ms, kafka_partition, kafka_offset) VALUES \
             ('demo', 'anon-0', 'anon-1', 1, 0, 0), ('demo', 'anon-1', 'alice', 2, 0, 1), \
             ('demo', 'bob-old', 'bob', 3, 0, 2), ('other', 'anon-1', 'alice', 4, 0, 3)",
        )
    })
    .unwrap();

    send_command(&setup, &command("demo", "alice", UserAction::Delete)).await;
    wait_metric(ops, "vero_sink_user_deletes_total", 1.0).await;
    setup.wait_for(VISIBLE, "demo\tbob\tb\ndemo\tbob-old\tb_0").await;
    setup.wait_for(ALIASES, "demo\tbob-old\tbob\nother\tanon-1\talice").await;
    // Every erasing mutation finished: only the stuck one is still pending.
    setup.wait_for(PENDING_MUTATIONS, "0").await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let pending = metric(ops, "vero_sink_erasures_pending").await;
        let real = setup.query("SELECT count() FROM system.mutations WHERE database = 'vero' AND is_done = 0").await;
        if pending == 1.0 && real.trim() == "1" {
            break;
        }
        assert!(Instant::now() < deadline, "vero_sink_erasures_pending = {pending}, system.mutations says {real}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::task::block_in_place(|| setup.clickhouse.query("DROP TABLE vero.stuck")).unwrap();
    let deadline = Instant::now() + DEADLINE;
    while metric(ops, "vero_sink_erasures_pending").await != 0.0 {
        assert!(Instant::now() < deadline, "vero_sink_erasures_pending never went back to 0");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(metric(ops, "vero_sink_dlq_records_total").await, 0.0);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), handle).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_commands_are_skipped_in_order_and_their_offsets_are_committed() {
    let setup = setup(1).await;
    let (ops, shutdown, handle) = setup.start_sink().await;
    produce_events(&setup, 0..3).await;
    let skipped = [
        UserAction::Track,
        UserAction::Edit,
        UserAction::Tags,
        UserAction::Unsubscribe,
        UserAction::Resubscribe,
        UserAction::Reidentify,
    ];
    for action in skipped {
        send_command(&setup, &command("demo", "user-1", action)).await;
    }
    produce_events(&setup, 3..5).await;
    // Commands last: nothing after them, their offsets must still be committed.
    for action in [UserAction::Track, UserAction::Edit] {
        send_command(&setup, &command("demo", "user-2", action)).await;
    }
    let end = 3 + 6 + 2 + 2;

    setup.wait_for("SELECT count() FROM vero.events FINAL", "5").await;
    wait_metric(ops, "vero_sink_commands_skipped_total", 8.0).await;
    assert_eq!(metric(ops, "vero_sink_commands_skipped_total{action=\"edit\"}").await, 2.0);
    assert_eq!(metric(ops, "vero_sink_commands_skipped_total{action=\"reidentify\"}").await, 1.0);

    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", setup.kafka.bootstrap_servers())
        .set("group.id", &setup.group)
        .create()
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let committed = tokio::task::block_in_place(|| committed_offset(&probe, &setup.topic));
        if committed == Some(end) {
            break;
        }
        assert!(Instant::now() < deadline, "committed offset stayed at {committed:?}, expected {end}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let dlq_end = tokio::task::block_in_place(|| probe.fetch_watermarks(&setup.dlq, 0, Duration::from_secs(30)));
    assert_eq!(dlq_end.unwrap().1, 0, "nothing went to the DLQ");
    assert_eq!(metric(ops, "vero_sink_dlq_records_total").await, 0.0);
    assert_eq!(setup.query("SELECT count() FROM system.mutations").await.trim(), "0", "no command mutated");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), handle).await.unwrap().unwrap();
}

fn committed_offset(probe: &BaseConsumer, topic: &str) -> Option<i64> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let committed = probe.committed_offsets(tpl, Duration::from_secs(10)).ok()?;
    match committed.find_partition(topic, 0)?.offset() {
        Offset::Offset(next) => Some(next),
        _ => None,
    }
}

/// The sink's exact statement (values bound by the client) on current ClickHouse,
/// submitted twice like a redelivery, over rows before and after the delete.
#[test]
fn the_delete_mutation_runs_on_current_clickhouse_via_chdb() {
    let current = ServerVersion { major: 99, minor: 0 };
    let mut items = vec![serde_json::json!({"label": "create database", "sql": "CREATE DATABASE IF NOT EXISTS vero"})];
    for migration in migrations::embedded().unwrap() {
        let (file, sql) = migration.variant_for(current);
        for (i, statement) in statements(sql).into_iter().enumerate() {
            items.push(serde_json::json!({"label": format!("{file} #{}", i + 1), "sql": statement}));
        }
    }
    // (project, user, partition, offset); the delete of o'neil?\ sits at 0:4.
    let user = "o'neil?\\";
    let rows = [("demo", user, 0, 1), ("demo", user, 0, 2), ("demo", "bob", 0, 3), ("demo", user, 0, 5)];
    let rows = rows.into_iter().chain([("demo", user, 7, 0), ("other", user, 0, 6)]);
    for (n, (project, user_id, partition, offset)) in rows.enumerate() {
        let insert = clickhouse::Client::default()
            .query(
                "INSERT INTO vero.events (event_id, project, event_name, user_id, email, identity, data, extras, \
                 source, user_agent, development_mode, received_at_ms, created_at_ms, kafka_partition, kafka_offset) \
                 VALUES (?, ?, 'e', ?, NULL, '{}', '{}', '{}', NULL, NULL, 0, 1700000000000, NULL, ?, ?)",
            )
            .bind(format!("0190a000-0000-7000-8000-{n:012}"))
            .bind(project)
            .bind(user_id)
            .bind(partition)
            .bind(offset);
        items.push(serde_json::json!({"label": format!("row {n}"), "sql": insert.sql_display().to_string()}));
    }
    let delete =
        event_sink::erase::UserDelete { command: command("demo", user, UserAction::Delete), partition: 0, offset: 4 };
    let mutation = event_sink::erase::mutation(&clickhouse::Client::default(), "vero.events", &[&delete])
        .sql_display()
        .to_string();
    items.push(serde_json::json!({"label": "wait for mutations", "sql": "SET mutations_sync = 1"}));
    items.push(serde_json::json!({"label": "delete mutation", "sql": mutation}));
    items.push(serde_json::json!({"label": "delete mutation again (redelivery)", "sql": mutation}));
    let check = "SELECT throwIf(arrayStringConcat(groupArray(concat(project, '/', user_id, '/', \
                 toString(kafka_partition), ':', toString(kafka_offset))), ',') \
                 != 'demo/bob/0:3,demo/o\\'neil?\\\\/0:5,other/o\\'neil?\\\\/0:6') \
                 FROM (SELECT * FROM vero.events FINAL ORDER BY project, user_id, kafka_offset)";
    items.push(serde_json::json!({"label": "only later and unrelated rows remain", "sql": check}));

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/check-sql-chdb.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().unwrap().write_all(serde_json::to_string(&items).unwrap().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "chdb check failed:\n{report}");
    assert_eq!(report.matches("ok   ").count(), items.len(), "{report}");
}
