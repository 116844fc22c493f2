//! Writing a batch's effects, in an order that keeps every step safe to repeat:
//! 1. handoffs to Kafka (a repeated handoff is recognised by the receiver through
//!    `merged_from`);
//! 2. profile rows, alias rows and erasures to ClickHouse (rows collapse by version);
//! 3. the profiles' final values, or tombstones, to the profiles topic;
//! 4. dead letters, last: a partition fenced or parked before then sends none, and
//!    its records are read again.
//!
//! Retryable and operator-fixable failures (see [`WriteError`]) repeat the steps not
//! done yet with backoff until they succeed or the service stops; on a cluster of
//! several shards, a shard that kept failing for `retry.shard_park_after_ms` is left
//! out instead and its partitions parked ([`super::park`]). Bad records
//! (docs/operations.md, "Failure policy") are dead-lettered and the rest goes on:
//! * a profile whose record would exceed `kafka.max_profile_bytes`, or that Kafka
//!   refuses as too large: the batch's records that changed it are dead-lettered, the
//!   profile is not written, and its partition is read back from the profiles topic
//!   before its next record (so it continues from the profile as last written);
//! * an erasure ClickHouse refuses (an id so long that the mutation exceeds
//!   `max_query_size`, code 62): erasures go in mutations of at most
//!   [`ERASE_CHUNK_BYTES`], a refused mutation is split down to the refused erasure,
//!   and its delete (or reidentify) is dead-lettered;
//! * a profile row ClickHouse refuses for good (any server error that is neither
//!   retryable nor operator-fixable, `vero_clickhouse::Failure::Invalid`): the rows
//!   are split in halves down to the refused ones; the batch's records that changed
//!   such a profile are dead-lettered with the server's reason, its profiles-topic
//!   record is not sent and its partition is read back from the profiles topic (it
//!   continues as last written). A dropped table, a read-only user or a rotated
//!   password is operator-fixable instead: retried, never dead-lettered;
//! * a handoff Kafka refuses: its reidentify is dead-lettered;
//! * a dead letter Kafka refuses (too large for the DLQ topic) is sent once more
//!   without its value (the headers still point at the source record); refused
//!   again, it is logged and dropped. Nothing is retried that cannot succeed.
//!
//! Fencing: right before every step (so right before each produce), whatever belongs
//! to a partition revoked since the batch was collected is dropped ([`Ownership`]); the
//! new owner writes those profiles from its own restore. Before the first step and
//! before the profiles-topic records, partitions another member wrote since this one
//! last knew are left out too ([`super::changelog`], `Rendered::moved`). Offsets are stored by the
//! caller only after this returned `Ok`, and never for fenced partitions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use rdkafka::message::OwnedMessage;
use rdkafka::Message;

use crate::config::RetrySettings;
use crate::consume::apply::{dead_letter, Effects, Source, Topics};
use crate::destination::rows::{AliasRow, Erasure, ProfileRow, ERASE_STATEMENT_BYTES};
use crate::destination::Destination;
use crate::error::WriteError;
use crate::kafka::producer::{Outgoing, Producer};
use crate::metrics::Metrics;
use crate::profile::{ProfileKey, ProfileState};
use crate::state::ProfileStates;
use vero_model::profile::RECENT_REQUESTS_MAX_BYTES;
use vero_service::dead_letter::{DeadLetter, DeadLetters, Delivered};
use vero_service::partitions::Rebalances;
use vero_service::retry::{Retry, Visibility};

/// Largest erase mutation sent at once (its conditions), a quarter of ClickHouse's
/// default `max_query_size` (262144): many deletes in one batch never add up to a
/// refused statement, and only an erasure that is too large on its own is refused.
pub const ERASE_CHUNK_BYTES: usize = 65_536;

/// Which partitions this instance may still write for: not revoked since the batch in
/// hand was collected. Reads the rebalance callback's record directly, so a revoke
/// served a moment ago counts before the service loop has looked at it.
#[derive(Clone)]
pub struct Ownership {
    pub rebalances: Arc<Rebalances>,
    /// Partitions revoked (and already taken from `changes` by the loop) since the
    /// batch in hand was collected.
    pub revoked: Arc<Mutex<BTreeSet<i32>>>,
}

