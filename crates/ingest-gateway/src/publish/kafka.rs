//! The Kafka [`Publisher`]: an rdkafka `FutureProducer` whose delivery report decides
//! the HTTP answer.
//!
//! Guarantees:
//! * `acks=all` + `enable.idempotence=true`: a record is acknowledged only once every
//!   in-sync replica has it, and librdkafka's internal retries cannot duplicate or
//!   reorder it within a partition. (With `kafka.idempotent_producer = false`, for a
//!   Kafka-compatible service without idempotent producers, retries cannot reorder
//!   but may duplicate; the consumers drop the copy by request key:
//!   `vero_service::producer_retries`.)
//! * `partitioner=murmur2_random`: a keyed record lands on the partition a Java client
//!   would choose (`vero_model::partition::partition_for_key`).
//! * Bounded: the producer queue has a message and byte cap; a full queue fails the
//!   produce immediately (`QueueFull`) instead of blocking the request, and every
//!   record either gets its delivery report within `message.timeout.ms` or fails.
//! * `/readyz` fetches the topic's metadata on a blocking thread, one check at a time,
//!   and reuses the answer for `readiness_cache_ms`.
//! * A refused login or certificate (`vero_service::kafka_security`) is logged once
//!   naming the setting; until Kafka accepts a connection again (a broker `UP` in the
//!   statistics, the metadata of `/readyz`, a delivery) requests are answered 503 at
//!   once and `/readyz` says which setting to fix.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use vero_service::kafka_failure::Cause;
use vero_service::kafka_security::{Watch, Watched};

use super::{CheckFuture, ProduceFuture, PublishError, Publisher};
use crate::config::KafkaSettings;

/// Extra time on top of `message.timeout.ms` before we stop waiting for a delivery
/// report ourselves: librdkafka always reports within its timeout, this only guards
/// against a report that never comes.
const DELIVERY_REPORT_GRACE: Duration = Duration::from_secs(5);

/// How long `/readyz` waits for metadata while Kafka refuses the connection.
const REFUSED_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub struct KafkaPublisher {
    producer: FutureProducer<Watched>,
    watch: Watch,
    topic: Arc<str>,
    delivery_timeout: Duration,
    readiness_cache: Duration,
    last_readiness: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

/// The librdkafka configuration the gateway produces with (see `docs/gateway.md`).
pub fn producer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = vero_service::producer_retries::producer_config(
        &settings.brokers,
        settings.delivery_timeout_ms,
        settings.idempotent_producer,
    );
    config
        .set("client.id", "vero-ingest-gateway")
        .set("compression.type", "lz4")
        .set("linger.ms", settings.linger_ms.to_string())
        .set("queue.buffering.max.messages", settings.queue_max_messages.to_string())
        .set("queue.buffering.max.kbytes", settings.queue_max_kbytes.to_string())
        .set("message.max.bytes", settings.message_max_bytes.to_string())
        // A broker connection `UP` here tells the watch that Kafka accepts the login.
        .set("statistics.interval.ms", "5000");
    // Last, so they override built-in defaults such as compression.type; the ones the
    // guarantees depend on were refused by `Settings::validate`.
    for (key, value) in settings.properties.iter() {
        config.set(key, value);
    }
    config
}

impl KafkaPublisher {
    pub fn new(settings: &KafkaSettings) -> anyhow::Result<Self> {
        let watch = Watch::new("ingest-gateway", None, None);
        let producer = producer_config(settings)
            .create_with_context(Watched(watch.clone()))
            .context("creating the Kafka producer (check kafka.* settings and kafka.properties)")?;
        Ok(Self {
            producer,
            watch,
            topic: Arc::from(settings.events_topic.as_str()),
            delivery_timeout: Duration::from_millis(settings.delivery_timeout_ms),
            readiness_cache: Duration::from_millis(settings.readiness_cache_ms),
            last_readiness: tokio::sync::Mutex::new(None),
        })
    }

    fn check_topic(producer: &FutureProducer<Watched>, topic: &str, timeout: Duration) -> Result<(), String> {
        if let Some((code, reason)) = producer.client().fatal_error() {
            return Err(format!("producer is in a fatal state ({code:?}): {reason}"));
        }
        let metadata = producer
            .client()
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| format!("cannot fetch metadata for topic {topic}: {e}"))?;
        match metadata.topics().iter().find(|t| t.name() == topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
            Some(t) => Err(format!("topic {topic} is not available: {:?}", t.error())),
            None => Err(format!("topic {topic} is not in the cluster metadata")),
        }
    }
}

