//! The in-memory profile and its wire form.
//!
//! [`ProfileState`] is what the merge rules ([`merge`]) work on: typed maps instead of
//! JSON text. It converts losslessly to and from [`vero_model::profile::Profile`], the
//! Avro record of the profiles topic, so attribute versions survive a restore and
//! merges stay deterministic after a restart or a partition move, and so do the
//! request keys of [`dedup`].

pub mod dedup;
pub mod merge;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use vero_model::profile::{Profile, RecentRequest};

/// Which of two writes of the same attribute is newer: client event time, then the
/// gateway's received_at, then the Kafka offset. Compared lexicographically, so every
/// replay of the same records picks the same winner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Version(pub i64, pub i64, pub i64);

/// Identifies one profile: `(project, user_id)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProfileKey {
    pub project: String,
    pub user_id: String,
}

impl ProfileKey {
    pub fn new(project: impl Into<String>, user_id: impl Into<String>) -> Self {
        Self { project: project.into(), user_id: user_id.into() }
    }

    /// The profiles-topic message key.
    pub fn kafka_key(&self) -> Vec<u8> {
        Profile::key_for(&self.project, &self.user_id)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProfileState {
    pub key: ProfileKey,
    /// Attribute -> (newest value, its version). `email` is one of them.
    pub attributes: BTreeMap<String, (Value, Version)>,
    pub tags: BTreeSet<String>,
    pub subscribed: bool,
    pub subscription_changed_at: Option<i64>,
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
    pub event_count: i64,
    pub last_event: Option<(String, Version)>,
    pub previous_ids: Vec<String>,
    /// Moved-in profile id -> its version when it moved.
    pub merged_from: BTreeMap<String, i64>,
    pub events_partition: i32,
    pub events_offset: i64,
    pub handoff_offset: i64,
    pub version: i64,
    /// Request keys of the track events applied within the dedup window, oldest
    /// received_at first ([`dedup`]).
    pub recent_requests: Vec<RecentRequest>,
}

/// A profiles-topic value that does not hold a valid profile.
#[derive(Debug, thiserror::Error)]
#[error("profile record field `{field}` is not valid JSON of the expected shape: {reason}")]
pub struct BadProfile {
    field: &'static str,
    reason: String,
}

impl ProfileState {
    /// A profile nobody has written to yet.
    pub fn new(key: ProfileKey) -> Self {
        Self {
            key,
            attributes: BTreeMap::new(),
            tags: BTreeSet::new(),
            subscribed: true,
            subscription_changed_at: None,
            first_seen: None,
            last_seen: None,
            event_count: 0,
            last_event: None,
            previous_ids: Vec::new(),
            merged_from: BTreeMap::new(),
            events_partition: -1,
            events_offset: -1,
            handoff_offset: -1,
            version: 0,
            recent_requests: Vec::new(),
        }
    }

    /// Approximate heap bytes this profile holds (what the state cache weighs it at):
    /// a walk over its fields, with a fixed cost per map entry and JSON node.
    pub fn heap_bytes(&self) -> usize {
        const ENTRY: usize = 48;
        fn json(value: &Value) -> usize {
            ENTRY
                + match value {
                    Value::String(s) => s.len(),
                    Value::Array(items) => items.iter().map(json).sum(),
                    Value::Object(map) => map.iter().map(|(k, v)| k.len() + json(v)).sum(),
                    _ => 0,
                }
        }
        let strings = |items: &mut dyn Iterator<Item = &String>| items.map(|s| s.len() + ENTRY).sum::<usize>();
        std::mem::size_of::<Self>()
            + self.key.project.len()
            + self.key.user_id.len()
            + self.attributes.iter().map(|(k, (v, _))| k.len() + ENTRY + json(v)).sum::<usize>()
            + strings(&mut self.tags.iter())
            + strings(&mut self.previous_ids.iter())
            + strings(&mut self.merged_from.keys())
            + self.last_event.as_ref().map_or(0, |(name, _)| name.len())
            + self.recent_requests.capacity() * std::mem::size_of::<RecentRequest>()
    }

    /// The newest email, when it is a string.
    pub fn email(&self) -> Option<&str> {
        self.attributes.get("email").and_then(|(v, _)| v.as_str())
    }

    /// Attribute values only, as a JSON object.
    pub fn attributes_json(&self) -> String {
        let map: BTreeMap<&str, &Value> = self.attributes.iter().map(|(k, (v, _))| (k.as_str(), v)).collect();
        serde_json::to_string(&map).expect("a map of JSON values serializes")
    }

    pub fn to_record(&self) -> Profile {
        let versions: BTreeMap<&str, Version> = self.attributes.iter().map(|(k, (_, v))| (k.as_str(), *v)).collect();
        Profile {
            project: self.key.project.clone(),
            user_id: self.key.user_id.clone(),
            email: self.email().map(str::to_owned),
            attributes: self.attributes_json(),
            attribute_versions: serde_json::to_string(&versions).expect("versions serialize"),
            tags: self.tags.iter().cloned().collect(),
            subscribed: self.subscribed,
            subscription_changed_at: self.subscription_changed_at,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            event_count: self.event_count,
            last_event_name: self.last_event.as_ref().map(|(name, _)| name.clone()),
            last_event_version: match &self.last_event {
                Some((_, v)) => serde_json::to_string(v).expect("version serializes"),
                None => "[]".into(),
            },
            previous_ids: self.previous_ids.clone(),
            merged_from: serde_json::to_string(&self.merged_from).expect("map serializes"),
            events_partition: i64::from(self.events_partition),
            events_offset: self.events_offset,
            handoff_offset: self.handoff_offset,
            version: self.version,
            recent_requests: self.recent_requests.clone(),
        }
    }

    /// The profiles-topic value of this profile, and its size without the dedup state
    /// (what `kafka.max_profile_bytes` bounds, less the part reserved for that state).
    pub fn encode_sized(&self) -> (Vec<u8>, usize) {
        let record = self.to_record();
        let bytes = vero_model::encode(&record);
        let size = bytes.len() - record.recent_requests_encoded_len();
        (bytes, size)
    }

    pub fn from_record(record: Profile) -> Result<Self, BadProfile> {
        let bad = |field: &'static str| move |e: serde_json::Error| BadProfile { field, reason: e.to_string() };
        let mut values: BTreeMap<String, Value> =
            serde_json::from_str(&record.attributes).map_err(bad("attributes"))?;
        let versions: BTreeMap<String, Version> =
            serde_json::from_str(&record.attribute_versions).map_err(bad("attribute_versions"))?;
        let mut attributes = BTreeMap::new();
        for (name, version) in versions {
            let value = values.remove(&name).ok_or_else(|| BadProfile {
                field: "attributes",
                reason: format!("versioned attribute `{name}` has no value"),
            })?;
            attributes.insert(name, (value, version));
        }
        let last_event = match record.last_event_name {
            Some(name) => {
                Some((name, serde_json::from_str(&record.last_event_version).map_err(bad("last_event_version"))?))
            }
            None => None,
        };
        Ok(Self {
            key: ProfileKey::new(record.project, record.user_id),
            attributes,
            tags: record.tags.into_iter().collect(),
            subscribed: record.subscribed,
            subscription_changed_at: record.subscription_changed_at,
            first_seen: record.first_seen,
            last_seen: record.last_seen,
            event_count: record.event_count,
            last_event,
            previous_ids: record.previous_ids,
            merged_from: serde_json::from_str(&record.merged_from).map_err(bad("merged_from"))?,
            events_partition: i32::try_from(record.events_partition).unwrap_or(-1),
            events_offset: record.events_offset,
            handoff_offset: record.handoff_offset,
            version: record.version,
            recent_requests: record.recent_requests,
        })
    }
}
