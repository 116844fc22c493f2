//! The dead-letter topic, written the same way by both consumers: a record that can
//! never be written goes there with its key and value, the reason and its source
//! position in the `vero.dlq.*` headers (`vero_model::topics::dlq_headers`), and the
//! name of the consumer that gave up on it (so `replay-dlq` hands it back to that
//! consumer only).
//!
//! A letter is handled once Kafka acknowledged it; only then may the caller store the
//! source offset. A letter Kafka refuses for good (too large for the DLQ topic) goes
//! once more without its value, the headers still pointing at the source record;
//! refused again, it is logged and dropped: never retried forever. Any other failure
//! (Kafka unavailable, or refusing until an operator acts) is the caller's to retry,
//! with the letters not yet acknowledged: [`DeadLetters::send`] leaves exactly those
//! in the list, so a retry never sends a letter twice.

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use vero_model::topics::dlq_headers;

use crate::kafka_failure::{Cause, Class};
use crate::kafka_security::Watched;

/// A record a consumer gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Where the record came from.
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// Machine-friendly kind for metrics and logs (`decode`, `rejected`, ...).
    pub kind: &'static str,
    pub reason: String,
}

impl DeadLetter {
    /// The letter of `message` as received: its key and value.
    pub fn of(message: &impl Message, kind: &'static str, reason: String) -> Self {
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            kind,
            reason,
        }
    }

    /// The `vero.dlq.*` headers of this letter, written by `consumer`.
    pub fn headers(&self, consumer: &str) -> OwnedHeaders {
        let (partition, offset) = (self.partition.to_string(), self.offset.to_string());
        OwnedHeaders::new()
            .insert(Header { key: dlq_headers::REASON, value: Some(self.reason.as_str()) })
            .insert(Header { key: dlq_headers::SOURCE_TOPIC, value: Some(self.topic.as_str()) })
            .insert(Header { key: dlq_headers::SOURCE_PARTITION, value: Some(partition.as_str()) })
            .insert(Header { key: dlq_headers::SOURCE_OFFSET, value: Some(offset.as_str()) })
            .insert(Header { key: dlq_headers::CONSUMER, value: Some(consumer) })
    }

    /// The same letter without its value, saying why in its reason.
    fn without_value(self, refusal: &KafkaError) -> Self {
        let reason = format!("{} (value dropped: Kafka refused the dead letter: {refusal})", self.reason);
        Self { payload: None, reason, ..self }
    }
}

/// How a letter ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    Whole,
    /// Refused with its value, acknowledged without it.
    WithoutValue,
    /// Refused even without its value: logged and dropped.
    Dropped,
}

/// The dead-letter topic of one consumer.
pub struct DeadLetters {
    producer: FutureProducer<Watched>,
    topic: String,
    /// The `vero.dlq.consumer` header: which service gave up on the records.
    consumer: &'static str,
}

