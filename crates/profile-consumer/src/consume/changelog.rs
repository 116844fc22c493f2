//! The profiles topic as the fence of a partition's writes.
//!
//! Only a partition's owner writes that partition of the profiles topic. A member the
//! group dropped while it was not polling (frozen, or stalled past the session or
//! `max.poll.interval.ms`) learns of the revoke only at its next poll, and a write it
//! finishes before then lands after the new owner's: ClickHouse would show its older
//! state, and a later restore would read it back and start from it.
//!
//! So right before a batch's writes, and again right before its profiles-topic
//! records, the writer compares each partition's end offset on the profiles topic with
//! the end this member knows: where its restore stopped, moved on by every record it
//! wrote itself ([`Changelog`]). An end further on means someone else wrote there. The
//! partition is then left out of the write (nothing of it is written, its offsets are
//! not stored) and rewound ([`LoopState::rewind`]): its profiles are dropped, its records read
//! again from the first one not written, after a restore that reads the other
//! member's records. If the group did take the partition away, the revoke follows at
//! the next poll and the rewind is moot; if not (an operator wrote a tombstone), the
//! partition simply continues from what the topic holds.
//!
//! What this cannot cover, as for the event sink (docs/design.md): a member frozen
//! between the check and the end of its write, for longer than the group session.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset};

use super::LoopState;
use crate::error::WriteError;
use crate::kafka::producer::Producer;

/// How long one end-offset query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The end of each owned partition of the profiles topic, as this member knows it.
pub struct Changelog {
    topic: String,
    producer: Producer,
    ends: Mutex<Ends>,
}

/// The bookkeeping of [`Changelog`], without Kafka.
#[derive(Debug, Default, PartialEq)]
pub struct Ends(BTreeMap<i32, i64>);

impl Ends {
    /// A restore of `partition` read everything before `end`.
    pub fn restored(&mut self, partition: i32, end: i64) {
        self.0.insert(partition, end);
    }

    /// This member wrote a record at `offset` of `partition`.
    pub fn wrote(&mut self, partition: i32, offset: i64) {
        if let Some(end) = self.0.get_mut(&partition) {
            *end = (*end).max(offset + 1);
        }
    }

    /// The partition is not this member's any more (revoked, or rewound until its
    /// next restore).
    pub fn forget(&mut self, partition: i32) {
        self.0.remove(&partition);
    }

    pub fn known(&self, partition: i32) -> Option<i64> {
        self.0.get(&partition).copied()
    }

    /// Of `found` (partition, end offset on the topic), the partitions someone else
    /// wrote: their end is past the known one. A partition with no known end was not
    /// restored by this member and is not judged.
    pub fn moved(&self, found: &[(i32, i64)]) -> BTreeSet<i32> {
        found.iter().filter(|(p, end)| self.known(*p).is_some_and(|known| *end > known)).map(|(p, _)| *p).collect()
    }
}

impl Changelog {
    pub fn new(topic: String, producer: Producer) -> Self {
        Self { topic, producer, ends: Mutex::default() }
    }

    fn ends(&self) -> std::sync::MutexGuard<'_, Ends> {
        self.ends.lock().expect("changelog lock")
    }

    pub fn restored(&self, partition: i32, end: i64) {
        self.ends().restored(partition, end);
    }

    pub fn wrote(&self, partition: i32, offset: i64) {
        self.ends().wrote(partition, offset);
    }

    pub fn forget(&self, partition: i32) {
        self.ends().forget(partition);
    }

    /// The end of `partition` as this member knows it: its content up to there is
    /// this member's profiles, what the local store checkpoints.
    pub fn known(&self, partition: i32) -> Option<i64> {
        self.ends().known(partition)
    }

    /// Which of `partitions` someone else wrote since this member last knew their end
    /// (one end-offset query per partition it knows, concurrently).
    pub async fn moved(&self, partitions: &BTreeSet<i32>) -> Result<BTreeSet<i32>, WriteError> {
        let known: Vec<i32> = partitions.iter().copied().filter(|p| self.ends().known(*p).is_some()).collect();
        if known.is_empty() {
            return Ok(BTreeSet::new());
        }
        // One query per partition, all at once: the check costs one round trip.
        let queries = known.into_iter().map(|partition| {
            let (producer, topic) = (self.producer.clone(), self.topic.clone());
            tokio::task::spawn_blocking(move || {
                producer.end_offset(&topic, partition, QUERY_TIMEOUT).map(|end| (partition, end))
            })
        });
        let mut found = Vec::new();
        for answer in futures::future::join_all(queries).await {
            let answer =
                answer.map_err(|e| WriteError::Unavailable(format!("end offset query did not finish: {e}")))?;
            found.push(answer?);
        }
        Ok(self.ends().moved(&found))
    }
}

