//! The merged user profile record: the value of the compacted profiles topic
//! (`schemas/avro/profile.v*.avsc`), written by `profile-consumer`.
//!
//! One profile per (project, user id). The Kafka key is [`Profile::key`]
//! (`project`, a NUL byte, `user_id`): unique per profile so compaction keeps exactly
//! the latest value of each, while the partition is chosen from the user id alone so
//! the profiles topic stays co-partitioned with the events topic. A null value (a
//! tombstone) means the profile was deleted. JSON-valued fields are JSON object text,
//! like the event record's, so attribute types survive unchanged.
//!
//! Version 2 adds [`Profile::recent_requests`], the request keys of the events applied
//! within the dedup window, so a client's retry is recognised after a restore too
//! (`docs/design.md`, "Idempotent retries"). Version 1 records read with an empty list.

use apache_avro::types::Value;
use uuid::Uuid;

use crate::avro_value::{optional_millis, optional_string, string_array, Fields};
use crate::codec::{AvroRecord, DecodeError};
use crate::schemas::{profile_versions, SchemaVersion};

/// Most request keys a profile keeps ([`Profile::recent_requests`]): bounds the
/// profile's dedup state to [`RECENT_REQUESTS_MAX_BYTES`] on the wire.
pub const MAX_RECENT_REQUESTS: usize = 1000;

/// The most one [`RecentRequest`] takes encoded: the uuid as a 36-byte string with its
/// one-byte length, and `received_at` as a varint of at most 10 bytes.
const RECENT_REQUEST_MAX_BYTES: usize = 1 + 36 + 10;

/// The most [`Profile::recent_requests`] takes encoded at [`MAX_RECENT_REQUESTS`]
/// entries: the entries plus the array's block count (2 bytes) and end marker (1).
/// What `profile-consumer` reserves of `kafka.max_profile_bytes` for it.
pub const RECENT_REQUESTS_MAX_BYTES: usize = MAX_RECENT_REQUESTS * RECENT_REQUEST_MAX_BYTES + 3;

/// One applied track event's request key and gateway receive time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecentRequest {
    pub request_key: Uuid,
    pub received_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub project: String,
    pub user_id: String,
    pub email: Option<String>,
    /// JSON object text: attribute -> newest value (email included).
    pub attributes: String,
    /// JSON object text: attribute -> `[event_time, received_at, offset]`.
    pub attribute_versions: String,
    /// Sorted and distinct.
    pub tags: Vec<String>,
    pub subscribed: bool,
    pub subscription_changed_at: Option<i64>,
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
    pub event_count: i64,
    pub last_event_name: Option<String>,
    /// JSON `[event_time, received_at, offset]` of `last_event_name`'s event.
    pub last_event_version: String,
    pub previous_ids: Vec<String>,
    /// JSON object text: moved-in profile id -> its version when it moved.
    pub merged_from: String,
    pub events_partition: i64,
    pub events_offset: i64,
    pub handoff_offset: i64,
    pub version: i64,
    /// Request keys of the track events applied within the dedup window, oldest
    /// `received_at` first; at most [`MAX_RECENT_REQUESTS`] (schema v2).
    pub recent_requests: Vec<RecentRequest>,
}

impl Profile {
    /// The compaction key of a profile: `project`, NUL, `user_id`.
    pub fn key_for(project: &str, user_id: &str) -> Vec<u8> {
        let mut key = Vec::with_capacity(project.len() + 1 + user_id.len());
        key.extend_from_slice(project.as_bytes());
        key.push(0);
        key.extend_from_slice(user_id.as_bytes());
        key
    }

    pub fn key(&self) -> Vec<u8> {
        Self::key_for(&self.project, &self.user_id)
    }

    /// The exact encoded size of [`Profile::recent_requests`] (Avro binary: one block
    /// with its count, the entries, the end marker), so a size check can tell the
    /// dedup state from the rest without encoding twice.
    pub fn recent_requests_encoded_len(&self) -> usize {
        // A uuid is written as its 36-character hyphenated text, length byte first.
        let entries: usize = self.recent_requests.iter().map(|r| 1 + 36 + long_len(r.received_at)).sum();
        match self.recent_requests.len() {
            0 => 1,
            n => long_len(n as i64) + entries + 1,
        }
    }

