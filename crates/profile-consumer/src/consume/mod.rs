//! The consumer loop, started by [`crate::start`]: collect a batch (at most `batch.max_records`, at most `batch.linger_ms`
//! after its first record), restore the profiles of newly seen partitions from the
//! profiles topic, apply the batch, write its effects ([`write`]), then store the
//! offsets.
//!
//! Group membership: a restore or write that runs longer than [`PAUSE_AFTER`] (one
//! that retries while ClickHouse is down) pauses the assigned partitions and polls the
//! consumer until it is done, so rebalance callbacks and `max.poll.interval.ms` are
//! served and a slow write never gets the instance evicted; records still received
//! start the next batch. A shorter one is not interrupted: a rebalance waits for it
//! (at most that second) and finds it written, offsets stored.
//!
//! Which partitions are taken, blocked, parked or paused is the shared partition
//! lifecycle ([`vero_service::partitions`]), also the event sink's.
//!
//! Unknown writer schema (operator-fixable, docs/operations.md "Failure policy"): a
//! record this build cannot decode for that reason stops its partition there — the
//! records before it are written and their offsets stored, it and everything after it
//! are neither applied nor stored; the partition stays paused (also when a long write
//! resumes the others), `vero_profiles_blocked_partitions` counts it and `/readyz` is
//! held at 503 naming it, until the partition is revoked (the new owner reads it again
//! from that record) or the instance is replaced by one that knows the schema (the
//! rollout, which is the only retry that can succeed: the record never changes).
//!
//! A ClickHouse shard that keeps failing, on a cluster of several: its partitions are
//! parked ([`park`]) and the other shards' partitions go on.
//!
//! Fencing: a revoke (rebalance, or the group session lost) drops at once the state,
//! the waiting records and the restore of the revoked partitions, and
//! [`write::Ownership`] keeps the write in hand from writing anything of them from then
//! on; their offsets are not stored. The new owner restores and writes them. A revoke
//! this member has not heard of yet (it was frozen) is caught by [`changelog`]: the
//! writer finds another member's records on the profiles topic, and the partition is
//! rewound and restored again.

pub mod apply;
pub mod changelog;
mod park;
pub mod write;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, OwnedMessage};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::destination::Destination;
use crate::kafka::consumer::GroupConsumer;
use crate::kafka::restore;
use crate::metrics::Metrics;
use crate::profile::dedup::Dedup;
use crate::state::ProfileStates;
use anyhow::Context as _;
use apply::{Applier, Effects, Topics};
use vero_service::partitions::{Lifecycle, Take, PAUSE_AFTER};
use vero_service::read_errors::ReadErrors;
use vero_service::retry::{Class, Retry, Visibility};
use write::{NotWritten, Ownership, Writer};

/// The loop's state: what it holds between batches.
pub(crate) struct LoopState<'a> {
    pub(crate) settings: &'a Settings,
    pub(crate) topics: Topics,
    pub(crate) consumer: &'a GroupConsumer,
    pub(crate) metrics: &'a Metrics,
    /// The profiles of the assigned partitions.
    pub(crate) states: ProfileStates,
    /// Records received, not yet in a batch (the next batch starts with them).
    pub(crate) pending: Vec<OwnedMessage>,
    /// Owned, blocked at an unknown writer schema, parked while their ClickHouse
    /// shard fails ([`park`]), paused for a long write.
    pub(crate) lifecycle: Lifecycle,
    pub(crate) read_errors: ReadErrors,
    /// Partitions revoked since the batch in hand was collected.
    pub(crate) ownership: Ownership,
    /// What this member knows of the profiles topic's ends (shared with the writer).
    pub(crate) changelog: Arc<changelog::Changelog>,
}

