//! Reading partitions of a topic up to where they ended when the read began: what
//! the profile consumer's restore (its profiles topic) and `replay-dlq` (the
//! dead-letter topic) do. Each partition is read from a given offset to its high
//! watermark taken at the start; a record written after that is left for the next
//! read. The whole read is bounded by a deadline, and a consumer error (a broker
//! restarting) is waited out until then, the last one named if it runs out.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

/// A read of `topic` to its ends (see the module doc).
pub struct ToEnd {
    topic: String,
    /// Partition -> its high watermark at the start: the read stops before it.
    ends: BTreeMap<i32, i64>,
    /// Partition -> the next offset to read.
    next: BTreeMap<i32, i64>,
    deadline: Instant,
    timeout: Duration,
    last_error: Option<KafkaError>,
}

impl ToEnd {
    /// A read of `topic` that must be done within `timeout`.
    pub fn new(topic: &str, timeout: Duration) -> Self {
        Self {
            topic: topic.to_owned(),
            ends: BTreeMap::new(),
            next: BTreeMap::new(),
            deadline: Instant::now() + timeout,
            timeout,
            last_error: None,
        }
    }

    /// Read `partition` from `from` up to `end` (its high watermark now); nothing when
    /// `from` is at or past it.
    pub fn add(&mut self, partition: i32, from: i64, end: i64) {
        if from < end {
            self.ends.insert(partition, end);
            self.next.insert(partition, from);
        }
    }

    /// Whether every partition was read to its end (also: there was nothing to read).
    pub fn is_done(&self) -> bool {
        self.ends.iter().all(|(partition, end)| self.reached(*partition) >= *end)
    }

    /// The next offset of `partition` to read (its end once done).
    pub fn reached(&self, partition: i32) -> i64 {
        self.next.get(&partition).copied().unwrap_or(0)
    }

    /// Assign `consumer` to what is to be read, from where it is to be read.
    pub fn assign<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) -> Result<(), KafkaError> {
        let mut list = TopicPartitionList::new();
        for (partition, from) in &self.next {
            list.add_partition_offset(&self.topic, *partition, Offset::Offset(*from))?;
        }
        consumer.assign(&list)
    }

    /// The next record before the ends; `None` once every partition reached its end.
    /// `Some(Err)`: the deadline passed first.
    pub fn next<'c, C: ConsumerContext>(
        &mut self,
        consumer: &'c BaseConsumer<C>,
    ) -> Option<anyhow::Result<BorrowedMessage<'c>>> {
        loop {
            if self.is_done() {
                return None;
            }
            if Instant::now() > self.deadline {
                return Some(Err(self.ran_out()));
            }
            match consumer.poll(Duration::from_millis(200)) {
                None | Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    tracing::debug!(topic = %self.topic, error = %e, "reading to the end: poll failed");
                    self.last_error = Some(e);
                }
                Some(Ok(message)) => {
                    let (partition, offset) = (message.partition(), message.offset());
                    // Written after the read began: the next read's.
                    if self.ends.get(&partition).is_none_or(|end| offset >= *end) {
                        continue;
                    }
                    self.next.insert(partition, offset + 1);
                    return Some(Ok(message));
                }
            }
        }
    }

    fn ran_out(&self) -> anyhow::Error {
        let behind: Vec<String> = self
            .ends
            .iter()
            .filter(|(partition, end)| self.reached(**partition) < **end)
            .map(|(partition, end)| {
                format!("{}/{partition} at offset {} of {end}", self.topic, self.reached(*partition))
            })
            .collect();
        let last = self.last_error.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default();
        anyhow::anyhow!("did not read to the end within {:?}: {}{last}", self.timeout, behind.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_partitions_with_something_to_read_count() {
        let mut read = ToEnd::new("vero.dlq", Duration::from_secs(5));
        assert!(read.is_done(), "nothing to read");
        read.add(0, 10, 10);
        read.add(1, 12, 10);
        assert!(read.is_done(), "both at or past their end");
        read.add(2, 3, 7);
        assert!(!read.is_done());
        assert_eq!(read.reached(2), 3);
        read.next.insert(2, 7);
        assert!(read.is_done());
    }

    #[test]
    fn running_out_names_what_was_left() {
        let mut read = ToEnd::new("vero.profiles", Duration::from_millis(0));
        read.add(3, 5, 9);
        read.last_error = Some(KafkaError::Canceled);
        let message = read.ran_out().to_string();
        assert!(message.contains("vero.profiles/3 at offset 5 of 9"), "{message}");
        assert!(message.contains("last error"), "{message}");
    }
}
