//! The track event record: one accepted `POST /api/v2/events/track`.
//!
//! JSON-valued fields (`identity_attributes`, `data`, `extras`) are carried as JSON
//! object text so that every JSON type the client sent (numbers, booleans, nested
//! objects) survives unchanged into Kafka and ClickHouse.

use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
pub struct TrackEvent {
    /// UUIDv7 stamped by the gateway: unique, time-ordered, the dedup key downstream.
    pub event_id: Uuid,
    /// Gateway receive time, ms since the Unix epoch (UTC).
    pub received_at: i64,
    /// Project the auth token resolved to.
    pub project: String,
    pub event_name: String,
    /// `identity.id` as a string (numeric ids rendered in decimal).
    pub user_id: String,
    pub email: Option<String>,
    /// JSON object text of the identity keys other than `id` and `email`.
    pub identity_attributes: String,
    /// JSON object text of `data` (`{}` when absent).
    pub data: String,
    pub development_mode: bool,
    /// `extras.created_at`, ms since the Unix epoch: the client-side event time.
    pub created_at: Option<i64>,
    /// `extras.source`.
    pub source: Option<String>,
    /// JSON object text of the whole `extras` object (`{}` when absent).
    pub extras: String,
    /// HTTP `User-Agent` of the sending client (schema v2; `None` in v1 records).
    pub user_agent: Option<String>,
}

impl TrackEvent {
    /// The Kafka message key: the user id.
    pub fn key(&self) -> &[u8] {
        crate::topics::user_key(&self.user_id)
    }

    /// The time an analyst means by "when did it happen": the client's time when it
    /// sent one, otherwise the gateway's receive time.
    pub fn event_time(&self) -> i64 {
        self.created_at.unwrap_or(self.received_at)
    }
}
