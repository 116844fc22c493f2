//! Count what a load run left in a Kafka topic: read every partition from the start
//! to its high watermark and collect the `data.loadgen_seq` of the run's events.
//! This is how the suite checks "every 200 was acknowledged by Kafka".

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// What a scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Sequence numbers of the run, with how often each occurs.
    pub sequences: HashMap<u64, u32>,
    /// Records the broker had already removed from the start of the partitions (the
    /// sum of the low watermarks): librdkafka's mock cluster keeps only a few MB per
    /// partition, so a long run's oldest records cannot be verified.
    pub trimmed: u64,
}

/// Sequence numbers of `run_id` found in `topic`, with how often each occurs.
pub fn run_sequences(brokers: &str, topic: &str, run_id: &str, timeout: Duration) -> anyhow::Result<Scan> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", vero_testkit::unique_name("bench-scan"))
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the scan consumer")?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .context("topic not in metadata")?
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    let mut trimmed = 0;
    for p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, *p, Duration::from_secs(10))?;
        trimmed += low.max(0) as u64;
        if high > low {
            remaining.insert(*p, high);
            assignment.add_partition_offset(topic, *p, Offset::Beginning)?;
        }
    }
    consumer.assign(&assignment)?;
    let marker = format!("\"loadgen_run\":\"{run_id}\"");
    let mut seqs = HashMap::new();
    let deadline = Instant::now() + timeout;
    while !remaining.is_empty() {
        anyhow::ensure!(Instant::now() < deadline, "scanning {topic} took longer than {timeout:?}");
        let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
        let message = message?;
        if remaining.get(&message.partition()).is_some_and(|high| message.offset() + 1 >= *high) {
            remaining.remove(&message.partition());
        }
        let Some(event) = message.payload().and_then(|p| vero_model::decode_event(p).ok()) else { continue };
        if !event.data.contains(&marker) {
            continue;
        }
        let data: serde_json::Value = serde_json::from_str(&event.data)?;
        if let Some(seq) = data["loadgen_seq"].as_u64() {
            *seqs.entry(seq).or_insert(0) += 1;
        }
    }
    Ok(Scan { sequences: seqs, trimmed })
}
