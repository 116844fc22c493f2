//! The consume → batch → insert → store-offset loop.
//!
//! Delivery guarantee: at least once. `enable.auto.offset.store=false`; a partition's
//! offset is stored only after every record up to it is in ClickHouse or acknowledged
//! by the dead-letter topic, and librdkafka's auto-commit commits stored offsets only.
//! A crash therefore re-delivers at most the batches written since the last commit;
//! the inserter skips every redelivered row at or below its partition's written offset
//! (see [`crate::once`]), so each event is one row even without `FINAL`.
//!
//! The topic carries events and user commands. Events become rows; a `Delete` command
//! becomes a mutation submitted after the batch's rows are written (see [`crate::erase`]
//! for why the order and the offset bound make it exact and idempotent); other commands
//! are skipped, and their offsets are stored with the batch like any other record.
//!
//! Throughput: one write is in flight at a time (so a batch's rows, its deletes and the
//! next batch's rows stay in topic order), and consumption goes on meanwhile into the
//! next batch; messages librdkafka already holds are taken in a tight loop rather than
//! one `select!` round each. When the next batch is full before the write is done, no
//! more messages are taken; if the write goes on for long (retries while ClickHouse is
//! down), the assigned partitions are paused and the consumer is polled again, so
//! rebalances and the group session are served. At most two batches (the one being
//! written and the next) plus librdkafka's bounded prefetch are held in memory.
//!
//! Which partitions are taken, blocked, parked or paused is the shared partition
//! lifecycle ([`vero_service::partitions`]), also the profile consumer's.
//!
//! A record whose writer schema fingerprint this build does not know (a gateway rolled
//! out before the consumers) is operator-fixable, not a bad record: its partition is
//! paused at that offset (what came before is written and committed, nothing from it
//! on), `vero_sink_blocked_partitions` counts it and `/readyz` stays not ready until a
//! consumer version that knows the schema takes the partition over (a rollout
//! restarts the sink; a revoke hands the partition to another member, which reads it
//! again from the committed offset).
//!
//! On a cluster of several shards, a shard that keeps failing is *parked* instead of
//! holding every partition (see [`crate::insert`]): the rest of the batch is written
//! and its offsets stored; the parked partitions' records are dropped from memory,
//! the partitions are paused, and once a probe finds the shard answering they are
//! rewound (seek) to their first unwritten offset and resumed, so Kafka keeps what
//! waits and the exactly-once check by Kafka position covers whatever of the parked
//! rows did land. Nothing of a parked partition is stored meanwhile.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::FutureExt;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use vero_model::{DecodeError, Record, UserAction};
use vero_service::dlq_replay::Unsigned;
use vero_service::partitions::{Lifecycle, Take, PAUSE_AFTER};
use vero_service::read_errors::ReadErrors;

use crate::batch::{Batch, DeadLetter};
use crate::config::Settings;
use crate::context::SinkConsumer;
use crate::dlq::{DeadLetterQueue, CONSUMER_NAME};
use crate::erase::{Eraser, UserDelete};
use crate::insert::{Abandoned, Inserter, Written};
use crate::metrics::Metrics;
use crate::row::EventRow;

/// Messages accepted in one go before `select!` looks at shutdown and the batch age again.
const DRAIN_MAX: usize = 1024;

pub struct Pipeline {
    pub consumer: SinkConsumer,
    /// Everything a write needs, shared with the task that runs it.
    outputs: Arc<Outputs>,
    pub settings: Settings,
    pub metrics: Metrics,
    /// Offsets this instance stored (next offset to read), for the final commit.
    stored: BTreeMap<i32, i64>,
    /// When the last write of a batch that was not full started: early writes keep
    /// `batch.min_interval_ms` apart while the load is light. After a full batch the
    /// sink is catching up, and the rest is written as soon as it has been read.
    last_partial_write: Option<Instant>,
    /// Owned, blocked, parked, paused: which partitions' records are taken.
    lifecycle: Mutex<Lifecycle>,
    read_errors: ReadErrors,
}

impl Pipeline {
    pub fn new(
        consumer: SinkConsumer,
        outputs: Outputs,
        settings: Settings,
        metrics: Metrics,
        lifecycle: Lifecycle,
        read_errors: ReadErrors,
    ) -> Self {
        Self {
            consumer,
            outputs: Arc::new(outputs),
            settings,
            metrics,
            stored: BTreeMap::new(),
            last_partial_write: None,
            lifecycle: Mutex::new(lifecycle),
            read_errors,
        }
    }