    /// Split a profiles-topic key back into `(project, user_id)`.
    pub fn split_key(key: &[u8]) -> Option<(String, String)> {
        let at = key.iter().position(|b| *b == 0)?;
        let project = std::str::from_utf8(&key[..at]).ok()?;
        let user_id = std::str::from_utf8(&key[at + 1..]).ok()?;
        Some((project.to_owned(), user_id.to_owned()))
    }
}

impl AvroRecord for Profile {
    fn versions() -> &'static [SchemaVersion] {
        profile_versions()
    }

    fn to_fields(&self) -> Vec<(String, Value)> {
        vec![
            ("project".into(), Value::String(self.project.clone())),
            ("user_id".into(), Value::String(self.user_id.clone())),
            ("email".into(), optional_string(&self.email)),
            ("attributes".into(), Value::String(self.attributes.clone())),
            ("attribute_versions".into(), Value::String(self.attribute_versions.clone())),
            ("tags".into(), string_array(&self.tags)),
            ("subscribed".into(), Value::Boolean(self.subscribed)),
            ("subscription_changed_at".into(), optional_millis(self.subscription_changed_at)),
            ("first_seen".into(), optional_millis(self.first_seen)),
            ("last_seen".into(), optional_millis(self.last_seen)),
            ("event_count".into(), Value::Long(self.event_count)),
            ("last_event_name".into(), optional_string(&self.last_event_name)),
            ("last_event_version".into(), Value::String(self.last_event_version.clone())),
            ("previous_ids".into(), string_array(&self.previous_ids)),
            ("merged_from".into(), Value::String(self.merged_from.clone())),
            ("events_partition".into(), Value::Long(self.events_partition)),
            ("events_offset".into(), Value::Long(self.events_offset)),
            ("handoff_offset".into(), Value::Long(self.handoff_offset)),
            ("version".into(), Value::Long(self.version)),
            (
                "recent_requests".into(),
                Value::Array(
                    self.recent_requests
                        .iter()
                        .map(|r| {
                            Value::Record(vec![
                                ("request_key".into(), Value::Uuid(r.request_key)),
                                ("received_at".into(), Value::TimestampMillis(r.received_at)),
                            ])
                        })
                        .collect(),
                ),
            ),
        ]
    }

    fn from_fields(mut f: Fields) -> Result<Self, DecodeError> {
        // `millis` reads plain longs as well as timestamp-millis.
        Ok(Self {
            project: f.string("project")?,
            user_id: f.string("user_id")?,
            email: f.optional_string("email")?,
            attributes: f.string("attributes")?,
            attribute_versions: f.string("attribute_versions")?,
            tags: f.string_array("tags")?,
            subscribed: f.boolean("subscribed")?,
            subscription_changed_at: f.optional_millis("subscription_changed_at")?,
            first_seen: f.optional_millis("first_seen")?,
            last_seen: f.optional_millis("last_seen")?,
            event_count: f.millis("event_count")?,
            last_event_name: f.optional_string("last_event_name")?,
            last_event_version: f.string("last_event_version")?,
            previous_ids: f.string_array("previous_ids")?,
            merged_from: f.string("merged_from")?,
            events_partition: f.millis("events_partition")?,
            events_offset: f.millis("events_offset")?,
            handoff_offset: f.millis("handoff_offset")?,
            version: f.millis("version")?,
            recent_requests: f
                .array("recent_requests")?
                .into_iter()
                .map(|item| {
                    let mut entry = Fields::from_value(item).map_err(|_| DecodeError::Field("recent_requests"))?;
                    Ok(RecentRequest {
                        request_key: entry.uuid("request_key")?,
                        received_at: entry.millis("received_at")?,
                    })
                })
                .collect::<Result<_, DecodeError>>()?,
        })
    }
}

/// Bytes of an Avro `long` (zig-zag varint).
fn long_len(n: i64) -> usize {
    let z = ((n << 1) ^ (n >> 63)) as u64;
    (64 - z.leading_zeros() as usize).div_ceil(7).max(1)
}

