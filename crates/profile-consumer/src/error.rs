//! The one error type of the write boundary (ClickHouse and the Kafka topics we
//! produce to) and its single mapping to an action, the failure policy every consumer
//! shares (`vero_clickhouse::Failure`, docs/operations.md "Failure policy"): retry with
//! backoff while unavailable; retry with backoff, not ready and
//! `vero_profiles_needs_operator` at 1 while only an operator can fix it; stop on a
//! write that can never succeed.

use rdkafka::error::KafkaError;
use vero_service::kafka_failure::Cause;
use vero_service::retry::Class;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// ClickHouse or Kafka is unavailable right now: the same write may succeed later.
    #[error("unavailable, will retry: {0}")]
    Unavailable(String),
    /// Refused until an operator acts (credentials, grants, missing table or topic):
    /// retried like an outage, never dead-lettered.
    #[error("refused until an operator acts, will retry: {0}")]
    NeedsOperator(String),
    /// The write was refused and repeating it cannot help (schema mismatch, record
    /// too large, not authorized). The service stops without storing offsets.
    #[error("rejected, not retrying: {0}")]
    Rejected(String),
}

impl WriteError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::NeedsOperator(_))
    }

    /// What fixes it, for the retry policy (`vero_service::retry`).
    pub fn class(&self) -> Class {
        match self {
            Self::Unavailable(_) => Class::Retryable,
            Self::NeedsOperator(_) => Class::Operator,
            Self::Rejected(_) => Class::Invalid,
        }
    }

    /// What went wrong, without the class.
    pub fn message(&self) -> &str {
        match self {
            Self::Unavailable(m) | Self::NeedsOperator(m) | Self::Rejected(m) => m,
        }
    }
}

impl From<vero_clickhouse::Failure> for WriteError {
    fn from(failure: vero_clickhouse::Failure) -> Self {
        match failure {
            vero_clickhouse::Failure::Retryable(m) => Self::Unavailable(format!("ClickHouse: {m}")),
            vero_clickhouse::Failure::Operator(m) => Self::NeedsOperator(format!("ClickHouse: {m}")),
            vero_clickhouse::Failure::Invalid(m) => Self::Rejected(format!("ClickHouse: {m}")),
        }
    }
}

impl From<clickhouse::error::Error> for WriteError {
    fn from(error: clickhouse::error::Error) -> Self {
        vero_clickhouse::Failure::from(error).into()
    }
}

impl From<KafkaError> for WriteError {
    /// By the one classification of Kafka errors (`vero_service::kafka_failure`).
    fn from(error: KafkaError) -> Self {
        let message = format!("Kafka: {error}");
        match Cause::of(&error).class() {
            Class::Invalid => Self::Rejected(message),
            Class::Operator => Self::NeedsOperator(message),
            Class::Retryable => Self::Unavailable(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaErrorCode;

    #[test]
    fn failures_map_to_retry_or_stop() {
        assert!(WriteError::from(KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)).is_retryable());
        assert!(!WriteError::from(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)).is_retryable());
        assert!(WriteError::from(vero_clickhouse::Failure::Retryable("down".into())).is_retryable());
        assert!(!WriteError::from(vero_clickhouse::Failure::Invalid("bad".into())).is_retryable());
        let denied = WriteError::from(KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed));
        assert!(denied.is_retryable() && denied.class() == Class::Operator, "{denied:?}");
        let dropped = WriteError::from(vero_clickhouse::Failure::Operator("Code: 60".into()));
        assert!(dropped.is_retryable() && dropped.class() == Class::Operator, "{dropped:?}");
    }
}