    /// Consume until `shutdown`, then flush (giving up after the configured grace
    /// period), commit and return.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        // Writes keep retrying through a shutdown for a grace period, then give up.
        let give_up = CancellationToken::new();
        let grace = std::time::Duration::from_millis(self.settings.retry.shutdown_flush_timeout_ms);
        let (shutdown_watch, give_up_trigger) = (shutdown.clone(), give_up.clone());
        tokio::spawn(async move {
            shutdown_watch.cancelled().await;
            tokio::time::sleep(grace).await;
            give_up_trigger.cancel();
        });

        let mut batch = Batch::new(self.settings.batch.clone());
        while !shutdown.is_cancelled() {
            let next_probe = self.lifecycle().partitions().next_probe();
            if next_probe.is_some_and(|at| at <= Instant::now()) {
                self.probe_parked().await;
                continue;
            }
            // A batch that filled up (also while the previous one was being written) is
            // flushed at once, not when its age runs out.
            if batch.is_full() {
                self.flush(&mut batch, &give_up).await;
                continue;
            }
            let (early, deadline) = (batch.early_from(self.last_partial_write), batch.deadline());
            let now = Instant::now();
            if early.is_some_and(|early| early <= now) {
                // May be written: read what is ready first, write once nothing is (or
                // once the age limit is reached).
                let drained = self.drain_ready(&mut batch).await;
                if drained == 0 || deadline.is_some_and(|deadline| deadline <= now) {
                    self.flush(&mut batch, &give_up).await;
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = sleep_until(early), if early.is_some() => {}
                _ = sleep_until(next_probe), if next_probe.is_some() => {}
                received = self.consumer.recv() => {
                    self.accept(received, &mut batch).await;
                    self.drain_ready(&mut batch).await;
                }
            }
        }
        tracing::info!(pending = batch.len(), "shutting down: flushing the last batch");
        self.flush(&mut batch, &give_up).await;
        self.commit_stored();
        Ok(())
    }

    /// Accept the messages librdkafka already holds, without waiting and without a trip
    /// through `select!` each (at most [`DRAIN_MAX`], so shutdown and the batch age are
    /// still checked regularly), until `batch` is full.
    /// Returns how many were accepted.
    async fn drain_ready(&self, batch: &mut Batch) -> usize {
        for drained in 0..DRAIN_MAX {
            if batch.is_full() {
                return drained;
            }
            let Some(received) = self.consumer.recv().now_or_never() else { return drained };
            self.accept(received, batch).await;
        }
        DRAIN_MAX
    }

    /// Add one received message to `batch` (as a row, a delete, a skipped command or a
    /// dead letter).
    async fn accept(&self, received: Result<BorrowedMessage<'_>, KafkaError>, batch: &mut Batch) {
        // Rebalances first: a message returned after a revoke belongs to the new
        // assignment and must not be dropped with the old rows.
        let changes = self.lifecycle().rebalanced();
        if changes.as_ref().is_some_and(|changes| !changes.assigned.is_empty()) {
            self.read_errors.read();
        }
        if let Some(changes) = changes.filter(|changes| !changes.revoked.is_empty()) {
            batch.drop_partitions(&changes.revoked_numbers());
        }
        let message = match received {
            Ok(message) => message,
            Err(e) => {
                self.read_errors.failed(&e);
                // Do not spin on errors (a broker down, an ACL refusing the group).
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                return;
            }
        };
        self.read_errors.read();
        let (partition, offset) = (message.partition(), message.offset());
        self.metrics.offset_gaps.observe(message.topic(), partition, offset);
        if self.lifecycle().take(message.topic(), partition, offset) == Take::Drop {
            // Fetched before the pause took effect; read again by whoever unblocks it
            // (a parked partition is rewound to it before it resumes).
            return;
        }
        if vero_service::dlq_replay::for_another_consumer(&message, CONSUMER_NAME, Unsigned::Mine) {
            // The profile consumer's letter: this sink wrote the original event already.
            self.metrics.rows_skipped.with_label_values(&["replayed_for_other"]).inc();
            batch.push_skipped(partition, offset);
            return;
        }
        let dead = |kind, reason: String| DeadLetter::of(&message, kind, reason);
        let Some(payload) = message.payload() else {
            batch.push_dead(dead("decode", "message has no payload".into()));
            return;
        };
        match vero_model::decode_record(payload) {
            Err(e @ DecodeError::UnknownSchema(_)) => {
                self.lifecycle().block(&self.consumer, (message.topic(), partition, offset), &e.to_string());
            }
            Err(e) => batch.push_dead(dead("decode", format!("not a TrackEvent or UserCommand: {e}"))),
            Ok(Record::Event(event)) => match EventRow::from_event(event, partition, offset) {
                Ok(row) => batch.push_row(row),
                Err(reason) => batch.push_dead(dead("invalid_row", reason)),
            },
            Ok(Record::Command(command)) if command.action == UserAction::Delete => {
                batch.push_delete(UserDelete { command, partition, offset })
            }
            Ok(Record::Command(command)) => {
                let action = command.action.symbol().to_ascii_lowercase();
                self.metrics.commands_skipped.with_label_values(&[&action]).inc();
                batch.push_skipped(partition, offset);
            }
        }
    }