impl Ownership {
    /// Keep everything of `partitions` out of the write in hand and its offsets
    /// unstored, as if revoked (a parked shard's partitions).
    pub fn exclude(&self, partitions: &BTreeSet<i32>) {
        self.revoked.lock().expect("ownership lock").extend(partitions);
    }

    /// Whether the state of `partition` (events and handoff topics) is still ours.
    pub fn holds(&self, partition: i32) -> bool {
        if self.revoked.lock().expect("ownership lock").contains(&partition) {
            return false;
        }
        !self.rebalances.is_revoked(partition)
    }
}

/// A batch's effects, rendered for writing; every step removes what it wrote.
#[derive(Default)]
pub struct Rendered {
    messages: Vec<(Source, Outgoing)>,
    rows: Vec<(i32, ProfileRow)>,
    aliases: Vec<AliasRow>,
    erasures: Vec<(Source, Erasure)>,
    /// Profiles-topic records, with the profile each is of.
    records: Vec<(i32, ProfileKey, Outgoing)>,
    /// The records of the batch that changed each profile.
    sources: BTreeMap<(i32, ProfileKey), Vec<Source>>,
    /// Dead letters of bad records (found while applying or while writing), sent at
    /// the end of an attempt.
    letters: Vec<DeadLetter>,
    /// Partitions with a profile that was not written: restored again before use.
    pub reload: BTreeSet<i32>,
    /// Partitions whose profiles topic another member wrote ([`super::changelog`]):
    /// left out of the write; the caller rewinds them.
    pub moved: BTreeSet<i32>,
    /// Profile rows written so far.
    written: usize,
    /// Every profiles-topic value of the batch (`None` a tombstone), for the local
    /// store once the write is done ([`ProfileStates::settle`]).
    pub for_state: Vec<(i32, ProfileKey, Option<Vec<u8>>)>,
}

/// Why a batch was not written.
#[derive(Debug, thiserror::Error)]
pub enum NotWritten {
    #[error("shutdown while retrying")]
    Shutdown,
    #[error(transparent)]
    Rejected(WriteError),
}

pub struct Writer {
    /// ClickHouse: the one server, or the shards of a cluster.
    pub destination: Destination,
    pub producer: Producer,
    /// The dead-letter topic, through `producer`.
    pub letters: DeadLetters,
    pub topics: Topics,
    pub retry: RetrySettings,
    pub metrics: Metrics,
    /// Where failures show (`/readyz`, `needs_operator`, failures by class).
    pub visibility: Visibility,
    /// `kafka.max_profile_bytes`: larger profile records are bad records.
    pub max_profile_bytes: usize,
    /// The profiles topic's ends as this member knows them: the fence against a write
    /// after the group gave the partition to someone else.
    pub changelog: std::sync::Arc<super::changelog::Changelog>,
    /// `retry.shard_park_after_ms` where parking applies ([`Destination::may_park`]);
    /// `None`: a failing write is retried until it succeeds.
    pub park_after: Option<std::time::Duration>,
}