/// Decode a profiles-topic value written with any known profile schema version,
/// resolved to the newest. (The events-topic `decode_record` does not accept profiles:
/// they never travel there.)
pub fn decode_profile(bytes: &[u8]) -> Result<Profile, DecodeError> {
    let (fingerprint, mut datum) = crate::codec::split_header(bytes)?;
    let writer = Profile::versions()
        .iter()
        .find(|v| v.matches(fingerprint))
        .ok_or(DecodeError::UnknownSchema(u64::from_le_bytes(fingerprint)))?;
    let value = apache_avro::from_avro_datum(&writer.schema, &mut datum, Some(&Profile::current().schema))
        .map_err(|e| DecodeError::Avro(e.to_string()))?;
    Profile::from_fields(Fields::from_value(value)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode;

    fn sample() -> Profile {
        Profile {
            project: "shop".into(),
            user_id: "42".into(),
            email: Some("jane@example.com".into()),
            attributes: r#"{"email":"jane@example.com","plan":"pro","age":31}"#.into(),
            attribute_versions: r#"{"email":[1,2,3],"plan":[1,2,3],"age":[1,2,3]}"#.into(),
            tags: vec!["beta".into(), "vip".into()],
            subscribed: false,
            subscription_changed_at: Some(1_764_000_000_000),
            first_seen: Some(1_763_000_000_000),
            last_seen: Some(1_764_000_000_000),
            event_count: 7,
            last_event_name: Some("purchased".into()),
            last_event_version: "[1,2,3]".into(),
            previous_ids: vec!["anon-1".into()],
            merged_from: r#"{"anon-1":17}"#.into(),
            events_partition: 2,
            events_offset: 3,
            handoff_offset: -1,
            version: 1_764_000_000_000_000,
            recent_requests: vec![
                RecentRequest { request_key: Uuid::from_u128(7), received_at: 1_764_000_000_000 },
                RecentRequest { request_key: Uuid::from_u128(u128::MAX), received_at: -1 },
            ],
        }
    }

    #[test]
    fn round_trips_every_field() {
        let profile = sample();
        assert_eq!(decode_profile(&encode(&profile)).unwrap(), profile);
        let bare = Profile { email: None, first_seen: None, last_event_name: None, tags: vec![], ..sample() };
        assert_eq!(decode_profile(&encode(&bare)).unwrap(), bare);
    }

    #[test]
    fn a_version_1_profile_reads_with_no_recent_requests() {
        let profile = sample();
        let v1 = crate::codec::encode_with(&profile, &profile_versions()[0]);
        assert_eq!(v1[2..10], profile_versions()[0].fingerprint);
        assert_eq!(decode_profile(&v1).unwrap(), Profile { recent_requests: vec![], ..profile });
    }

    #[test]
    fn the_recent_requests_length_is_exact_and_bounded() {
        let bare = Profile { recent_requests: vec![], ..sample() };
        let base = encode(&bare).len();
        assert_eq!(bare.recent_requests_encoded_len(), 1);
        for n in [1, 2, 63, 64, 65, MAX_RECENT_REQUESTS] {
            let recent = (0..n)
                .map(|i| RecentRequest { request_key: Uuid::from_u128(i as u128), received_at: i64::MIN + i as i64 })
                .collect();
            let profile = Profile { recent_requests: recent, ..sample() };
            let len = profile.recent_requests_encoded_len();
            assert_eq!(encode(&profile).len() - base, len - 1, "{n} entries");
            assert!(len <= RECENT_REQUESTS_MAX_BYTES, "{n} entries: {len}");
        }
        for n in [0i64, -1, 63, -64, 64, i64::MAX, i64::MIN, 1_764_000_000_000] {
            let mut bytes = Vec::new();
            let mut z = ((n << 1) ^ (n >> 63)) as u64;
            loop {
                bytes.push(z as u8);
                z >>= 7;
                if z == 0 {
                    break;
                }
            }
            assert_eq!(long_len(n), bytes.len(), "{n}");
        }
    }

    #[test]
    fn profiles_with_the_legacy_fingerprint_still_decode() {
        let profile = sample();
        let mut bytes = encode(&profile);
        assert_eq!(bytes[2..10], Profile::current().fingerprint);
        bytes[2..10].copy_from_slice(&Profile::current().legacy_fingerprint);
        assert_eq!(decode_profile(&bytes).unwrap(), profile);
    }

    #[test]
    fn events_are_not_profiles() {
        assert!(matches!(decode_profile(b"garbage-garbage"), Err(DecodeError::NotSingleObject)));
        let key = Profile::key_for("shop", "a\0b");
        assert_eq!(Profile::split_key(&key), Some(("shop".into(), "a\0b".into())));
    }
}
