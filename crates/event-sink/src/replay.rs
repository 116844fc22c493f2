//! `event-sink replay-dlq`: the dead-letter topic's records back into the pipeline
//! once their cause is fixed, with the sink's Kafka settings. The replay serves both
//! consumers' letters and lives in `vero_service::dlq_replay`, beside the rule each
//! consumer applies to a replayed record.

use std::time::Duration;

use vero_service::dlq_replay::ReplayFrom;
pub use vero_service::dlq_replay::{Replayed, REPLAYED_FOR, REPLAYED_FROM};

use crate::config::KafkaSettings;

/// Consumer group of the replay for `kafka` (its progress in the DLQ).
pub fn replay_group(kafka: &KafkaSettings) -> String {
    format!("{}-dlq-replay", kafka.group_id)
}

/// Replay every record of the DLQ not replayed yet; `timeout` bounds the whole run.
pub async fn replay_dlq(kafka: &KafkaSettings, timeout: Duration) -> anyhow::Result<Replayed> {
    let from = ReplayFrom {
        brokers: &kafka.brokers,
        dlq_topic: &kafka.dlq_topic,
        default_topic: &kafka.events_topic,
        group: replay_group(kafka),
        idempotent_producer: kafka.idempotent_producer,
        properties: &kafka.properties,
    };
    vero_service::dlq_replay::replay(from, timeout).await
}