impl Writer {
    /// Write everything in `rendered` that `ownership` still holds; `batch` holds the
    /// records, for dead letters. Returns the partitions parked on the way: nothing of
    /// them is written from then on and `ownership` excludes them (their offsets must not
    /// be stored). Parking happens when the write kept failing for `park_after` and
    /// has no erasure left (an erasure must reach every shard): the partitions with
    /// ClickHouse rows left whose shard does not answer a probe are parked, and the
    /// write goes on at once with the others.
    pub async fn write(
        &self,
        rendered: &mut Rendered,
        batch: &[OwnedMessage],
        ownership: &Ownership,
        cancel: &CancellationToken,
    ) -> Result<BTreeSet<i32>, NotWritten> {
        let mut retry = Retry::new("writing profiles", self.retry.backoff(), &self.visibility);
        // The park deadline runs from the start of the write, not from its first
        // failure: an attempt on a hung replica may take seconds before it fails.
        let mut park_at = self.park_after.map(|after| Instant::now() + after);
        let mut failed = false;
        let mut parked = BTreeSet::new();
        loop {
            let started = Instant::now();
            // Once the write has failed, the park deadline cuts an attempt in flight
            // (a retry hanging on the failing shard while the others wait); a first
            // attempt that is only slow is never cut. Cutting is safe: each step
            // removes what it wrote only once done, and every step is idempotent.
            let cut = park_at.filter(|_| failed && rendered.erasures.is_empty());
            let attempt = self.attempt(rendered, batch, ownership);
            let outcome = match cut {
                Some(deadline) => tokio::time::timeout_at(deadline.into(), attempt).await.unwrap_or_else(|_| {
                    Err(WriteError::Unavailable("ClickHouse write still failing at the park deadline".into()))
                }),
                None => attempt.await,
            };
            match outcome {
                Ok(()) => {
                    self.metrics.write_seconds.observe(started.elapsed().as_secs_f64());
                    self.metrics.profiles_written.inc_by(std::mem::take(&mut rendered.written) as u64);
                    retry.succeeded();
                    return Ok(parked);
                }
                Err(e) => {
                    retry.failed(e.class(), &e.message());
                    if let WriteError::Rejected(_) = &e {
                        // The service stops, and says why until it does.
                        self.visibility.health.not_ready(e.to_string());
                        return Err(NotWritten::Rejected(e));
                    }
                    failed = true;
                    if park_at.is_some_and(|at| Instant::now() >= at) && rendered.erasures.is_empty() {
                        let down = self.unanswering(rendered, ownership).await;
                        if !down.is_empty() {
                            tracing::warn!(
                                partitions = ?down,
                                error = %e,
                                "ClickHouse shard still failing: its partitions are parked (rewound, paused until it \
                                 answers); the other shards' go on"
                            );
                            ownership.exclude(&down);
                            parked.extend(down);
                            park_at = self.park_after.map(|after| Instant::now() + after);
                            failed = false;
                            retry.reset(self.retry.backoff());
                            continue;
                        }
                        // Every shard answers: the failure is not a shard down (no
                        // ZooKeeper, a dropped table) and holds the write. A new park
                        // window, so the attempts are not cut at once from now on.
                        park_at = self.park_after.map(|after| Instant::now() + after);
                    }
                    self.metrics.write_retries.inc();
                    // The backoff never waits past the park deadline either.
                    let waited = match park_at.filter(|_| rendered.erasures.is_empty()) {
                        Some(at) => tokio::select! {
                            waited = retry.wait(cancel) => waited,
                            _ = tokio::time::sleep_until(at.into()) => true,
                        },
                        None => retry.wait(cancel).await,
                    };
                    if !waited {
                        return Err(NotWritten::Shutdown);
                    }
                }
            }
        }
    }

    /// The partitions with ClickHouse rows left to write whose shard does not answer.
    async fn unanswering(&self, r: &Rendered, ownership: &Ownership) -> BTreeSet<i32> {
        let pending: BTreeSet<i32> = r
            .rows
            .iter()
            .map(|(partition, _)| *partition)
            .chain(r.aliases.iter().map(|alias| alias.kafka_partition))
            .filter(|partition| ownership.holds(*partition))
            .collect();
        let answering = self.destination.answering(pending.clone()).await;
        pending.difference(&answering).copied().collect()
    }

