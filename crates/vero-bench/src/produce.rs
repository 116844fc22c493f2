//! Drive a produce function with `in_flight` concurrent senders (like that many HTTP
//! connections, each waiting for its acknowledgement) over a fixed set of records,
//! and measure acknowledged records/s and per-record acknowledgement latency.
//!
//! [`bare_producer`] is the baseline: an rdkafka `FutureProducer` configured by hand
//! with the durability the gateway promises (`acks=all`, idempotence) and librdkafka's
//! batching as the gateway's default config (`linger.ms=1`, lz4), nothing else.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use vero_loadgen::report::new_histogram;
use vero_loadgen::Percentiles;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProduceResult {
    pub records: u64,
    pub failed: u64,
    pub in_flight: usize,
    pub elapsed_secs: f64,
    pub records_per_sec: f64,
    pub ack_latency_ms: Percentiles,
}

pub fn bare_producer(brokers: &str) -> anyhow::Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "1")
        .set("queue.buffering.max.messages", "1000000")
        .create()?)
}

/// Send through the bare producer; `true` when acknowledged.
pub async fn bare_send(producer: &FutureProducer, topic: &str, key: &[u8], payload: &[u8]) -> bool {
    match producer.send_result(FutureRecord::to(topic).key(key).payload(payload)) {
        Ok(delivery) => matches!(delivery.await, Ok(Ok(_))),
        Err(_) => false,
    }
}

/// Send every record once through `send` with `in_flight` concurrent senders.
pub async fn drive<F, Fut>(records: Arc<Vec<(Vec<u8>, Vec<u8>)>>, in_flight: usize, send: F) -> ProduceResult
where
    F: Fn(Arc<Vec<(Vec<u8>, Vec<u8>)>>, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..in_flight.max(1))
        .map(|_| {
            let (records, next, failed, send) = (records.clone(), next.clone(), failed.clone(), send.clone());
            tokio::spawn(async move {
                let mut histogram = new_histogram();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= records.len() {
                        return histogram;
                    }
                    let t = Instant::now();
                    if send(records.clone(), i).await {
                        let _ = histogram.record(t.elapsed().as_micros().max(1) as u64);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let mut histogram = new_histogram();
    for task in tasks {
        if let Ok(h) = task.await {
            let _ = histogram.add(&h);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    ProduceResult {
        records: histogram.len(),
        failed: failed.load(Ordering::Relaxed),
        in_flight,
        elapsed_secs: elapsed,
        records_per_sec: histogram.len() as f64 / elapsed.max(1e-9),
        ack_latency_ms: Percentiles::from_micros(&histogram),
    }
}
