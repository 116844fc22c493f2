//! What the real ClickHouse 18.16 server answers, classified by `Failure`: the errors
//! an operator must fix (unknown table/database/column, unknown user, read-only user)
//! are `Operator`, a statement that can never run is `Invalid`, a stopped server is
//! `Retryable`, and so is every answer of a replica whose ZooKeeper is gone (issue 24:
//! 18.16 answers 999 or 225 there, which must never make a bad record), while a value
//! that does not parse is `Invalid`. And `migrations::apply` re-creates a dropped table
//! although `vero.schema_migrations` still records its migration.

use clickhouse::Row;
use serde::Serialize;
use vero_clickhouse::migrations;
use vero_clickhouse::{ClickHouseSettings, Failure, ServerVersion};
use vero_testkit::clickhouse::ClickHouseServer;
use vero_testkit::clickhouse_cluster::ClickHouseCluster;

#[derive(Row, Serialize)]
struct Two {
    a: u32,
    b: u32,
}

async fn insert_two(client: &clickhouse::Client, table: &str) -> Failure {
    let attempt = async {
        let mut insert = client.insert_unescaped::<Two>(table).await?;
        insert.write(&Two { a: 1, b: 2 }).await?;
        insert.end().await
    };
    Failure::from(attempt.await.expect_err("the insert must fail"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_classified_by_what_fixes_them() {
    let mut server = tokio::task::spawn_blocking(ClickHouseServer::start).await.unwrap().unwrap();
    let settings = ClickHouseSettings::local(server.http_url());
    let client = vero_clickhouse::client::build(&settings);
    server.query("CREATE DATABASE vero").unwrap();
    server.query("CREATE TABLE vero.one (a UInt32) ENGINE = MergeTree ORDER BY a").unwrap();
    server.query("CREATE TABLE vero.two (a UInt32, b UInt32) ENGINE = MergeTree ORDER BY a").unwrap();

    let unknown_table = insert_two(&client, "vero.nope").await;
    assert!(matches!(&unknown_table, Failure::Operator(m) if m.contains("Code: 60")), "{unknown_table:?}");
    let unknown_database = insert_two(&client, "nodb.two").await;
    assert!(matches!(&unknown_database, Failure::Operator(m) if m.contains("Code: 81")), "{unknown_database:?}");
    let missing_column = insert_two(&client, "vero.one").await;
    assert!(matches!(&missing_column, Failure::Operator(m) if m.contains("Code: 16")), "{missing_column:?}");
    let unknown_user = insert_two(
        &vero_clickhouse::client::build(&ClickHouseSettings { user: "nouser".into(), ..settings.clone() }),
        "vero.two",
    )
    .await;
    assert!(matches!(&unknown_user, Failure::Operator(m) if m.contains("Code: 192")), "{unknown_user:?}");
    let wrong_password = insert_two(
        &vero_clickhouse::client::build(&ClickHouseSettings { password: "rotated".into(), ..settings.clone() }),
        "vero.two",
    )
    .await;
    assert!(matches!(&wrong_password, Failure::Operator(m) if m.contains("Code: 193")), "{wrong_password:?}");
    let readonly = insert_two(&client.clone().with_setting("readonly", "1"), "vero.two").await;
    assert!(matches!(&readonly, Failure::Operator(m) if m.contains("Code: 164")), "{readonly:?}");

    // A statement over max_query_size (an erasure of a huge id) can never run.
    let huge = format!("ALTER TABLE vero.two DELETE WHERE toString(a) = '{}'", "x".repeat(300_000));
    let too_large = Failure::from(client.query_raw(&huge).execute().await.unwrap_err());
    assert!(matches!(&too_large, Failure::Invalid(m) if m.contains("Max query size exceeded")), "{too_large:?}");

    // The good insert works, and a stopped server is retryable.
    let mut insert = client.insert_unescaped::<Two>("vero.two").await.unwrap();
    insert.write(&Two { a: 1, b: 2 }).await.unwrap();
    insert.end().await.unwrap();
    tokio::task::block_in_place(|| server.kill()).unwrap();
    let down = insert_two(&client, "vero.two").await;
    assert!(down.is_retryable(), "{down:?}");
}

#[tokio::test]
async fn apply_re_creates_a_dropped_table_whose_migration_is_recorded() {
    let server = tokio::task::spawn_blocking(ClickHouseServer::start).await.unwrap().unwrap();
    let client = vero_clickhouse::client::build(&ClickHouseSettings::local(server.http_url()));
    let version = ServerVersion::detect(&client).await.unwrap();
    let all = migrations::embedded().unwrap();
    let first = migrations::apply(&client, version, &all).await.unwrap();
    assert!(first.iter().all(|a| !a.repaired) && first.len() == all.len(), "{first:?}");
    assert!(migrations::apply(&client, version, &all).await.unwrap().is_empty());

    server.query("DROP TABLE vero.events").unwrap();
    let repaired = migrations::apply(&client, version, &all).await.unwrap();
    // From the events migration on, everything ran again (and nothing was recorded twice).
    assert!(!repaired.is_empty() && repaired.iter().all(|a| a.repaired), "{repaired:?}");
    assert_eq!(repaired[0].id, 1);
    assert_eq!(repaired.len(), all.len(), "later migrations re-run too: {repaired:?}");
    let exists = server.query("EXISTS TABLE vero.events").unwrap();
    assert_eq!(exists.trim(), "1");
    server.query("SELECT count() FROM vero.events_unique").unwrap();
    assert!(migrations::apply(&client, version, &all).await.unwrap().is_empty(), "nothing missing any more");
    let records = server.query("SELECT count() FROM vero.schema_migrations FINAL").unwrap();
    assert_eq!(records.trim(), all.len().to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_without_zookeeper_is_retryable_and_a_bad_value_is_invalid() {
    let mut cluster = tokio::task::spawn_blocking(|| ClickHouseCluster::start(1, 1)).await.unwrap().unwrap();
    let client = vero_clickhouse::client::build(&ClickHouseSettings::local(cluster.node(0, 0).http_url()));
    let table = "CREATE TABLE default.r (a UInt32, b UInt32) \
                 ENGINE = ReplicatedMergeTree('/t/{shard}/r', '{replica}') ORDER BY a";
    cluster.node(0, 0).query(table).unwrap();

    let bad = client.query_raw("INSERT INTO default.r FORMAT TSV\nnot-a-number\t1\n").execute().await.unwrap_err();
    let bad = Failure::from(bad);
    assert_eq!(bad.class(), "invalid", "{bad:?}");

    // Without ZooKeeper, every INSERT fails; whatever 18.16 says then (connection
    // loss, session expired, read-only replica), it is retryable. Tried for longer
    // than the session timeout (10 s) so the later answers are seen too.
    tokio::task::block_in_place(|| cluster.kill_zookeeper());
    let until = std::time::Instant::now() + std::time::Duration::from_secs(14);
    let mut codes = std::collections::BTreeSet::new();
    while std::time::Instant::now() < until {
        let failure = insert_two(&client, "default.r").await;
        assert!(failure.is_retryable(), "without ZooKeeper: {failure:?}");
        codes.insert(failure.message().split([',', '.']).next().unwrap_or_default().to_owned());
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    eprintln!("answers without ZooKeeper: {codes:?}");
    assert!(codes.iter().any(|c| c.contains("999") || c.contains("225") || c.contains("242")), "{codes:?}");

    tokio::task::block_in_place(|| cluster.restart_zookeeper()).unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let attempt = async {
            let mut insert = client.insert_unescaped::<Two>("default.r").await?;
            insert.write(&Two { a: 1, b: 2 }).await?;
            insert.end().await
        };
        match attempt.await.map_err(Failure::from) {
            Ok(()) => break,
            Err(failure) => {
                assert!(failure.is_retryable() && std::time::Instant::now() < until, "{failure:?}");
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
        }
    }
}