    /// The steps not done yet.
    async fn attempt(&self, r: &mut Rendered, batch: &[OwnedMessage], ownership: &Ownership) -> Result<(), WriteError> {
        self.fence_moved(r, ownership).await?;
        r.messages.retain(|(source, _)| ownership.holds(source.partition));
        let messages: Vec<&Outgoing> = r.messages.iter().map(|(_, m)| m).collect();
        let refused = self.producer.send_each(&messages).await?;
        for (index, error) in refused {
            let source = &r.messages[index].0;
            let reason = format!("the handoff of this reidentify was refused: {error}");
            r.letters.extend(self.letters_for(batch, std::slice::from_ref(source), &reason));
        }
        r.messages.clear();

        r.rows.retain(|(partition, _)| ownership.holds(*partition));
        let destination = &self.destination;
        let rows = &r.rows;
        let refused = refused_items(rows.len(), |range| {
            let chunk: Vec<(i32, &ProfileRow)> = rows[range].iter().map(|(partition, row)| (*partition, row)).collect();
            async move { destination.insert_profiles(&chunk).await }
        })
        .await?;
        r.written += r.rows.len() - refused.len();
        for (index, error) in refused {
            // Like a profile too large to write: its records are dead-lettered, its
            // profiles-topic record is not sent, and the partition is read back, so the
            // profile continues as last written in both places.
            let (partition, row) = &r.rows[index];
            let key = ProfileKey::new(row.project.clone(), row.user_id.clone());
            let reason = format!("ClickHouse refused the profile row this record changed: {error}");
            let sources = r.sources.get(&(*partition, key.clone())).cloned().unwrap_or_default();
            r.letters.extend(self.letters_for(batch, &sources, &reason));
            r.records.retain(|(p, k, _)| !(p == partition && *k == key));
            r.reload.insert(*partition);
        }
        r.rows.clear();
        r.aliases.retain(|alias| ownership.holds(alias.kafka_partition));
        self.destination.insert_aliases(&r.aliases).await?;
        r.aliases.clear();
        r.erasures.retain(|(source, _)| ownership.holds(source.partition));
        while !r.erasures.is_empty() {
            let chunk = erase_chunk(&r.erasures);
            let refused = self.erase_splitting(&r.erasures[..chunk]).await?;
            for (index, error) in refused {
                let reason = format!("ClickHouse refused the erase mutation of this record: {error}");
                let source = r.erasures[index].0.clone();
                r.letters.extend(self.letters_for(batch, &[source], &reason));
            }
            r.erasures.drain(..chunk);
        }

        // The step a frozen member would most likely finish late: checked again.
        self.fence_moved(r, ownership).await?;
        r.records.retain(|(partition, _, _)| ownership.holds(*partition));
        let records: Vec<&Outgoing> = r.records.iter().map(|(_, _, record)| record).collect();
        let changelog = &self.changelog;
        let refused =
            self.producer.send_each_placed(&records, |_, partition, offset| changelog.wrote(partition, offset)).await?;
        for (index, error) in refused {
            let (partition, key, _) = &r.records[index];
            let reason = format!("Kafka refused the profile this record changed: {error}");
            let sources = r.sources.get(&(*partition, key.clone())).cloned().unwrap_or_default();
            r.letters.extend(self.letters_for(batch, &sources, &reason));
            r.reload.insert(*partition);
        }
        r.records.clear();

        r.letters.retain(|letter| ownership.holds(letter.partition));
        self.send_letters(&mut r.letters).await?;
        Ok(())
    }

    /// Leave out of the write the partitions whose profiles topic someone else wrote
    /// since this member last knew its end ([`super::changelog`]).
    async fn fence_moved(&self, r: &mut Rendered, ownership: &Ownership) -> Result<(), WriteError> {
        let writing: BTreeSet<i32> = r
            .rows
            .iter()
            .map(|(partition, _)| *partition)
            .chain(r.records.iter().map(|(partition, _, _)| *partition))
            .chain(r.messages.iter().map(|(source, _)| source.partition))
            .chain(r.aliases.iter().map(|alias| alias.kafka_partition))
            .chain(r.erasures.iter().map(|(source, _)| source.partition))
            .filter(|partition| ownership.holds(*partition))
            .collect();
        let moved = self.changelog.moved(&writing).await?;
        if !moved.is_empty() {
            self.metrics.partitions_fenced.inc_by(moved.len() as u64);
            ownership.exclude(&moved);
            r.moved.extend(moved);
        }
        Ok(())
    }

    /// Run the erase mutation of `erasures`, splitting a refused one in halves down
    /// to the erasures ClickHouse refuses on their own (returned with the reason).
    async fn erase_splitting(&self, erasures: &[(Source, Erasure)]) -> Result<Vec<(usize, WriteError)>, WriteError> {
        let destination = &self.destination;
        refused_items(erasures.len(), |range| {
            let chunk: Vec<&Erasure> = erasures[range].iter().map(|(_, e)| e).collect();
            async move { destination.erase(&chunk).await }
        })
        .await
    }

    /// Dead letters: a letter Kafka refuses for good goes once more without its
    /// value; refused again, it is logged and dropped (retrying cannot help).
    async fn send_letters(&self, letters: &mut Vec<DeadLetter>) -> Result<(), WriteError> {
        let failures = &self.metrics.write_failures;
        let done = |_: &DeadLetter, delivered| {
            if delivered == Delivered::Dropped {
                failures.with_label_values(&["invalid"]).inc();
            }
        };
        Ok(self.letters.send(letters, done).await?)
    }

    /// Dead letters of the records at `sources` (found in `batch`), counted as
    /// `dead_lettered` (they were counted as applied too when applied).
    fn letters_for(&self, batch: &[OwnedMessage], sources: &[Source], reason: &str) -> Vec<DeadLetter> {
        let letters: Vec<DeadLetter> = sources
            .iter()
            .filter_map(|source| {
                let message = batch.iter().find(|m| {
                    m.topic() == source.topic && m.partition() == source.partition && m.offset() == source.offset
                })?;
                Some(dead_letter(message, "rejected", reason))
            })
            .collect();
        self.metrics.records.with_label_values(&["dead_lettered"]).inc_by(letters.len() as u64);
        letters
    }

