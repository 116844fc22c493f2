//! The group consumer of the events and handoff topics.
//!
//! At least once, configured like the event sink's
//! ([`vero_service::group_consumer`]): an offset is stored only after the profiles its
//! record touched were written, and librdkafka commits stored offsets periodically, on
//! revoke (we also send an asynchronous commit there) and on close. The `range` assignor gives
//! one instance events partition `p` and handoff partition `p` together, so the
//! instance holding a user's profile also receives the profiles moved to that user.
//! Its callbacks are the shared [`GroupContext`] (the event sink's too): rebalances
//! are recorded for the loop ([`Rebalances`]), which drops the state and in-flight
//! records of revoked partitions and fences off their writes; partitions assigned
//! while the loop holds consumption paused are paused at once; the events topic's lag
//! and assigned partitions go to `vero_profiles_consumer_lag` (a series per partition
//! assigned here, so a `sum` over all instances counts each partition once) and
//! `vero_profiles_assigned_partitions`.

use std::sync::Arc;

use rdkafka::consumer::{Consumer, StreamConsumer};

use vero_service::group_consumer::GroupConsumerConfig;
use vero_service::group_context::{GroupContext, GroupGauges};
use vero_service::group_protocol::Assignors;
use vero_service::kafka_security::Watch;
use vero_service::offset_gaps::OffsetGaps;
use vero_service::partitions::Rebalances;

use crate::config::KafkaSettings;

pub type GroupConsumer = StreamConsumer<GroupContext>;

/// Create the consumer, subscribed to the events and handoff topics.
pub fn subscribe(
    settings: &KafkaSettings,
    gauges: GroupGauges,
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
    let context = GroupContext::new(settings.events_topic.clone(), gauges, gaps, rebalances.clone(), kafka);
    let consumer: GroupConsumer = config.create_with_context(context)?;
    let topics = [settings.events_topic.as_str(), settings.handoff_topic.as_str()];
    consumer.subscribe(&topics)?;
    Ok((consumer, rebalances))
}
