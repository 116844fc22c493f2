//! Writing rows to `vero.events`: retry while ClickHouse is unavailable, isolate rows
//! it refuses.
//!
//! * A retryable failure (unreachable, timeout, overload) is retried with backoff,
//!   forever, until it succeeds or shutdown gives up on the batch; the caller keeps
//!   consumption paused meanwhile, so memory stays bounded by one batch.
//! * An operator-fixable failure (authentication, permissions, read-only user, table,
//!   database or column missing: [`Failure::Operator`]) says nothing about the rows. It
//!   is retried with backoff like an outage, forever, with `/readyz` not ready and
//!   `vero_sink_needs_operator` at 1 until an INSERT succeeds again; nothing is split,
//!   dead-lettered or committed meanwhile.
//! * Only an invalid-data failure ([`Failure::Invalid`]) means ClickHouse refuses
//!   something in the batch. The batch is split in halves and each half retried, down
//!   to single rows, so the good rows land and only the refused ones are returned
//!   (they go to the DLQ).
//! * Every attempt first asks ClickHouse which rows must not be inserted (already
//!   written by Kafka position, a client's repeat within the dedup window, a partition
//!   no longer owned: [`crate::once`]) and inserts only the others, while the
//!   partitions are marked in flight for the [`Fence`]. So a retried INSERT whose first
//!   attempt did land inserts nothing the second time, on every server version.
//! * On servers with insert deduplication (22.2+), each INSERT also carries a token
//!   derived from its rows' Kafka partition/offsets.
//! * On a cluster ([`crate::route`]) the rows are split by shard and every shard is
//!   written on its own, concurrently: its check and INSERT go to one replica of that
//!   shard's `_local` tables; a retryable failure moves the next attempt to another
//!   replica, which is synced before its check is trusted. A retried INSERT sends the
//!   same bytes (`inserted_at` is stamped per batch), so a block that did land is
//!   dropped by the Replicated table's block deduplication. A shard that keeps failing
//!   for `retry.shard_park_after_ms` is *parked* ([`Written::parked`]): the write
//!   returns without its rows, the other shards' rows of the batch have landed, and
//!   the pipeline rewinds that shard's partitions and pauses them until the shard
//!   answers again ([`Inserter::answering`]), so one shard down stops only its own
//!   users' events. Not for a batch with user deletes (they must reach every shard)
//!   nor on a single server. `vero_sink_shard_failing{shard}` says which shard fails.
//! * Gray failures are bounded by time: an attempt on a replica that
//!   hangs is abandoned and failed over after about 2 s (`vero_shards::patience`),
//!   a stalled attempt shows in `vero_sink_shard_failing` and `/readyz` from its first
//!   second, and once a shard has failed, the park deadline cuts its attempt in
//!   flight ([`Inserter::write_with_retry`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clickhouse::Client;
use tokio_util::sync::CancellationToken;
use vero_clickhouse::{Failure, ServerVersion};

use crate::config::{RetrySettings, Settings};
use crate::metrics::Metrics;
use crate::once::{self, Fence, Skip};
use crate::route::{At, Destination, Place};
use crate::row::EventRow;
use vero_service::retry::{Class, Retry, Visibility};

/// The batch was given up because shutdown came first; nothing about it is stored.
#[derive(Debug, thiserror::Error)]
#[error("shutdown interrupted the write; the batch will be redelivered")]
pub struct Abandoned;

/// What a write did with its rows.
#[derive(Debug, Default)]
pub struct Written {
    /// `(index, reason)` of every row ClickHouse refused (they go to the DLQ).
    pub refused: Vec<(usize, String)>,
    /// Partitions of the shards that were parked: none of their rows is known to be
    /// written, so none of their offsets may be stored.
    pub parked: BTreeSet<i32>,
}

/// How one INSERT of a group of rows ended.
enum Attempt {
    Done,
    /// ClickHouse refuses the data.
    Refused(String),
    /// The shard kept failing until the park deadline.
    Parked,
}

/// How long a park decision waits for a shard's replicas to answer `SELECT 1`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Inserter {
    destination: Destination,
    /// `retry.shard_park_after_ms`, on a cluster of more than one shard; `None`: a
    /// failing write is retried until it succeeds.
    park_after: Option<Duration>,
    version: ServerVersion,
    retry: RetrySettings,
    timeout: std::time::Duration,
    metrics: Metrics,
    /// Where failures show (`/readyz`, `needs_operator`, failures by class).
    visibility: Visibility,
    fence: Arc<Fence>,
    /// `dedup.window_ms`; 0 = client repeats are not dropped.
    window_ms: i64,
}

impl Inserter {
    /// Rows of `version`'s server to `destination`, with the retry, timeout and dedup
    /// window of `settings`.
    pub fn new(
        destination: Destination,
        version: ServerVersion,
        settings: &Settings,
        metrics: Metrics,
        visibility: Visibility,
        fence: Arc<Fence>,
    ) -> Self {
        let retry = settings.retry.clone();
        let window_ms = i64::try_from(settings.dedup.window_ms).unwrap_or(i64::MAX);
        let park_after = match &destination {
            Destination::Cluster(router) if router.shards().len() > 1 => {
                Some(Duration::from_millis(retry.shard_park_after_ms))
            }
            _ => None,
        };
        let timeout = settings.clickhouse.request_timeout();
        Self { destination, park_after, version, retry, timeout, metrics, visibility, fence, window_ms }
    }

