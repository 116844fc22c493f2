//! Static partition assignment: a consumer instance that owns a fixed share of the
//! partitions instead of joining a consumer group's rebalancing.
//!
//! With `members = N` (N > 0) and `index = i`, the instance takes every partition `p`
//! with `p % N == i` of each topic, through librdkafka's `assign()`: it starts from
//! the offsets committed for the group (`group.id` still names where offsets live)
//! and commits there, but no group coordinator decides who owns what. Nobody else
//! ever takes these partitions: a crashed instance resumes them when it is started
//! again, a frozen one when it continues, and there is no second owner that could
//! write them twice. The price is that scaling means reconfiguring every instance
//! (a StatefulSet ordinal as the index), and a dead instance's partitions wait for it.
//!
//! Why it exists: tansu 0.6's group coordinator stalls a group for good after a
//! member is evicted (docs/reliability.md); with a group coordinator that works
//! (Apache Kafka, Redpanda) use `members = 0`, the consumer group.
//!
//! Topics given together are co-partitioned: the instance gets the same partition
//! numbers of each (the profile consumer needs events partition `p` and handoff
//! partition `p` in one instance).

use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;

/// `kafka.static_members` / `kafka.static_member_index` of a consumer's settings.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub struct StaticAssignment {
    /// 0: join the consumer group (the default). N > 0: one of N fixed instances.
    pub members: u32,
    /// This instance's number, `0..members`.
    pub index: u32,
}

impl StaticAssignment {
    pub fn new(members: u32, index: u32) -> anyhow::Result<Self> {
        anyhow::ensure!(
            members == 0 || index < members,
            "kafka.static_member_index = {index} must be below kafka.static_members = {members}"
        );
        Ok(Self { members, index })
    }

    pub fn is_static(&self) -> bool {
        self.members > 0
    }

    /// The partitions of a topic with `partition_count` partitions this instance owns.
    pub fn partitions(&self, partition_count: i32) -> Vec<i32> {
        (0..partition_count).filter(|p| self.members > 0 && (*p as u32) % self.members == self.index).collect()
    }

    /// Assign this instance's partitions of `topics` (from their committed offsets)
    /// and return what was assigned. Waits up to `timeout` for the topics' metadata.
    pub fn assign<C: ConsumerContext, K: Consumer<C>>(
        &self,
        consumer: &K,
        topics: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        for topic in topics {
            let metadata = consumer
                .fetch_metadata(Some(topic), timeout)
                .with_context(|| format!("reading the partitions of {topic}"))?;
            let count = metadata
                .topics()
                .iter()
                .find(|t| t.name() == *topic && t.error().is_none())
                .map(|t| t.partitions().len() as i32)
                .filter(|n| *n > 0)
                .with_context(|| format!("topic {topic} does not exist"))?;
            for partition in self.partitions(count) {
                list.add_partition_offset(topic, partition, Offset::Stored)?;
            }
        }
        anyhow::ensure!(
            list.count() > 0,
            "static member {} of {} owns no partition of {topics:?}",
            self.index,
            self.members
        );
        consumer.assign(&list).context("assigning the static partitions")?;
        tracing::info!(
            members = self.members,
            index = self.index,
            partitions = ?list.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect::<Vec<_>>(),
            "static assignment (no consumer group rebalancing)"
        );
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_share_the_partitions_without_overlap() {
        let a = StaticAssignment::new(2, 0).unwrap();
        let b = StaticAssignment::new(2, 1).unwrap();
        assert_eq!(a.partitions(5), vec![0, 2, 4]);
        assert_eq!(b.partitions(5), vec![1, 3]);
        assert_eq!(StaticAssignment::new(1, 0).unwrap().partitions(3), vec![0, 1, 2]);
        assert!(StaticAssignment::default().partitions(3).is_empty());
        assert!(StaticAssignment::new(2, 2).unwrap_err().to_string().contains("below"));
    }
}