    /// Write `batch` (rows, then delete mutations, then dead letters), store its offsets, and leave the
    /// records that arrived meanwhile in `batch`. On give-up nothing is stored.
    ///
    /// Consumption goes on while the write is in flight, into the next batch, so the
    /// consumer and ClickHouse work at the same time. Once that next batch is full, no
    /// more messages are taken (memory: two batches plus librdkafka's bounded
    /// prefetch); if the write is still running [`PAUSE_AFTER`] later (ClickHouse slow
    /// or down), the partitions are paused and the consumer is polled again, so
    /// rebalances and the group session are served; they are resumed when the write is
    /// done.
    async fn flush(&mut self, batch: &mut Batch, give_up: &CancellationToken) {
        if batch.is_empty() {
            return;
        }
        let mut current = batch.take();
        // One inserted_at for every attempt of this batch: a retry sends the same bytes.
        EventRow::stamp(&mut current.rows, crate::row::now_secs());
        self.last_partial_write = if current.is_full() { None } else { Some(Instant::now()) };
        tracing::debug!(
            records = current.len(),
            age_ms = current.age().as_millis() as u64,
            full = current.is_full(),
            "flushing a batch"
        );
        let mut paused = false;
        let (current, result) = {
            // On its own task, so that encoding and sending the rows run on another core
            // than decoding the next batch.
            let (outputs, give_up) = (self.outputs.clone(), give_up.clone());
            let mut work = tokio::spawn(async move {
                let result = outputs.write_batch(&current, &give_up).await;
                (current, result)
            });
            // When the next batch is full, stop taking messages (librdkafka's prefetch
            // bound holds the rest); pause only if the write still runs PAUSE_AFTER later.
            let mut full_since: Option<Instant> = None;
            loop {
                let pause_at = full_since.filter(|_| !paused).map(|since| since + PAUSE_AFTER);
                tokio::select! {
                    joined = &mut work => break joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
                    _ = sleep_until(pause_at), if pause_at.is_some() => {
                        self.lifecycle().pause_for_write(&self.consumer);
                        paused = true;
                    }
                    // Polled while paused too: that serves rebalances and the group session.
                    received = self.consumer.recv(), if paused || !batch.is_full() => {
                        self.accept(received, batch).await;
                        self.drain_ready(batch).await;
                        if batch.is_full() {
                            full_since.get_or_insert_with(Instant::now);
                        }
                    }
                }
            }
        };
        match result {
            Ok(parked) => {
                let mut done = current.last_offsets.clone();
                done.retain(|partition, _| !parked.contains(partition));
                self.store_offsets(&done);
                if !parked.is_empty() {
                    self.park(&parked, &current.first_offsets, batch);
                }
            }
            Err(Abandoned) => tracing::warn!(records = current.len(), "batch abandoned; it will be redelivered"),
        }
        if paused {
            self.lifecycle().end_write_pause(&self.consumer);
        }
    }

    fn store_offsets(&mut self, last_offsets: &BTreeMap<i32, i64>) {
        let assigned = self.assigned_partitions();
        for (&partition, &offset) in last_offsets {
            // A partition revoked meanwhile belongs to someone else now; its rows are in
            // ClickHouse anyway and will collapse with the new owner's re-insert.
            if !assigned.contains(&partition) {
                continue;
            }
            // librdkafka stores `offset + 1`, the next record to read.
            match self.consumer.store_offset(&self.settings.kafka.events_topic, partition, offset) {
                Ok(()) => {
                    self.stored.insert(partition, offset + 1);
                }
                Err(e) => tracing::debug!(partition, error = %e, "offset not stored"),
            }
        }
    }