    /// Write `rows`. On a cluster each shard's rows are written concurrently, each
    /// shard on its own; with `may_park`, a shard still failing after
    /// `retry.shard_park_after_ms` is given up for this write ([`Written::parked`]).
    pub async fn write(
        &self,
        rows: &[EventRow],
        may_park: bool,
        cancel: &CancellationToken,
    ) -> Result<Written, Abandoned> {
        let park_at = self.park_after.filter(|_| may_park).map(|after| Instant::now() + after);
        let groups = self.destination.split((0..rows.len()).collect(), |&i| rows[i].kafka_partition);
        let writes = groups.into_iter().map(|(place, indexes)| async move {
            let partitions: BTreeSet<i32> = indexes.iter().map(|&i| rows[i].kafka_partition).collect();
            (place.label(), partitions, self.write_at(place, rows, indexes, park_at, cancel).await)
        });
        let mut written = Written::default();
        for (shard, partitions, outcome) in futures::future::join_all(writes).await {
            match outcome? {
                Some(refused) => written.refused.extend(refused),
                None => {
                    tracing::warn!(
                        %shard,
                        "shard still failing: its partitions are parked (rewound, paused until it answers); \
                         the other shards go on"
                    );
                    written.parked.extend(partitions);
                }
            }
        }
        written.refused.sort_unstable_by_key(|(index, _)| *index);
        Ok(written)
    }

    /// Those of `partitions` whose shard answers a query, each shard probed once, all
    /// concurrently (on a single server: all of them; parking does not happen there).
    pub async fn answering(&self, partitions: Vec<i32>) -> BTreeSet<i32> {
        let Destination::Cluster(router) = &self.destination else { return partitions.into_iter().collect() };
        // Short: the pipeline does not read Kafka while it probes.
        router.answering(partitions, self.timeout.min(Duration::from_secs(2))).await
    }

    /// Write the rows at `indexes` (in offset order per partition) to `place`; `None`
    /// when the place was parked at `park_at`.
    async fn write_at(
        &self,
        place: Place<'_>,
        rows: &[EventRow],
        indexes: Vec<usize>,
        park_at: Option<Instant>,
        cancel: &CancellationToken,
    ) -> Result<Option<Vec<(usize, String)>>, Abandoned> {
        let mut refused = Vec::new();
        // Ranges of `indexes` still to write, processed front to back.
        let mut pending = vec![(0, indexes.len())];
        while let Some((start, end)) = pending.pop() {
            if start == end {
                continue;
            }
            let group: Vec<&EventRow> = indexes[start..end].iter().map(|&i| &rows[i]).collect();
            match self.write_with_retry(place, &group, park_at, cancel).await? {
                Attempt::Done => {}
                Attempt::Parked => return Ok(None),
                Attempt::Refused(reason) if end - start == 1 => refused.push((indexes[start], reason)),
                Attempt::Refused(reason) => {
                    tracing::warn!(rows = end - start, %reason, "ClickHouse refused a batch; splitting it to find the bad rows");
                    let middle = start + (end - start) / 2;
                    pending.push((middle, end));
                    pending.push((start, middle));
                }
            }
        }
        Ok(Some(refused))
    }

