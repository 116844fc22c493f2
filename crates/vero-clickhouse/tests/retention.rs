//! `retention.events_days` on both ClickHouse versions we care about: on current
//! ClickHouse (chdb) the statements `retention::apply` issues expire old events and
//! read back as the TTL they set; on the 18.16 server (no TTL) a non-zero setting is
//! an operator error naming it, and 0 changes nothing.

mod analytics_docs;

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use vero_clickhouse::migrations::{self, statements};
use vero_clickhouse::retention::{self, parse_ttl, plan, Change, Ttl};
use vero_clickhouse::{ClickHouseSettings, Failure, ServerVersion};
use vero_testkit::clickhouse::ClickHouseServer;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// One event received `age_ms` ago, inserted the way the sink does.
fn event(n: u32, received_at_ms: i64) -> String {
    format!(
        "INSERT INTO vero.events (event_id, project, event_name, user_id, email, identity, data, extras, source, \
         user_agent, development_mode, received_at_ms, created_at_ms, kafka_partition, kafka_offset) VALUES \
         ('0190a000-0000-7000-8000-00000000000{n}', 'demo', 'purchased', '{n}', NULL, '{{}}', '{{}}', '{{}}', NULL, \
         NULL, 0, {received_at_ms}, NULL, 0, {n})"
    )
}

const ENGINE_FULL: &str = "SELECT engine_full FROM system.tables WHERE database = 'vero' AND name = 'events'";

#[test]
fn the_ttl_expires_old_events_and_reads_back_on_current_clickhouse() {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let current = ServerVersion { major: 99, minor: 0 };
    let mut items = vec![json!({"label": "create database", "sql": "CREATE DATABASE IF NOT EXISTS vero"})];
    for migration in migrations::embedded().unwrap() {
        let (file, sql) = migration.variant_for(current);
        for (i, statement) in statements(sql).into_iter().enumerate() {
            items.push(json!({"label": format!("{file} #{}", i + 1), "sql": statement}));
        }
    }
    // Received 400 days ago (with a recent created_at: the client's clock does not
    // count), 10 days ago, and now.
    let old = event(1, now_ms - 400 * DAY_MS).replace(", NULL, 0, 1)", &format!(", {now_ms}, 0, 1)"));
    for sql in [old, event(2, now_ms - 10 * DAY_MS), event(3, now_ms)] {
        items.push(json!({"label": "seed", "sql": sql}));
    }
    let steps = [
        ("before", None),
        ("30 days", Some(Change::Set(30))),
        ("5 days", Some(Change::Set(5))),
        ("forever", Some(Change::Remove)),
    ];
    let mut reads = Vec::new();
    for (name, change) in steps {
        if let Some(change) = change {
            items.push(json!({"label": format!("{name}: alter"), "sql": retention::statement(change, None)}));
            items.push(json!({"label": format!("{name}: merge"), "sql": "OPTIMIZE TABLE vero.events FINAL"}));
        }
        reads.push((name, items.len()));
        items.push(json!({"label": format!("{name}: engine"), "sql": ENGINE_FULL}));
        items.push(json!({"label": format!("{name}: rows"), "sql": "SELECT arraySort(groupArray(kafka_offset)) FROM vero.events"}));
    }
    let results = analytics_docs::run_chdb(&items);
    for (item, result) in items.iter().zip(&results) {
        assert_eq!(result["ok"], true, "{}: {}", item["label"], result["error"]);
    }
    let read = |index: usize| -> (Ttl, String) {
        let engine = results[index]["output"].as_str().unwrap();
        (parse_ttl(engine), results[index + 1]["output"].as_str().unwrap().trim().to_owned())
    };
    let expected = [(Ttl::None, "[1,2,3]"), (Ttl::Days(30), "[2,3]"), (Ttl::Days(5), "[3]"), (Ttl::None, "[3]")];
    for ((name, index), (ttl, rows)) in reads.iter().zip(expected) {
        assert_eq!(read(*index), (ttl, rows.to_owned()), "{name}");
    }
    // What apply would do next from each state read back: nothing when it matches.
    assert_eq!(plan(&read(reads[1].1).0, 30), None);
    assert_eq!(plan(&read(reads[1].1).0, 5), Some(Change::Set(5)));
    assert_eq!(plan(&read(reads[3].1).0, 0), None);

    // The cluster statements parse on current ClickHouse (chdb has no cluster to run
    // them on).
    let parsed: Vec<_> = [Change::Set(30), Change::Remove]
        .into_iter()
        .map(|change| {
            let sql = retention::statement(change, Some("vero")).replace('\'', "\\'");
            json!({"label": format!("cluster {change:?}"), "sql": format!("SELECT formatQuery('{sql}')")})
        })
        .collect();
    for (item, result) in parsed.iter().zip(analytics_docs::run_chdb(&parsed)) {
        assert_eq!(result["ok"], true, "{}: {}", item["label"], result["error"]);
    }
}

#[tokio::test]
async fn a_server_without_ttl_refuses_a_retention_and_accepts_none() {
    let server = tokio::task::spawn_blocking(ClickHouseServer::start).await.unwrap().unwrap();
    let client = vero_clickhouse::client::build(&ClickHouseSettings::local(server.http_url()));
    let version = ServerVersion::detect(&client).await.unwrap();
    assert!(version < retention::TTL_SINCE, "the tests run the Debian 18.x server, not {version}");
    migrations::apply(&client, version, &migrations::embedded().unwrap()).await.unwrap();

    assert_eq!(retention::apply(&client, version, None, 0).await.unwrap(), None);
    match retention::apply(&client, version, None, 30).await {
        Err(Failure::Operator(message)) => {
            assert!(message.contains("retention.events_days = 30") && message.contains("19.6"), "{message}")
        }
        other => panic!("expected an operator error, got {other:?}"),
    }
    match retention::apply(&client, version, None, retention::MAX_DAYS + 1).await {
        Err(Failure::Operator(message)) => assert!(message.contains("maximum"), "{message}"),
        other => panic!("expected an operator error, got {other:?}"),
    }
    let engine = server.query(ENGINE_FULL).unwrap();
    assert_eq!(parse_ttl(&engine), Ttl::None, "nothing was changed: {engine}");
}
