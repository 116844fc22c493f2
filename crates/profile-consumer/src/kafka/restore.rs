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
use vero_service::kafka_security::{Watch, Watched};

use crate::config::KafkaSettings;
use crate::profile::{ProfileKey, ProfileState};

/// A profile the restore cannot read: the last value of its key on the profiles topic
/// does not decode. Starting that user over would silently lose the profile, so the
/// restore stops here (operator-fixable: docs/operations.md "Failure policy").
#[derive(Debug, thiserror::Error)]
#[error("the profile of {project}/{user_id} at {topic}/{partition} offset {offset} cannot be read: {reason}")]
pub struct Unreadable {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub project: String,
    pub user_id: String,
    pub reason: String,
}

/// What one restore read.
#[derive(Debug, Default)]
pub struct Restored {
    pub profiles: HashMap<ProfileKey, ProfileState>,
    /// Records read, tombstones and superseded values included.
    pub records_read: u64,
    /// The partition's end offset this read reached: everything before it is in
    /// `profiles` (the changelog fence starts from here, [`crate::service::changelog`]).
    pub end: i64,
}

/// Read profiles partition `partition` of `topic` to its end. Blocking: call from
/// `spawn_blocking`.
pub fn read_partition(
    kafka: &KafkaSettings,
    topic: &str,
    partition: i32,
    timeout: Duration,
    watch: Watch,
) -> anyhow::Result<Restored> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", "vero-profile-restore-unused")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true");
    let consumer: BaseConsumer<Watched> = kafka
        .apply_properties(&mut config)
        .create_with_context(Watched(watch))
        .context("creating the restore consumer")?;
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .inspect_err(|_| vero_service::kafka_security::drain(&consumer))
        .with_context(|| format!("reading the watermarks of {topic}/{partition}"))?;
    let mut restored = Restored { end: high, ..Restored::default() };
    if high <= low {
        return Ok(restored);
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + timeout;
    let mut next_offset = low;
    // Keys whose latest value so far does not decode; a later value or tombstone of
    // the same key supersedes it.
    let mut unreadable: HashMap<ProfileKey, Unreadable> = HashMap::new();
    // Read until end-of-partition was reported at or past the high watermark seen
    // at the start: everything acknowledged before we began is in.
    loop {
        if Instant::now() > deadline {
            bail!("restoring {topic}/{partition}: read up to offset {next_offset} of {high} within {timeout:?}");
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) if next_offset >= high => {
                restored.end = next_offset;
                break;
            }
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
                unreadable.remove(&key);
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
                            tracing::error!(topic, partition, offset = message.offset(), error = %e, "unreadable profile");
                            restored.profiles.remove(&key);
                            let unread = Unreadable {
                                topic: topic.to_owned(),
                                partition,
                                offset: message.offset(),
                                project: key.project.clone(),
                                user_id: key.user_id.clone(),
                                reason: format!("{e:#}"),
                            };
                            unreadable.insert(key, unread);
                        }
                    },
                }
            }
        }
    }
    if let Some(first) = unreadable.into_values().min_by_key(|u| u.offset) {
        return Err(first.into());
    }
    Ok(restored)
}
