//! How the consumers (event sink, profile consumer) write to a ClickHouse cluster
//! (`clickhouse.cluster`): straight to the `vero.<table>_local` Replicated tables of
//! the shard that owns a row's Kafka partition, one replica at a time with failover,
//! never through the Distributed tables (analysts read those). Why, and what makes it
//! exactly-once per shard: docs/design.md, "Cluster writes".
//!
//! * [`topology::Topology`]: shards and replicas from `system.clusters`, with the
//!   HTTP URL of every replica.
//! * [`router::Router`]: the shard of a partition, the replica written now, failover
//!   and syncing a replica before it is trusted ([`caught_up`]).
//! * [`patience`]: every attempt on a replica bounded by time; a replica that hangs is
//!   failed over, a stalled write is reported from its first second.
//!
//! Failures keep the one classification of `vero_clickhouse::Failure`; the callers
//! decide what a class means (retry with backoff, dead-letter, stop).

pub mod caught_up;
pub mod patience;
pub mod router;
pub mod topology;

pub use patience::{Patience, Stalls};
pub use router::{Router, Shard, Target};
pub use topology::Topology;

/// `[cluster]` of a consumer's settings: where the nodes of `clickhouse.cluster`
/// answer HTTP (see [`topology`]).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    /// HTTP URLs of every node of the cluster; empty = derived from `system.clusters`
    /// host names and the port of `clickhouse.url`. A TOML array, or from the
    /// environment a comma-separated list (`VERO__CLUSTER__NODES=http://a:8123,http://b:8123`),
    /// like the gateway's list settings.
    #[serde(default, deserialize_with = "vero_service::settings::comma_list")]
    pub nodes: Vec<String>,
}

/// The router for `settings.cluster`, or `None` for one server: the topology read
/// from `clickhouse.url`, a client per replica built like the entry client (same
/// login) and passed through `customize` (e.g. the sink's INSERT compression).
pub async fn connect(
    settings: &vero_clickhouse::ClickHouseSettings,
    nodes: &NodeSettings,
    customize: impl Fn(clickhouse::Client) -> clickhouse::Client,
) -> Result<Option<Router>, vero_clickhouse::Failure> {
    let Some(cluster) = settings.cluster.as_deref() else { return Ok(None) };
    let build = |url: &str| {
        let node = vero_clickhouse::ClickHouseSettings { url: url.to_owned(), ..settings.clone() };
        customize(vero_clickhouse::client::build(&node))
    };
    let entry = vero_clickhouse::client::build(settings);
    let topology = Topology::discover(&entry, &settings.url, cluster, &nodes.nodes, build).await?;
    let router = Router::new(topology, build);
    tracing::info!(cluster, shards = router.shards().len(), replicas = %router.describe(), "writing to the ClickHouse cluster shard by shard");
    Ok(Some(router))
}