impl LoopState<'_> {
    /// Start `partitions` over from the profiles topic (another member wrote it, see
    /// the module docs): drop their profiles and waiting records, and seek each of
    /// their topics back to its first record in `batch` or waiting, which were not
    /// written. A seek that fails on a partition still assigned ends the service: going
    /// on would skip those records (a restart reads them from the committed offset).
    pub(super) fn rewind(&mut self, partitions: &BTreeSet<i32>, batch: &[OwnedMessage]) -> anyhow::Result<()> {
        for &partition in partitions {
            let mut first: BTreeMap<String, i64> = BTreeMap::new();
            for message in batch.iter().chain(&self.pending).filter(|m| m.partition() == partition) {
                let offset = message.offset();
                first.entry(message.topic().to_owned()).and_modify(|o| *o = (*o).min(offset)).or_insert(offset);
            }
            self.states.drop_partition(partition);
            self.changelog.forget(partition);
            self.pending.retain(|m| m.partition() != partition);
            for (topic, offset) in &first {
                if !self.lifecycle.partitions().owns(topic, partition) {
                    continue;
                }
                if let Err(e) = self.consumer.seek(topic, partition, Offset::Offset(*offset), QUERY_TIMEOUT) {
                    let still_ours = self.consumer.assignment().is_ok_and(|list| {
                        list.elements().iter().any(|e| e.topic() == topic && e.partition() == partition)
                    });
                    if still_ours {
                        anyhow::bail!("rewinding {topic}/{partition} to offset {offset} failed: {e}");
                    }
                }
            }
            tracing::warn!(
                partition,
                rewound_to = ?first,
                "another member wrote this partition's profiles since this one last did (it was dropped from \
                 the group while not polling?): left out of the write, rewound, restored again before its next record"
            );
        }
        self.observe_states();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_past_the_restored_one_is_someone_elses_write() {
        let mut ends = Ends::default();
        ends.restored(0, 10);
        ends.restored(1, 0);
        assert!(ends.moved(&[(0, 10), (1, 0)]).is_empty());
        assert_eq!(ends.moved(&[(0, 11), (1, 0)]), BTreeSet::from([0]));
    }

    #[test]
    fn own_writes_move_the_known_end() {
        let mut ends = Ends::default();
        ends.restored(2, 5);
        ends.wrote(2, 5);
        ends.wrote(2, 7);
        ends.wrote(2, 6);
        assert_eq!(ends.known(2), Some(8));
        assert!(ends.moved(&[(2, 8)]).is_empty());
        assert_eq!(ends.moved(&[(2, 9)]), BTreeSet::from([2]));
    }

    #[test]
    fn unknown_partitions_are_not_judged() {
        let mut ends = Ends::default();
        // A write to a partition never restored here does not make it known.
        ends.wrote(3, 100);
        assert_eq!(ends.known(3), None);
        assert!(ends.moved(&[(3, 500)]).is_empty());
        ends.restored(3, 4);
        ends.forget(3);
        assert!(ends.moved(&[(3, 500)]).is_empty());
    }
}
