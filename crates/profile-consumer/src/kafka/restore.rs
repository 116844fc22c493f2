//! Restoring a partition's profiles from the compacted profiles topic (the Kafka
//! Streams changelog pattern): read profiles partition `p` from its beginning to its
//! end with an assign-only consumer; the last value of each key wins and a null value
//! (tombstone) means the profile was deleted. Compaction keeps this read proportional
//! to the number of profiles, not to the number of events ever received.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use vero_model::profile::{decode_profile, Profile};

use crate::config::KafkaSettings;
use crate::profile::{ProfileKey, ProfileState};

/// What one restore read.
#[derive(Debug, Default)]
pub struct Restored {
    pub profiles: HashMap<ProfileKey, ProfileState>,
    /// Records read, tombstones and superseded values included.
    pub records_read: u64,
}

/// Read profiles partition `partition` of `topic` to its end. Blocking: call from
/// `spawn_blocking`.
pub fn read_partition(
    kafka: &KafkaSettings,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> anyhow::Result<Restored> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", "vero-profile-restore-unused")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true");
    let consumer: BaseConsumer =
        kafka.apply_properties(&mut config).create().context("creating the restore consumer")?;
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .with_context(|| format!("reading the watermarks of {topic}/{partition}"))?;
    let mut restored = Restored::default();
    if high <= low {
        return Ok(restored);
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + timeout;
    let mut next_offset = low;
    // Read until end-of-partition was reported at or past the high watermark seen
    // at the start: everything acknowledged before we began is in.
    loop {
        if Instant::now() > deadline {
            bail!("restoring {topic}/{partition}: read up to offset {next_offset} of {high} within {timeout:?}");
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) if next_offset >= high => break,
            Some(Err(KafkaError::PartitionEOF(_))) => continue,
            Some(Err(e)) => tracing::debug!(error = %e, "restore poll failed"),
            Some(Ok(message)) => {
                next_offset = message.offset() + 1;
                restored.records_read += 1;
                let Some((project, user_id)) = message.key().and_then(Profile::split_key) else {
                    tracing::warn!(topic, partition, offset = message.offset(), "profile record without a valid key");
                    continue;
                };
                let key = ProfileKey::new(project, user_id);
                match message.payload() {
                    None => {
                        restored.profiles.remove(&key);
                    }
                    Some(bytes) => match decode_profile(bytes)
                        .map_err(anyhow::Error::from)
                        .and_then(|p| ProfileState::from_record(p).map_err(anyhow::Error::from))
                    {
                        Ok(profile) => {
                            restored.profiles.insert(key, profile);
                        }
                        Err(e) => {
                            tracing::error!(topic, partition, offset = message.offset(), error = %e, "unreadable profile")
                        }
                    },
                }
            }
        }
    }
    Ok(restored)
}
