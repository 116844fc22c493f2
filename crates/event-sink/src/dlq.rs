//! The sink's dead letters ([`vero_service::dead_letter`]): records that can never be
//! written, with the reason and the source position in headers.
//!
//! A dead letter is handled once Kafka acknowledged it; only then may the caller store
//! the source offset. While the DLQ cannot be written, sending is retried with backoff
//! (consumption stays paused), so a record is never silently dropped; a refusal only an
//! operator fixes (an ACL, a missing DLQ topic) also sets `vero_sink_needs_operator`
//! and says so in `/readyz`.

use rdkafka::ClientConfig;
use tokio_util::sync::CancellationToken;

use crate::batch::DeadLetter;
use crate::config::{KafkaSettings, RetrySettings};
use crate::metrics::Metrics;
use crate::writer::Abandoned;
use vero_service::dead_letter::{DeadLetters, Delivered};
use vero_service::health::Health;
use vero_service::kafka_failure::{Cause, Class};
use vero_service::kafka_security::{Watch, Watched};

/// Value of the consumer header: which service gave up on the record.
pub const CONSUMER_NAME: &str = "event-sink";

pub struct DeadLetterQueue {
    letters: DeadLetters,
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
        let letters = DeadLetters::new(producer, kafka.dlq_topic.clone(), CONSUMER_NAME);
        Ok(Self { letters, retry, metrics, health, kafka: watch })
    }

    /// Send every letter, retrying with backoff while Kafka is unavailable or refuses
    /// for a reason an operator fixes (only the letters not acknowledged yet).
    pub async fn send_all(&self, mut letters: Vec<DeadLetter>, cancel: &CancellationToken) -> Result<(), Abandoned> {
        let mut backoff = self.retry.backoff();
        let mut operator_hold = false;
        let sent = self.metrics.dlq_records.clone();
        loop {
            let done = |letter: &DeadLetter, delivered| {
                if delivered != Delivered::Dropped {
                    sent.with_label_values(&[letter.kind]).inc();
                }
            };
            let error = match self.letters.send(&mut letters, done).await {
                Ok(()) => {
                    if operator_hold && self.kafka.refused().is_none() {
                        self.metrics.needs_operator.set(0);
                    }
                    return Ok(());
                }
                Err(error) => error,
            };
            let cause = Cause::of(&error);
            if cause.class() == Class::Operator {
                // An ACL, a missing DLQ topic, a fatal producer: an operator fixes it,
                // and the letters wait (consumption paused) rather than being lost.
                let topic = self.letters.topic();
                tracing::error!(%error, topic, "dead-letter topic refuses the letter until an operator acts; retrying");
                self.metrics.needs_operator.set(1);
                operator_hold = true;
                self.health.not_ready(format!(
                    "operator action needed: dead-letter topic {topic}: {} ({error})",
                    cause.describe()
                ));
            } else {
                tracing::warn!(%error, "dead-letter produce failed, retrying");
                self.health.not_ready(format!("dead-letter topic unavailable: {error}"));
            }
            if !backoff.wait(cancel).await {
                return Err(Abandoned);
            }
        }
    }
}
