//! The group consumer of the events and handoff topics.
//!
//! At least once, configured like the event sink's
//! ([`vero_service::group_consumer`]): an offset is stored only after the profiles its
//! record touched were written, and librdkafka commits stored offsets periodically, on
//! revoke (we also send an asynchronous commit there) and on close. The `range` assignor gives
//! one instance events partition `p` and handoff partition `p` together, so the
//! instance holding a user's profile also receives the profiles moved to that user.
//! Rebalances are recorded for the service loop ([`Rebalances`], the shared partition
//! lifecycle), which drops the state and in-flight records of revoked partitions and
//! fences off their writes; partitions assigned while the loop holds consumption
//! paused are paused at once. The lag series of a revoked partition is removed in
//! the revoke callback and only partitions assigned here get one from the statistics,
//! so `sum(vero_profiles_consumer_lag)` over all instances counts each partition once.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use prometheus::IntGaugeVec;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};

use vero_service::group_consumer::GroupConsumerConfig;
use vero_service::group_protocol::Assignors;
use vero_service::kafka_security::Watch;
use vero_service::offset_gaps::OffsetGaps;
use vero_service::partitions::Rebalances;

use crate::config::KafkaSettings;

pub struct RebalanceContext {
    rebalances: Arc<Rebalances>,
    /// `vero_profiles_consumer_lag{partition}` of the events topic.
    lag: IntGaugeVec,
    events_topic: String,
    /// Events-topic partitions assigned here: the ones that may have a lag series.
    lagging: Mutex<BTreeSet<i32>>,
    gaps: Arc<OffsetGaps>,
    /// Refused logins and certificates of every Kafka client of the service.
    kafka: Watch,
}

impl RebalanceContext {
    /// Records the broker deleted before this consumer read them (see
    /// [`vero_service::offset_gaps`]); the service loop reports every received offset.
    pub fn offset_gaps(&self) -> &OffsetGaps {
        &self.gaps
    }

    /// The service's watch of refused Kafka connections.
    pub fn kafka(&self) -> &Watch {
        &self.kafka
    }
}

impl ClientContext for RebalanceContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.kafka.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.kafka.error(&error, reason);
    }

    /// librdkafka statistics: per-partition lag of the events topic
    /// (`consumer_lag_stored`: end offset minus the offset stored after the write),
    /// and whether a broker connection is up (for the watch).
    fn stats(&self, statistics: Statistics) {
        self.kafka.stats(&statistics);
        let Some(topic) = statistics.topics.get(&self.events_topic) else { return };
        // Held while setting, so a revoke in between cannot leave a series behind.
        let assigned = self.lagging.lock().expect("lagging lock");
        for (partition, stats) in &topic.partitions {
            // -1 = unknown or not assigned here; the internal partition is -1 too.
            // Statistics may still list a partition just revoked: skip what is not ours.
            if assigned.contains(partition) && stats.consumer_lag_stored >= 0 {
                self.lag.with_label_values(&[&partition.to_string()]).set(stats.consumer_lag_stored);
            }
        }
    }
}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            // The offsets stored so far cover only written records (the loop drops, and
            // fences off, whatever it holds of these partitions). Async: this callback
            // runs inside the loop's poll, and a synchronous commit has no timeout, so
            // it would hang the loop (and its shutdown) when the broker is gone. The
            // unassign that follows commits the stored offsets of the removed
            // partitions as well (librdkafka, enable.auto.commit), and close commits
            // what is left.
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
                tracing::debug!(error = %e, "commit on revoke failed");
            }
            let mut lagging = self.lagging.lock().expect("lagging lock");
            for element in list.elements() {
                if element.topic() == self.events_topic && lagging.remove(&element.partition()) {
                    // The new owner reports this partition's lag from now on.
                    let _ = self.lag.remove_label_values(&[&element.partition().to_string()]);
                }
            }
            drop(lagging);
            self.rebalances.revoked(list);
            self.gaps.on_revoke(list);
            tracing::info!(partitions = list.count(), events = ?self.events_partitions(list), "partitions revoked");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => self.on_assigned(consumer, list),
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}

impl RebalanceContext {
    /// The events-topic partitions of `list` (the handoff partitions follow them).
    fn events_partitions(&self, list: &TopicPartitionList) -> Vec<i32> {
        list.elements().iter().filter(|e| e.topic() == self.events_topic).map(|e| e.partition()).collect()
    }

    /// Take over `list`, assigned by a group rebalance.
    pub fn on_assigned<K: Consumer<Self>>(&self, consumer: &K, list: &TopicPartitionList) {
        self.gaps.on_assign(consumer, list);
        // Paused at once while the loop holds consumption paused (a write or restore
        // retrying), so nothing piles up until it resumes.
        self.rebalances.assigned(consumer, list);
        let mut lagging = self.lagging.lock().expect("lagging lock");
        for element in list.elements().iter().filter(|e| e.topic() == self.events_topic) {
            lagging.insert(element.partition());
        }
        tracing::info!(partitions = list.count(), events = ?self.events_partitions(list), "partitions assigned");
    }
}

pub type GroupConsumer = StreamConsumer<RebalanceContext>;

/// Create the consumer, subscribed to the events and handoff topics.
pub fn subscribe(
    settings: &KafkaSettings,
    lag: IntGaugeVec,
    gaps: Arc<OffsetGaps>,
    kafka: Watch,
) -> anyhow::Result<(GroupConsumer, Arc<Rebalances>)> {
    let rebalances = Arc::new(Rebalances::default());
    // Events and handoff partition p on one member (co-partitioning): range under
    // either protocol.
    let group = GroupConsumerConfig {
        brokers: &settings.brokers,
        group_id: &settings.group_id,
        protocol: settings.group_protocol,
        assignors: Assignors { classic: "range", consumer: "range" },
        session_timeout_ms: settings.session_timeout_ms,
        max_poll_interval_ms: settings.max_poll_interval_ms,
        group_instance_id: &settings.group_instance_id,
        auto_offset_reset: "earliest",
        auto_commit_interval_ms: 1000,
    };
    let mut config = group.client_config();
    settings.apply_properties(&mut config);
    let consumer: GroupConsumer = config.create_with_context(RebalanceContext {
        rebalances: rebalances.clone(),
        lag,
        events_topic: settings.events_topic.clone(),
        lagging: Mutex::new(BTreeSet::new()),
        gaps,
        kafka,
    })?;
    let topics = [settings.events_topic.as_str(), settings.handoff_topic.as_str()];
    consumer.subscribe(&topics)?;
    Ok((consumer, rebalances))
}
