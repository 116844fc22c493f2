//! Kafka topic names and message keys.
//!
//! Every record about a user is keyed by that user's id (`identity.id`), so all of one
//! user's records land on one partition and consumers see them in the order the
//! gateway produced them.

/// Accepted track events (Avro single-object encoded [`crate::TrackEvent`]).
pub const EVENTS: &str = "vero.events";
/// Records a consumer could not process, with the reason in headers.
pub const EVENTS_DLQ: &str = "vero.events.dlq";
/// Merged user profiles, compacted, keyed by project and user id; co-partitioned
/// with [`EVENTS`].
pub const PROFILES: &str = "vero.profiles";
/// Profiles moved by a reidentify, on their way to the new id's partition owner;
/// co-partitioned with [`EVENTS`].
pub const PROFILES_HANDOFF: &str = "vero.profiles.handoff";

/// Every topic of the pipeline, for tools that create them (`vero-dev-broker`).
pub const ALL: [&str; 4] = [EVENTS, EVENTS_DLQ, PROFILES, PROFILES_HANDOFF];

/// Header names used on dead-lettered records.
pub mod dlq_headers {
    pub const REASON: &str = "vero.dlq.reason";
    pub const SOURCE_TOPIC: &str = "vero.dlq.source.topic";
    pub const SOURCE_PARTITION: &str = "vero.dlq.source.partition";
    pub const SOURCE_OFFSET: &str = "vero.dlq.source.offset";
    pub const CONSUMER: &str = "vero.dlq.consumer";
    /// On a record `event-sink replay-dlq` put back: the DLQ position it came from,
    /// `<dlq topic>/<partition>/<offset>`.
    pub const REPLAYED_FROM: &str = "vero.dlq.replayed.from";
    /// On a replayed record: the [`CONSUMER`] that dead-lettered it, the only one that
    /// applies it again (the others had applied the original record already).
    pub const REPLAYED_FOR: &str = "vero.dlq.replayed.for";
}

/// The Kafka key for a user's records: the user id's UTF-8 bytes.
pub fn user_key(user_id: &str) -> &[u8] {
    user_id.as_bytes()
}
