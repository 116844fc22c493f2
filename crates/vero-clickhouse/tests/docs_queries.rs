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

mod analytics_docs;

use analytics_docs::{at, doc_queries, normalize, run_chdb, seed_events, with_final, SEED_PROFILES};
use vero_clickhouse::migrations::{self, statements};
use vero_clickhouse::{ClickHouseSettings, ServerVersion};
use vero_testkit::clickhouse::ClickHouseServer;

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
