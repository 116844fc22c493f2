//! The cluster schema (`schemas/clickhouse/cluster/`, `clickhouse.cluster` set) on a
//! real 2 shards × 2 replicas ClickHouse 18.16 cluster over ZooKeeper
//! (`vero_testkit::clickhouse_cluster`), and on current ClickHouse (chdb, parse only):
//!
//! * the migrations create, on every node, a Replicated `<name>_local` table and a
//!   Distributed `<name>` for every table of the single-node schema, and its views;
//!   applying again does nothing; the record is the same on every node; a node that
//!   lost a table gets it back (repair); rows replicate, repeated blocks are dropped on
//!   either replica, and the Distributed sharding key is `kafka_partition % shards`;
//! * a node down fails a migration that has work within the DDL timeout (retryable,
//!   not recorded), the next run after it is back finishes, and a complete schema
//!   needs no node but the connected one; a server of the other schema is refused;
//! * the cluster tables have the single-node columns, and the queries of
//!   docs/analytics.md answer on the cluster exactly as on one node, with each row on
//!   the shard of its partition;
//! * every cluster statement parses on current ClickHouse (chdb `formatQuery`).
//!
//! Each test starts its own cluster (a few seconds), so tests share no state.

mod analytics_docs;

use analytics_docs::{doc_queries, normalize, run_chdb, seed_events, with_final, SEED_PROFILES};
use vero_clickhouse::migrations::{self, created_objects, statements, Applied, Migration};
use vero_clickhouse::{ClickHouseSettings, ServerVersion};
use vero_testkit::clickhouse::ClickHouseServer;
use vero_testkit::clickhouse_cluster::ClickHouseCluster;

async fn start_cluster() -> ClickHouseCluster {
    tokio::task::spawn_blocking(|| ClickHouseCluster::start(2, 2)).await.unwrap().unwrap()
}

fn cluster_migrations(cluster: &ClickHouseCluster) -> Vec<Migration> {
    migrations::embedded_for(Some(cluster.name())).unwrap()
}

/// `migrations::apply` through `node`, as a service configured with its URL would.
async fn apply_via(node: &ClickHouseServer, all: &[Migration]) -> Vec<Applied> {
    let client = vero_clickhouse::client::build(&ClickHouseSettings::local(node.http_url()));
    let version = ServerVersion::detect(&client).await.unwrap();
    assert_eq!(version.major, 18, "the cluster runs the Debian 18.x server");
    match migrations::apply(&client, version, all).await {
        Ok(applied) => applied,
        Err(e) => panic!("{e}\nnode log:\n{}", node.logs_tail()),
    }
}

fn ids(applied: &[Applied]) -> Vec<u32> {
    applied.iter().map(|a| a.id).collect()
}

/// `SYSTEM SYNC REPLICA` of `table` on every node: each has fetched what its shard has.
fn sync_everywhere(cluster: &ClickHouseCluster, table: &str) {
    cluster.query_each(&format!("SYSTEM SYNC REPLICA {table}")).unwrap();
}

fn one_event(id: u32, partition: i32) -> String {
    format!(
        "('0190c000-0000-7000-8000-{id:012}', 'demo', 'page_viewed', 'u{id}', NULL, '{{}}', '{{}}', '{{}}', NULL, \
         NULL, 0, 1717200000000, NULL, {partition}, {id})"
    )
}

fn insert_events(table: &str, rows: &[String]) -> String {
    format!(
        "INSERT INTO {table} (event_id, project, event_name, user_id, email, identity, data, extras, source, \
         user_agent, development_mode, received_at_ms, created_at_ms, kafka_partition, kafka_offset) VALUES {}",
        rows.join(", ")
    )
}

fn count(node: &ClickHouseServer, sql: &str) -> u64 {
    node.query(sql).unwrap().trim().parse().unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test]