/// What an rdkafka error (at enqueue or in the delivery report) means for the client,
/// from its one classification (`vero_service::kafka_failure`).
fn classify(error: &KafkaError) -> PublishError {
    match Cause::of(error) {
        Cause::QueueFull => PublishError::QueueFull,
        Cause::TimedOut => PublishError::Timeout,
        // Refused credentials: the watch answers 503 and /readyz names the setting.
        Cause::Unavailable | Cause::Credentials => PublishError::Unavailable,
        Cause::TooLarge => PublishError::TooLarge,
        cause @ (Cause::NotAuthorized | Cause::NoSuchTopic | Cause::Fatal | Cause::InvalidRecord) => {
            PublishError::Rejected(cause.describe())
        }
    }
}

impl Publisher for KafkaPublisher {
    fn produce(&self, key: &[u8], payload: &[u8]) -> ProduceFuture {
        if self.watch.refused().is_some() {
            return Box::pin(std::future::ready(Err(PublishError::Unavailable)));
        }
        let watch = self.watch.clone();
        let record = FutureRecord::to(&self.topic).key(key).payload(payload);
        match self.producer.send_result(record) {
            Err((error, _)) => {
                let error = classify(&error);
                Box::pin(std::future::ready(Err(error)))
            }
            Ok(delivery) => {
                let wait = self.delivery_timeout + DELIVERY_REPORT_GRACE;
                Box::pin(async move {
                    match tokio::time::timeout(wait, delivery).await {
                        Ok(Ok(Ok(_delivered))) => {
                            watch.accepted();
                            Ok(())
                        }
                        Ok(Ok(Err((error, _message)))) => {
                            let classified = classify(&error);
                            tracing::debug!(error = %error, classified = %classified, "delivery failed");
                            Err(classified)
                        }
                        // The producer dropped the report: the record's fate is unknown.
                        Ok(Err(_canceled)) => Err(PublishError::Unavailable),
                        Err(_elapsed) => Err(PublishError::Timeout),
                    }
                })
            }
        }
    }

    fn readiness(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            // One check at a time; concurrent callers wait and reuse its answer.
            let mut last = self.last_readiness.lock().await;
            if let Some((at, answer)) = last.as_ref() {
                if at.elapsed() < self.readiness_cache {
                    return answer.clone();
                }
            }
            let (producer, topic) = (self.producer.clone(), self.topic.clone());
            let refused = self.watch.refused();
            let timeout = if refused.is_some() { REFUSED_CHECK_TIMEOUT } else { self.delivery_timeout };
            let answer = tokio::task::spawn_blocking(move || Self::check_topic(&producer, &topic, timeout))
                .await
                .unwrap_or_else(|e| Err(format!("readiness check panicked: {e}")));
            let answer = match (answer, self.watch.refused()) {
                (Ok(()), _) => {
                    self.watch.accepted();
                    Ok(())
                }
                (Err(_), Some(refused)) => Err(refused),
                (Err(e), None) => Err(e),
            };
            *last = Some((Instant::now(), answer.clone()));
            answer
        })
    }

    fn queue_depth(&self) -> i64 {
        i64::from(self.producer.in_flight_count())
    }

    fn flush(&self, timeout: Duration) -> CheckFuture<'_> {
        let producer = self.producer.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || producer.flush(timeout))
                .await
                .map_err(|e| format!("flush panicked: {e}"))?
                .map_err(|e| format!("{} records not flushed: {e}", self.queue_depth()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaErrorCode;

    #[test]
    fn errors_are_classified_by_what_the_client_can_do() {
        let produce = |code| classify(&KafkaError::MessageProduction(code));
        assert_eq!(produce(RDKafkaErrorCode::QueueFull), PublishError::QueueFull);
        assert_eq!(produce(RDKafkaErrorCode::MessageTimedOut), PublishError::Timeout);
        assert_eq!(produce(RDKafkaErrorCode::MessageSizeTooLarge), PublishError::TooLarge);
        assert_eq!(produce(RDKafkaErrorCode::BrokerTransportFailure), PublishError::Unavailable);
        assert_eq!(produce(RDKafkaErrorCode::NotEnoughReplicas), PublishError::Unavailable);
        assert!(matches!(produce(RDKafkaErrorCode::TopicAuthorizationFailed), PublishError::Rejected(_)));
        assert_eq!(produce(RDKafkaErrorCode::UnknownTopic), PublishError::Rejected("the topic does not exist"));
        assert_eq!(produce(RDKafkaErrorCode::SaslAuthenticationFailed), PublishError::Unavailable, "the watch's 503");
    }
}
