//! The sink's second baseline: a bare rdkafka consumer reading the same topic from the
//! same broker, doing nothing with the records. Whatever the broker (here librdkafka's
//! mock cluster, in its own process) serves per second is a ceiling no consumer-based
//! sink can beat, so the sink is reported against it as well as against
//! `clickhouse-client`.
//!
//! It joins a fresh consumer group the way the sink does (subscribe, earliest), so the
//! "from start" figures of both include the group join.

use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ConsumeResult {
    pub records: u64,
    /// From creating the consumer to the last record.
    pub secs: f64,
    /// From the first record to the last (group join excluded), scaled to all records.
    pub steady_secs: f64,
}

/// Read `expected` records of `topic` with a fresh group and rdkafka's default fetch
/// settings, payloads untouched.
pub fn consume_all(brokers: &str, topic: &str, expected: u64, timeout: Duration) -> anyhow::Result<ConsumeResult> {
    let started = Instant::now();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", vero_testkit::unique_name("bench-consume"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .context("creating the baseline consumer")?;
    consumer.subscribe(&[topic])?;
    let mut first: Option<Instant> = None;
    let mut seen = 0u64;
    let mut bytes = 0usize;
    while seen < expected {
        anyhow::ensure!(started.elapsed() < timeout, "consumed {seen} of {expected} records in {timeout:?}");
        let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
        let message = message?;
        bytes += message.payload_len();
        first.get_or_insert_with(Instant::now);
        seen += 1;
    }
    std::hint::black_box(bytes);
    let secs = started.elapsed().as_secs_f64();
    let steady = first.map_or(secs, |f| f.elapsed().as_secs_f64());
    // The first record's own time is unknown; scale the rest to the full count.
    let steady_secs = if expected > 1 { steady * expected as f64 / (expected - 1) as f64 } else { secs };
    Ok(ConsumeResult { records: expected, secs, steady_secs })
}
