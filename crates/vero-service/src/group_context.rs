//! The librdkafka callbacks of both consumers' group consumer, written once:
//!
//! * **Rebalances** are recorded for the loop ([`Rebalances`]); partitions assigned
//!   while a write holds consumption paused are paused at once. On a revoke the
//!   stored offsets are committed (asynchronously: a synchronous commit has no timeout
//!   and would hang the loop, which runs this callback inside its poll, when the broker
//!   is gone). A consumer that must do more inside the callback (the event sink waits
//!   until no INSERT of the revoked partitions is in flight) gives a [`Hook`].
//! * **Lag**: `consumer_lag_stored` of each partition of the lag topic (the events
//!   topic: its end offset minus the offset stored after the side effect) into the
//!   service's lag gauge, only for partitions assigned here; a revoke removes the
//!   partition's series, so a `sum` over all instances counts each partition once.
//! * **Assigned partitions** of the lag topic, into the service's gauge.
//! * **Offset gaps** ([`OffsetGaps`]): the committed offset of every assigned
//!   partition becomes the next one expected.
//! * Errors, logs and statistics also go to the service's [`Watch`]: a refused login
//!   or certificate is reported once and holds `/readyz` until a connection is up.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use prometheus::{IntGauge, IntGaugeVec};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};

use crate::kafka_security::Watch;
use crate::offset_gaps::OffsetGaps;
use crate::partitions::Rebalances;

/// What a consumer does inside the rebalance callbacks beyond [`GroupContext`]'s own
/// work; the partitions are the lag topic's.
pub trait Hook: Send + Sync {
    /// Before the revoke is recorded for the loop.
    fn revoking(&self, partitions: &[i32]);
    /// Before the assignment is recorded for the loop.
    fn assigned(&self, partitions: &[i32]);
}

/// The service's gauges a [`GroupContext`] keeps.
pub struct GroupGauges {
    /// `<service>_consumer_lag{partition}`.
    pub lag: IntGaugeVec,
    /// `<service>_assigned_partitions`.
    pub assigned: IntGauge,
}

/// A group consumer's context (see the module doc).
pub struct GroupContext {
    /// The topic whose lag and assignment are reported (the events topic).
    lag_topic: String,
    gauges: GroupGauges,
    /// Partitions of the lag topic assigned here: the ones that may have a lag series.
    lagging: Mutex<BTreeSet<i32>>,
    gaps: Arc<OffsetGaps>,
    rebalances: Arc<Rebalances>,
    kafka: Watch,
    hook: Option<Box<dyn Hook>>,
}

impl GroupContext {
    pub fn new(
        lag_topic: String,
        gauges: GroupGauges,
        gaps: Arc<OffsetGaps>,
        rebalances: Arc<Rebalances>,
        kafka: Watch,
    ) -> Self {
        Self { lag_topic, gauges, lagging: Mutex::default(), gaps, rebalances, kafka, hook: None }
    }

    pub fn with_hook(self, hook: impl Hook + 'static) -> Self {
        Self { hook: Some(Box::new(hook)), ..self }
    }

    /// The service's watch of refused Kafka connections.
    pub fn kafka(&self) -> &Watch {
        &self.kafka
    }

    /// Records the broker deleted before this consumer read them; the loop reports
    /// every received offset.
    pub fn offset_gaps(&self) -> &OffsetGaps {
        &self.gaps
    }

    /// The lag topic's partitions of `list`.
    fn lag_partitions(&self, list: &TopicPartitionList) -> Vec<i32> {
        list.elements().iter().filter(|e| e.topic() == self.lag_topic).map(|e| e.partition()).collect()
    }

    fn count_assigned<C: Consumer<Self>>(&self, consumer: &C) {
        if let Ok(assignment) = consumer.assignment() {
            self.gauges.assigned.set(self.lag_partitions(&assignment).len() as i64);
        }
    }

    fn on_revoke(&self, consumer: &BaseConsumer<Self>, list: &TopicPartitionList) {
        // The stored offsets cover only what is written (the loop drops, and fences
        // off, whatever it holds of these partitions).
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
            tracing::debug!(error = %e, "commit on revoke failed");
        }
        let revoked = self.lag_partitions(list);
        let mut lagging = self.lagging.lock().expect("lagging lock");
        for partition in &revoked {
            if lagging.remove(partition) {
                // The new owner reports this partition's lag from now on.
                let _ = self.gauges.lag.remove_label_values(&[&partition.to_string()]);
            }
        }
        drop(lagging);
        self.gaps.on_revoke(list);
        if let Some(hook) = &self.hook {
            hook.revoking(&revoked);
        }
        self.rebalances.revoked(list);
        tracing::info!(partitions = list.count(), ?revoked, "partitions revoked");
    }

    /// Take over `list`, assigned by a group rebalance.
    fn on_assign(&self, consumer: &BaseConsumer<Self>, list: &TopicPartitionList) {
        self.gaps.on_assign(consumer, list);
        let assigned = self.lag_partitions(list);
        if let Some(hook) = &self.hook {
            hook.assigned(&assigned);
        }
        self.lagging.lock().expect("lagging lock").extend(&assigned);
        self.rebalances.assigned(consumer, list);
        tracing::info!(partitions = list.count(), ?assigned, "partitions assigned");
    }
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.kafka.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.kafka.error(&error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        self.kafka.stats(&statistics);
        let Some(topic) = statistics.topics.get(&self.lag_topic) else { return };
        // Held while setting, so a revoke in between cannot leave a series behind.
        let lagging = self.lagging.lock().expect("lagging lock");
        for (partition, stats) in &topic.partitions {
            // -1 = unknown or not assigned here; the internal partition is -1 too.
            // Statistics may still list a partition just revoked: skip what is not ours.
            if lagging.contains(partition) && stats.consumer_lag_stored >= 0 {
                self.gauges.lag.with_label_values(&[&partition.to_string()]).set(stats.consumer_lag_stored);
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            self.on_revoke(consumer, list);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => self.on_assign(consumer, list),
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
        self.count_assigned(consumer);
    }
}
