//! The consumer's librdkafka callbacks: rebalances and statistics.
//!
//! * Revoke: the revoked partitions are recorded so the pipeline drops their unwritten
//!   rows (the next owner re-reads them from the committed offset, which only ever
//!   covers written rows). Nothing is flushed inside the callback, but it waits
//!   (bounded by the ClickHouse request timeout) until no INSERT of the revoked
//!   partitions is in flight and none can start ([`Fence`]): the next owner then
//!   sees everything this instance wrote before deciding what is already written.
//! * Both are recorded for the pipeline in [`Rebalances`] (the shared partition
//!   lifecycle, `vero_service::partitions`); while a flush keeps consumption paused,
//!   new partitions are paused too, so memory stays bounded.
//! * Statistics: per-partition lag (`consumer_lag_stored`: end offset minus the offset
//!   stored after the last successful insert) into `vero_sink_consumer_lag`, only for
//!   partitions assigned here; a revoke removes the partition's series, so
//!   `sum(vero_sink_consumer_lag)` over all instances counts each partition once.
//! * Errors, logs and statistics also go to the service's
//!   [`vero_service::kafka_security::Watch`]: a refused login or certificate is
//!   reported once and holds `/readyz` until a connection is up again.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};
use vero_service::kafka_security::Watch;
use vero_service::partitions::Rebalances;

use crate::metrics::Metrics;
use crate::once::Fence;

pub struct SinkContext {
    metrics: Metrics,
    topic: String,
    /// What the pipeline learns of rebalances (shared with its lifecycle).
    rebalances: Arc<Rebalances>,
    /// Partitions assigned here: the ones that may have a lag series.
    lagging: Mutex<BTreeSet<i32>>,
    /// Ownership for the inserter: assigned and revoked here.
    fence: Arc<Fence>,
    kafka: Watch,
}

impl SinkContext {
    pub fn new(metrics: Metrics, topic: String, fence: Arc<Fence>, kafka: Watch, rebalances: Arc<Rebalances>) -> Self {
        Self { metrics, topic, rebalances, lagging: Mutex::default(), fence, kafka }
    }

    /// The service's watch of refused Kafka connections.
    pub fn kafka(&self) -> &Watch {
        &self.kafka
    }
}

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.kafka.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.kafka.error(&error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        self.kafka.stats(&statistics);
        let Some(topic) = statistics.topics.get(&self.topic) else { return };
        // Held while setting, so a revoke in between cannot leave a series behind.
        let assigned = self.lagging.lock().expect("lagging lock");
        for (partition, stats) in &topic.partitions {
            // -1 = unknown / not assigned here; the internal partition is -1 too.
            // Statistics may still list a partition just revoked: skip what is not ours.
            if assigned.contains(partition) && stats.consumer_lag_stored >= 0 {
                self.metrics.consumer_lag.with_label_values(&[&partition.to_string()]).set(stats.consumer_lag_stored);
            }
        }
    }
}

impl ConsumerContext for SinkContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let revoked: Vec<i32> = partitions.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(?revoked, "partitions revoked");
            self.metrics.offset_gaps.on_revoke(partitions);
            let mut lagging = self.lagging.lock().expect("lagging lock");
            for p in &revoked {
                lagging.remove(p);
                let _ = self.metrics.consumer_lag.remove_label_values(&[&p.to_string()]);
            }
            drop(lagging);
            // Blocking wait: moved off the async worker so the INSERT can finish.
            let wait = || self.fence.revoke(&revoked);
            let flushed = match tokio::runtime::Handle::try_current() {
                Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                    tokio::task::block_in_place(wait)
                }
                _ => wait(),
            };
            if !flushed {
                tracing::warn!(
                    ?revoked,
                    "an INSERT of revoked partitions is still in flight; the next owner may write its rows again"
                );
            }
            self.rebalances.revoked(partitions);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            self.on_assigned(consumer, partitions);
        } else if let Ok(assignment) = consumer.assignment() {
            self.metrics.assigned_partitions.set(assignment.count() as i64);
        }
    }
}

impl SinkContext {
    /// Take over `partitions`, assigned by a group rebalance.
    pub fn on_assigned<K: Consumer<Self>>(&self, consumer: &K, partitions: &TopicPartitionList) {
        self.metrics.offset_gaps.on_assign(consumer, partitions);
        let assigned: Vec<i32> = partitions.elements().iter().map(|e| e.partition()).collect();
        tracing::info!(?assigned, "partitions assigned");
        self.fence.assign(&assigned);
        self.lagging.lock().expect("lagging lock").extend(&assigned);
        self.rebalances.assigned(consumer, partitions);
        if let Ok(assignment) = consumer.assignment() {
            self.metrics.assigned_partitions.set(assignment.count() as i64);
        }
    }
}