    /// One INSERT, retried while the failure is retryable or operator-fixable, until
    /// `park_at` if given. Each attempt is bounded by the shard's patience (a hung
    /// replica is failed over after about 2 s, `vero_shards::patience`). Once the
    /// shard has failed, the park deadline also cuts the attempt in flight and the
    /// backoff: a failing shard never holds the batch's other shards longer. A first
    /// attempt that is only slow (its replica answers pings) is not cut, or a large
    /// batch on a loaded server would be parked and retried forever.
    async fn write_with_retry(
        &self,
        place: Place<'_>,
        rows: &[&EventRow],
        park_at: Option<Instant>,
        cancel: &CancellationToken,
    ) -> Result<Attempt, Abandoned> {
        let shard = place.label();
        let what =
            if shard.is_empty() { "ClickHouse INSERT".to_owned() } else { format!("ClickHouse INSERT on {shard}") };
        let mut retry = Retry::new(&what, self.retry.backoff(), &self.visibility);
        let mut failed = false;
        let mut park_at = park_at;
        loop {
            // Parked only when no replica answers: a shard that answers but fails the
            // write (ZooKeeper gone, a dropped table) is retried with the same bytes,
            // which its block deduplication keeps once; a rewound batch would be new
            // bytes, and a part 18.16 committed with "unknown status" (319) before its
            // views ran would be written twice. A new park window meanwhile.
            if park_at.is_some_and(|at| Instant::now() >= at) {
                if !place.answers(PROBE_TIMEOUT).await {
                    return Ok(Attempt::Parked);
                }
                park_at = self.park_after.map(|after| Instant::now() + after);
            }
            let started = Instant::now();
            let attempt = place.attempt_on(|at| self.insert_new(place, at, rows));
            let outcome = match park_at.filter(|_| failed) {
                Some(deadline) => match tokio::time::timeout_at(deadline.into(), attempt).await {
                    Ok(outcome) => outcome,
                    Err(_) => continue,
                },
                None => attempt.await,
            };
            match outcome {
                Ok((inserted, skipped)) => {
                    let seconds = started.elapsed().as_secs_f64();
                    tracing::debug!(rows = rows.len(), inserted, seconds, %shard, "INSERT done");
                    for skip in skipped {
                        self.metrics.rows_skipped.with_label_values(&[skip.label()]).inc();
                    }
                    if inserted > 0 {
                        self.metrics.insert_seconds.observe(seconds);
                        self.metrics.batches_inserted.inc();
                        self.metrics.rows_inserted.inc_by(inserted as u64);
                    }
                    if !shard.is_empty() {
                        self.metrics.shard_failing.with_label_values(&[&shard]).set(0);
                    }
                    retry.succeeded();
                    return Ok(Attempt::Done);
                }
                Err(failure) => {
                    failed = true;
                    if !shard.is_empty() {
                        self.metrics.shard_failing.with_label_values(&[&shard]).set(1);
                    }
                    retry.failed(Class::from(&failure), &failure.message());
                    if let Failure::Invalid(reason) = failure {
                        return Ok(Attempt::Refused(reason));
                    }
                    self.metrics.insert_retries.inc();
                    let waited = match park_at {
                        Some(at) => tokio::select! {
                            waited = retry.wait(cancel) => waited,
                            _ = tokio::time::sleep_until(at.into()) => true,
                        },
                        None => retry.wait(cancel).await,
                    };
                    if !waited {
                        return Err(Abandoned);
                    }
                }
            }
        }
    }

    /// Insert the rows of `rows` that [`once::decide`] lets through, holding the
    /// partitions in flight meanwhile; returns how many were inserted and why the
    /// others were not. The check and the INSERT go to the same `at`; on a cluster
    /// that replica is synced first when it is not trusted yet ([`Place::prepare`]).
    async fn insert_new(
        &self,
        place: Place<'_>,
        at: At<'_>,
        rows: &[&EventRow],
    ) -> Result<(usize, Vec<Skip>), Failure> {
        let partitions: BTreeSet<i32> = rows.iter().map(|r| r.kafka_partition).collect();
        let writing = self.fence.begin(&partitions);
        // Read before the sync: an assignment after it makes the next attempt sync again.
        let generation = self.fence.generation();
        if place.prepare(&at, generation, self.timeout).await? {
            self.metrics.replica_syncs.inc();
        }
        let tables = self.destination.tables();
        let decisions = once::decide(at.client(), tables, rows, &writing.owned, self.window_ms).await?;
        let keep: Vec<&EventRow> =
            rows.iter().zip(&decisions).filter(|(_, decision)| decision.is_none()).map(|(row, _)| *row).collect();
        if !keep.is_empty() {
            self.insert(at.client(), tables.events, &keep).await?;
        }
        drop(writing);
        Ok((keep.len(), decisions.into_iter().flatten().collect()))
    }

    async fn insert(&self, client: &Client, table: &str, rows: &[&EventRow]) -> Result<(), Failure> {
        let mut insert =
            client.insert_unescaped::<EventRow>(table).await?.with_timeouts(Some(self.timeout), Some(self.timeout));
        if let Destination::Cluster(_) = self.destination {
            // On by default for Replicated tables; stated because the cluster path
            // relies on it: a retried, byte-identical block is dropped by ZooKeeper's
            // block ids, on whichever replica of the shard it arrives.
            insert = insert.with_setting("insert_deduplicate", "1");
        }
        if self.version.supports_insert_deduplication_token() {
            insert = insert.with_setting("insert_deduplication_token", deduplication_token(rows));
        }
        for row in rows {
            insert.write(*row).await?;
        }
        insert.end().await?;
        Ok(())
    }
}

/// Same rows (by Kafka position) => same token. A batch holds contiguous offset ranges
/// per partition, so `partition:first-last` pairs identify it.
pub fn deduplication_token(rows: &[&EventRow]) -> String {
    let mut ranges: std::collections::BTreeMap<i32, (i64, i64, usize)> = Default::default();
    for row in rows {
        let range = ranges.entry(row.kafka_partition).or_insert((row.kafka_offset, row.kafka_offset, 0));
        range.0 = range.0.min(row.kafka_offset);
        range.1 = range.1.max(row.kafka_offset);
        range.2 += 1;
    }
    let parts: Vec<String> = ranges.iter().map(|(p, (first, last, n))| format!("{p}:{first}-{last}x{n}")).collect();
    format!("vero-events:{}", parts.join(","))
}
