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
//!
//! Failures keep the one classification of `vero_clickhouse::Failure`; the callers
//! decide what a class means (retry with backoff, dead-letter, stop).

pub mod caught_up;
pub mod router;
pub mod topology;

pub use router::{Router, Shard, Target};
pub use topology::Topology;

/// The name of a table's per-node Replicated table in the cluster schema
/// (`vero.events` -> `vero.events_local`).
pub fn local(table: &str) -> String {
    format!("{table}_local")
}
