//! The example queries of docs/analytics.md give the right answers, with and without
//! `FINAL`, on both ClickHouse versions: the Debian 18.16 server (a real process, the
//! v18 migrations applied by the runner) and current ClickHouse (chdb, in-process
//! through `scripts/check-sql-chdb.py --json`, the current migrations).
//!
//! The queries are read from the markdown itself: every ```` ```sql ```` block must
//! follow a `<!-- query: NAME -->` line, and every NAME must have an expected answer
//! in [`EXPECTED`] (and the other way round), so the test checks exactly the text
//! analysts copy. The seeded events ([`seed_events`]) are small enough that the
//! answers were derived by hand: see the comments in [`EXPECTED`].
//!
//! It also checks the portability claims the docs make about 18.16 and current
//! ClickHouse (the forms that fail there), so the prose cannot go stale either.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vero_clickhouse::migrations::{self, statements};
use vero_clickhouse::{ClickHouseSettings, ServerVersion};
use vero_testkit::clickhouse::ClickHouseServer;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One documented query: the NAME of its marker and the block's text.
struct DocQuery {
    name: String,
    sql: String,
}

/// The marked ```sql blocks of docs/analytics.md, in document order. Panics on an
/// unmarked block, a marker without a block, or a name used twice.
fn doc_queries() -> Vec<DocQuery> {
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

/// The same query reading `vero.events FINAL` wherever it reads `vero.events`.
fn with_final(sql: &str) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find("FROM vero.events") {
        let end = at + "FROM vero.events".len();
        out.push_str(&rest[..end]);
        if rest[end..].starts_with(|c: char| c.is_whitespace() || c == ')') || rest[end..].is_empty() {
            out.push_str(" FINAL");
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Current ClickHouse prints `event_time` (DateTime64(3)) with `.000`; 18.16's
/// `DateTime` has no fraction. The seeded times are whole seconds, so dropping a
/// `.000` after a time of day makes both versions' answers comparable.
fn normalize(tsv: &str) -> String {
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
fn at(day: i64, hh: i64, mm: i64) -> i64 {
    const JUNE_1: i64 = 1_717_200_000_000;
    JUNE_1 + (day - 1) * 86_400_000 + hh * 3_600_000 + mm * 60_000
}

/// project, event_name, user_id, email, data, development_mode, received_at_ms,
/// created_at_ms, kafka_partition.
type SeedRow =
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
fn seed_events() -> String {
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
const SEED_PROFILES: &str = "INSERT INTO vero.profiles (project, user_id, email, attributes, tags, subscribed, \
    event_count, previous_ids, deleted, version) VALUES \
    ('demo', '1', 'jane@example.com', '{}', [], 1, 7, [], 0, 1), \
    ('demo', '2', 'bob@example.com', '{}', [], 1, 4, [], 0, 1), \
    ('shop', '4', 'jane@example.com', '{}', [], 1, 1, [], 0, 1), \
    ('demo', '3', 'jane@example.com', '{}', [], 1, 0, [], 0, 1), \
    ('demo', '3', NULL, '{}', [], 1, 0, [], 1, 2)";

/// A second copy of user 1's first purchase (event 4), as a by-hand re-import would
/// make: the only way to get a copy once the sink is exactly-once.
fn copy_of_event_4() -> String {
    format!(
        "INSERT INTO vero.events (event_id, project, event_name, user_id, email, identity, data, extras, source, \
         user_agent, development_mode, received_at_ms, created_at_ms, kafka_partition, kafka_offset) VALUES \
         ('0190a000-0000-7000-8000-000000000004', 'demo', 'purchased', '1', 'jane@example.com', '{{}}', \
         '{{\"item\":\"Blue shoes\",\"price\":40.0,\"quantity\":1}}', '{{}}', 'web', NULL, 0, {}, NULL, 0, 4)",
        at(1, 9, 20)
    )
}

/// The answer of every documented query over the seed (TabSeparated, normalized).
const EXPECTED: &[(&str, &str)] = &[
    // user_signed_up in demo: users 1 and 2 on 06-01, user 3 on 06-02.
    ("daily_count", "2024-06-01\t2\n2024-06-02\t1"),
    // 06-01, demo, production: 09h user 1's four steps, 12h user 2's three; ties by name.
    (
        "hourly_by_event",
        "2024-06-01 09:00:00\tadded_to_cart\t1\n2024-06-01 09:00:00\tpurchased\t1\n\
         2024-06-01 09:00:00\tuser_signed_up\t1\n2024-06-01 09:00:00\tviewed_product\t1\n\
         2024-06-01 12:00:00\tadded_to_cart\t1\n2024-06-01 12:00:00\tuser_signed_up\t1\n\
         2024-06-01 12:00:00\tviewed_product\t1",
    ),
    // demo: 06-01 4 (user 1) + 3 (user 2); 06-02 users 1, 2 and two of 3; 06-03 user 5
    // (client time); then one each. The 05-31 page view is outside June. shop: one.
    (
        "events_per_day_per_project",
        "demo\t2024-06-01\t7\ndemo\t2024-06-02\t4\ndemo\t2024-06-03\t1\ndemo\t2024-06-04\t1\n\
         demo\t2024-06-05\t1\ndemo\t2024-06-08\t1\ndemo\t2024-06-09\t1\nshop\t2024-06-01\t1",
    ),
    // Users 1, 2, 3 each signed up, viewed and added; page views by 2, 3, 5; purchases by 1 (twice) and 3.
    (
        "top_events",
        "added_to_cart\t3\t3\npage_viewed\t3\t3\nuser_signed_up\t3\t3\nviewed_product\t4\t3\npurchased\t3\t2",
    ),
    // Blue shoes 1 x 40 (shop's purchase is another project), Red hat 2 x 15.5, socks 3 x 5.
    ("revenue_by_item", "Blue shoes\t40\t1\nRed hat\t31\t1\nGreen socks\t15\t1"),
    // Active users per day over the month's 4 users (1, 2, 3, 5).
    (
        "dau_mau",
        "2024-06-01\t2\t4\t0.5\n2024-06-02\t3\t4\t0.75\n2024-06-03\t1\t4\t0.25\n2024-06-04\t1\t4\t0.25\n\
         2024-06-05\t1\t4\t0.25\n2024-06-08\t1\t4\t0.25\n2024-06-09\t1\t4\t0.25",
    ),
    // User 1 did all three steps within 20 minutes, user 2 two, user 3 added to cart
    // more than 24 h after viewing (one step).
    ("funnel_3_step", "3\t2\t1"),
    // Cohort 06-01: users 1 and 2, both back on 06-02, user 1 on 06-08. Cohort 06-02:
    // user 3, back on 06-09 (day 7) but not 06-03. Cohort 06-03: user 5, never back.
    ("retention", "2024-06-01\t2\t2\t1\t0\n2024-06-02\t1\t0\t1\t0\n2024-06-03\t1\t0\t0\t0"),
    (
        "timeline_by_id",
        "2024-06-08 11:00:00\tpurchased\tRed hat\t1717844400000\n\
         2024-06-02 10:00:00\tviewed_product\tRed hat\t1717322400000\n\
         2024-06-01 09:20:00\tpurchased\tBlue shoes\t1717233600000\n\
         2024-06-01 09:10:00\tadded_to_cart\tBlue shoes\t1717233000000\n\
         2024-06-01 09:05:00\tviewed_product\tBlue shoes\t1717232700000\n\
         2024-06-01 09:00:00\tuser_signed_up\t\t1717232400000\n\
         2024-05-31 23:59:00\tpage_viewed\t\t1717199940000",
    ),
    // The same seven events, including 06-02's sent without an email (\N).
    (
        "timeline_by_email",
        "2024-06-08 11:00:00\tpurchased\t1\tjane@example.com\tRed hat\n\
         2024-06-02 10:00:00\tviewed_product\t1\t\\N\tRed hat\n\
         2024-06-01 09:20:00\tpurchased\t1\tjane@example.com\tBlue shoes\n\
         2024-06-01 09:10:00\tadded_to_cart\t1\tjane@example.com\tBlue shoes\n\
         2024-06-01 09:05:00\tviewed_product\t1\tjane@example.com\tBlue shoes\n\
         2024-06-01 09:00:00\tuser_signed_up\t1\tjane@example.com\t\n\
         2024-05-31 23:59:00\tpage_viewed\t1\tjane@example.com\t",
    ),
    ("duplicate_copies", "0"),
    // Partition 0: users 1 and 5 (rows 1-7, 17); 1: users 2 and 4 (8-11, 18); 2: user 3 (12-16).
    ("lineage", "0\t17\t8\n1\t18\t5\n2\t16\t5"),
    // No delete was ever submitted.
    ("pending_deletes", ""),
];

/// Each documented query with its expected answer, plain and with `FINAL` (when it
/// reads `vero.events`): (label, sql, expected).
fn checks() -> Vec<(String, String, String)> {
    let queries = doc_queries();
    let names: Vec<&str> = queries.iter().map(|q| q.name.as_str()).collect();
    for (name, _) in EXPECTED {
        assert!(names.contains(name), "docs/analytics.md lost the query {name}; found {names:?}");
    }
    for required in
        ["funnel_3_step", "retention", "dau_mau", "timeline_by_id", "timeline_by_email", "events_per_day_per_project"]
    {
        assert!(names.contains(&required), "the docs must keep a {required} query");
    }
    let mut out = Vec::new();
    for q in &queries {
        let expected = EXPECTED
            .iter()
            .find(|(name, _)| *name == q.name)
            .unwrap_or_else(|| panic!("docs/analytics.md query {} has no expected answer in docs_queries.rs", q.name))
            .1
            .to_owned();
        out.push((q.name.clone(), q.sql.clone(), expected.clone()));
        let fin = with_final(&q.sql);
        if fin != q.sql {
            out.push((format!("{} FINAL", q.name), fin, expected));
        }
    }
    out
}

#[test]
fn with_final_marks_every_read_of_the_events_table_and_nothing_else() {
    let sql = "SELECT 1 FROM vero.events\nWHERE x IN (SELECT y FROM vero.events WHERE z)\n\
               CROSS JOIN (SELECT 1 FROM vero.events) JOIN (SELECT 2 FROM vero.events_unique)";
    assert_eq!(
        with_final(sql),
        "SELECT 1 FROM vero.events FINAL\nWHERE x IN (SELECT y FROM vero.events FINAL WHERE z)\n\
         CROSS JOIN (SELECT 1 FROM vero.events FINAL) JOIN (SELECT 2 FROM vero.events_unique)"
    );
    assert_eq!(normalize("2024-06-01 09:00:00.000\tx\t1.000\n"), "2024-06-01 09:00:00\tx\t1.000");
}

#[tokio::test]
async fn docs_queries_answer_right_on_clickhouse_18_with_and_without_final() {
    let server = tokio::task::spawn_blocking(ClickHouseServer::start).await.unwrap().unwrap();
    let client = vero_clickhouse::client::build(&ClickHouseSettings::local(server.http_url()));
    let version = ServerVersion::detect(&client).await.unwrap();
    assert_eq!(version.major, 18, "the tests run the Debian 18.x server");
    migrations::apply(&client, version, &migrations::embedded().unwrap()).await.unwrap();
    server.query(&seed_events()).unwrap();
    server.query(SEED_PROFILES).unwrap();

    let mut wrong = Vec::new();
    for (label, sql, expected) in checks() {
        match server.query(&sql) {
            Ok(out) if normalize(&out) == expected => {}
            Ok(out) => wrong.push(format!("{label}:\n{sql}\n-> got\n{}\n-> expected\n{expected}", normalize(&out))),
            Err(e) => wrong.push(format!("{label}:\n{sql}\n-> {e}")),
        }
    }
    assert!(wrong.is_empty(), "docs/analytics.md queries on 18.16:\n\n{}", wrong.join("\n\n"));

    // The 18.16 traps the docs describe are real, and the documented forms avoid them.
    let trap = "SELECT project, toDate(event_time) AS day, count() FROM vero.events FINAL GROUP BY project, day";
    let err = server.query(trap).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
    let fixed = "SELECT project, toDate(event_time, 'UTC') AS day, count() FROM vero.events FINAL \
                 GROUP BY project, day ORDER BY project, day";
    assert!(server.query(fixed).unwrap().starts_with("demo\t2024-05-31\t1\ndemo\t2024-06-01\t7\n"));
    let err = server
        .query("SELECT count() FROM vero.events WHERE event_time >= '2024-06-01 00:00:00'")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not of fixed size"), "{err}");

    // FINAL matters only once a copy exists: then the plain count sees it, FINAL does not.
    server.query(&copy_of_event_4()).unwrap();
    let dup = doc_queries().into_iter().find(|q| q.name == "duplicate_copies").unwrap().sql;
    assert_eq!(server.query(&dup).unwrap().trim(), "1");
    assert_eq!(server.query(&with_final(&dup)).unwrap().trim(), "0");
    let revenue = doc_queries().into_iter().find(|q| q.name == "revenue_by_item").unwrap().sql;
    assert!(server.query(&revenue).unwrap().starts_with("Blue shoes\t80\t2\n"), "the copy counts twice without FINAL");
    assert!(server.query(&with_final(&revenue)).unwrap().starts_with("Blue shoes\t40\t1\n"));
}

/// Runs `items` ({label, sql}) in one chdb session; the per-statement results.
fn run_chdb(items: &[serde_json::Value]) -> Vec<serde_json::Value> {
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

#[test]
fn docs_queries_answer_right_on_current_clickhouse_via_chdb_with_and_without_final() {
    let current = ServerVersion { major: 99, minor: 0 };
    let mut setup = vec![serde_json::json!({"label": "create database", "sql": "CREATE DATABASE IF NOT EXISTS vero"})];
    for migration in migrations::embedded().unwrap() {
        let (file, sql) = migration.variant_for(current);
        for (i, statement) in statements(sql).into_iter().enumerate() {
            setup.push(serde_json::json!({"label": format!("{file} #{}", i + 1), "sql": statement}));
        }
    }
    setup.push(serde_json::json!({"label": "seed events", "sql": seed_events()}));
    setup.push(serde_json::json!({"label": "seed profiles", "sql": SEED_PROFILES}));
    let checks = checks();
    let mut items = setup.clone();
    items.extend(checks.iter().map(|(label, sql, _)| serde_json::json!({"label": label, "sql": sql})));
    // The docs' claim: the natural funnel on DateTime64 fails on current ClickHouse.
    let raw_funnel = "SELECT windowFunnel(86400)(event_time, event_name = 'viewed_product') FROM vero.events";
    items.push(serde_json::json!({"label": "windowFunnel on DateTime64", "sql": raw_funnel}));

    let results = run_chdb(&items);
    for (item, result) in items.iter().zip(&results).take(setup.len()) {
        assert_eq!(result["ok"], true, "{}: {}", item["label"], result["error"]);
    }
    let mut wrong = Vec::new();
    for ((label, sql, expected), result) in checks.iter().zip(&results[setup.len()..]) {
        match result["output"].as_str() {
            Some(out) if normalize(out) == *expected => {}
            Some(out) => wrong.push(format!("{label}:\n{sql}\n-> got\n{}\n-> expected\n{expected}", normalize(out))),
            None => wrong.push(format!("{label}:\n{sql}\n-> {}", result["error"])),
        }
    }
    assert!(wrong.is_empty(), "docs/analytics.md queries on current ClickHouse:\n\n{}", wrong.join("\n\n"));
    let funnel = results.last().unwrap();
    assert_eq!(funnel["ok"], false, "windowFunnel now takes DateTime64: update docs/analytics.md");
    assert!(funnel["error"].as_str().unwrap().contains("DateTime64"), "{}", funnel["error"]);
}
