//! Putting dead letters back, and which consumer a record put back is for.
//!
//! A record lands in the shared DLQ because one consumer could not process it; the
//! others had processed the original already. `replay-dlq` marks each replayed record
//! with `vero.dlq.replayed.from` and, when the letter named its consumer,
//! `vero.dlq.replayed.for`. Every consumer applies only replays meant for it, so a
//! replay never changes anything twice (a second row in `vero.events`, a profile
//! counting an event again).
//!
//! [`replay`] (`event-sink replay-dlq`): put dead-lettered records back into the
//! pipeline once their cause is fixed.
//!
//! Reads the dead-letter topic in its own consumer group (`<kafka.group_id>-dlq-replay`),
//! from that group's committed position (the beginning the first time) up to the end
//! offsets seen at the start, and produces each record to the topic it came from (its
//! `vero.dlq.source.topic` header; the events topic when absent) with its original
//! key and value, plus a `vero.dlq.replayed.from` header naming the DLQ position and a
//! `vero.dlq.replayed.for` header naming the consumer that dead-lettered it (its
//! `vero.dlq.consumer`): the DLQ is shared, and the other consumer applied the
//! original record already, so only that one applies the replayed copy (the profile
//! consumer skips the others' letters; a letter without the header is nobody's).
//! Guarantees:
//!
//! * at least once: the group's offsets are committed only after every record up to
//!   them was acknowledged by Kafka (`acks=all`, idempotent producer), so a replay
//!   interrupted anywhere can simply be run again; records replayed twice are the
//!   same events (same `event_id`) and collapse in `vero.events`;
//! * a second run replays only what was dead-lettered since the first one;
//! * records dead-lettered again (the cause is not fixed) come back to the DLQ as new
//!   records and are replayed by the next run, not in a loop by this one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use vero_model::topics::dlq_headers;

use crate::kafka_properties::KafkaProperties;
use crate::kafka_security::{Watch, Watched};
use crate::producer_retries::producer_config;
use crate::to_end::ToEnd;

/// Header added to every replayed record: `<dlq topic>/<partition>/<offset>`.
pub const REPLAYED_FROM: &str = dlq_headers::REPLAYED_FROM;
/// Header added to a replayed record whose letter names its consumer: that consumer.
pub const REPLAYED_FOR: &str = dlq_headers::REPLAYED_FOR;

/// Where [`replay`] reads and writes: the settings of the consumer that runs it.
pub struct ReplayFrom<'a> {
    pub brokers: &'a str,
    pub dlq_topic: &'a str,
    /// Where a letter without a `vero.dlq.source.topic` header goes.
    pub default_topic: &'a str,
    /// The replay's consumer group (its progress in the dead-letter topic).
    pub group: String,
    pub idempotent_producer: bool,
    /// `kafka.properties`: applied last to both clients.
    pub properties: &'a KafkaProperties,
}

impl ReplayFrom<'_> {
    fn apply_properties<'c>(&self, config: &'c mut ClientConfig) -> &'c mut ClientConfig {
        for (name, value) in self.properties.iter() {
            config.set(name, value);
        }
        config
    }
}

/// Whose a replayed letter without `vero.dlq.replayed.for` is (letters written before
/// consumers signed them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsigned {
    /// Apply it (the event sink: it wrote the unsigned letters).
    Mine,
    /// Skip it.
    Theirs,
}

/// Whether `message` is a DLQ replay meant for another consumer than `me`.
pub fn for_another_consumer(message: &impl Message, me: &str, unsigned: Unsigned) -> bool {
    let Some(headers) = message.headers() else { return false };
    let value = |name: &str| headers.iter().find(|h| h.key == name).map(|h| h.value);
    match (value(dlq_headers::REPLAYED_FROM), value(dlq_headers::REPLAYED_FOR).flatten()) {
        (None, _) => false,
        (Some(_), Some(target)) => target != me.as_bytes(),
        (Some(_), None) => unsigned == Unsigned::Theirs,
    }
}

/// What one replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Records produced back, per destination topic.
    pub records: BTreeMap<String, u64>,
}

impl Replayed {
    pub fn total(&self) -> u64 {
        self.records.values().sum()
    }
}

