//! Where the sink's writes go: the one server (`vero.events` and friends), or, with
//! `clickhouse.cluster`, the `_local` tables of the shard that owns each row's Kafka
//! partition (`vero_shards`), one replica at a time with failover.
//!
//! The inserter and the eraser see a [`Place`] (the server, or one shard) and an [`At`]
//! (the server, or the replica an attempt goes to), so the single-node and the cluster
//! path run the same code: the exactly-once check and the INSERT of one group of rows
//! always go to the same place. Why writes go to the shards directly and not through
//! the Distributed tables: docs/design.md, "Cluster writes".

use std::sync::Arc;
use std::time::Duration;

use clickhouse::Client;
use vero_clickhouse::Failure;
use vero_shards::{Router, Shard, Target};

/// The tables a write touches.
#[derive(Debug, Clone, Copy)]
pub struct Tables {
    pub events: &'static str,
    pub written: &'static str,
    pub request_keys: &'static str,
    pub aliases: &'static str,
}

/// The single-node schema's tables (and the Distributed tables of the cluster schema).
pub const SINGLE: Tables = Tables {
    events: "vero.events",
    written: "vero.events_written",
    request_keys: "vero.events_request_keys",
    aliases: "vero.user_aliases",
};

/// The per-node Replicated tables of the cluster schema.
pub const LOCAL: Tables = Tables {
    events: "vero.events_local",
    written: "vero.events_written_local",
    request_keys: "vero.events_request_keys_local",
    aliases: "vero.user_aliases_local",
};

/// What a replica must have caught up on before the exactly-once check may be read
/// there: the tables the check reads, and the events themselves.
const SYNCED: [&str; 3] = [LOCAL.written, LOCAL.request_keys, LOCAL.events];

/// The one server, or the cluster's shards.
#[derive(Clone)]
pub enum Destination {
    Single(Box<Client>),
    Cluster(Arc<Router>),
}

/// One group of writes: the server, or one shard.
#[derive(Clone, Copy)]
pub enum Place<'a> {
    Single(&'a Client),
    Shard(&'a Shard),
}

/// Where one attempt goes: the server, or one replica of a shard.
#[derive(Clone, Copy)]
pub enum At<'a> {
    Single(&'a Client),
    Replica(Target<'a>),
}

impl Destination {
    pub fn tables(&self) -> &'static Tables {
        match self {
            Self::Single(_) => &SINGLE,
            Self::Cluster(_) => &LOCAL,
        }
    }

    /// `items` by place: everything at the server, or grouped by the shard of each
    /// item's Kafka `partition` (shard order, items in their order).
    pub fn split<T>(&self, items: Vec<T>, partition: impl Fn(&T) -> i32) -> Vec<(Place<'_>, Vec<T>)> {
        match self {
            Self::Single(_) if items.is_empty() => Vec::new(),
            Self::Single(client) => vec![(Place::Single(client), items)],
            Self::Cluster(router) => {
                router.split(items, partition).into_iter().map(|(shard, items)| (Place::Shard(shard), items)).collect()
            }
        }
    }

    /// Where reads of the Distributed tables go: the server, or the first shard (any
    /// node of a cluster reads every shard through them; the shard's replicas give the
    /// failover).
    pub fn reader(&self) -> Place<'_> {
        match self {
            Self::Single(client) => Place::Single(client),
            Self::Cluster(router) => Place::Shard(&router.shards()[0]),
        }
    }

    /// Every place a mutation must reach: the server, or every shard.
    pub fn everywhere(&self) -> Vec<Place<'_>> {
        match self {
            Self::Single(client) => vec![Place::Single(client)],
            Self::Cluster(router) => router.shards().iter().map(Place::Shard).collect(),
        }
    }
}

impl<'a> Place<'a> {
    /// The shard's number, or `""` for the one server (a metric label).
    pub fn label(&self) -> String {
        match self {
            Self::Single(_) => String::new(),
            Self::Shard(shard) => shard.label(),
        }
    }

    /// Whether any replica here answers `SELECT 1` within `timeout` (the one server:
    /// always, it is never parked).
    pub async fn answers(&self, timeout: Duration) -> bool {
        match self {
            Self::Single(_) => true,
            Self::Shard(shard) => shard.answers(timeout).await,
        }
    }

    /// Make `at` safe to decide on: on a cluster, a replica not synced for the
    /// ownership `generation` is synced first (`vero_shards::router`). Returns whether
    /// a sync ran.
    pub async fn prepare(&self, at: &At<'a>, generation: u64, timeout: Duration) -> Result<bool, Failure> {
        let (Self::Shard(shard), At::Replica(target)) = (self, at) else { return Ok(false) };
        if shard.is_synced(target, generation) {
            return Ok(false);
        }
        shard.sync(target, &SYNCED, timeout, generation).await?;
        tracing::info!(shard = shard.num, replica = %target.url(), "replica synced; its written offsets are trusted now");
        Ok(true)
    }

    /// One attempt of `operation` here; a retryable failure on a cluster moves the
    /// shard to its next replica.
    pub async fn attempt<T, Fut>(&self, operation: impl FnOnce(&'a Client) -> Fut) -> Result<T, Failure>
    where
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        self.attempt_on(|at| operation(at.client())).await
    }

    /// One attempt of `operation` at where the next attempt goes; on a cluster bounded
    /// by the shard's patience (a hung replica ends it), and a retryable failure moves
    /// the shard to its next replica (`vero_shards::Shard::attempt_on`).
    pub async fn attempt_on<T, Fut>(&self, operation: impl FnOnce(At<'a>) -> Fut) -> Result<T, Failure>
    where
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        match *self {
            Self::Single(client) => operation(At::Single(client)).await,
            Self::Shard(shard) => shard.attempt_on(|target| operation(At::Replica(target))).await,
        }
    }
}

impl<'a> At<'a> {
    pub fn client(&self) -> &'a Client {
        match self {
            Self::Single(client) => client,
            Self::Replica(target) => target.client(),
        }
    }
}
