//! What the tests that check docs/analytics.md share (`docs_queries`, and
//! `cluster_schema`, which compares the cluster's answers with one node's): the
//! documented queries read from the markdown, the seeded events and profiles, the
//! normalization of answers across versions, and the chdb runner.
//!
//! Each test binary that includes this module uses a part of it.
#![allow(dead_code, unused_imports)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One documented query: the NAME of its marker and the block's text.
pub struct DocQuery {
    pub name: String,
    pub sql: String,
}

/// The marked ```sql blocks of docs/analytics.md, in document order. Panics on an
/// unmarked block, a marker without a block, or a name used twice.
pub fn doc_queries() -> Vec<DocQuery> {
    let text = std::fs::read_to_string(repo().join("docs/analytics.md")).unwrap();
    let mut queries: Vec<DocQuery> = Vec::new();
    let mut marker: Option<String> = None;
    let mut current: Option<(String, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if let Some((name, sql)) = current.as_mut() {
            if trimmed == "```" {
                queries.push(DocQuery { name: std::mem::take(name), sql: sql.trim().to_owned() });
                current = None;
            } else {
                sql.push_str(line);
                sql.push('\n');
            }
        } else if let Some(name) = trimmed.strip_prefix("<!-- query:").and_then(|r| r.strip_suffix("-->")) {
            marker = Some(name.trim().to_owned());
        } else if trimmed == "```sql" {
            let name = marker.take().unwrap_or_else(|| {
                panic!("docs/analytics.md:{}: ```sql block without a <!-- query: NAME --> line", n + 1)
            });
            assert!(!queries.iter().any(|q| q.name == name), "query name {name} used twice");
            current = Some((name, String::new()));
        } else if !trimmed.is_empty() {
            assert!(marker.is_none(), "docs/analytics.md:{}: marker {marker:?} not followed by a ```sql block", n + 1);
        }
    }
    queries
}

pub use vero_clickhouse::queries::with_final;

/// Current ClickHouse prints `event_time` (DateTime64(3)) with `.000`; 18.16's
/// `DateTime` has no fraction. The seeded times are whole seconds, so dropping a
/// `.000` after a time of day makes both versions' answers comparable.
pub fn normalize(tsv: &str) -> String {
    let fields = |line: &str| {
        line.split('\t')
            .map(|f| {
                let b = f.as_bytes();
                if b.len() == 23 && b[4] == b'-' && b[10] == b' ' && b[13] == b':' && f.ends_with(".000") {
                    &f[..19]
                } else {
                    f
                }
            })
            .collect::<Vec<_>>()
            .join("\t")
    };
    tsv.trim_end_matches('\n').lines().map(fields).collect::<Vec<_>>().join("\n")
}

/// 2024-06-`day` `hh`:`mm` UTC as Unix epoch milliseconds (day 0 is 2024-05-31).
pub fn at(day: i64, hh: i64, mm: i64) -> i64 {
    const JUNE_1: i64 = 1_717_200_000_000;
    JUNE_1 + (day - 1) * 86_400_000 + hh * 3_600_000 + mm * 60_000
}

