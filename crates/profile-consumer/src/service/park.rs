//! Parking the partitions of a ClickHouse shard that keeps failing, so one shard down
//! stops only its own users' profiles (a cluster of several shards; the event sink
//! does the same with its events).
//!
//! * **When:** a write failed for `retry.shard_park_after_ms` and has no erasure left
//!   (an erasure must reach every shard). [`super::write::Writer::write`] probes the
//!   shards of the rows still to write and returns the partitions of those that do
//!   not answer; the rest of the batch is written and its offsets stored.
//! * **Park** ([`LoopState::park`]): every assigned partition on those shards (not
//!   only the batch's, so an outage costs one park delay, not one per partition) is
//!   paused on the events and handoff topics, its profiles are dropped from memory,
//!   and its records read but not written (the batch's, the waiting ones, any still
//!   delivered after the pause) are dropped, remembering the first offset of each.
//!   Nothing of a parked partition is stored, so Kafka is the buffer.
//! * **Resume** ([`LoopState::probe_parked`]): every `max(shard_park_after_ms,
//!   max_backoff_ms)` the parked shards are probed (`SELECT 1` through the replica
//!   failover); a partition whose shard answers is rewound (`seek`) to the first
//!   offset it dropped and resumed. Its next batch restores its profiles from the
//!   profiles topic first, which holds them as last written (a parked partition's
//!   profiles-topic records are never sent: they come after the ClickHouse rows), so
//!   applying the records again counts each of them once. A parked batch has sent
//!   no handoff: handoffs come from reidentifies, which also erase the old id, and a
//!   batch with an erasure is not parked. Its dead letters are sent last, so none.
//! * A parked partition that is revoked is simply forgotten: its new owner reads it
//!   from the committed offset, which never covers a parked record.
//!
//! `vero_profiles_parked_partitions` counts parked partition numbers (alert
//! `VeroProfilesShardDown`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::time::Instant;

use super::LoopState;
use crate::store::Store;

/// A parked partition number (its events- and handoff-topic partitions).
#[derive(Debug, Clone)]
pub struct Parked {
    /// Topic -> where it resumes: the first offset read and not written, else its
    /// position when parked. A topic without an entry had no position yet (it starts
    /// from the committed offset).
    rewind: BTreeMap<String, i64>,
    next_probe: Instant,
}

impl Parked {
    fn note(&mut self, topic: &str, offset: i64) {
        self.rewind.entry(topic.to_owned()).and_modify(|first| *first = (*first).min(offset)).or_insert(offset);
    }
}

impl LoopState<'_> {
    /// Park the assigned partitions on the shards of `partitions` (which the write
    /// parked; `batch` is the batch it wrote, without them).
    pub(super) fn park(&mut self, partitions: &BTreeSet<i32>, batch: &[OwnedMessage], store: &Store) {
        let next_probe = Instant::now() + self.park_interval();
        let on_parked_shards: BTreeSet<i32> = self
            .assigned
            .iter()
            .map(|(_, partition)| *partition)
            .filter(|partition| partitions.iter().any(|parked| store.same_shard(*partition, *parked)))
            .collect();
        // Where each assigned partition stands (after the last record handed to us):
        // the rewind point of a topic with no record read and not written.
        let positions = self.consumer.position().map(|list| list.to_topic_map()).unwrap_or_default();
        let mut pause = TopicPartitionList::new();
        for &partition in &on_parked_shards {
            let parked = self.parked.entry(partition).or_insert_with(|| Parked { rewind: BTreeMap::new(), next_probe });
            // The batch's records of the other partitions were written, offsets stored.
            let unwritten = batch.iter().filter(|m| partitions.contains(&m.partition()));
            for message in unwritten.chain(&self.pending).filter(|m| m.partition() == partition) {
                parked.note(message.topic(), message.offset());
            }
            self.states.drop_partition(partition);
            for (topic, _) in self.assigned.iter().filter(|(_, p)| *p == partition) {
                if let Some(Offset::Offset(next)) = positions.get(&(topic.clone(), partition)) {
                    parked.rewind.entry(topic.clone()).or_insert(*next);
                }
                pause.add_partition(topic, partition);
            }
        }
        self.pending.retain(|m| !on_parked_shards.contains(&m.partition()));
        if let Err(e) = self.consumer.pause(&pause) {
            tracing::warn!(error = %e, "pausing parked partitions failed");
        }
        let rewinds: BTreeMap<i32, &BTreeMap<String, i64>> =
            on_parked_shards.iter().filter_map(|p| Some((*p, &self.parked.get(p)?.rewind))).collect();
        tracing::warn!(
            ?rewinds,
            "partitions parked while their ClickHouse shard fails (partition -> topic -> offset they resume from)"
        );
        self.metrics.parked_partitions.set(self.parked.len() as i64);
    }

    /// Whether `message` is of a parked partition (then it is dropped here and read
    /// again after the rewind).
    pub(super) fn drop_if_parked(&mut self, topic: &str, partition: i32, offset: i64) -> bool {
        let Some(parked) = self.parked.get_mut(&partition) else { return false };
        parked.note(topic, offset);
        true
    }

    pub(super) fn is_parked(&self, partition: i32) -> bool {
        self.parked.contains_key(&partition)
    }

    /// When the next parked shard is due for a probe.
    pub(super) fn next_probe(&self) -> Option<Instant> {
        self.parked.values().map(|parked| parked.next_probe).min()
    }

    /// Probe the shards of the parked partitions that are due; rewind and resume
    /// those whose shard answers.
    pub(super) async fn probe_parked(&mut self, store: &Store) {
        let now = Instant::now();
        let due: BTreeSet<i32> =
            self.parked.iter().filter(|(_, parked)| parked.next_probe <= now).map(|(p, _)| *p).collect();
        if due.is_empty() {
            return;
        }
        let answering = store.answering(due.clone()).await;
        let later = Instant::now() + self.park_interval();
        for partition in due {
            if answering.contains(&partition) {
                self.unpark(partition, later);
            } else if let Some(parked) = self.parked.get_mut(&partition) {
                parked.next_probe = later;
            }
        }
        self.metrics.parked_partitions.set(self.parked.len() as i64);
    }

    /// Rewind `partition` on each topic to the first offset it dropped and resume it;
    /// a failed rewind is tried again at `retry_at`.
    fn unpark(&mut self, partition: i32, retry_at: Instant) {
        let Some(parked) = self.parked.remove(&partition) else { return };
        let mut resume = TopicPartitionList::new();
        for (topic, _) in self.assigned.iter().filter(|(_, p)| *p == partition) {
            if let Some(&offset) = parked.rewind.get(topic) {
                let seek = self.consumer.seek(topic, partition, Offset::Offset(offset), Duration::from_secs(10));
                if let Err(e) = seek {
                    tracing::warn!(topic = %topic, partition, error = %e, "rewinding a parked partition failed; trying again later");
                    self.parked.insert(partition, Parked { next_probe: retry_at, ..parked });
                    return;
                }
            }
            // A blocked partition stays paused (until revoked).
            if !self.blocked.contains_key(&(topic.clone(), partition)) {
                resume.add_partition(topic, partition);
            }
        }
        if let Err(e) = self.consumer.resume(&resume) {
            tracing::warn!(partition, error = %e, "resuming a parked partition failed");
        }
        tracing::info!(partition, rewound_to = ?parked.rewind, "ClickHouse shard answers again: parked partition resumed");
    }

    /// How long a parked shard waits between probes.
    fn park_interval(&self) -> Duration {
        Duration::from_millis(self.settings.retry.shard_park_after_ms.max(self.settings.retry.max_backoff_ms))
    }
}