/// Replay every record of the DLQ not replayed yet (see the module docs); `timeout`
/// bounds the whole run. The DLQ is polled with short blocking waits and each record's
/// offset is committed synchronously after its acknowledgement: this is an operator's
/// one-off command, run on its own (in tests: a multi-threaded runtime).
pub async fn replay(settings: ReplayFrom<'_>, timeout: Duration) -> anyhow::Result<Replayed> {
    let deadline = Instant::now() + timeout;
    // A refused login or certificate: one log line naming the setting, and the error.
    let watch = Watch::new("replay-dlq", None, None);
    let mut consumer_config = ClientConfig::new();
    consumer_config
        .set("bootstrap.servers", settings.brokers)
        .set("group.id", &settings.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer<Watched> = settings
        .apply_properties(&mut consumer_config)
        .create_with_context(Watched(watch.clone()))
        .context("creating the DLQ replay consumer")?;
    // A replayed record goes back to the partition the gateway chose for its key
    // (Java's murmur2), so per-user order and co-partitioning hold.
    let mut producer_config = producer_config(settings.brokers, 30_000, settings.idempotent_producer);
    let producer: FutureProducer<Watched> = settings
        .apply_properties(&mut producer_config)
        .create_with_context(Watched(watch.clone()))
        .context("creating the DLQ replay producer")?;
    let topic = settings.dlq_topic;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .inspect_err(|_| crate::kafka_security::drain(&consumer))
        .with_context(|| format!("reading the partitions of {topic}"))
        .map_err(|e| match watch.refused() {
            Some(refused) => e.context(refused),
            None => e,
        })?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    anyhow::ensure!(!partitions.is_empty(), "topic {topic} has no partitions (does it exist?)");

    // Where to start (committed, else the low watermark) and stop (the end now).
    let mut wanted = TopicPartitionList::new();
    for &p in &partitions {
        wanted.add_partition(topic, p);
    }
    let committed = committed_offsets(&consumer, wanted).context("reading the replay's offsets")?;
    // Records dead-lettered after the start are the next run's.
    let mut read = ToEnd::new(topic, deadline.saturating_duration_since(Instant::now()));
    for &p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        let start = match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(next)) => next.max(low),
            _ => low,
        };
        read.add(p, start, high);
    }
    let mut replayed = Replayed::default();
    if read.is_done() {
        return Ok(replayed);
    }
    read.assign(&consumer)?;

    while let Some(message) = read.next(&consumer) {
        let message = message.with_context(|| format!("replaying {topic}"))?;
        let (partition, offset) = (message.partition(), message.offset());
        let header = |name: &str| {
            message.headers().and_then(|headers| {
                headers
                    .iter()
                    .find(|h| h.key == name)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
        };
        let destination = header(dlq_headers::SOURCE_TOPIC).unwrap_or_else(|| settings.default_topic.to_owned());
        let from = format!("{topic}/{partition}/{offset}");
        let owner = header(dlq_headers::CONSUMER);
        let mut headers = OwnedHeaders::new().insert(Header { key: REPLAYED_FROM, value: Some(from.as_str()) });
        if let Some(owner) = &owner {
            headers = headers.insert(Header { key: REPLAYED_FOR, value: Some(owner.as_str()) });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&destination).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        // One at a time: the commit below must never pass an unacknowledged record.
        producer
            .send(record, Timeout::After(deadline.saturating_duration_since(Instant::now())))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("producing {from} back to {destination}: {e}"))?;
        *replayed.records.entry(destination).or_default() += 1;
        let mut commit = TopicPartitionList::new();
        commit.add_partition_offset(topic, partition, Offset::Offset(offset + 1))?;
        consumer.commit(&commit, CommitMode::Sync).with_context(|| format!("committing the replay of {from}"))?;
    }
    Ok(replayed)
}

/// The replay group's committed offsets. A new group's coordinator may still be
/// chosen or loading (Apache Kafka answers `NOT_COORDINATOR` or
/// `COORDINATOR_LOAD_IN_PROGRESS` for a few seconds): those are retried for up to 30 s.
fn committed_offsets<X: rdkafka::consumer::ConsumerContext, C: Consumer<X>>(
    consumer: &C,
    wanted: TopicPartitionList,
) -> rdkafka::error::KafkaResult<TopicPartitionList> {
    use rdkafka::types::RDKafkaErrorCode::{CoordinatorLoadInProgress, CoordinatorNotAvailable, NotCoordinator};
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match consumer.committed_offsets(wanted.clone(), Duration::from_secs(10)) {
            Err(e)
                if matches!(
                    e.rdkafka_error_code(),
                    Some(NotCoordinator | CoordinatorLoadInProgress | CoordinatorNotAvailable)
                ) && Instant::now() < deadline =>
            {
                tracing::debug!(error = %e, "group coordinator not ready; retrying");
                std::thread::sleep(Duration::from_millis(250));
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

    fn message(headers: &[(&str, &str)]) -> OwnedMessage {
        let mut owned = OwnedHeaders::new();
        for (key, value) in headers {
            owned = owned.insert(Header { key, value: Some(*value) });
        }
        OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 0, 0, Some(owned))
    }

    #[test]
    fn only_replays_for_someone_else_are_skipped() {
        let from = (dlq_headers::REPLAYED_FROM, "vero.events.dlq/0/7");
        assert!(!for_another_consumer(&message(&[]), "event-sink", Unsigned::Mine));
        assert!(!for_another_consumer(
            &message(&[from, (dlq_headers::REPLAYED_FOR, "event-sink")]),
            "event-sink",
            Unsigned::Mine
        ));
        assert!(for_another_consumer(
            &message(&[from, (dlq_headers::REPLAYED_FOR, "profile-consumer")]),
            "event-sink",
            Unsigned::Mine
        ));
        assert!(!for_another_consumer(&message(&[from]), "event-sink", Unsigned::Mine));
        assert!(for_another_consumer(&message(&[from]), "profile-consumer", Unsigned::Theirs));
    }
}
