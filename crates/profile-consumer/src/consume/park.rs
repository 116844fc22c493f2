//! Parking the partitions of a ClickHouse shard that keeps failing, so one shard down
//! stops only its own users' profiles (a cluster of several shards; the event sink
//! does the same with its events).
//!
//! * **When:** a write failed for `retry.shard_park_after_ms` and has no erasure left
//!   (an erasure must reach every shard). [`super::write::Writer::write`] probes the
//!   shards of the rows still to write and returns the partitions of those that do
//!   not answer; the rest of the batch is written and its offsets stored.
//! * **Park** ([`LoopState::park`], the rules in [`vero_service::partitions`]): every
//!   assigned partition on those shards (not only the batch's, so an outage costs
//!   one park delay, not one per partition) is paused on the events and handoff
//!   topics, its profiles are dropped from memory, and its records read but not
//!   written (the batch's, the waiting ones, any still delivered after the pause) are
//!   dropped, remembering the first offset of each. Nothing of a parked partition is
//!   stored, so Kafka is the buffer.
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

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::message::OwnedMessage;
use rdkafka::Message;

use super::LoopState;
use crate::destination::Destination;

impl LoopState<'_> {
    /// Park the assigned partitions on the shards of `partitions` (which the write
    /// parked; `batch` is the batch it wrote, without them).
    pub(super) fn park(&mut self, partitions: &BTreeSet<i32>, batch: &[OwnedMessage], destination: &Destination) {
        let on_parked_shards: BTreeSet<i32> = self
            .lifecycle
            .partitions()
            .owned()
            .into_iter()
            .map(|(_, partition)| partition)
            .filter(|partition| partitions.iter().any(|parked| destination.same_shard(*partition, *parked)))
            .collect();
        // The batch's records of the other partitions were written, offsets stored.
        let unwritten = batch.iter().filter(|m| partitions.contains(&m.partition()));
        let first: Vec<_> = unwritten
            .chain(&self.pending)
            .filter(|m| on_parked_shards.contains(&m.partition()))
            .map(|m| ((m.topic().to_owned(), m.partition()), m.offset()))
            .collect();
        for &partition in &on_parked_shards {
            self.states.drop_partition(partition);
        }
        self.pending.retain(|m| !on_parked_shards.contains(&m.partition()));
        let next_probe = Instant::now() + self.park_interval();
        self.lifecycle.park(self.consumer, on_parked_shards, first, next_probe);
    }

    /// Probe the shards of the parked partitions that are due; rewind and resume
    /// those whose shard answers.
    pub(super) async fn probe_parked(&mut self, destination: &Destination) {
        let due = self.lifecycle.partitions().due(Instant::now());
        if due.is_empty() {
            return;
        }
        let answering = destination.answering(due.iter().copied().collect()).await;
        let later = Instant::now() + self.park_interval();
        self.lifecycle.probed(self.consumer, &due, &answering, later);
    }

    /// How long a parked shard waits between probes.
    fn park_interval(&self) -> Duration {
        Duration::from_millis(self.settings.retry.shard_park_after_ms.max(self.settings.retry.max_backoff_ms))
    }
}
