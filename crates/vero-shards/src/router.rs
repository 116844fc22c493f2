//! Writing to a shard directly: which shard a Kafka partition's rows go to, which
//! replica of it is written, failing over to another, and making a replica's reads
//! trustworthy after the writer switched to it.
//!
//! * **Shard of a row** = `kafka_partition % shard count`, shards in `shard_num`
//!   order ([`Router::shard_of`]). The topic is keyed by user id, so a user's events
//!   and profile sit on one partition, hence on one shard.
//! * **One replica at a time** per shard ([`Shard::target`]): the first replica while
//!   it works. A retryable failure (unreachable, timeout, read-only replica) moves the
//!   shard to its next replica for the next attempt ([`Shard::failed`]); other
//!   failures say nothing about the replica and keep it. An attempt is bounded by
//!   time ([`crate::patience`]): a replica that hangs is failed over like one that
//!   refuses, and a stalled attempt is reported from its first second.
//! * **Synced before trusted** ([`Shard::sync`]): a replica may not have fetched the
//!   parts another replica committed (the writer wrote there before a failover, or
//!   another instance did before a rebalance). [`crate::caught_up`] waits until the
//!   replica has every part committed in ZooKeeper up to now. The caller syncs before
//!   it reads anything it decides on from a replica not synced for the current
//!   `generation` (a number the caller bumps whenever the partitions it owns change),
//!   and after every switch. The reasoning is in docs/design.md, "Cluster writes".

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use clickhouse::Client;
use vero_clickhouse::Failure;

use crate::patience::{self, Patience, Stalls};
use crate::topology::{Replica, Topology};

/// One replica with its client.
pub struct Node {
    pub replica: Replica,
    pub client: Client,
}

/// One shard: its replicas and which of them is written now.
pub struct Shard {
    /// 0-based position in `shard_num` order: partition `p` goes to shard `p % count`.
    pub index: usize,
    /// `shard_num` in `system.clusters` (for logs and metric labels).
    pub num: u32,
    nodes: Vec<Node>,
    state: Mutex<State>,
    patience: Patience,
    /// Where stalled attempts are reported; `None` in tests and tools.
    stalls: Option<Stalls>,
}

#[derive(Debug, Default)]
struct State {
    /// Index into `nodes` of the replica written now.
    current: usize,
    /// `(replica, generation)` the last successful sync was for.
    synced: Option<(usize, u64)>,
}

/// The replica an attempt goes to.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub shard: &'a Shard,
    replica: usize,
}

impl<'a> Target<'a> {
    pub fn client(&self) -> &'a Client {
        &self.shard.nodes[self.replica].client
    }

    pub fn url(&self) -> &'a str {
        &self.shard.nodes[self.replica].replica.url
    }
}

