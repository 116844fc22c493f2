//! The dead-letter topic: records that can never be written, with the reason and the
//! source position in headers (`vero_model::topics::dlq_headers`).
//!
//! A dead letter is handled once Kafka acknowledged it; only then may the caller store
//! the source offset. While the DLQ cannot be written, sending is retried with backoff
//! (consumption stays paused), so a record is never silently dropped; a refusal only an
//! operator fixes (an ACL, a missing DLQ topic) also sets `vero_sink_needs_operator`
//! and says so in `/readyz`.

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use tokio_util::sync::CancellationToken;
use vero_model::topics::dlq_headers;

use crate::batch::DeadLetter;
use crate::config::{KafkaSettings, RetrySettings};
use crate::metrics::Metrics;
use crate::writer::Abandoned;
use vero_service::health::Health;
use vero_service::kafka_failure::{Cause, Class};
use vero_service::kafka_security::{Watch, Watched};

/// Value of the consumer header: which service gave up on the record.
pub const CONSUMER_NAME: &str = "event-sink";

pub struct DeadLetterQueue {
    producer: FutureProducer<Watched>,
    topic: String,
    source_topic: String,
    retry: RetrySettings,
    metrics: Metrics,
    health: Health,
    /// The service's watch of refused connections (it owns `needs_operator` then).
    kafka: Watch,
}

impl DeadLetterQueue {
    pub fn new(
        kafka: &KafkaSettings,
        retry: RetrySettings,
        metrics: Metrics,
        health: Health,
        watch: Watch,
    ) -> anyhow::Result<Self> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &kafka.brokers)
            .set("acks", "all")
            // A letter keeps its source record's key, and its partition as a Java
            // client would choose it.
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", "30000");
        vero_service::producer_retries::apply(&mut config, kafka.idempotent_producer);
        let producer = kafka.apply_properties(&mut config).create_with_context(Watched(watch.clone()))?;
        Ok(Self {
            producer,
            topic: kafka.dlq_topic.clone(),
            source_topic: kafka.events_topic.clone(),
            retry,
            metrics,
            health,
            kafka: watch,
        })
    }

    /// Send every letter, in order, each acknowledged before the next.
    pub async fn send_all(&self, letters: &[DeadLetter], cancel: &CancellationToken) -> Result<(), Abandoned> {
        for letter in letters {
            self.send(letter, cancel).await?;
        }
        Ok(())
    }

    /// Send one letter, retrying with backoff while Kafka is unavailable or refuses for
    /// a reason an operator fixes. A letter Kafka refuses for good (too large for the
    /// DLQ topic) goes once more without its value, the headers still pointing at the
    /// source record; refused again, it is logged and dropped: never retried forever.
    async fn send(&self, letter: &DeadLetter, cancel: &CancellationToken) -> Result<(), Abandoned> {
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let mut backoff = self.retry.backoff();
        let mut reason = letter.reason.clone();
        let mut payload = letter.payload.as_deref();
        let mut operator_hold = false;
        loop {
            let headers = OwnedHeaders::new()
                .insert(Header { key: dlq_headers::REASON, value: Some(reason.as_str()) })
                .insert(Header { key: dlq_headers::SOURCE_TOPIC, value: Some(self.source_topic.as_str()) })
                .insert(Header { key: dlq_headers::SOURCE_PARTITION, value: Some(partition.as_str()) })
                .insert(Header { key: dlq_headers::SOURCE_OFFSET, value: Some(offset.as_str()) })
                .insert(Header { key: dlq_headers::CONSUMER, value: Some(CONSUMER_NAME) });
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).headers(headers);
            if let Some(key) = &letter.key {
                record = record.key(key.as_slice());
            }
            if let Some(payload) = payload {
                record = record.payload(payload);
            }
            match self.producer.send(record, Timeout::Never).await {
                Ok(_) => {
                    if operator_hold && self.kafka.refused().is_none() {
                        self.metrics.needs_operator.set(0);
                    }
                    tracing::warn!(
                        partition = letter.partition,
                        offset = letter.offset,
                        reason = %letter.reason,
                        "record sent to the dead-letter topic"
                    );
                    self.metrics.dlq_records.with_label_values(&[letter.kind]).inc();
                    return Ok(());
                }
                Err((error, _)) if is_permanent(&error) && payload.is_some() => {
                    tracing::error!(%error, partition = letter.partition, offset = letter.offset, "dead letter refused, sending it without its value");
                    reason = format!("{} (value dropped: Kafka refused the dead letter: {error})", letter.reason);
                    payload = None;
                }
                Err((error, _)) if is_permanent(&error) => {
                    tracing::error!(
                        %error,
                        partition = letter.partition,
                        offset = letter.offset,
                        reason = %letter.reason,
                        "dead letter refused even without its value; dropped"
                    );
                    return Ok(());
                }
                // An ACL, a missing DLQ topic, a fatal producer: an operator fixes it,
                // and the letter waits (consumption paused) rather than being lost.
                Err((error, _)) if Cause::of(&error).class() == Class::Operator => {
                    let cause = Cause::of(&error);
                    tracing::error!(%error, topic = %self.topic, "dead-letter topic refuses the letter until an operator acts; retrying");
                    self.metrics.needs_operator.set(1);
                    operator_hold = true;
                    self.health.not_ready(format!(
                        "operator action needed: dead-letter topic {}: {} ({error})",
                        self.topic,
                        cause.describe()
                    ));
                    if !backoff.wait(cancel).await {
                        return Err(Abandoned);
                    }
                }
                Err((error, _)) => {
                    tracing::warn!(%error, "dead-letter produce failed, retrying");
                    self.health.not_ready(format!("dead-letter topic unavailable: {error}"));
                    if !backoff.wait(cancel).await {
                        return Err(Abandoned);
                    }
                }
            }
        }
    }
}

/// Producer errors about the letter itself, which no retry fixes.
fn is_permanent(error: &rdkafka::error::KafkaError) -> bool {
    Cause::of(error).class() == Class::Invalid
}
