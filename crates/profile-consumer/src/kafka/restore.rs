//! Restoring a partition's profiles from the compacted profiles topic (the Kafka
//! Streams changelog pattern) into the local store ([`crate::state::disk`]): read
//! profiles partition `p` from the store's checkpoint (or, without a usable one, from
//! the partition's beginning after wiping what is stored) to its end, with an
//! assign-only consumer; the last value of each key wins and a null value (tombstone)
//! means the profile was deleted. What is read is committed to the store in chunks,
//! each with the offset it is complete up to, so memory stays bounded and a restore
//! cut short (killed, timed out) goes on from there. Compaction keeps a full read
//! proportional to the number of profiles, not to the number of events ever received.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message};
use vero_model::profile::{decode_profile, Profile};
use vero_service::kafka_security::{Watch, Watched};
use vero_service::to_end::ToEnd;

use crate::config::KafkaSettings;
use crate::profile::{ProfileKey, ProfileState};
use crate::state::disk::{self, Changes, Disk, Resume};

/// Records committed to the store at once while restoring.
const CHUNK_RECORDS: usize = 5_000;

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
#[derive(Debug)]
pub struct Restored {
    /// Where it started.
    pub resume: Resume,
    /// Records read, tombstones and superseded values included.
    pub records_read: u64,
    /// Profile values read (records that are not tombstones).
    pub values: u64,
    /// The partition's end offset this read reached: everything before it is in the
    /// store (the changelog fence starts from here, [`crate::consume::changelog`]).
    pub end: i64,
}

/// What a restore reads and where it puts it.
pub struct Source<'a> {
    pub kafka: &'a KafkaSettings,
    pub topic: &'a str,
    pub partition: i32,
    /// Bounds the whole read.
    pub timeout: Duration,
    pub watch: Watch,
    pub disk: &'a Disk,
    /// `state.max_checkpoint_age_ms`.
    pub max_checkpoint_age_ms: i64,
}

/// Read the partition into the store, from its checkpoint to the topic's end.
/// Blocking: call from `spawn_blocking`.
pub fn read_partition(source: Source<'_>) -> anyhow::Result<Restored> {
    let Source { kafka, topic, partition, timeout, watch, disk, max_checkpoint_age_ms } = source;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", "vero-profile-restore-unused")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    let consumer: BaseConsumer<Watched> = kafka
        .apply_properties(&mut config)
        .create_with_context(Watched(watch))
        .context("creating the restore consumer")?;
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .inspect_err(|_| vero_service::kafka_security::drain(&consumer))
        .with_context(|| format!("reading the watermarks of {topic}/{partition}"))?;
    let resume = disk::resume(disk.checkpoint(partition)?, low, high, disk::now_ms(), max_checkpoint_age_ms);
    let from = match resume {
        Resume::Checkpoint(end) => end,
        Resume::Beginning(_) => {
            disk.wipe(partition)?;
            low
        }
    };
    let mut restored = Restored { resume, records_read: 0, values: 0, end: from };
    if from >= high {
        // Nothing to read; a wiped partition (an empty topic) gets its checkpoint.
        disk.commit(Changes { checkpoints: [(partition, high)].into(), ..Changes::default() })?;
        restored.end = high;
        return Ok(restored);
    }
    let mut read = ToEnd::new(topic, timeout);
    read.add(partition, from, high);
    read.assign(&consumer)?;
    let mut chunk = Changes::default();
    // Keys whose latest value so far does not decode; a later value or tombstone of
    // the same key supersedes it. The checkpoint never passes the first of them, so a
    // retry reads it again.
    let mut unreadable: HashMap<ProfileKey, Unreadable> = HashMap::new();
    let checkpoint = |next: i64, unreadable: &HashMap<ProfileKey, Unreadable>| {
        unreadable.values().map(|u| u.offset).min().map_or(next, |first| first.min(next))
    };
    // Everything acknowledged before we began is in once the read is done.
    while let Some(message) = read.next(&consumer) {
        let message = message.with_context(|| format!("restoring {topic}/{partition}"))?;
        restored.records_read += 1;
        let Some((project, user_id)) = message.key().and_then(Profile::split_key) else {
            tracing::warn!(topic, partition, offset = message.offset(), "profile record without a valid key");
            continue;
        };
        let key = ProfileKey::new(project, user_id);
        unreadable.remove(&key);
        let value = match message.payload() {
            None => None,
            Some(bytes) => match decode_profile(bytes)
                .map_err(anyhow::Error::from)
                .and_then(|p| ProfileState::from_record(p).map_err(anyhow::Error::from))
            {
                Ok(_) => {
                    restored.values += 1;
                    Some(bytes.to_vec())
                }
                Err(e) => {
                    tracing::error!(topic, partition, offset = message.offset(), error = %e, "unreadable profile");
                    let unread = Unreadable {
                        topic: topic.to_owned(),
                        partition,
                        offset: message.offset(),
                        project: key.project.clone(),
                        user_id: key.user_id.clone(),
                        reason: format!("{e:#}"),
                    };
                    unreadable.insert(key.clone(), unread);
                    None
                }
            },
        };
        chunk.values.push((partition, key.kafka_key(), value));
        if chunk.values.len() >= CHUNK_RECORDS {
            chunk.checkpoints.insert(partition, checkpoint(read.reached(partition), &unreadable));
            disk.commit(std::mem::take(&mut chunk))?;
        }
    }
    restored.end = read.reached(partition);
    chunk.checkpoints.insert(partition, checkpoint(restored.end, &unreadable));
    disk.commit(chunk)?;
    if let Some(first) = unreadable.into_values().min_by_key(|u| u.offset) {
        return Err(first.into());
    }
    Ok(restored)
}
