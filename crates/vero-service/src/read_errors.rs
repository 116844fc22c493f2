//! What a group consumer's read errors show, by the one classification of Kafka
//! errors ([`crate::kafka_failure::Cause`]), for both consumers' loops:
//!
//! * a refused login or certificate: the service's [`crate::kafka_security::Watch`]
//!   reports it (once, naming the setting) and holds `/readyz`;
//! * operator-fixable (an ACL refusing the topic or the group): an error log,
//!   `needs_operator` 1 and `/readyz` held with the cause, until a record is read or
//!   partitions are assigned again (the group and the topic accept the member);
//! * anything else (a broker restarting, a leader moving, a subscribed topic not
//!   created yet, which the consumer waits for): a warning; librdkafka retries by
//!   itself.
//!
//! Nothing is skipped either way: a read error moves no offset.

use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::error::KafkaError;

use crate::kafka_failure::{Cause, Class};
use crate::retry::Visibility;

/// The `Health` hold of a read refused until an operator acts.
const HOLD: &str = "kafka read";

/// A consumer loop's read errors (see the module doc).
pub struct ReadErrors {
    visibility: Visibility,
    /// Whether the hold is set (checked on every record read: no lock).
    held: AtomicBool,
}

impl ReadErrors {
    /// `visibility.kafka` is the service's watch (refusals are its to report).
    pub fn new(visibility: Visibility) -> Self {
        Self { visibility, held: AtomicBool::new(false) }
    }

    /// A poll returned `error`.
    pub fn failed(&self, error: &KafkaError) {
        if self.visibility.kafka.as_ref().is_some_and(|kafka| kafka.is_refusal(error)) {
            return;
        }
        let cause = Cause::of(error);
        if cause.class() != Class::Operator || cause == Cause::NoSuchTopic {
            tracing::warn!(error = %error, "Kafka consumer error");
            return;
        }
        if !self.held.swap(true, Ordering::SeqCst) {
            tracing::error!(error = %error, "Kafka refuses the consumer's reads until an operator acts");
        }
        self.visibility.needs_operator.set(1);
        let reason = format!("operator action needed: reading from Kafka: {} ({error})", cause.describe());
        self.visibility.health.hold(HOLD, reason);
    }

    /// A record was read, or partitions were assigned: a refusal shown before is over,
    /// and Kafka accepts this consumer's connection (the watch clears a refusal it saw,
    /// e.g. a handshake cut short, at once rather than at the next statistics).
    pub fn read(&self) {
        if let Some(kafka) = &self.visibility.kafka {
            kafka.accepted();
        }
        if !self.held.load(Ordering::Relaxed) || !self.held.swap(false, Ordering::SeqCst) {
            return;
        }
        self.visibility.health.release(HOLD);
        if self.visibility.kafka.as_ref().is_none_or(|kafka| kafka.refused().is_none()) {
            self.visibility.needs_operator.set(0);
        }
        tracing::info!("Kafka accepts the consumer's reads again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Health;
    use prometheus::IntGauge;
    use rdkafka::types::RDKafkaErrorCode;

    #[test]
    fn an_acl_refusal_holds_readiness_until_a_record_is_read() {
        let health = Health::starting("starting");
        health.ready();
        let gauge = IntGauge::new("test_needs_operator", "x").unwrap();
        let errors = ReadErrors::new(Visibility::starting(&health, &gauge));

        errors.failed(&KafkaError::MessageConsumption(RDKafkaErrorCode::BrokerTransportFailure));
        assert_eq!((health.readiness(), gauge.get()), (Ok(()), 0), "a transient error only warns");

        errors.failed(&KafkaError::MessageConsumption(RDKafkaErrorCode::TopicAuthorizationFailed));
        let ready = health.readiness().unwrap_err();
        assert!(
            ready.contains("operator action needed") && ready.contains("not authorized by Kafka's ACLs"),
            "{ready}"
        );
        assert_eq!(gauge.get(), 1);

        errors.read();
        assert_eq!((health.readiness(), gauge.get()), (Ok(()), 0));

        errors.failed(&KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition));
        assert_eq!((health.readiness(), gauge.get()), (Ok(()), 0), "a topic not created yet is waited for");
    }
}
