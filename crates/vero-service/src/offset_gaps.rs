//! Loss is never silent: detect records a consumer skipped because the broker no
//! longer had them.
//!
//! A consumer resumes from its committed offset. When the broker deleted those
//! records before they were read (retention, size-based trimming such as the mock
//! cluster's 5 MiB per partition, a topic re-created), librdkafka applies
//! `auto.offset.reset` and carries on from the earliest record it still has, with
//! only a log line to show for it. This module turns that into a metric and a log
//! naming the partition and the skipped range:
//!
//! * on assignment, the partition's committed offset becomes the next offset
//!   expected ([`OffsetGaps::on_assign`]);
//! * every record's offset is compared with it ([`OffsetGaps::observe`]): a record
//!   *after* the expected offset means `[expected, offset)` was never seen;
//!   `vero_consumer_offsets_skipped_total{topic,partition}` grows by the gap's size
//!   (the `ConsumerSkippedRecords` alert fires on it) and an ERROR log names it.
//!
//! Valid for topics whose offsets are contiguous: not compacted and written without
//! transactions (no control records), which holds for the events and handoff topics
//! (the gateway's idempotent producer writes no control records). A record at or
//! before the expected offset (redelivery after a rebalance) is normal.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus::{IntCounterVec, Opts, Registry};
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

/// How long the committed-offset lookup on assignment may take.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(5);

/// A skipped range of one partition: offsets `from..to` were never delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub topic: String,
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

pub struct OffsetGaps {
    expected: Mutex<HashMap<(String, i32), i64>>,
    skipped: IntCounterVec,
}

impl std::fmt::Debug for OffsetGaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffsetGaps").finish_non_exhaustive()
    }
}

impl OffsetGaps {
    /// Register `vero_consumer_offsets_skipped_total` in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let skipped = IntCounterVec::new(
            Opts::new(
                "vero_consumer_offsets_skipped_total",
                "Records this consumer never received because the broker had deleted them (offset reset past the committed offset)",
            ),
            &["topic", "partition"],
        )?;
        registry.register(Box::new(skipped.clone()))?;
        Ok(Self { expected: Mutex::new(HashMap::new()), skipped })
    }

    /// Expect `next` as the next offset of `topic`/`partition`.
    pub fn expect(&self, topic: &str, partition: i32, next: i64) {
        self.expected.lock().expect("offset gaps lock").insert((topic.to_owned(), partition), next);
    }

    /// Look up the committed offsets of newly assigned `partitions` (call from the
    /// assign callback). Partitions without a committed offset (a new group) expect
    /// nothing: where such a group starts is `auto.offset.reset`'s choice.
    pub fn on_assign<C: ConsumerContext, K: Consumer<C>>(&self, consumer: &K, partitions: &TopicPartitionList) {
        // The series exists (at 0) from the assignment on, so `increase()` in the
        // alert sees the first skip too; counters are kept across revokes.
        for element in partitions.elements() {
            self.skipped.with_label_values(&[element.topic(), &element.partition().to_string()]).inc_by(0);
        }
        match consumer.committed_offsets(partitions.clone(), COMMITTED_TIMEOUT) {
            Ok(committed) => {
                for element in committed.elements() {
                    if let Offset::Offset(next) = element.offset() {
                        self.expect(element.topic(), element.partition(), next);
                    }
                }
            }
            // Without the committed offsets a gap at the start of this assignment goes
            // unnoticed; say so rather than guess.
            Err(e) => {
                tracing::warn!(error = %e, "committed offsets unavailable: offset gaps of this assignment are not checked")
            }
        }
    }

    /// Forget revoked partitions (the next owner checks them).
    pub fn on_revoke(&self, partitions: &TopicPartitionList) {
        let mut expected = self.expected.lock().expect("offset gaps lock");
        for element in partitions.elements() {
            expected.remove(&(element.topic().to_owned(), element.partition()));
        }
    }

    /// Account for a received record; returns the gap before it, if any (already
    /// counted and logged).
    pub fn observe(&self, topic: &str, partition: i32, offset: i64) -> Option<Gap> {
        let gap = {
            let mut expected = self.expected.lock().expect("offset gaps lock");
            let key = (topic.to_owned(), partition);
            let gap = match expected.get(&key) {
                Some(&next) if offset > next => {
                    Some(Gap { topic: topic.to_owned(), partition, from: next, to: offset })
                }
                _ => None,
            };
            let next = expected.entry(key).or_insert(offset + 1);
            *next = (*next).max(offset + 1);
            gap
        };
        if let Some(gap) = &gap {
            let count = u64::try_from(gap.to - gap.from).unwrap_or(0);
            self.skipped.with_label_values(&[topic, &partition.to_string()]).inc_by(count);
            tracing::error!(
                topic,
                partition,
                from = gap.from,
                to = gap.to,
                skipped = count,
                "records skipped: the broker no longer had offsets [from, to) (deleted by retention or trimming before \
                 they were consumed); they are lost for this consumer"
            );
        }
        gap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jump_past_the_expected_offset_is_counted_once() {
        let registry = Registry::new();
        let gaps = OffsetGaps::new(&registry).unwrap();
        // Nothing expected yet (new group): the first record sets the baseline.
        assert_eq!(gaps.observe("t", 0, 40), None);
        assert_eq!(gaps.observe("t", 0, 41), None);
        // Redelivery of older records is not a gap.
        assert_eq!(gaps.observe("t", 0, 10), None);
        assert_eq!(gaps.observe("t", 0, 42), None);
        // Committed 100 on assignment, first record at 150: 50 skipped.
        gaps.expect("t", 1, 100);
        assert_eq!(gaps.observe("t", 1, 150), Some(Gap { topic: "t".into(), partition: 1, from: 100, to: 150 }));
        assert_eq!(gaps.observe("t", 1, 151), None);
        let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
        assert!(text.contains("vero_consumer_offsets_skipped_total{partition=\"1\",topic=\"t\"} 50"), "{text}");
        assert!(!text.contains("partition=\"0\""), "{text}");
    }
}
