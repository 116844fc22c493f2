//! Every librdkafka error a client of ours meets, classified once by what fixes it,
//! as `vero_clickhouse::Failure` does for ClickHouse: the gateway's producer, the
//! event sink's dead-letter producer and the profile consumer's producer all ask
//! [`Cause::of`], and each maps the [`Class`] (or, at the HTTP boundary, the cause) to
//! its own behaviour in one place.
//!
//! * [`Class::Retryable`]: brokers down or restarting, leaders moving, timeouts, a full
//!   queue; the same record goes through later.
//! * [`Class::Operator`]: refused until someone changes the deployment: an ACL, a
//!   missing topic, the credentials, a producer in a fatal state. Retried like an
//!   outage by the consumers (never dead-lettered, never committed past), and shown:
//!   `needs_operator`, `/readyz` 503.
//! * [`Class::Invalid`]: the record itself (too large, refused as invalid); repeating
//!   it cannot help.
//!
//! Anything not listed is retryable: an unknown error stalls a consumer visibly rather
//! than dropping a record.

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// What a librdkafka error says about the record or the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The producer's bounded queue is full (back-pressure).
    QueueFull,
    /// No acknowledgement within the delivery timeout.
    TimedOut,
    /// Any other transient failure: brokers unreachable, leader changes, not enough
    /// in-sync replicas, request timeouts.
    Unavailable,
    /// SASL or TLS refused (`kafka_security::Watch` names the setting).
    Credentials,
    /// An ACL does not allow the operation (topic, group, cluster, transactional id).
    NotAuthorized,
    /// The topic does not exist, or its name is not valid.
    NoSuchTopic,
    /// The producer is in a fatal state (e.g. fenced): only a restart clears it.
    Fatal,
    /// The record exceeds the broker's or the producer's maximum message size.
    TooLarge,
    /// The broker refused the record as invalid or corrupt.
    InvalidRecord,
}

/// What fixes a [`Cause`]: the one classification of [`crate::retry`].
pub use crate::retry::Class;

impl Cause {
    /// The one classification of a librdkafka error.
    pub fn of(error: &KafkaError) -> Self {
        use RDKafkaErrorCode as C;
        let code = match error {
            KafkaError::MessageProduction(code) => Some(*code),
            other => other.rdkafka_error_code(),
        };
        match code {
            Some(C::QueueFull) => Self::QueueFull,
            Some(C::MessageTimedOut) => Self::TimedOut,
            Some(C::Authentication | C::SaslAuthenticationFailed) => Self::Credentials,
            Some(
                C::TopicAuthorizationFailed
                | C::GroupAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::TransactionalIdAuthorizationFailed,
            ) => Self::NotAuthorized,
            Some(C::UnknownTopic | C::UnknownTopicOrPartition | C::InvalidTopic) => Self::NoSuchTopic,
            Some(C::Fatal) => Self::Fatal,
            Some(C::MessageSizeTooLarge | C::InvalidMessageSize) => Self::TooLarge,
            Some(C::InvalidRecord | C::InvalidMessage) => Self::InvalidRecord,
            _ => Self::Unavailable,
        }
    }

    pub fn class(self) -> Class {
        match self {
            Self::QueueFull | Self::TimedOut | Self::Unavailable => Class::Retryable,
            Self::Credentials | Self::NotAuthorized | Self::NoSuchTopic | Self::Fatal => Class::Operator,
            Self::TooLarge | Self::InvalidRecord => Class::Invalid,
        }
    }

    /// A short description for answers and `/readyz`, without the error's details.
    pub fn describe(self) -> &'static str {
        match self {
            Self::QueueFull => "the producer queue is full",
            Self::TimedOut => "Kafka did not acknowledge it in time",
            Self::Unavailable => "Kafka is unavailable",
            Self::Credentials => "Kafka refuses the credentials or certificates",
            Self::NotAuthorized => "not authorized by Kafka's ACLs (topic, group or cluster)",
            Self::NoSuchTopic => "the topic does not exist",
            Self::Fatal => "the producer is in a fatal state",
            Self::TooLarge => "the record is larger than the broker accepts",
            Self::InvalidRecord => "the broker rejected the record as invalid",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RDKafkaErrorCode as C;

    fn produce(code: RDKafkaErrorCode) -> Cause {
        Cause::of(&KafkaError::MessageProduction(code))
    }

    #[test]
    fn every_listed_code_has_its_cause_and_class() {
        let cases = [
            (C::QueueFull, Cause::QueueFull, Class::Retryable),
            (C::MessageTimedOut, Cause::TimedOut, Class::Retryable),
            (C::BrokerTransportFailure, Cause::Unavailable, Class::Retryable),
            (C::NotEnoughReplicas, Cause::Unavailable, Class::Retryable),
            (C::LeaderNotAvailable, Cause::Unavailable, Class::Retryable),
            (C::SaslAuthenticationFailed, Cause::Credentials, Class::Operator),
            (C::TopicAuthorizationFailed, Cause::NotAuthorized, Class::Operator),
            (C::GroupAuthorizationFailed, Cause::NotAuthorized, Class::Operator),
            (C::UnknownTopicOrPartition, Cause::NoSuchTopic, Class::Operator),
            (C::Fatal, Cause::Fatal, Class::Operator),
            (C::MessageSizeTooLarge, Cause::TooLarge, Class::Invalid),
            (C::InvalidRecord, Cause::InvalidRecord, Class::Invalid),
        ];
        for (code, cause, class) in cases {
            assert_eq!((produce(code), produce(code).class()), (cause, class), "{code:?}");
        }
        // Errors of other operations carry their code the same way.
        let fetch = KafkaError::MetadataFetch(C::TopicAuthorizationFailed);
        assert_eq!(Cause::of(&fetch), Cause::NotAuthorized);
        assert_eq!(Cause::of(&KafkaError::Canceled), Cause::Unavailable, "no code: retryable");
    }
}
