//! The cluster schema (`schemas/clickhouse/cluster/`, `clickhouse.cluster` set) on a
//! real 2 shards × 2 replicas ClickHouse 18.16 cluster over ZooKeeper
//! (`vero_testkit::clickhouse_cluster`), and on current ClickHouse (chdb, parse only):
//!
//! * the migrations create, on every node, a Replicated `<name>_local` table and a
//!   Distributed `<name>` for every table of the single-node schema, and its views;
//!   applying again does nothing; the record is the same on every node; a node that
//!   lost a table gets it back (repair); rows replicate, repeated blocks are dropped on
//!   either replica, and the Distributed sharding key is `kafka_partition % shards`;
//! * the queries of docs/analytics.md answer on the cluster exactly as on one node,
//!   with each row on the shard of its partition.
//!
//! Each test starts its own cluster (a few seconds), so tests share no state.

use vero_clickhouse::migrations::{self, created_objects, Applied, Migration};
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
    // retry), is dropped: replicated block deduplication is shard-wide.
    shard0.query(&insert_events("vero.events_local", &[one_event(1, 0)])).unwrap();
    cluster.node(0, 1).query(&insert_events("vero.events_local", &[one_event(1, 0)])).unwrap();
    sync_everywhere(&cluster, "vero.events_local");
    assert_eq!(count(cluster.node(0, 1), "SELECT count() FROM vero.events_local"), 1);

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
