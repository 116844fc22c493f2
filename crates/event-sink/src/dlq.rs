//! The sink's dead letters ([`vero_service::dead_letter`]): records that can never be
//! written, with the reason and the source position in headers.
//!
//! A dead letter is handled once Kafka acknowledged it; only then may the caller store
//! the source offset. While the DLQ cannot be written, sending is retried with backoff
//! (consumption stays paused), so a record is never silently dropped; a refusal only an
//! operator fixes (an ACL, a missing DLQ topic) also sets `vero_sink_needs_operator`
//! and says so in `/readyz`.

use tokio_util::sync::CancellationToken;

use crate::batch::DeadLetter;
use crate::config::{KafkaSettings, RetrySettings};
use crate::insert::Abandoned;
use crate::metrics::Metrics;
use vero_service::dead_letter::{DeadLetters, Delivered};
use vero_service::kafka_failure::Cause;
use vero_service::kafka_security::Watched;
use vero_service::producer_retries::producer_config;
use vero_service::retry::{Retry, Visibility};

/// Value of the consumer header: which service gave up on the record.
pub const CONSUMER_NAME: &str = "event-sink";

pub struct DeadLetterQueue {
    letters: DeadLetters,
    retry: RetrySettings,
    metrics: Metrics,
    /// Where failures show; the service's Kafka watch owns `needs_operator` while it
    /// sees a refused connection.
    visibility: Visibility,
}

impl DeadLetterQueue {
    pub fn new(
        kafka: &KafkaSettings,
        retry: RetrySettings,
        metrics: Metrics,
        visibility: Visibility,
    ) -> anyhow::Result<Self> {
        let watch = visibility.kafka.clone().expect("the dead-letter producer reports to the Kafka watch");
        // A letter keeps its source record's key, and its partition as a Java client
        // would choose it.
        let mut config = producer_config(&kafka.brokers, 30_000, kafka.idempotent_producer);
        let producer = kafka.apply_properties(&mut config).create_with_context(Watched(watch.clone()))?;
        let letters = DeadLetters::new(producer, kafka.dlq_topic.clone(), CONSUMER_NAME);
        Ok(Self { letters, retry, metrics, visibility })
    }

    /// Send every letter, retrying with backoff while Kafka is unavailable or refuses
    /// for a reason an operator fixes (only the letters not acknowledged yet).
    pub async fn send_all(&self, mut letters: Vec<DeadLetter>, cancel: &CancellationToken) -> Result<(), Abandoned> {
        let what = format!("dead-letter topic {}", self.letters.topic());
        let mut retry = Retry::new(&what, self.retry.backoff(), &self.visibility);
        let sent = self.metrics.dlq_records.clone();
        let mut failed = false;
        loop {
            let done = |letter: &DeadLetter, delivered| {
                if delivered != Delivered::Dropped {
                    sent.with_label_values(&[letter.kind]).inc();
                }
            };
            match self.letters.send(&mut letters, done).await {
                Ok(()) if failed => {
                    retry.succeeded();
                    return Ok(());
                }
                Ok(()) => return Ok(()),
                // An ACL, a missing DLQ topic, a fatal producer: an operator fixes it,
                // and the letters wait (consumption paused) rather than being lost.
                Err(error) => {
                    let cause = Cause::of(&error);
                    retry.failed(cause.class(), &format_args!("{} ({error})", cause.describe()));
                    failed = true;
                }
            }
            if !retry.wait(cancel).await {
                return Err(Abandoned);
            }
        }
    }
}