/// project, event_name, user_id, email, data, development_mode, received_at_ms,
/// created_at_ms, kafka_partition.
pub type SeedRow =
    (&'static str, &'static str, &'static str, Option<&'static str>, &'static str, u8, i64, Option<i64>, i32);

/// The seeded events, as the sink inserts them (the table derives the time columns).
///
/// Project `demo`, June 2024 unless noted; partition by user (1 and 5 -> 0, 2 and 4
/// -> 1, 3 -> 2), offset = row number:
/// * user 1 (jane@example.com): 06-01 09:00 signed up, 09:05 viewed Blue shoes,
///   09:10 added them, 09:20 bought 1; 06-02 10:00 viewed Red hat (no email sent);
///   06-08 11:00 bought 2 Red hats; and 05-31 23:59 a page view (outside June).
/// * user 2 (bob@example.com): 06-01 12:00 signed up, 12:01 viewed, 12:30 added to
///   cart, never bought; 06-02 08:00 page view.
/// * user 3 (no email): 06-02 09:00 signed up, 09:01 viewed Green socks; added them
///   only on 06-04 (more than 24 h later), bought 3 on 06-05; page view on 06-09.
/// * user 5: one development-mode page view received 06-03 14:00, client time 13:59.
/// * project `shop`, user 4: bought Blue shoes 06-01 13:00.
pub fn seed_events() -> String {
    let blue = r#"{"item":"Blue shoes","price":40.0}"#;
    let red = r#"{"item":"Red hat","price":15.5}"#;
    let socks = r#"{"item":"Green socks","price":5.0}"#;
    let rows: &[SeedRow] = &[
        ("demo", "user_signed_up", "1", Some("jane@example.com"), "{}", 0, at(1, 9, 0), None, 0),
        ("demo", "viewed_product", "1", Some("jane@example.com"), blue, 0, at(1, 9, 5), None, 0),
        ("demo", "added_to_cart", "1", Some("jane@example.com"), blue, 0, at(1, 9, 10), None, 0),
        (
            "demo",
            "purchased",
            "1",
            Some("jane@example.com"),
            r#"{"item":"Blue shoes","price":40.0,"quantity":1}"#,
            0,
            at(1, 9, 20),
            None,
            0,
        ),
        ("demo", "viewed_product", "1", None, red, 0, at(2, 10, 0), None, 0),
        (
            "demo",
            "purchased",
            "1",
            Some("jane@example.com"),
            r#"{"item":"Red hat","price":15.5,"quantity":2}"#,
            0,
            at(8, 11, 0),
            None,
            0,
        ),
        ("demo", "page_viewed", "1", Some("jane@example.com"), r#"{"page":"/"}"#, 0, at(0, 23, 59), None, 0),
        ("demo", "user_signed_up", "2", Some("bob@example.com"), "{}", 0, at(1, 12, 0), None, 1),
        ("demo", "viewed_product", "2", Some("bob@example.com"), blue, 0, at(1, 12, 1), None, 1),
        ("demo", "added_to_cart", "2", Some("bob@example.com"), blue, 0, at(1, 12, 30), None, 1),
        ("demo", "page_viewed", "2", Some("bob@example.com"), r#"{"page":"/cart"}"#, 0, at(2, 8, 0), None, 1),
        ("demo", "user_signed_up", "3", None, "{}", 0, at(2, 9, 0), None, 2),
        ("demo", "viewed_product", "3", None, socks, 0, at(2, 9, 1), None, 2),
        ("demo", "added_to_cart", "3", None, socks, 0, at(4, 9, 0), None, 2),
        ("demo", "purchased", "3", None, r#"{"item":"Green socks","price":5.0,"quantity":3}"#, 0, at(5, 9, 0), None, 2),
        ("demo", "page_viewed", "3", None, r#"{"page":"/"}"#, 0, at(9, 10, 0), None, 2),
        ("demo", "page_viewed", "5", None, r#"{"page":"/"}"#, 1, at(3, 14, 0), Some(at(3, 13, 59)), 0),
        (
            "shop",
            "purchased",
            "4",
            None,
            r#"{"item":"Blue shoes","price":40.0,"quantity":1}"#,
            0,
            at(1, 13, 0),
            None,
            1,
        ),
    ];
    let values: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, (project, name, user, email, data, dev, received, created, partition))| {
            let email = email.map_or("NULL".to_owned(), |e| format!("'{e}'"));
            let created = created.map_or("NULL".to_owned(), |c| c.to_string());
            format!(
                "('0190a000-0000-7000-8000-{:012}', '{project}', '{name}', '{user}', {email}, '{{}}', '{data}', '{{}}', \
                 'web', NULL, {dev}, {received}, {created}, {partition}, {})",
                i + 1,
                i + 1
            )
        })
        .collect();
    format!(
        "INSERT INTO vero.events (event_id, project, event_name, user_id, email, identity, data, extras, source, \
         user_agent, development_mode, received_at_ms, created_at_ms, kafka_partition, kafka_offset) VALUES {}",
        values.join(", ")
    )
}

/// Profiles for the by-email lookup: jane is user 1 in `demo`, and also a user in
/// `shop` (must not leak into demo's answer); a deleted demo profile once had her
/// address (must not match: `profiles_live` hides it).
pub const SEED_PROFILES: &str = "INSERT INTO vero.profiles (project, user_id, email, attributes, tags, subscribed, \
    event_count, previous_ids, deleted, version) VALUES \
    ('demo', '1', 'jane@example.com', '{}', [], 1, 7, [], 0, 1), \
    ('demo', '2', 'bob@example.com', '{}', [], 1, 4, [], 0, 1), \
    ('shop', '4', 'jane@example.com', '{}', [], 1, 1, [], 0, 1), \
    ('demo', '3', 'jane@example.com', '{}', [], 1, 0, [], 0, 1), \
    ('demo', '3', NULL, '{}', [], 1, 0, [], 1, 2)";

/// Runs `items` ({label, sql}) in one chdb session; the per-statement results.
pub fn run_chdb(items: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let mut child = Command::new("python3")
        .arg(repo().join("scripts/check-sql-chdb.py"))
        .arg("--json")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().unwrap().write_all(serde_json::to_string(items).unwrap().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scripts/check-sql-chdb.py failed (exit {:?}; chdb missing? scripts/install-deps.sh installs it):\n{stderr}",
        output.status.code()
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let version = report["version"].as_str().unwrap();
    assert!(
        version.split('.').next().unwrap().parse::<u32>().unwrap() >= 22,
        "chdb runs current ClickHouse, not {version}"
    );
    let results = report["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), items.len());
    results
}
