//! What the cluster writes rely on, checked on a real 2×2 ClickHouse 18.16 cluster
//! (ZooKeeper and four server processes from `vero_testkit`): discovery with listed
//! node URLs (`is_local`), waiting for a replica to catch up ([`vero_shards::caught_up`]), timing out
//! (retryable) while the only replica holding a part is down, and block deduplication
//! of a byte-identical INSERT sent to the *other* replica after a failover.

use std::time::Duration;

use clickhouse::Client;
use vero_shards::{Router, Topology};
use vero_testkit::clickhouse_cluster::ClickHouseCluster;

fn connect(url: &str) -> Client {
    Client::default().with_url(url).with_user("default").with_validation(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_sync_and_block_deduplication_on_a_real_cluster() {
    let mut cluster = tokio::task::spawn_blocking(|| ClickHouseCluster::start(2, 2)).await.unwrap().unwrap();
    let urls = cluster.http_urls();
    let listed: Vec<String> = urls.iter().flatten().rev().cloned().collect();
    let entry = connect(&urls[1][1]);
    let topology = Topology::discover(&entry, &urls[1][1], cluster.name(), &listed, connect).await.unwrap();
    let found: Vec<Vec<String>> = topology.shards.iter().map(|s| s.iter().map(|r| r.url.clone()).collect()).collect();
    let reversed: Vec<Vec<String>> = urls.iter().map(|s| s.iter().rev().cloned().collect()).collect();
    assert_eq!(found, reversed, "every listed node is placed in its shard, replicas in the order listed");
    let unknown = Topology::discover(&entry, &urls[0][0], "no_such_cluster", &[], connect).await.unwrap_err();
    assert_eq!(unknown.class(), "operator", "{unknown}");
    let partial = Topology::discover(&entry, &urls[0][0], cluster.name(), &listed[..3], connect).await.unwrap_err();
    assert_eq!(partial.class(), "operator", "{partial}");

    let ddl = "CREATE TABLE default.t (k UInt64, v String) \
               ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/t', '{replica}') ORDER BY k";
    tokio::task::block_in_place(|| cluster.query_each(ddl)).unwrap();
    let router = Router::new(topology, connect);
    let shard = router.shard_of(0);
    let first = shard.target();
    assert_eq!(first.url(), urls[0][1], "replicas in the order listed");
    let insert = |client: &Client| client.query("INSERT INTO default.t VALUES (1, 'a'), (2, 'b')").execute();

    // The other replica is down while the first takes a block: the part exists only there.
    tokio::task::block_in_place(|| cluster.kill_node(0, 0)).unwrap();
    insert(first.client()).await.unwrap();
    tokio::task::block_in_place(|| cluster.kill_node(0, 1)).unwrap();
    tokio::task::block_in_place(|| cluster.restart_node(0, 0)).unwrap();
    let failed = shard.attempt(|c| async move { c.query("SELECT 1").execute().await.map_err(Into::into) }).await;
    assert!(failed.is_err(), "replica 1 is down");
    let second = shard.target();
    assert_eq!(second.url(), urls[0][0], "the failure moved the shard to the other replica");
    let sync = shard.sync(&second, &["default.t"], Duration::from_secs(2), 1).await.unwrap_err();
    assert_eq!(sync.class(), "retryable", "cannot fetch from the dead replica: {sync}");
    assert!(!shard.is_synced(&second, 1));
    // The same block again, on the other replica: ZooKeeper knows its id, it is dropped.
    insert(second.client()).await.unwrap();
    tokio::task::block_in_place(|| cluster.restart_node(0, 1)).unwrap();
    shard.sync(&second, &["default.t"], Duration::from_secs(30), 1).await.unwrap();
    assert!(shard.is_synced(&second, 1));
    let count = second.client().query("SELECT count() FROM default.t").fetch_one::<u64>().await.unwrap();
    assert_eq!(count, 2, "the retried block was deduplicated and the first one fetched");
}
