//! Applying a batch of records to the profiles of the assigned partitions ([`crate::state`]),
//! collecting what must be written ([`Effects`]). Nothing is written here: the batch's
//! offsets are stored only after [`super::write`] wrote every effect.
//!
//! * Events-topic records are applied to the profile of `(project, user_id)` held for
//!   the record's partition, unless the profile already applied that offset, or the
//!   record is a track event repeating a request within the dedup window
//!   ([`crate::profile::dedup`]): then nothing of the profile changes.
//! * `users/reidentify` takes the old profile out of this partition, sends it to the
//!   new id's partition on the handoff topic, records an alias, and erases the old id.
//! * `users/delete` erases the profile; a later record for that id starts a new one.
//! * Handoff-topic records merge a moved profile into the new id's profile.
//! * Records that cannot be decoded or carry bad JSON go to the dead-letter topic,
//!   except a record with a writer schema this build does not know (a gateway, or
//!   another profile consumer, rolled out first): operator-fixable, never a bad
//!   record. Its partition stops there ([`Effects::blocked`]): nothing from it on is
//!   applied or has its offset stored, until a version that knows the schema takes
//!   the partition.
//! * A record `event-sink replay-dlq` put back for another consumer (its
//!   `vero.dlq.replayed.for` is not [`CONSUMER_NAME`]) is skipped: that consumer
//!   dead-lettered it, this one applied the original already, and the copy has a new
//!   offset, so applying it would count its event twice.

use std::collections::{BTreeMap, BTreeSet};

use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use vero_model::profile::{decode_profile, Profile};
use vero_model::{decode_record, Record, TrackEvent, UserAction, UserCommand};
use vero_service::dead_letter::DeadLetter;
use vero_service::dlq_replay::Unsigned;
use vero_service::partitions::Partitions;

use crate::destination::rows::{AliasRow, Erasure};
use crate::kafka::producer::Outgoing;
use crate::profile::dedup::Dedup;
use crate::profile::merge::{validate_command, validate_event};
use crate::profile::{ProfileKey, ProfileState};
use crate::state::{ProfileStates, StateError};

/// Value of the dead-letter consumer header.
pub const CONSUMER_NAME: &str = "profile-consumer";

/// Where the records come from and go to.
#[derive(Debug, Clone)]
pub struct Topics {
    pub events: String,
    pub handoff: String,
    pub profiles: String,
    pub dlq: String,
    /// Partition count shared by the three co-partitioned topics.
    pub partitions: i32,
}

/// How one record was handled, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Duplicate,
    /// A client's repeated request within the dedup window: not applied.
    Repeat,
    /// Replayed from the DLQ for another consumer: applied here already.
    ReplayedForOther,
    /// At or after a record with an unknown writer schema: left unread.
    Blocked,
    DeadLettered,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Repeat => "repeat",
            Outcome::ReplayedForOther => "replayed_for_other",
            Outcome::Blocked => "blocked",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}

/// Where a record came from: what a dead letter points at.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Source {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Everything a batch must write before its offsets may be stored.
#[derive(Debug, Default)]
pub struct Effects {
    /// Profiles whose current state (or absence) must be written.
    pub touched: BTreeSet<(i32, ProfileKey)>,
    /// The records of this batch that changed each touched profile: dead-lettered
    /// if the profile becomes too large to write.
    pub sources: BTreeMap<(i32, ProfileKey), Vec<Source>>,
    /// Version of the deletion marker of each profile erased in this batch.
    pub deleted_versions: BTreeMap<ProfileKey, i64>,
    /// Erasures with the record (delete or reidentify) that caused each.
    pub erasures: Vec<(Source, Erasure)>,
    pub aliases: Vec<AliasRow>,
    /// Handoffs with the reidentify that caused each, produced before the profiles.
    pub messages: Vec<(Source, Outgoing)>,
    /// Dead letters of bad records with the record each is of, produced last: a
    /// partition parked on the way sends none (it reads its records again).
    pub letters: Vec<DeadLetter>,
    /// Next offset to store per (topic, partition).
    pub positions: BTreeMap<(String, i32), i64>,
    /// Request keys that fell out of a profile's dedup state to its count cap while
    /// still within the window.
    pub keys_evicted: usize,
    /// Partitions stopped in this batch at a record with an unknown writer schema:
    /// (topic, partition) -> (its offset, the decode error).
    pub blocked: BTreeMap<(String, i32), (i64, String)>,
}

/// Why a record was not applied.
#[derive(Debug)]
enum NotApplied {
    /// It can never be applied: dead-lettered with this reason.
    Bad(String),
    /// Written with a schema this build does not know: its partition waits.
    UnknownSchema(String),
    /// The local store failed: nothing more of the batch is applied.
    State(StateError),
}

impl From<StateError> for NotApplied {
    fn from(e: StateError) -> Self {
        Self::State(e)
    }
}

impl From<String> for NotApplied {
    fn from(reason: String) -> Self {
        Self::Bad(reason)
    }
}

impl From<&str> for NotApplied {
    fn from(reason: &str) -> Self {
        Self::Bad(reason.to_owned())
    }
}

