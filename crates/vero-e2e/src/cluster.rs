//! The pipeline on a ClickHouse cluster: both consumers configured with
//! `clickhouse.cluster` and the HTTP URL of every node, the cluster a real one from
//! `vero_testkit` (ZooKeeper and `shards × replicas` server processes).

use vero_testkit::clickhouse::ClickHouseServer;
use vero_testkit::clickhouse_cluster::ClickHouseCluster;

use crate::Pipeline;

/// Where the consumers write: `url` (`clickhouse.url`), and on a cluster its name and
/// every node's HTTP URL.
#[derive(Debug, Clone)]
pub struct Consumers {
    pub url: String,
    pub cluster: Option<String>,
    pub nodes: Vec<String>,
}

impl Consumers {
    pub fn single(url: String) -> Self {
        Self { url, cluster: None, nodes: Vec::new() }
    }

    /// Point a consumer's settings at this.
    pub fn configure(
        &self,
        clickhouse: &mut vero_clickhouse::ClickHouseSettings,
        nodes: &mut vero_shards::NodeSettings,
    ) {
        clickhouse.url.clone_from(&self.url);
        clickhouse.cluster.clone_from(&self.cluster);
        nodes.nodes.clone_from(&self.nodes);
    }
}

/// Text queries for the tests' checks, on one server or on the cluster.
pub trait Sql {
    fn sql(&self, sql: &str) -> anyhow::Result<String>;
}

impl Sql for ClickHouseServer {
    fn sql(&self, sql: &str) -> anyhow::Result<String> {
        self.query(sql)
    }
}

/// On the first node that answers (nodes may be down in fault tests).
impl Sql for ClickHouseCluster {
    fn sql(&self, sql: &str) -> anyhow::Result<String> {
        let mut last = None;
        for node in self.nodes() {
            match node.query(sql) {
                Ok(answer) => return Ok(answer),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("the cluster has no nodes")))
    }
}

/// Start a `shards × replicas` cluster and the pipeline on it (`partitions` partitions;
/// `clickhouse.url` is the first node).
pub async fn start(
    shards: usize,
    replicas: usize,
    partitions: i32,
    sink_overrides: &[(&str, &str)],
) -> anyhow::Result<Pipeline<ClickHouseCluster>> {
    let cluster = tokio::task::spawn_blocking(move || ClickHouseCluster::start(shards, replicas)).await??;
    let nodes: Vec<String> = cluster.http_urls().into_iter().flatten().collect();
    let at = Consumers { url: nodes[0].clone(), cluster: Some(cluster.name().to_owned()), nodes };
    Pipeline::start_on(cluster, &at, partitions, sink_overrides).await
}
