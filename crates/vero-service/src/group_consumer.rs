//! The librdkafka configuration of a group consumer, built in one place for both
//! consumers (the event sink and the profile consumer).
//!
//! At least once, as in rust-rdkafka's `at_least_once` example: auto-commit on, but
//! `enable.auto.offset.store=false`, so librdkafka commits (periodically, on revoke and
//! on close) only the offsets the service stored after its side effect was done.
//! End-of-partition events are off (the services never wait for one), statistics come
//! every 5 s (the lag gauges), and the group membership follows
//! [`GroupProtocol::apply`] and static membership when an instance id is set. Each
//! service adds its own tuning and, last, its `kafka.properties`.

use rdkafka::ClientConfig;

use crate::group_protocol::{Assignors, GroupProtocol};

/// How often librdkafka reports statistics (the consumers' lag gauges come from them).
pub const STATISTICS_INTERVAL_MS: u64 = 5_000;

/// What a group consumer's configuration is made of.
#[derive(Debug, Clone, Copy)]
pub struct GroupConsumerConfig<'a> {
    pub brokers: &'a str,
    pub group_id: &'a str,
    pub protocol: GroupProtocol,
    pub assignors: Assignors,
    /// Used by the classic protocol only (KIP-848 takes the broker's).
    pub session_timeout_ms: u64,
    pub max_poll_interval_ms: u64,
    /// `group.instance.id` (static membership, KIP-345); empty: dynamic membership.
    pub group_instance_id: &'a str,
    /// Where a partition without a committed offset starts: `earliest` or `latest`.
    pub auto_offset_reset: &'a str,
    pub auto_commit_interval_ms: u64,
}

impl GroupConsumerConfig<'_> {
    /// The client configuration (without `kafka.properties`: the caller applies them last).
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.brokers)
            .set("group.id", self.group_id)
            .set("auto.offset.reset", self.auto_offset_reset)
            .set("max.poll.interval.ms", self.max_poll_interval_ms.to_string())
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", self.auto_commit_interval_ms.to_string())
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", STATISTICS_INTERVAL_MS.to_string());
        self.protocol.apply(&mut config, self.assignors, self.session_timeout_ms);
        if !self.group_instance_id.is_empty() {
            config.set("group.instance.id", self.group_instance_id);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> GroupConsumerConfig<'static> {
        GroupConsumerConfig {
            brokers: "localhost:9092",
            group_id: "vero-test",
            protocol: GroupProtocol::Classic,
            assignors: Assignors { classic: "range", consumer: "range" },
            session_timeout_ms: 10_000,
            max_poll_interval_ms: 12_000,
            group_instance_id: "",
            auto_offset_reset: "earliest",
            auto_commit_interval_ms: 1_000,
        }
    }

    #[test]
    fn offsets_are_committed_only_once_stored() {
        let config = sample().client_config();
        assert_eq!(config.get("enable.auto.commit"), Some("true"));
        assert_eq!(config.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(config.get("auto.commit.interval.ms"), Some("1000"));
        assert_eq!(config.get("auto.offset.reset"), Some("earliest"));
        assert_eq!(config.get("max.poll.interval.ms"), Some("12000"));
        assert_eq!(config.get("session.timeout.ms"), Some("10000"));
        assert_eq!(config.get("partition.assignment.strategy"), Some("range"));
    }

    #[test]
    fn static_membership_only_with_an_instance_id() {
        assert_eq!(sample().client_config().get("group.instance.id"), None);
        let with_id = GroupConsumerConfig { group_instance_id: "sink-0", ..sample() };
        assert_eq!(with_id.client_config().get("group.instance.id"), Some("sink-0"));
    }
}
