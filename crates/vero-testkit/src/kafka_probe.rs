//! Read back what landed in a topic: every record with key, partition, offset,
//! headers and payload. Uses its own throwaway consumer group.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;

#[derive(Debug, Clone)]
pub struct LandedRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: HashMap<String, Vec<u8>>,
}

impl LandedRecord {
    pub fn key_str(&self) -> &str {
        std::str::from_utf8(self.key.as_deref().unwrap_or_default()).unwrap_or("<non-utf8>")
    }

    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// Read `topic` from the beginning until `expected` records arrived or `timeout`
/// passed; returns what was read (possibly fewer than expected).
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<LandedRecord>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", crate::unique_name("probe"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the probe consumer")?;
    consumer.subscribe(&[topic]).context("subscribing the probe")?;
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    while records.len() < expected && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!("probe poll error: {e}");
                continue;
            }
        };
        let mut headers = HashMap::new();
        if let Some(h) = message.headers() {
            for header in h.iter() {
                headers.insert(header.key.to_owned(), header.value.unwrap_or_default().to_vec());
            }
        }
        records.push(LandedRecord {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers,
        });
    }
    Ok(records)
}