    fn assigned_partitions(&self) -> Vec<i32> {
        self.consumer.assignment().map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect()).unwrap_or_default()
    }

    fn lifecycle(&self) -> MutexGuard<'_, Lifecycle> {
        self.lifecycle.lock().expect("lifecycle lock")
    }

    /// Park `partitions` (their shard kept failing): forget their records held in
    /// `next` (read again after the rewind), pause them, remember where to rewind.
    fn park(&self, partitions: &BTreeSet<i32>, first_offsets: &BTreeMap<i32, i64>, next: &mut Batch) {
        let list: Vec<i32> = partitions.iter().copied().collect();
        next.drop_partitions(&list);
        let topic = &self.settings.kafka.events_topic;
        let first = list.iter().filter_map(|p| Some(((topic.clone(), *p), *first_offsets.get(p)?)));
        let next_probe = Instant::now() + self.park_interval();
        self.lifecycle().park(&self.consumer, list.iter().copied(), first, next_probe);
    }

    /// How long a parked shard waits between probes.
    fn park_interval(&self) -> Duration {
        Duration::from_millis(self.settings.retry.shard_park_after_ms.max(self.settings.retry.max_backoff_ms))
    }

    /// Probe the shards of the parked partitions that are due; rewind and resume
    /// those whose shard answers, probe the others again later.
    async fn probe_parked(&self) {
        let due = self.lifecycle().partitions().due(Instant::now());
        if due.is_empty() {
            return;
        }
        let answering = self.outputs.inserter.answering(due.clone()).await;
        let later = Instant::now() + self.park_interval();
        self.lifecycle().probed(&self.consumer, &due, &answering, later);
    }

    /// Synchronously commit what this instance stored for partitions it still owns,
    /// so a clean shutdown leaves nothing to redeliver.
    fn commit_stored(&self) {
        let assigned = self.assigned_partitions();
        let mut tpl = TopicPartitionList::new();
        for (&partition, &next) in self.stored.iter().filter(|(p, _)| assigned.contains(p)) {
            if let Err(e) = tpl.add_partition_offset(&self.settings.kafka.events_topic, partition, Offset::Offset(next))
            {
                tracing::warn!(partition, error = %e, "cannot build the final commit");
            }
        }
        if tpl.count() == 0 {
            return;
        }
        // Async: a synchronous commit has no timeout and blocks forever when the broker
        // is gone. Closing the consumer (on drop) waits for this commit and commits the
        // stored offsets itself, bounded by session.timeout.ms.
        match self.consumer.commit(&tpl, CommitMode::Async) {
            Ok(()) => tracing::info!(partitions = tpl.count(), "final offsets commit sent"),
            Err(e) => {
                tracing::warn!(error = %e, "final commit failed (records since the last auto-commit will be redelivered)")
            }
        }
    }
}

/// Where a batch goes: ClickHouse rows, delete mutations, the dead-letter topic.
pub struct Outputs {
    inserter: Inserter,
    eraser: Eraser,
    dlq: DeadLetterQueue,
    /// The events topic, the source of every letter.
    topic: String,
}

impl Outputs {
    /// `topic`: the events topic, the source of every letter.
    pub fn new(inserter: Inserter, eraser: Eraser, dlq: DeadLetterQueue, topic: String) -> Self {
        Self { inserter, eraser, dlq, topic }
    }

    /// Rows first, then the deletes' mutations (a delete must see the rows before it),
    /// then the dead letters: everything the batch covers is handled when this returns Ok.
    /// Returns the partitions parked on the way (only a batch without deletes may
    /// park: a delete must reach every shard); nothing of them was handled.
    async fn write_batch(&self, batch: &Batch, give_up: &CancellationToken) -> Result<BTreeSet<i32>, Abandoned> {
        let (inserter, eraser, dlq) = (&self.inserter, &self.eraser, &self.dlq);
        let Written { refused, parked } = inserter.write(&batch.rows, batch.deletes.is_empty(), give_up).await?;
        let refused_deletes = eraser.erase(&batch.deletes, give_up).await?;
        let mut letters: Vec<DeadLetter> =
            batch.dead.iter().filter(|letter| !parked.contains(&letter.partition)).cloned().collect();
        letters.extend(refused.into_iter().map(|(index, reason)| {
            let row = &batch.rows[index];
            DeadLetter {
                topic: self.topic.clone(),
                partition: row.kafka_partition,
                offset: row.kafka_offset,
                key: Some(row.user_id.as_bytes().to_vec()),
                payload: Some(vero_model::encode_event(&row.to_event())),
                kind: "rejected",
                reason: format!("ClickHouse refused the row: {reason}"),
            }
        }));
        letters.extend(refused_deletes.into_iter().map(|(index, reason)| {
            let delete = &batch.deletes[index];
            DeadLetter {
                topic: self.topic.clone(),
                partition: delete.partition,
                offset: delete.offset,
                key: Some(delete.command.user_id.as_bytes().to_vec()),
                payload: Some(vero_model::encode(&delete.command)),
                kind: "rejected_delete",
                reason: format!("ClickHouse refused the delete mutation: {reason}"),
            }
        }));
        dlq.send_all(letters, give_up).await?;
        Ok(parked)
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline.into()).await;
    }
}