/// A decode error, classified (`DecodeError::is_unknown_schema`); `what` names the
/// record for the reason.
fn undecodable(what: &str, error: vero_model::DecodeError) -> NotApplied {
    if error.is_unknown_schema() {
        NotApplied::UnknownSchema(format!("{what}: {error}"))
    } else {
        NotApplied::Bad(format!("{what}: {error}"))
    }
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.touched.is_empty() && self.messages.is_empty() && self.letters.is_empty() && self.aliases.is_empty()
    }
}

/// Applies records; `now_micros` gives write versions (see `ProfileState::bump_version`).
pub struct Applier<'a> {
    pub topics: &'a Topics,
    pub profiles: &'a mut ProfileStates,
    pub effects: &'a mut Effects,
    pub now_micros: i64,
    /// `dedup.window_ms` and the key cap of [`crate::profile::dedup`].
    pub dedup: Dedup,
    /// The record being applied.
    pub current: Option<Source>,
}

impl Applier<'_> {
    /// Apply one record; `blocked` are the partitions stopped at an unknown writer
    /// schema (in an earlier batch or this one), whose records are not taken. A
    /// failure of the local store ends the batch: nothing of it may be written.
    pub fn apply(&mut self, message: &OwnedMessage, partitions: &Partitions) -> Result<Outcome, StateError> {
        let (topic, partition, offset) = (message.topic().to_owned(), message.partition(), message.offset());
        let place = (topic.clone(), partition);
        if partitions.is_blocked(&topic, partition) || self.effects.blocked.contains_key(&place) {
            return Ok(Outcome::Blocked);
        }
        self.current = Some(Source { topic: topic.clone(), partition, offset });
        let outcome = if replayed_for_another_consumer(message) {
            Ok(Outcome::ReplayedForOther)
        } else if topic == self.topics.handoff {
            self.apply_handoff(message)
        } else {
            self.apply_event_record(message)
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(NotApplied::UnknownSchema(reason)) => {
                // Not even its offset is stored: the next reader starts at this record.
                self.effects.blocked.insert(place, (offset, reason));
                return Ok(Outcome::Blocked);
            }
            Err(NotApplied::State(e)) => return Err(e),
            Err(NotApplied::Bad(reason)) => {
                self.dead_letter(message, &reason);
                Outcome::DeadLettered
            }
        };
        self.effects.positions.insert(place, offset + 1);
        Ok(outcome)
    }

    fn apply_event_record(&mut self, message: &OwnedMessage) -> Result<Outcome, NotApplied> {
        let bytes = message.payload().ok_or("record has no value")?;
        let record = decode_record(bytes).map_err(|e| undecodable("decode", e))?;
        let (partition, offset) = (message.partition(), message.offset());
        match record {
            Record::Event(event) => self.apply_event(&event, partition, offset),
            Record::Command(command) => match command.action {
                UserAction::Reidentify => self.reidentify(&command, partition, offset),
                UserAction::Delete => Ok(self.delete(&command, partition)?),
                _ => self.apply_command(&command, partition, offset),
            },
        }
    }

    fn profile(&mut self, partition: i32, key: &ProfileKey) -> Result<&mut ProfileState, StateError> {
        // A profile re-created after an erasure in this batch starts above the
        // deletion marker's version, so ClickHouse keeps the new profile.
        let erased_at = self.effects.deleted_versions.get(key).copied().unwrap_or(0);
        self.profiles.get_or_create(partition, key, || {
            let mut fresh = ProfileState::new(key.clone());
            fresh.version = erased_at;
            fresh
        })
    }

    /// `key`'s profile (in the working set: it was just read) changed.
    fn changed(&mut self, partition: i32, key: ProfileKey) -> Result<(), StateError> {
        let now = self.now_micros;
        self.profile(partition, &key)?.bump_version(now);
        if let Some(source) = &self.current {
            self.effects.sources.entry((partition, key.clone())).or_default().push(source.clone());
        }
        self.effects.touched.insert((partition, key));
        Ok(())
    }

    fn apply_event(&mut self, event: &TrackEvent, partition: i32, offset: i64) -> Result<Outcome, NotApplied> {
        let identity = validate_event(event).map_err(|e| e.to_string())?;
        let key = ProfileKey::new(event.project.clone(), event.user_id.clone());
        let dedup = self.dedup;
        let profile = self.profile(partition, &key)?;
        if profile.has_applied(partition, offset) {
            return Ok(Outcome::Duplicate);
        }
        let request = vero_model::request_key::request_key(event);
        if profile.is_repeat(request, event.received_at, dedup) {
            return Ok(Outcome::Repeat);
        }
        profile.apply_event(event, identity, partition, offset);
        let evicted = profile.remember_request(request, event.received_at, dedup);
        self.effects.keys_evicted += evicted;
        self.changed(partition, key)?;
        Ok(Outcome::Applied)
    }

    fn apply_command(&mut self, command: &UserCommand, partition: i32, offset: i64) -> Result<Outcome, NotApplied> {
        let attributes = validate_command(command).map_err(|e| e.to_string())?;
        let key = ProfileKey::new(command.project.clone(), command.user_id.clone());
        let profile = self.profile(partition, &key)?;
        if profile.has_applied(partition, offset) {
            return Ok(Outcome::Duplicate);
        }
        profile.apply_command(command, attributes, partition, offset);
        self.changed(partition, key)?;
        Ok(Outcome::Applied)
    }

    /// Remove the profile from this partition and record its erasure.
    fn erase(&mut self, partition: i32, key: &ProfileKey) -> Result<Option<ProfileState>, StateError> {
        let removed = self.profiles.remove(partition, key)?;
        let erased_before = self.effects.deleted_versions.get(key).copied().unwrap_or(0);
        let previous = removed.as_ref().map_or(erased_before, |p| p.version.max(erased_before));
        let version = self.now_micros.max(previous + 1);
        self.effects.deleted_versions.insert(key.clone(), version);
        let source = self.source(partition);
        self.effects.erasures.push((source, Erasure { key: key.clone(), version }));
        self.effects.touched.insert((partition, key.clone()));
        Ok(removed)
    }

    fn delete(&mut self, command: &UserCommand, partition: i32) -> Result<Outcome, StateError> {
        let key = ProfileKey::new(command.project.clone(), command.user_id.clone());
        self.erase(partition, &key)?;
        Ok(Outcome::Applied)
    }

    fn reidentify(&mut self, command: &UserCommand, partition: i32, offset: i64) -> Result<Outcome, NotApplied> {
        let new_id = command.new_id.clone().filter(|id| !id.is_empty()).ok_or("reidentify without new_id")?;
        let key = ProfileKey::new(command.project.clone(), command.user_id.clone());
        if new_id == command.user_id {
            return self.apply_command(command, partition, offset);
        }
        if self.profiles.get(partition, &key)?.is_some_and(|p| p.has_applied(partition, offset)) {
            return Ok(Outcome::Duplicate);
        }
        // The moved profile records this reidentify as applied, so the move itself is
        // recognised if the handoff is redelivered.
        let mut moved = self.erase(partition, &key)?.unwrap_or_else(|| ProfileState::new(key.clone()));
        moved.apply_command(command, serde_json::Map::new(), partition, offset);
        moved.bump_version(self.now_micros);
        // Request keys contain the user id: none of the new id's events can repeat them.
        moved.recent_requests.clear();
        let target = vero_model::partition::partition_for_key(new_id.as_bytes(), self.topics.partitions);
        self.effects.messages.push((
            self.source(partition),
            Outgoing {
                topic: self.topics.handoff.clone(),
                partition: Some(target),
                key: Profile::key_for(&command.project, &new_id),
                payload: Some(vero_model::encode(&moved.to_record())),
                headers: None,
            },
        ));
        self.effects.aliases.push(AliasRow {
            project: command.project.clone(),
            old_id: command.user_id.clone(),
            new_id,
            at_ms: command.received_at,
            kafka_partition: partition,
            kafka_offset: offset,
        });
        Ok(Outcome::Applied)
    }

    fn apply_handoff(&mut self, message: &OwnedMessage) -> Result<Outcome, NotApplied> {
        let (project, user_id) = message.key().and_then(Profile::split_key).ok_or("handoff without a profile key")?;
        let bytes = message.payload().ok_or("handoff without a value")?;
        let moved = decode_profile(bytes).map_err(|e| undecodable("decode handoff", e))?;
        let moved = ProfileState::from_record(moved).map_err(|e| e.to_string())?;
        let (partition, offset) = (message.partition(), message.offset());
        let key = ProfileKey::new(project, user_id);
        let profile = self.profile(partition, &key)?;
        if offset <= profile.handoff_offset {
            return Ok(Outcome::Duplicate);
        }
        if !profile.merge_moved(moved, offset) {
            self.effects.touched.insert((partition, key));
            return Ok(Outcome::Duplicate);
        }
        self.changed(partition, key)?;
        Ok(Outcome::Applied)
    }

    fn dead_letter(&mut self, message: &OwnedMessage, reason: &str) {
        self.effects.letters.push(dead_letter(message, "bad_record", reason));
    }

    /// The record being applied (of `partition`).
    fn source(&self, partition: i32) -> Source {
        self.current.clone().unwrap_or(Source { topic: self.topics.events.clone(), partition, offset: -1 })
    }
}

/// Whether `message` is a DLQ replay meant for another consumer than this one
/// (unsigned letters are the sink's: it wrote them before letters were signed).
fn replayed_for_another_consumer(message: &OwnedMessage) -> bool {
    vero_service::dlq_replay::for_another_consumer(message, CONSUMER_NAME, Unsigned::Theirs)
}

/// The dead letter of `message` (a record this consumer gives up on): its key and
/// value, and why.
pub fn dead_letter(message: &OwnedMessage, kind: &'static str, reason: &str) -> DeadLetter {
    tracing::warn!(
        topic = message.topic(),
        partition = message.partition(),
        offset = message.offset(),
        reason,
        "dead-lettering record"
    );
    DeadLetter::of(message, kind, reason.to_owned())
}