async fn cluster_migrations_create_replicated_local_and_distributed_tables_on_every_node() {
    let cluster = start_cluster().await;
    let all = cluster_migrations(&cluster);
    let first = apply_via(cluster.node(0, 0), &all).await;
    assert_eq!(ids(&first), all.iter().map(|m| m.id).collect::<Vec<_>>());
    assert!(first.iter().all(|a| !a.repaired), "{first:?}");
    assert!(apply_via(cluster.node(0, 0), &all).await.is_empty(), "a second run applies nothing");

    // Every node: each single-node object by its name; tables as Distributed over a
    // Replicated `_local`; nothing unreplicated.
    let single_objects: Vec<String> = migrations::embedded()
        .unwrap()
        .iter()
        .flat_map(|m| created_objects(m.variant_for(ServerVersion { major: 18, minor: 16 }).1))
        .filter_map(|o| o.strip_prefix("vero.").map(str::to_owned))
        .collect();
    assert!(single_objects.len() >= 9, "{single_objects:?}");
    let tables = cluster.query_each("SELECT name, engine FROM system.tables WHERE database = 'vero'").unwrap();
    for (node, listing) in tables.iter().enumerate() {
        let engines: std::collections::BTreeMap<&str, &str> =
            listing.lines().map(|l| l.split_once('\t').unwrap()).collect();
        for name in &single_objects {
            let engine = engines.get(name.as_str()).unwrap_or_else(|| panic!("node {node} has no vero.{name}"));
            match *engine {
                "Distributed" => {
                    let local = engines.get(format!("{name}_local").as_str()).copied().unwrap_or("missing");
                    assert!(local.starts_with("Replicated"), "node {node}: vero.{name}_local is {local}");
                }
                "View" | "MaterializedView" => {}
                other => panic!("node {node}: vero.{name} is {other}, expected Distributed or a view"),
            }
        }
        for (name, engine) in &engines {
            assert!(!engine.ends_with("MergeTree") || engine.starts_with("Replicated"), "node {node}: {name} {engine}");
        }
    }

    // Recorded once for the whole cluster: every node reads the same record, and a
    // service talking to another node has nothing to do.
    sync_everywhere(&cluster, "vero.schema_migrations");
    let expected: String = all.iter().map(|m| format!("{}\n", m.id)).collect();
    for record in cluster.query_each("SELECT id FROM vero.schema_migrations FINAL ORDER BY id").unwrap() {
        assert_eq!(record, expected);
    }
    assert!(apply_via(cluster.node(1, 1), &all).await.is_empty(), "recorded cluster-wide");
    // A service without clickhouse.cluster must not take the cluster for one node.
    let client = vero_clickhouse::client::build(&ClickHouseSettings::local(cluster.node(1, 1).http_url()));
    let version = ServerVersion::detect(&client).await.unwrap();
    let err = migrations::apply(&client, version, &migrations::embedded().unwrap()).await.unwrap_err();
    assert!(matches!(&err, vero_clickhouse::Failure::Operator(m) if m.contains("set clickhouse.cluster")), "{err}");

    // Replication within a shard, through the materialized views too; the Distributed
    // table reads every shard from any node.
    let shard0 = cluster.node(0, 0);
    shard0.query(&insert_events("vero.events_local", &[one_event(1, 0)])).unwrap();
    cluster.node(1, 1).query(&insert_events("vero.events_local", &[one_event(2, 1)])).unwrap();
    sync_everywhere(&cluster, "vero.events_local");
    sync_everywhere(&cluster, "vero.events_written_local");
    assert_eq!(cluster.node(0, 1).query("SELECT user_id FROM vero.events_local").unwrap(), "u1\n");
    assert_eq!(cluster.node(0, 1).query("SELECT kafka_offset FROM vero.events_written_local").unwrap(), "1\n");
    for node in cluster.nodes() {
        assert_eq!(count(node, "SELECT count() FROM vero.events"), 2);
        let written = node.query("SELECT kafka_partition, kafka_offset FROM vero.events_written ORDER BY 1").unwrap();
        assert_eq!(written, "0\t1\n1\t2\n");
    }

    // The same block again, on either replica of the shard (a retry, or a failover
    // retry), is dropped: replicated block deduplication is shard-wide. "The same"
    // is after DEFAULTs: a block that leaves inserted_at to DEFAULT now() is a new
    // block a second later, and lands twice.
    let pinned = insert_events("vero.events_local", &[one_event(3, 0)])
        .replace("kafka_offset)", "kafka_offset, inserted_at)")
        .replace(", 3)", ", 3, '2024-06-01 00:00:00')");
    for replica in [0, 0, 1] {
        cluster.node(0, replica).query(&pinned).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    shard0.query(&insert_events("vero.events_local", &[one_event(1, 0)])).unwrap();
    sync_everywhere(&cluster, "vero.events_local");
    let copies = "SELECT user_id, count() FROM vero.events_local GROUP BY user_id ORDER BY user_id";
    assert_eq!(cluster.node(0, 1).query(copies).unwrap(), "u1\t2\nu3\t1\n");

    // The sharding key: a row of partition p goes to shard p % 2, as the sink routes.
    let routed: Vec<String> = (10..14).map(|p| one_event(p as u32, p)).collect();
    cluster.node(1, 0).query(&insert_events("vero.events", &routed)).unwrap();
    // 18.16 forwards a Distributed INSERT in the background (every 100 ms).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while count(cluster.node(1, 0), "SELECT count() FROM vero.events WHERE kafka_partition >= 10") < 4 {
        assert!(std::time::Instant::now() < deadline, "the Distributed INSERT was not forwarded within 30 s");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    sync_everywhere(&cluster, "vero.events_local");
    for shard in 0..2 {
        let partitions = cluster
            .node(shard, 1)
            .query("SELECT DISTINCT kafka_partition FROM vero.events_local WHERE kafka_partition >= 10 ORDER BY 1")
            .unwrap();
        let expected: String = (10..14).filter(|p| p % 2 == shard as i32).map(|p| format!("{p}\n")).collect();
        assert_eq!(partitions, expected, "shard {shard}");
    }

    // Profiles carry no partition: ClickHouse refuses to place one through vero.profiles.
    let err = cluster
        .node(0, 0)
        .query(
            "INSERT INTO vero.profiles (project, user_id, attributes, tags, subscribed, event_count, previous_ids, \
             deleted, version) VALUES ('demo', 'x', '{}', [], 1, 0, [], 0, 1)",
        )
        .unwrap_err();
    assert!(format!("{err:#}").contains("sharding key"), "{err:#}");

    // Repair per node: a table dropped on one replica only comes back there, with its
    // shard's rows (fetched from the other replica).
    let lost = cluster.node(1, 0);
    lost.query("DROP TABLE vero.events_local").unwrap();
    let repaired = apply_via(lost, &all).await;
    assert!(!repaired.is_empty() && repaired.iter().all(|a| a.repaired), "{repaired:?}");
    lost.query("SYSTEM SYNC REPLICA vero.events_local").unwrap();
    let expected = count(cluster.node(1, 1), "SELECT count() FROM vero.events_local");
    assert_eq!(count(lost, "SELECT count() FROM vero.events_local"), expected);
    assert!(expected >= 3, "shard 1 holds partition 1's row and two routed ones");
}

/// Events for many users on 6 partitions (3 per shard), in the docs' project and
/// month, each user's events 15 minutes apart from the user's first day on, so
/// funnels, retention and per-day counts have something to find. Runs on the single
/// node; the cluster gets copies of its rows.
const GENERATED_EVENTS: &str = "INSERT INTO vero.events (event_id, project, event_name, user_id, email, identity, \
    data, extras, source, user_agent, development_mode, received_at_ms, created_at_ms, kafka_partition, kafka_offset) \
    SELECT toUUID(concat('0190d000-0000-7000-8000-', substring(toString(1000000000000 + number), 2, 12))), \
           if(number % 40 = 39, 'shop', 'demo'), \
           ['viewed_product', 'added_to_cart', 'purchased', 'page_viewed', 'user_signed_up'][1 + cityHash64(number, 1) % 5], \
           toString(100 + number % 40), \
           if(number % 40 < 20, concat('g', toString(number % 40), '@example.com'), NULL), \
           '{}', \
           concat('{\"item\":\"', ['Blue shoes', 'Red hat', 'Green socks'][1 + cityHash64(number, 2) % 3], \
                  '\",\"price\":', toString(5 + cityHash64(number, 3) % 40), \
                  ',\"quantity\":', toString(1 + cityHash64(number, 4) % 3), '}'), \
           '{}', 'web', NULL, toUInt8(cityHash64(number, 5) % 10 = 0), \
           1717200000000 + toInt64((number % 40) % 28) * 86400000 \
               + toInt64(intDiv(number, 40) * 900 + cityHash64(number, 6) % 600) * 1000, \
           NULL, toInt32((number % 40) % 6), toInt64(1000 + number) \
    FROM system.numbers LIMIT 3000";

const GENERATED_PROFILES: &str = "INSERT INTO vero.profiles (project, user_id, email, attributes, tags, subscribed, \
    event_count, previous_ids, deleted, version) \
    SELECT if(number = 39, 'shop', 'demo'), toString(100 + number), \
           if(number < 20, concat('g', toString(number), '@example.com'), NULL), '{}', [], 1, 75, [], 0, 1 \
    FROM system.numbers LIMIT 40";

/// (name, type, default kind, default expression) of every column of `vero.<table>`.
fn columns(node: &ClickHouseServer, table: &str) -> String {
    node.query(&format!(
        "SELECT name, type, default_kind, default_expression FROM system.columns \
         WHERE database = 'vero' AND table = '{table}'"
    ))
    .unwrap()
}

#[tokio::test]
async fn docs_queries_answer_the_same_on_the_cluster_as_on_one_node() {
    let (cluster, single) = tokio::join!(start_cluster(), async {
        tokio::task::spawn_blocking(ClickHouseServer::start).await.unwrap().unwrap()
    });
    apply_via(&single, &migrations::embedded().unwrap()).await;
    apply_via(cluster.node(0, 0), &cluster_migrations(&cluster)).await;
    // Nor a cluster service take a single node with the single-node schema for a cluster node.
    let client = vero_clickhouse::client::build(&ClickHouseSettings::local(single.http_url()));
    let version = ServerVersion::detect(&client).await.unwrap();
    let err = migrations::apply(&client, version, &cluster_migrations(&cluster)).await.unwrap_err();
    assert!(matches!(&err, vero_clickhouse::Failure::Operator(m) if m.contains("single-node schema")), "{err}");

    // The cluster's tables have exactly the single-node columns.
    let tables = single.query("SELECT name FROM system.tables WHERE database = 'vero' AND engine LIKE '%MergeTree'");
    let tables = tables.unwrap();
    assert!(tables.lines().count() >= 5, "{tables}");
    for table in tables.lines().filter(|t| *t != "schema_migrations") {
        let expected = columns(&single, table);
        assert_eq!(columns(cluster.node(1, 1), &format!("{table}_local")), expected, "vero.{table}_local");
        assert_eq!(columns(cluster.node(1, 1), table), expected, "vero.{table} (Distributed)");
    }

    for seed in [seed_events().as_str(), SEED_PROFILES, GENERATED_EVENTS, GENERATED_PROFILES] {
        single.query(seed).unwrap();
    }
    // Each row to the shard of its partition, as the consumers write; a profile to its
    // user's shard.
    let source = |table: &str| format!("remote('127.0.0.1:{}', vero.{table})", single.tcp_port());
    for shard in 0..cluster.shards() {
        let node = cluster.node(shard, 0);
        let of_shard = format!("kafka_partition % {} = {shard}", cluster.shards());
        node.query(&format!("INSERT INTO vero.events_local SELECT * FROM {} WHERE {of_shard}", source("events")))
            .unwrap();
        node.query(&format!(
            "INSERT INTO vero.profiles_local SELECT * FROM {} WHERE (project, user_id) IN \
             (SELECT project, user_id FROM {} WHERE {of_shard})",
            source("profiles"),
            source("events")
        ))
        .unwrap();
    }
    sync_everywhere(&cluster, "vero.events_local");
    sync_everywhere(&cluster, "vero.profiles_local");
    let total = count(&single, "SELECT count() FROM vero.events");
    assert_eq!(total, 3018);
    assert_eq!(count(cluster.node(0, 1), "SELECT count() FROM vero.events"), total);
    let profiles = count(&single, "SELECT count() FROM vero.profiles");
    assert_eq!((profiles, count(cluster.node(0, 1), "SELECT count() FROM vero.profiles")), (45, profiles));
    let on_shard_0 = count(cluster.node(0, 1), "SELECT count() FROM vero.events_local");
    assert!(on_shard_0 > 1000 && on_shard_0 < 2000, "both shards hold part of the events: {on_shard_0}");

    // Every documented query, plain and with FINAL, from a second replica of each shard.
    let mut wrong = Vec::new();
    let mut non_empty = 0;
    for query in doc_queries() {
        for sql in [query.sql.clone(), with_final(&query.sql)] {
            let expected = normalize(&single.query(&sql).unwrap());
            non_empty += usize::from(!expected.is_empty());
            for shard in 0..cluster.shards() {
                match cluster.node(shard, 1).query(&sql) {
                    Ok(got) if normalize(&got) == expected => {}
                    Ok(got) => wrong.push(format!(
                        "{} via shard {shard}:\n{sql}\n-> cluster\n{}\n-> one node\n{expected}",
                        query.name,
                        normalize(&got)
                    )),
                    Err(e) => wrong.push(format!("{} via shard {shard}:\n{sql}\n-> {e:#}", query.name)),
                }
            }
        }
    }
    assert!(wrong.is_empty(), "docs/analytics.md queries differ on the cluster:\n\n{}", wrong.join("\n\n"));
    assert!(non_empty >= 20, "the seed must give most queries an answer to compare ({non_empty})");

    // docs/operations.md: a subquery over vero.events inside IN is refused on the
    // cluster by default, and answers as on one node with distributed_product_mode =
    // 'local' (each shard filters by its own users, who live only there).
    let buyers = "SELECT count() FROM vero.events WHERE event_name = 'page_viewed' \
                  AND user_id IN (SELECT user_id FROM vero.events WHERE event_name = 'purchased')";
    let err = cluster.node(0, 1).query(buyers).unwrap_err();
    assert!(format!("{err:#}").contains("distributed_product_mode"), "{err:#}");
    let local = format!("{buyers} SETTINGS distributed_product_mode = 'local'");
    assert_eq!(cluster.node(0, 1).query(&local).unwrap(), single.query(buyers).unwrap());
}

/// Every statement of the cluster schema, as a service would run it, parses on
/// current ClickHouse (chdb): `formatQuery` of each one.
#[test]
fn cluster_ddl_parses_on_current_clickhouse_via_chdb() {
    let current = ServerVersion { major: 99, minor: 0 };
    let mut items = Vec::new();
    for migration in migrations::embedded_for(Some("vero_cluster")).unwrap() {
        let (file, sql) = migration.variant_for(current);
        assert!(file.starts_with(&format!("{:04}_", migration.id)) && !file.contains(".v"), "{file}");
        for (i, statement) in statements(sql).into_iter().enumerate() {
            assert!(statement.contains("ON CLUSTER vero_cluster") && !statement.contains("{cluster}"), "{statement}");
            let quoted = statement.replace('\\', "\\\\").replace('\'', "\\'");
            items.push(serde_json::json!({"label": format!("{file} #{}", i + 1), "sql": format!("SELECT formatQuery('{quoted}')")}));
        }
    }
    assert!(items.len() >= 12, "{} statements", items.len());
    for (item, result) in items.iter().zip(run_chdb(&items)) {
        assert_eq!(result["ok"], true, "{}: {}", item["label"], result["error"]);
        assert!(result["output"].as_str().unwrap().contains("ON CLUSTER vero_cluster"), "{}", item["label"]);
    }
}

/// A node down: a migration that has work fails within the DDL timeout with a
/// retryable error and is not recorded; the node runs the queued DDL when it is back,
/// and the next run finishes. Once the schema is complete, a node down does not stop
/// a service from starting (nothing runs ON CLUSTER).
#[tokio::test]
async fn cluster_migrations_with_a_node_down_fail_retryably_then_finish() {
    let mut cluster = start_cluster().await;
    let all = cluster_migrations(&cluster);
    cluster.kill_node(1, 1).unwrap();
    let client = vero_clickhouse::client::build(&ClickHouseSettings::local(cluster.node(0, 0).http_url()));
    let version = ServerVersion::detect(&client).await.unwrap();
    let started = std::time::Instant::now();
    let err = migrations::apply(&client, version, &all).await.unwrap_err();
    assert!(err.is_retryable() && err.message().contains("distributed_ddl_task_timeout"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "bounded by the DDL timeout");

    let mut cluster =
        tokio::task::spawn_blocking(move || cluster.restart_node(1, 1).map(|()| cluster)).await.unwrap().unwrap();
    let applied = apply_via(cluster.node(0, 0), &all).await;
    assert_eq!(ids(&applied), all.iter().map(|m| m.id).collect::<Vec<_>>());
    let tables = cluster.node(1, 1).query("SELECT count() FROM system.tables WHERE database = 'vero'").unwrap();
    assert_eq!(tables, cluster.node(0, 0).query("SELECT count() FROM system.tables WHERE database = 'vero'").unwrap());

    cluster.kill_node(1, 1).unwrap();
    let started = std::time::Instant::now();
    assert!(apply_via(cluster.node(0, 0), &all).await.is_empty());
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "no ON CLUSTER wait when nothing is missing");
}