impl LoopState<'_> {
    pub(crate) async fn consume(&mut self, writer: &Writer, shutdown: &CancellationToken) -> anyhow::Result<()> {
        loop {
            let Some(batch) = self.collect(&writer.destination, shutdown).await else { return Ok(()) };
            if batch.is_empty() {
                continue;
            }
            for partition in batch.iter().map(Message::partition).collect::<BTreeSet<_>>() {
                let needed = !self.states.is_restored(partition) && self.ownership.holds(partition);
                if needed && !self.restore(partition, &writer.visibility, shutdown).await? {
                    return Ok(());
                }
            }
            let mut effects = Effects::default();
            let ownership = self.ownership.clone();
            {
                let mut applier = Applier {
                    topics: &self.topics,
                    profiles: &mut self.states,
                    effects: &mut effects,
                    now_micros: now_micros(),
                    dedup: Dedup::new(self.settings.dedup.window_ms),
                    current: None,
                };
                // Records of partitions revoked meanwhile are someone else's now.
                for message in batch.iter().filter(|m| ownership.holds(m.partition())) {
                    // The batch is not written: its offsets stay unstored, a restart reads it again.
                    let outcome =
                        applier.apply(message, self.lifecycle.partitions()).context("reading the profile state")?;
                    self.metrics.records.with_label_values(&[outcome.label()]).inc();
                }
            }
            for (place, (offset, reason)) in std::mem::take(&mut effects.blocked) {
                self.block(place, offset, &reason);
            }
            if effects.keys_evicted > 0 {
                tracing::warn!(
                    keys = effects.keys_evicted,
                    "request keys fell out of a profile's dedup state within the window (over 1000 requests): \
                     a repeat of them would count"
                );
                self.metrics.request_keys_evicted.inc_by(effects.keys_evicted as u64);
            }
            let positions = std::mem::take(&mut effects.positions);
            let mut rendered = writer.render(effects, &self.states, &batch);
            match self.drive(writer.write(&mut rendered, &batch, &ownership, shutdown)).await {
                Ok(parked) => {
                    // What was written goes to the local store; a partition left out of
                    // the write (fenced, parked, moved) or with a profile not written
                    // is dropped and continues from the profiles topic.
                    let (reload, moved) = (&rendered.reload, &rendered.moved);
                    let kept = |p: i32| {
                        ownership.holds(p) && !reload.contains(&p) && !moved.contains(&p) && !parked.contains(&p)
                    };
                    let changelog = &self.changelog;
                    let settled =
                        self.states.settle(std::mem::take(&mut rendered.for_state), |p| changelog.known(p), kept);
                    if let Err(e) = settled {
                        self.metrics.state_errors.inc();
                        tracing::error!(error = %e, "committing profiles to the local store failed: their partitions restore from the last checkpoint");
                    }
                    for partition in &rendered.reload {
                        self.states.drop_partition(*partition);
                    }
                    self.observe_states();
                    self.store_offsets(&positions);
                    self.rewind(&rendered.moved, &batch)?;
                    if !parked.is_empty() {
                        self.park(&parked, &batch, &writer.destination);
                    }
                }
                Err(NotWritten::Shutdown) => return Ok(()),
                Err(NotWritten::Rejected(e)) => return Err(anyhow::Error::new(e).context("writing profiles")),
            }
        }
    }

    /// The next batch; `None` on shutdown before a first record arrived. Starts a new
    /// fence: partitions revoked from now on are fenced for this batch (records held
    /// from before a revoke were dropped with it; later ones are of the new assignment).
    /// Parked shards due for a probe are probed meanwhile.
    async fn collect(&mut self, destination: &Destination, shutdown: &CancellationToken) -> Option<Vec<OwnedMessage>> {
        let max = self.settings.batch.max_records;
        let linger = Duration::from_millis(self.settings.batch.linger_ms);
        let consumer = self.consumer;
        let mut deadline = (!self.pending.is_empty()).then(|| tokio::time::Instant::now() + linger);
        // Rebalances are looked at while idle too, so the partition metrics follow them.
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        while self.pending.len() < max {
            let wait_until = deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            let probe_at = self.lifecycle.partitions().next_probe().map(tokio::time::Instant::from_std);
            tokio::select! {
                _ = shutdown.cancelled(), if self.pending.is_empty() => return None,
                _ = tokio::time::sleep_until(wait_until) => break,
                _ = tokio::time::sleep_until(probe_at.unwrap_or(wait_until)), if probe_at.is_some() => {
                    self.probe_parked(destination).await;
                }
                _ = tick.tick() => self.take_rebalances(),
                received = consumer.recv() => {
                    self.accept(received);
                    if !self.pending.is_empty() {
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + linger);
                    }
                }
            }
            if shutdown.is_cancelled() && !self.pending.is_empty() {
                break;
            }
        }
        self.take_rebalances();
        self.ownership.revoked.lock().expect("ownership lock").clear();
        let batch: Vec<OwnedMessage> = self.pending.drain(..self.pending.len().min(max)).collect();
        Some(batch)
    }

    /// Take one received record into `pending`, after the rebalances served before it.
    fn accept(&mut self, received: Result<BorrowedMessage<'_>, KafkaError>) {
        // Rebalance callbacks ran inside the poll that returned this record: what is
        // held of a revoked partition predates it and goes first.
        self.take_rebalances();
        match received {
            Ok(message) => {
                self.read_errors.read();
                self.consumer.context().offset_gaps().observe(message.topic(), message.partition(), message.offset());
                // Fetched before its partition's pause took effect: whoever unblocks
                // the partition reads it again; a parked one is rewound to it.
                if self.lifecycle.take(message.topic(), message.partition(), message.offset()) == Take::Process {
                    self.pending.push(message.detach());
                }
            }
            // A refused login or certificate is reported once, by the watch.
            Err(e) => self.read_errors.failed(&e),
        }
    }

    /// Run `work` while keeping the group membership: once it has run [`PAUSE_AFTER`]
    /// the assigned partitions are paused and the consumer is polled until it is done
    /// (records still received wait in `pending`). Before that nothing is polled, so a
    /// rebalance waits for a short write and finds it written, as it always did.
    async fn drive<T>(&mut self, work: impl Future<Output = T>) -> T {
        tokio::pin!(work);
        let consumer = self.consumer;
        let pause_at = tokio::time::Instant::now() + PAUSE_AFTER;
        // Rebalances are looked at regularly too, not only when a record arrives (none
        // does while paused): the metrics and the waiting records follow at once.
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut paused = false;
        let out = loop {
            tokio::select! {
                // The work first: a fence check and the produce it guards run in one poll,
                // with no rebalance callback in between.
                biased;
                out = &mut work => break out,
                _ = tokio::time::sleep_until(pause_at), if !paused => {
                    self.lifecycle.pause_for_write(consumer);
                    paused = true;
                }
                _ = tick.tick(), if paused => self.take_rebalances(),
                // Polled once paused: that serves rebalances and the group session.
                received = consumer.recv(), if paused => self.accept(received),
            }
        };
        if paused {
            self.lifecycle.end_write_pause(consumer);
        }
        self.take_rebalances();
        out
    }

    /// Forget revoked partitions (their state, their waiting records) and fence them
    /// for the batch in hand; note new assignments.
    fn take_rebalances(&mut self) {
        let Some(changes) = self.lifecycle.rebalanced() else { return };
        if !changes.assigned.is_empty() {
            // The group and the topics accept this member again.
            self.read_errors.read();
        }
        let mut fenced = self.ownership.revoked.lock().expect("ownership lock");
        for partition in changes.revoked_numbers() {
            self.states.drop_partition(partition);
            self.changelog.forget(partition);
            fenced.insert(partition);
        }
        drop(fenced);
        self.metrics.partitions_revoked.inc_by(changes.revoked.len() as u64);
        if !changes.revoked.is_empty() {
            self.pending.retain(|m| !changes.revoked.contains(&(m.topic().to_owned(), m.partition())));
        }
        self.observe_states();
    }

    /// The state's gauges and counters, after a change.
    fn observe_states(&mut self) {
        let lookups = self.states.take_lookups();
        self.metrics.state_lookups.with_label_values(&["hit"]).inc_by(lookups.hits);
        self.metrics.state_lookups.with_label_values(&["miss"]).inc_by(lookups.misses);
        self.metrics.profiles_in_memory.set(self.states.in_memory() as i64);
        self.metrics.state_cache_bytes.set(self.states.cache_bytes() as i64);
        self.metrics.state_disk_bytes.set(self.states.disk().disk_bytes() as i64);
    }

    /// Stop `topic`/`partition` at `offset`, a record with a writer schema this build
    /// does not know: the lifecycle pauses it and holds `/readyz` until it is revoked;
    /// what is held of it is dropped.
    fn block(&mut self, (topic, partition): (String, i32), offset: i64, reason: &str) {
        self.lifecycle.block(self.consumer, (&topic, partition, offset), reason);
        self.pending.retain(|m| !(m.topic() == topic && m.partition() == partition));
    }

    /// Read `partition`'s profiles back from the profiles topic. A profile that cannot
    /// be read is operator-fixable, never a reason to start the user over: the restore
    /// is retried with backoff (consumption paused, `/readyz` 503 naming topic,
    /// partition and offset, `vero_profiles_needs_operator` 1) until it reads. Any
    /// other failure is Kafka being unavailable (all brokers down, a read outlasting
    /// `kafka.restore_timeout_ms`): retried with backoff too, `/readyz` 503 meanwhile.
    /// `Ok(false)`: shutdown came first (nothing of the batch may be applied).
    async fn restore(
        &mut self,
        partition: i32,
        visibility: &Visibility,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<bool> {
        let started = std::time::Instant::now();
        let what = format!("restoring the profiles of partition {partition}");
        // Not a write: its failures are not counted with the writes'.
        let visibility = Visibility { failures: None, ..visibility.clone() };
        let mut retry = Retry::new(&what, self.settings.retry.backoff(), &visibility);
        let mut held = false;
        let restored = loop {
            let kafka = &self.settings.kafka;
            let (kafka, topic, timeout) = (kafka.clone(), kafka.profiles_topic.clone(), kafka.restore_timeout());
            let watch = self.consumer.context().kafka().clone();
            let disk = self.states.disk().clone();
            let max_checkpoint_age_ms = i64::try_from(self.settings.state.max_checkpoint_age_ms).unwrap_or(i64::MAX);
            let reading = tokio::task::spawn_blocking(move || {
                restore::read_partition(restore::Source {
                    kafka: &kafka,
                    topic: &topic,
                    partition,
                    timeout,
                    watch,
                    disk: &disk,
                    max_checkpoint_age_ms,
                })
            });
            let error = match self.drive(reading).await? {
                Ok(restored) => break Some(restored),
                Err(e) => e,
            };
            if error.downcast_ref::<restore::Unreadable>().is_some() {
                let reason = format!(
                    "{error} (write the profile's value, or a tombstone, to that key, or roll out a version that \
                     reads it)"
                );
                retry.failed(Class::Operator, &reason);
                held = true;
            } else if self.consumer.context().kafka().refused().is_some() {
                // Kafka refuses the login or a certificate: the watch holds /readyz and
                // the gauge; retried like an outage until an operator fixed it.
                tracing::debug!(partition, error = %error, "restore waits for Kafka to accept the connection");
            } else {
                // Kafka unavailable (a broker down or restarting, a leader moving, the
                // read outlasting `restore_timeout_ms`): the same read succeeds later.
                // Exiting would only restart the process into the same wait.
                retry.failed(Class::Retryable, &format_args!("{error:#}"));
                held = true;
            }
            if !self.ownership.holds(partition) {
                break None;
            }
            if !self.drive(retry.wait(shutdown)).await {
                return Ok(false);
            }
        };
        if held {
            retry.succeeded();
        }
        let Some(restored) = restored.filter(|_| self.ownership.holds(partition)) else {
            tracing::info!(partition, "partition revoked while restoring it; restore dropped");
            return Ok(true);
        };
        let from = restored.resume.origin();
        tracing::info!(
            partition,
            from,
            why = restored.resume.reason(),
            records = restored.records_read,
            end = restored.end,
            seconds = started.elapsed().as_secs_f64(),
            "restored profiles from the profiles topic"
        );
        self.metrics.restore_records_read.inc_by(restored.records_read);
        self.metrics.profiles_restored.inc_by(restored.values);
        self.metrics.restore_seconds.with_label_values(&[from]).observe(started.elapsed().as_secs_f64());
        self.changelog.restored(partition, restored.end);
        self.states.mark_restored(partition);
        Ok(true)
    }

    /// Destination the next offsets of a written batch, except for partitions revoked since
    /// it was collected (their records were fenced off, the new owner reads them).
    fn store_offsets(&self, positions: &std::collections::BTreeMap<(String, i32), i64>) {
        let mut list = TopicPartitionList::new();
        for ((topic, partition), next) in positions {
            if self.lifecycle.partitions().owns(topic, *partition) && self.ownership.holds(*partition) {
                if let Err(e) = list.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
                    tracing::warn!(topic = %topic, partition, offset = next, error = %e, "cannot store offset");
                }
            }
        }
        if list.count() > 0 {
            if let Err(e) = self.consumer.store_offsets(&list) {
                tracing::warn!(error = %e, "storing offsets failed (partition moved?)");
            }
        }
    }
}

fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