impl DeadLetters {
    /// Letters of `consumer` to `topic`, through `producer` (`acks=all`; a letter with
    /// a key goes to its key's partition).
    pub fn new(producer: FutureProducer<Watched>, topic: String, consumer: &'static str) -> Self {
        Self { producer, topic, consumer }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Send `letters` concurrently and wait for every acknowledgement, calling `done`
    /// for each letter that ended (see the module doc). `Err`: the first retryable or
    /// operator-fixable failure; `letters` then holds exactly the letters still to
    /// send, to retry.
    pub async fn send(
        &self,
        letters: &mut Vec<DeadLetter>,
        mut done: impl FnMut(&DeadLetter, Delivered),
    ) -> Result<(), KafkaError> {
        let mut failed = None;
        let mut left = Vec::new();
        let mut stripped = Vec::new();
        let results = self.send_each(letters).await;
        for (letter, result) in std::mem::take(letters).into_iter().zip(results) {
            match result {
                Ok(()) => self.delivered(&letter, Delivered::Whole, &mut done),
                Err(e) if is_permanent(&e) && letter.payload.is_some() => {
                    tracing::error!(error = %e, partition = letter.partition, offset = letter.offset, "dead letter refused, sending it without its value");
                    stripped.push(letter.without_value(&e));
                }
                Err(e) if is_permanent(&e) => self.drop_refused(&letter, &e, &mut done),
                Err(e) => {
                    failed.get_or_insert(e);
                    left.push(letter);
                }
            }
        }
        let results = self.send_each(&stripped).await;
        for (letter, result) in stripped.into_iter().zip(results) {
            match result {
                Ok(()) => self.delivered(&letter, Delivered::WithoutValue, &mut done),
                Err(e) if is_permanent(&e) => self.drop_refused(&letter, &e, &mut done),
                Err(e) => {
                    failed.get_or_insert(e);
                    left.push(letter);
                }
            }
        }
        *letters = left;
        failed.map_or(Ok(()), Err)
    }

    /// Send every letter at once; one result each, in order.
    async fn send_each(&self, letters: &[DeadLetter]) -> Vec<Result<(), KafkaError>> {
        let sends = letters.iter().map(|letter| {
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.topic).headers(letter.headers(self.consumer));
            if let Some(key) = &letter.key {
                record = record.key(key.as_slice());
            }
            if let Some(payload) = &letter.payload {
                record = record.payload(payload.as_slice());
            }
            async move { self.producer.send(record, Timeout::Never).await.map(|_| ()).map_err(|(e, _)| e) }
        });
        futures::future::join_all(sends).await
    }

    fn delivered(&self, letter: &DeadLetter, how: Delivered, done: &mut impl FnMut(&DeadLetter, Delivered)) {
        tracing::warn!(
            topic = %letter.topic,
            partition = letter.partition,
            offset = letter.offset,
            kind = letter.kind,
            reason = %letter.reason,
            "record sent to the dead-letter topic"
        );
        done(letter, how);
    }

    fn drop_refused(&self, letter: &DeadLetter, error: &KafkaError, done: &mut impl FnMut(&DeadLetter, Delivered)) {
        tracing::error!(
            %error,
            topic = %letter.topic,
            partition = letter.partition,
            offset = letter.offset,
            reason = %letter.reason,
            "dead letter refused even without its value; dropped"
        );
        done(letter, Delivered::Dropped);
    }
}

/// Producer errors about the letter itself, which no retry fixes.
fn is_permanent(error: &KafkaError) -> bool {
    Cause::of(error).class() == Class::Invalid
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Headers, OwnedMessage, Timestamp};
    use rdkafka::types::RDKafkaErrorCode;

    #[test]
    fn a_letter_keeps_its_record_and_names_its_source_and_consumer() {
        let message = OwnedMessage::new(
            Some(b"value".to_vec()),
            Some(b"user-1".to_vec()),
            "vero.events".to_owned(),
            Timestamp::NotAvailable,
            3,
            42,
            None,
        );
        let letter = DeadLetter::of(&message, "decode", "not a TrackEvent".to_owned());
        assert_eq!((letter.key.as_deref(), letter.payload.as_deref()), (Some(&b"user-1"[..]), Some(&b"value"[..])));
        let headers = letter.headers("event-sink");
        let found: Vec<(&str, &[u8])> = headers.iter().map(|h| (h.key, h.value.unwrap_or_default())).collect();
        assert_eq!(
            found,
            vec![
                (dlq_headers::REASON, &b"not a TrackEvent"[..]),
                (dlq_headers::SOURCE_TOPIC, b"vero.events"),
                (dlq_headers::SOURCE_PARTITION, b"3"),
                (dlq_headers::SOURCE_OFFSET, b"42"),
                (dlq_headers::CONSUMER, b"event-sink"),
            ]
        );
        let refusal = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert!(is_permanent(&refusal));
        let stripped = letter.without_value(&refusal);
        assert_eq!(stripped.payload, None);
        assert!(stripped.reason.starts_with("not a TrackEvent (value dropped: Kafka refused the dead letter: "));
        assert!(!is_permanent(&KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed)));
    }
}
