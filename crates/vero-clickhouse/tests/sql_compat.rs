//! Every migration and every example query of docs/analytics.md runs on both
//! ClickHouse versions we care about: the Debian 18.16 server (a real process) and
//! current ClickHouse (chdb, in-process through scripts/check-sql-chdb.py).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vero_clickhouse::migrations::{self, statements};
use vero_clickhouse::{ClickHouseSettings, ServerVersion};
use vero_testkit::clickhouse::ClickHouseServer;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The ```sql blocks of docs/analytics.md.
fn doc_queries() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("docs/analytics.md")).unwrap();
    let mut queries = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim()) {
            (None, "```sql") => current = Some(String::new()),
            (Some(q), "```") => {
                queries.push(q.trim().to_owned());
                current = None;
            }
            (Some(q), _) => {
                q.push_str(line);
                q.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(queries.len() >= 5, "docs/analytics.md lost its example queries");
    queries
}

/// A few rows so the examples run over data, inserted the way the sink does (only the
/// base columns; the table derives the time columns).
const SEED: &str = "INSERT INTO vero.events (event_id, project, event_name, user_id, email, identity, data, extras, \
    source, user_agent, development_mode, received_at_ms, created_at_ms, kafka_partition, kafka_offset) VALUES \
    ('0190a000-0000-7000-8000-000000000001', 'demo', 'purchased', '1', 'a@b.c', '{}', \
     '{\"item\":\"Blue shoes\",\"price\":40.0}', '{}', NULL, NULL, 0, 1700000000123, NULL, 0, 1), \
    ('0190a000-0000-7000-8000-000000000002', 'demo', 'user_signed_up', '1', NULL, '{\"plan\":\"pro\"}', '{}', \
     '{}', 'web', 'curl', 1, 1700000001123, 1700000000999, 0, 2)";

#[tokio::test]
async fn migrations_and_doc_queries_run_on_clickhouse_18() {
    let server = tokio::task::spawn_blocking(ClickHouseServer::start).await.unwrap().unwrap();
    let client = vero_clickhouse::client::build(&ClickHouseSettings::local(server.http_url()));
    let version = ServerVersion::detect(&client).await.unwrap();
    assert_eq!(version.major, 18, "the tests run the Debian 18.x server");
    let all = migrations::embedded().unwrap();
    let applied = migrations::apply(&client, version, &all).await.unwrap();
    assert_eq!(applied.len(), all.len());
    assert!(applied.iter().any(|a| a.file.contains(".v18.")), "the v18 variant was chosen: {applied:?}");
    assert!(migrations::apply(&client, version, &all).await.unwrap().is_empty(), "second run applies nothing");
    assert_eq!(migrations::applied_ids(&client).await.unwrap().len(), all.len());

    server.query(SEED).unwrap();
    server.query(SEED).unwrap(); // a redelivery
    for query in doc_queries() {
        server.query(&query).unwrap_or_else(|e| panic!("{query}\n-> {e}"));
    }
    let once = server.query("SELECT count() FROM vero.events FINAL").unwrap();
    assert_eq!(once.trim(), "2", "FINAL shows each event once");
    let via_view = server.query("SELECT count() FROM vero.events_unique").unwrap();
    assert_eq!(via_view.trim(), "2");
    let timeline = server
        .query("SELECT event_time, received_at FROM vero.events FINAL WHERE event_name = 'user_signed_up'")
        .unwrap();
    assert_eq!(timeline.trim(), "2023-11-14 22:13:20\t2023-11-14 22:13:21");
}

#[test]
fn migrations_and_doc_queries_run_on_current_clickhouse_via_chdb() {
    let current = ServerVersion { major: 99, minor: 0 };
    let mut items = vec![serde_json::json!({"label": "create database", "sql": "CREATE DATABASE IF NOT EXISTS vero"})];
    for migration in migrations::embedded().unwrap() {
        let (file, sql) = migration.variant_for(current);
        assert!(!file.contains(".v"), "current ClickHouse gets the default file, not {file}");
        for (i, statement) in statements(sql).into_iter().enumerate() {
            items.push(serde_json::json!({"label": format!("{file} #{}", i + 1), "sql": statement}));
            // Idempotent: every statement may run twice.
            items.push(serde_json::json!({"label": format!("{file} #{} again", i + 1), "sql": statement}));
        }
    }
    items.push(serde_json::json!({"label": "seed rows", "sql": SEED}));
    for (i, query) in doc_queries().into_iter().enumerate() {
        items.push(serde_json::json!({"label": format!("docs/analytics.md query {}", i + 1), "sql": query}));
    }
    let mut child = Command::new("python3")
        .arg(repo().join("scripts/check-sql-chdb.py"))
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
