//! Where the profile consumer's ClickHouse writes go: the one server
//! (`vero.profiles`, `vero.user_aliases`), or with `clickhouse.cluster` the `_local`
//! tables of the shard that owns each row's Kafka partition (`vero_shards`: shard =
//! partition % shards, one replica at a time, a retryable failure moves the shard's
//! next attempt to another replica), and erasures on every shard. A user's events and
//! profile share a partition, so they share a shard.
//!
//! No exactly-once check is needed here, unlike the event sink: every write is
//! idempotent (profile rows collapse by version, alias rows by key, a mutation erases
//! the same rows again). So the shards of one write run concurrently, and a retry
//! sends the whole write again, also to shards that took it: those rows collapse. A
//! shard that is down fails the write (retryable, its number in the message) while the
//! others' rows land; the caller retries with backoff, and parks the shard's
//! partitions once it kept failing (`crate::consume::park`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use clickhouse::Client;
use prometheus::IntGaugeVec;
use vero_clickhouse::Failure;
use vero_shards::{Router, Shard};

use super::rows::{self as tables, AliasRow, Erasure, ProfileRow};
use crate::error::WriteError;

/// The profiles table (not the profiles topic, `vero_model::topics::PROFILES`):
/// `(single-node table, the cluster schema's per-node table)`.
const PROFILES_TABLE: (&str, &str) = ("vero.profiles", "vero.profiles_local");
/// The alias table, in the same shape.
const ALIASES_TABLE: (&str, &str) = ("vero.user_aliases", "vero.user_aliases_local");

/// How long a probe of a parked shard may take: short, Kafka is not polled meanwhile.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub enum Destination {
    Single(Box<Client>),
    /// The shards, and `vero_profiles_shard_failing{shard}` (1 while a shard's writes
    /// fail as unavailable or operator-fixable).
    Cluster(Arc<Router>, IntGaugeVec),
}

impl Destination {
    /// Insert `rows` (each with its Kafka partition).
    pub async fn insert_profiles(&self, rows: &[(i32, &ProfileRow)]) -> Result<(), WriteError> {
        let table = self.table(PROFILES_TABLE);
        self.by_shard(
            rows,
            |(partition, _)| *partition,
            |client, group| async move {
                let rows: Vec<&ProfileRow> = group.iter().map(|(_, row)| *row).collect();
                tables::insert_profiles(client, table, &rows).await
            },
        )
        .await
    }

    pub async fn insert_aliases(&self, rows: &[AliasRow]) -> Result<(), WriteError> {
        let table = self.table(ALIASES_TABLE);
        self.by_shard(
            rows,
            |alias| alias.kafka_partition,
            |client, group| async move { tables::insert_aliases(client, table, &group).await },
        )
        .await
    }

    /// The erase mutation of `erasures`, on every shard (a profile's rows live on its
    /// partition's shard; after a change of the partition count they may be on another).
    pub async fn erase(&self, erasures: &[&Erasure]) -> Result<(), WriteError> {
        match self {
            Self::Single(client) => Ok(tables::erase(client, PROFILES_TABLE.0, erasures).await?),
            Self::Cluster(router, failing) => {
                let runs = router
                    .shards()
                    .iter()
                    .map(|shard| on_shard(shard, failing, |c| tables::erase(c, PROFILES_TABLE.1, erasures)));
                first_error(futures::future::join_all(runs).await)
            }
        }
    }

    /// Whether a shard that keeps failing may be parked: on a cluster of more than
    /// one shard (on one server, parking everything is what waiting already does).
    pub fn may_park(&self) -> bool {
        matches!(self, Self::Cluster(router, _) if router.shards().len() > 1)
    }

    /// Whether partitions `a` and `b` are written to the same shard (on one server: yes).
    pub fn same_shard(&self, a: i32, b: i32) -> bool {
        match self {
            Self::Single(_) => true,
            Self::Cluster(router, _) => router.shard_of(a).num == router.shard_of(b).num,
        }
    }

    /// Those of `partitions` whose shard answers a query, each shard probed once, all
    /// concurrently, [`PROBE_TIMEOUT`] each (on one server: all of them).
    pub async fn answering(&self, partitions: BTreeSet<i32>) -> BTreeSet<i32> {
        match self {
            Self::Single(_) => partitions,
            Self::Cluster(router, _) => router.answering(partitions, PROBE_TIMEOUT).await,
        }
    }

    /// The single-node table, or on a cluster its `_local` table.
    fn table(&self, (single, local): (&'static str, &'static str)) -> &'static str {
        match self {
            Self::Single(_) => single,
            Self::Cluster(..) => local,
        }
    }

    /// Run `write` with all of `items` at the server, or with each shard's items at
    /// that shard, concurrently.
    async fn by_shard<'a, T, Fut>(
        &'a self,
        items: &'a [T],
        partition: impl Fn(&T) -> i32,
        write: impl Fn(&'a Client, Vec<&'a T>) -> Fut + Clone,
    ) -> Result<(), WriteError>
    where
        Fut: std::future::Future<Output = Result<(), Failure>> + 'a,
    {
        if items.is_empty() {
            return Ok(());
        }
        match self {
            Self::Single(client) => Ok(write(client, items.iter().collect()).await?),
            Self::Cluster(router, failing) => {
                let runs = router.split(items.iter(), |item| partition(item)).into_iter().map(|(shard, group)| {
                    let write = write.clone();
                    on_shard(shard, failing, move |client| write(client, group))
                });
                first_error(futures::future::join_all(runs).await)
            }
        }
    }
}

/// One attempt at `shard` (failing over on a retryable failure), noted in `failing`;
/// the failure names the shard.
async fn on_shard<'a, Fut>(
    shard: &'a Shard,
    failing: &IntGaugeVec,
    write: impl FnOnce(&'a Client) -> Fut,
) -> Result<(), Failure>
where
    Fut: std::future::Future<Output = Result<(), Failure>> + 'a,
{
    let url = shard.target().url();
    let outcome = shard.attempt(write).await;
    // A refused row says nothing about the shard's health.
    let down = matches!(outcome, Err(Failure::Retryable(_) | Failure::Operator(_)));
    failing.with_label_values(&[&shard.num.to_string()]).set(i64::from(down));
    outcome.map_err(|failure| {
        let message = format!("shard {} ({url}): {}", shard.num, failure.message());
        match failure {
            Failure::Retryable(_) => Failure::Retryable(message),
            Failure::Operator(_) => Failure::Operator(message),
            Failure::Invalid(_) => Failure::Invalid(message),
        }
    })
}

fn first_error(results: Vec<Result<(), Failure>>) -> Result<(), WriteError> {
    Ok(results.into_iter().collect::<Result<Vec<()>, Failure>>().map(|_| ())?)
}