impl Shard {
    /// The replica to write now.
    pub fn target(&self) -> Target<'_> {
        Target { shard: self, replica: self.state.lock().expect("shard lock").current }
    }

    /// The shard's label for metrics and logs.
    pub fn label(&self) -> String {
        self.num.to_string()
    }

    /// Whether `target` was synced for `generation` (and nothing switched since).
    pub fn is_synced(&self, target: &Target<'_>, generation: u64) -> bool {
        self.state.lock().expect("shard lock").synced == Some((target.replica, generation))
    }

    /// Wait until `target` is caught up on every table of `tables`
    /// ([`crate::caught_up`]), at most `timeout` (a replica that needs a part only a
    /// replica that is down holds stays behind: retryable). Marks `target` synced for
    /// `generation` on success.
    pub async fn sync(
        &self,
        target: &Target<'_>,
        tables: &[&str],
        timeout: Duration,
        generation: u64,
    ) -> Result<(), Failure> {
        crate::caught_up::wait(target.client(), tables, timeout).await?;
        let mut state = self.state.lock().expect("shard lock");
        if state.current == target.replica {
            state.synced = Some((target.replica, generation));
        }
        Ok(())
    }

    /// Note that an attempt on `target` failed: a retryable failure moves the shard to
    /// its next replica (unsynced); returns the URL the next attempt goes to when it
    /// switched. Other failures keep the replica.
    pub fn failed(&self, target: &Target<'_>, failure: &Failure) -> Option<&str> {
        if !failure.is_retryable() || self.nodes.len() < 2 {
            return None;
        }
        let mut state = self.state.lock().expect("shard lock");
        if state.current != target.replica {
            // Another task switched already.
            return None;
        }
        state.current = (state.current + 1) % self.nodes.len();
        state.synced = None;
        let next = &self.nodes[state.current].replica.url;
        tracing::warn!(
            shard = self.num,
            failed = %target.url(),
            next = %next,
            reason = %failure.message(),
            "ClickHouse replica failing; the shard's next attempt goes to another replica"
        );
        Some(next)
    }

    /// One attempt of `operation` on the current replica's client (see
    /// [`Shard::attempt_on`]).
    pub async fn attempt<'a, T, Fut>(&'a self, operation: impl FnOnce(&'a Client) -> Fut) -> Result<T, Failure>
    where
        Fut: Future<Output = Result<T, Failure>>,
    {
        self.attempt_on(|target| operation(target.client())).await
    }

    /// One attempt of `operation` on the current replica, bounded by the shard's
    /// [`Patience`] (a replica that hangs ends it as retryable); a retryable failure
    /// switches replicas for the next attempt (see [`Shard::failed`]).
    pub async fn attempt_on<'a, T, Fut>(&'a self, operation: impl FnOnce(Target<'a>) -> Fut) -> Result<T, Failure>
    where
        Fut: Future<Output = Result<T, Failure>>,
    {
        let target = self.target();
        let on = (self.num, target.url(), target.client());
        let outcome = patience::watch(&self.patience, self.stalls.as_ref(), on, operation(target)).await;
        if let Err(failure) = &outcome {
            self.failed(&target, failure);
        }
        outcome
    }

    /// Whether any replica answers `SELECT 1` within `timeout`, all asked at once; the
    /// shard's next attempt goes to the first that did when the current one did not.
    pub async fn answers(&self, timeout: Duration) -> bool {
        let probes = self.nodes.iter().map(|node| async move {
            matches!(tokio::time::timeout(timeout, node.client.query("SELECT 1").execute()).await, Ok(Ok(())))
        });
        let answered = futures::future::join_all(probes).await;
        let mut state = self.state.lock().expect("shard lock");
        if answered[state.current] {
            return true;
        }
        let Some(first) = answered.iter().position(|&a| a) else { return false };
        state.current = first;
        state.synced = None;
        true
    }

    pub fn replicas(&self) -> impl Iterator<Item = &Replica> {
        self.nodes.iter().map(|n| &n.replica)
    }
}

/// Every shard of the cluster.
pub struct Router {
    pub cluster: String,
    shards: Vec<Shard>,
}

impl Router {
    /// Clients for every replica of `topology`, built by `connect` from a URL.
    pub fn new(topology: Topology, connect: impl Fn(&str) -> Client) -> Self {
        let shards = topology
            .shards
            .into_iter()
            .enumerate()
            .map(|(index, replicas)| Shard {
                index,
                num: replicas[0].shard_num,
                nodes: replicas.into_iter().map(|replica| Node { client: connect(&replica.url), replica }).collect(),
                state: Mutex::default(),
                patience: Patience::new(Duration::from_secs(5), Duration::from_secs(30)),
                stalls: None,
            })
            .collect();
        Self { cluster: topology.cluster, shards }
    }

    /// Bound every shard's attempts by `patience` and report their stalls to `stalls`.
    pub fn with_patience(mut self, patience: Patience, stalls: Option<Stalls>) -> Self {
        for shard in &mut self.shards {
            shard.patience = patience;
            shard.stalls.clone_from(&stalls);
        }
        self
    }

    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// The shard a Kafka partition's rows live on.
    pub fn shard_of(&self, partition: i32) -> &Shard {
        let count = i32::try_from(self.shards.len()).unwrap_or(i32::MAX);
        &self.shards[partition.rem_euclid(count) as usize]
    }

    /// `items` grouped by shard (shard order, items in their order), empty groups left
    /// out; `partition` tells an item's Kafka partition.
    pub fn split<T>(&self, items: impl IntoIterator<Item = T>, partition: impl Fn(&T) -> i32) -> Vec<(&Shard, Vec<T>)> {
        let mut groups: Vec<Vec<T>> = self.shards.iter().map(|_| Vec::new()).collect();
        for item in items {
            let index = self.shard_of(partition(&item)).index;
            groups[index].push(item);
        }
        self.shards.iter().zip(groups).filter(|(_, items)| !items.is_empty()).collect()
    }

    /// Those of `partitions` whose shard answers `SELECT 1` within `timeout` on any
    /// of its replicas: every replica of every shard probed at once. A shard is down
    /// (parked) only when no replica answers, and its parked partitions resume as soon
    /// as one does.
    pub async fn answering(&self, partitions: impl IntoIterator<Item = i32>, timeout: Duration) -> BTreeSet<i32> {
        let probes = self.split(partitions, |&p| p).into_iter().map(|(shard, partitions)| async move {
            if shard.answers(timeout).await {
                partitions
            } else {
                Vec::new()
            }
        });
        futures::future::join_all(probes).await.into_iter().flatten().collect()
    }

    /// A one-line description for the start log: `1: a, b; 2: c, d`.
    pub fn describe(&self) -> String {
        self.shards
            .iter()
            .map(|s| format!("{}: {}", s.num, s.replicas().map(|r| r.url.as_str()).collect::<Vec<_>>().join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(shards: u32, replicas: u32) -> Router {
        let shards = (1..=shards)
            .map(|s| (1..=replicas).map(|r| Replica { shard_num: s, url: format!("http://h{s}{r}:8123") }).collect())
            .collect();
        Router::new(Topology { cluster: "c".into(), shards }, |url| Client::default().with_url(url))
    }

    #[test]
    fn partitions_map_to_shards_by_modulo_and_groups_keep_order() {
        let router = router(2, 2);
        assert_eq!([0, 1, 2, 3, 5].map(|p| router.shard_of(p).num), [1, 2, 1, 2, 2]);
        let groups = router.split([(3, 'a'), (0, 'b'), (1, 'c'), (2, 'd')], |(p, _)| *p);
        let shown: Vec<(u32, Vec<char>)> =
            groups.into_iter().map(|(s, items)| (s.num, items.into_iter().map(|(_, c)| c).collect())).collect();
        assert_eq!(shown, vec![(1, vec!['b', 'd']), (2, vec!['a', 'c'])]);
        assert_eq!(router.split(Vec::<i32>::new(), |p| *p).len(), 0);
    }

    #[test]
    fn a_retryable_failure_moves_to_the_next_replica_and_forgets_the_sync() {
        let router = router(2, 2);
        let shard = router.shard_of(0);
        let first = shard.target();
        assert_eq!(first.url(), "http://h11:8123");
        shard.state.lock().unwrap().synced = Some((0, 7));
        assert!(shard.is_synced(&first, 7) && !shard.is_synced(&first, 8));
        assert_eq!(shard.failed(&first, &Failure::Invalid("bad row".into())), None, "data errors keep the replica");
        assert_eq!(shard.failed(&first, &Failure::Retryable("down".into())), Some("http://h12:8123"));
        let second = shard.target();
        assert_eq!(second.url(), "http://h12:8123");
        assert!(!shard.is_synced(&second, 7), "a new replica must be synced before it is trusted");
        assert_eq!(shard.failed(&first, &Failure::Retryable("late".into())), None, "stale failures do not switch");
        assert_eq!(shard.failed(&second, &Failure::Retryable("down".into())), Some("http://h11:8123"));
        assert_eq!(router.shard_of(1).target().url(), "http://h21:8123", "other shards are untouched");
    }
}
