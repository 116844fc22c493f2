//! `kafka.group_protocol`: which consumer-group protocol both consumers speak, and
//! the librdkafka settings that go with it, in one place.
//!
//! * `classic` (the default): the JoinGroup/SyncGroup protocol every Kafka-compatible
//!   broker serves. The member's assignor decides; `session.timeout.ms` is the
//!   member's own setting.
//! * `consumer`: KIP-848, generally available on Apache Kafka 4.x and in the
//!   librdkafka that rdkafka 0.39 bundles. The group coordinator assigns partitions
//!   itself, incrementally: a joining or leaving member moves only the partitions
//!   that change hands and nobody stops for a group-wide barrier. The session timeout
//!   is then the broker's (`group.consumer.session.timeout.ms`), and librdkafka
//!   refuses the classic-only properties, so they are not set.
//!
//! The assignor is the caller's: each consumer names one per protocol (the event sink
//! `cooperative-sticky` / `uniform`, the profile consumer `range` / `range` because it
//! needs events and handoff partition `p` on one member). `docs/design.md` ("Consumer
//! groups") has the measured rebalance pause of both.

use rdkafka::ClientConfig;
use serde::Deserialize;

/// The consumer-group protocol of a consumer (`kafka.group_protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupProtocol {
    #[default]
    Classic,
    Consumer,
}

/// The partition assignor a consumer uses under each protocol.
#[derive(Debug, Clone, Copy)]
pub struct Assignors {
    /// librdkafka `partition.assignment.strategy` under the classic protocol.
    pub classic: &'static str,
    /// librdkafka `group.remote.assignor` (the broker's assignor) under KIP-848.
    pub consumer: &'static str,
}

impl GroupProtocol {
    /// Set the group-membership properties of a group consumer's `config`.
    pub fn apply(self, config: &mut ClientConfig, assignors: Assignors, session_timeout_ms: u64) {
        match self {
            GroupProtocol::Classic => {
                config
                    .set("group.protocol", "classic")
                    .set("partition.assignment.strategy", assignors.classic)
                    .set("session.timeout.ms", session_timeout_ms.to_string());
            }
            GroupProtocol::Consumer => {
                config.set("group.protocol", "consumer").set("group.remote.assignor", assignors.consumer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASSIGNORS: Assignors = Assignors { classic: "cooperative-sticky", consumer: "uniform" };

    #[test]
    fn classic_sets_the_member_side_assignor_and_session() {
        let mut config = ClientConfig::new();
        GroupProtocol::Classic.apply(&mut config, ASSIGNORS, 10_000);
        assert_eq!(config.get("group.protocol"), Some("classic"));
        assert_eq!(config.get("partition.assignment.strategy"), Some("cooperative-sticky"));
        assert_eq!(config.get("session.timeout.ms"), Some("10000"));
        assert_eq!(config.get("group.remote.assignor"), None);
    }

    #[test]
    fn consumer_leaves_the_classic_only_properties_out() {
        let mut config = ClientConfig::new();
        GroupProtocol::Consumer.apply(&mut config, ASSIGNORS, 10_000);
        assert_eq!(config.get("group.protocol"), Some("consumer"));
        assert_eq!(config.get("group.remote.assignor"), Some("uniform"));
        assert_eq!(config.get("session.timeout.ms"), None);
        assert_eq!(config.get("partition.assignment.strategy"), None);
    }

    #[test]
    fn parsed_from_lowercase_names() {
        #[derive(Deserialize)]
        struct Wrapper {
            protocol: GroupProtocol,
        }
        let parsed: Wrapper = serde_json::from_str(r#"{"protocol":"consumer"}"#).unwrap();
        assert_eq!(parsed.protocol, GroupProtocol::Consumer);
        assert!(serde_json::from_str::<Wrapper>(r#"{"protocol":"eager"}"#).is_err());
    }
}
