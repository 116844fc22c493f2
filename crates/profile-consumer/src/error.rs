//! The one error type of the write boundary (ClickHouse and the Kafka topics we
//! produce to) and its single mapping to an action: retry with backoff, or stop.

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// ClickHouse or Kafka is unavailable right now: the same write may succeed later.
    #[error("unavailable, will retry: {0}")]
    Unavailable(String),
    /// The write was refused and repeating it cannot help (schema mismatch, record
    /// too large, not authorized). The service stops without storing offsets.
    #[error("rejected, not retrying: {0}")]
    Rejected(String),
}

impl WriteError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

impl From<vero_clickhouse::Failure> for WriteError {
    fn from(failure: vero_clickhouse::Failure) -> Self {
        match failure {
            vero_clickhouse::Failure::Retryable(m) => Self::Unavailable(format!("ClickHouse: {m}")),
            vero_clickhouse::Failure::Invalid(m) => Self::Rejected(format!("ClickHouse: {m}")),
        }
    }
}

impl From<clickhouse::error::Error> for WriteError {
    fn from(error: clickhouse::error::Error) -> Self {
        vero_clickhouse::Failure::from(error).into()
    }
}

/// Producer errors that no retry fixes; everything else (timeouts, brokers down,
/// leader changes) is transient.
const FATAL_PRODUCE_CODES: &[RDKafkaErrorCode] = &[
    RDKafkaErrorCode::MessageSizeTooLarge,
    RDKafkaErrorCode::InvalidMessageSize,
    RDKafkaErrorCode::TopicAuthorizationFailed,
    RDKafkaErrorCode::ClusterAuthorizationFailed,
    RDKafkaErrorCode::InvalidRecord,
    RDKafkaErrorCode::UnknownTopic,
    RDKafkaErrorCode::InvalidTopic,
];

impl From<KafkaError> for WriteError {
    fn from(error: KafkaError) -> Self {
        match error.rdkafka_error_code() {
            Some(code) if FATAL_PRODUCE_CODES.contains(&code) => Self::Rejected(format!("Kafka: {error}")),
            _ => Self::Unavailable(format!("Kafka: {error}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_map_to_retry_or_stop() {
        assert!(WriteError::from(KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)).is_retryable());
        assert!(!WriteError::from(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)).is_retryable());
        assert!(WriteError::from(vero_clickhouse::Failure::Retryable("down".into())).is_retryable());
        assert!(!WriteError::from(vero_clickhouse::Failure::Invalid("bad".into())).is_retryable());
    }
}