    /// ClickHouse rows and profiles-topic records of every touched profile. A profile
    /// whose record would exceed `max_profile_bytes` is left out, the batch's records
    /// that changed it become dead letters, and its partition is marked for reload.
    pub fn render(&self, effects: Effects, profiles: &ProfileStates, batch: &[OwnedMessage]) -> Rendered {
        let mut r = Rendered {
            messages: effects.messages,
            letters: effects.letters,
            aliases: effects.aliases,
            erasures: effects.erasures,
            sources: effects.sources,
            ..Rendered::default()
        };
        for (partition, key) in &effects.touched {
            let mut current: Option<&ProfileState> = profiles.working(*partition, key);
            // The dedup state has a bytes share of its own: it never makes a record bad.
            let sized = current.map(ProfileState::encode_sized);
            if let Some((_, size)) =
                sized.as_ref().filter(|(_, size)| size + RECENT_REQUESTS_MAX_BYTES > self.max_profile_bytes)
            {
                let reason = format!(
                    "the profile this record changed would be {size} bytes, above kafka.max_profile_bytes ({}) \
                     less the {RECENT_REQUESTS_MAX_BYTES} bytes reserved for its dedup state",
                    self.max_profile_bytes
                );
                let sources = r.sources.get(&(*partition, key.clone())).cloned().unwrap_or_default();
                r.letters.extend(self.letters_for(batch, &sources, &reason));
                r.reload.insert(*partition);
                current = None;
                if !effects.deleted_versions.contains_key(key) {
                    continue;
                }
            }
            if let Some(&version) = effects.deleted_versions.get(key) {
                // Erased in this batch: the marker row first, a re-created profile (with
                // a higher version) after it.
                r.rows.push((*partition, ProfileRow::deleted(key, version)));
            }
            if let Some(profile) = current {
                r.rows.push((*partition, ProfileRow::live(profile)));
            }
            let payload = sized.map(|(bytes, _)| bytes).filter(|_| current.is_some());
            r.for_state.push((*partition, key.clone(), payload.clone()));
            r.records.push((
                *partition,
                key.clone(),
                Outgoing {
                    topic: self.topics.profiles.clone(),
                    partition: Some(*partition),
                    key: key.kafka_key(),
                    payload,
                    headers: None,
                },
            ));
        }
        r
    }
}

/// Write items `0..count` with `write` (a range at a time), splitting a range it
/// refuses as a bad record ([`WriteError::Rejected`]) in halves, front half first,
/// down to the items refused on their own: those are returned by index with the
/// reason. Any other failure ends it (the caller retries the whole step; what was
/// written already collapses in ClickHouse or is idempotent).
async fn refused_items<F, Fut>(count: usize, mut write: F) -> Result<Vec<(usize, WriteError)>, WriteError>
where
    F: FnMut(std::ops::Range<usize>) -> Fut,
    Fut: std::future::Future<Output = Result<(), WriteError>>,
{
    let mut refused = Vec::new();
    let mut pending = Vec::new();
    pending.push(0..count);
    while let Some(range) = pending.pop() {
        if range.is_empty() {
            continue;
        }
        match write(range.clone()).await {
            Ok(()) => {}
            Err(e @ WriteError::Rejected(_)) if range.len() == 1 => refused.push((range.start, e)),
            Err(WriteError::Rejected(_)) => {
                let middle = range.start + range.len() / 2;
                pending.push(middle..range.end);
                pending.push(range.start..middle);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(refused)
}

/// How many erasures from the start go into one mutation: at most
/// [`ERASE_CHUNK_BYTES`] of conditions, at least one.
fn erase_chunk(erasures: &[(Source, Erasure)]) -> usize {
    let mut bytes = ERASE_STATEMENT_BYTES;
    let mut count = 0;
    for (_, erasure) in erasures {
        bytes += erasure.condition().len() + " OR ".len();
        if count > 0 && bytes > ERASE_CHUNK_BYTES {
            break;
        }
        count += 1;
    }
    count.max(1).min(erasures.len())
}
