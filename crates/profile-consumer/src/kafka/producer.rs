//! The one idempotent producer for everything this service writes to Kafka: profiles
//! (with tombstones), handoffs and dead letters. Each send returns only once Kafka
//! acknowledged the record (`acks=all`), so offsets are stored after durable writes.

use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use vero_service::dead_letter::DeadLetters;
use vero_service::kafka_security::{Watch, Watched};

use crate::config::KafkaSettings;
use crate::error::WriteError;

/// One record to produce to an explicit partition.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub topic: String,
    pub partition: Option<i32>,
    pub key: Vec<u8>,
    /// `None` is a tombstone.
    pub payload: Option<Vec<u8>>,
    pub headers: Option<OwnedHeaders>,
}

#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer<Watched>,
    /// The service's watch: an acknowledged record clears a refusal it saw.
    watch: Watch,
}

impl Producer {
    pub fn new(settings: &KafkaSettings, watch: Watch) -> anyhow::Result<Self> {
        // Records without an explicit partition (dead letters) keep their key's
        // partition as a Java client would choose it.
        let mut config = vero_service::producer_retries::producer_config(
            &settings.brokers,
            settings.produce_timeout_ms,
            settings.idempotent_producer,
        );
        config.set("linger.ms", "5");
        let inner = settings.apply_properties(&mut config).create_with_context(Watched(watch.clone()))?;
        Ok(Self { inner, watch })
    }

    /// Send all records concurrently (order is kept per partition by the idempotent
    /// producer, or by one request in flight without it) and wait for every
    /// acknowledgement. Records Kafka refuses for good (too large, ...) do not fail the
    /// others: `Ok` lists them (index in `records`, the error). Any retryable or
    /// operator-fixable failure is the `Err`.
    pub async fn send_each(&self, records: &[&Outgoing]) -> Result<Vec<(usize, WriteError)>, WriteError> {
        self.send_each_placed(records, |_, _, _| {}).await
    }

    /// [`Self::send_each`], calling `placed(index, partition, offset)` for every record
    /// Kafka acknowledged, also when another one failed.
    pub async fn send_each_placed(
        &self,
        records: &[&Outgoing],
        mut placed: impl FnMut(usize, i32, i64),
    ) -> Result<Vec<(usize, WriteError)>, WriteError> {
        let sends = records.iter().map(|r| {
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&r.topic).key(r.key.as_slice());
            if let Some(partition) = r.partition {
                record = record.partition(partition);
            }
            if let Some(payload) = &r.payload {
                record = record.payload(payload.as_slice());
            }
            if let Some(headers) = &r.headers {
                record = record.headers(headers.clone());
            }
            self.inner.send(record, Timeout::Never)
        });
        let mut refused = Vec::new();
        let mut failed = None;
        for (index, result) in futures::future::join_all(sends).await.into_iter().enumerate() {
            match result.map_err(|(e, _)| WriteError::from(e)) {
                Ok(delivery) => {
                    // Kafka accepts the connection: a refusal the watch saw is over.
                    self.watch.accepted();
                    placed(index, delivery.partition, delivery.offset)
                }
                Err(e @ WriteError::Rejected(_)) => refused.push((index, e)),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(refused),
        }
    }

    /// Dead letters of `consumer` to `topic`, through this producer.
    pub fn dead_letters(&self, topic: String, consumer: &'static str) -> DeadLetters {
        DeadLetters::new(self.inner.clone(), topic, consumer)
    }

    /// The end offset (high watermark) of `topic`/`partition`. Blocking: call from
    /// `spawn_blocking`.
    pub fn end_offset(&self, topic: &str, partition: i32, timeout: std::time::Duration) -> Result<i64, WriteError> {
        use rdkafka::producer::Producer as _;
        let (_, high) = self.inner.client().fetch_watermarks(topic, partition, timeout).map_err(WriteError::from)?;
        Ok(high)
    }
}
