//! The track event record: one accepted `POST /api/v2/events/track`.
//!
//! JSON-valued fields (`identity_attributes`, `data`, `extras`) are carried as JSON
//! object text so that every JSON type the client sent (numbers, booleans, nested
//! objects) survives unchanged into Kafka and ClickHouse.

use apache_avro::types::Value;
use uuid::Uuid;

use crate::avro_value::{optional_millis, optional_string, Fields};
use crate::codec::{AvroRecord, DecodeError};
use crate::schemas::{track_event_versions, SchemaVersion};

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

impl AvroRecord for TrackEvent {
    fn versions() -> &'static [SchemaVersion] {
        track_event_versions()
    }

    fn to_fields(&self) -> Vec<(String, Value)> {
        vec![
            ("event_id".into(), Value::Uuid(self.event_id)),
            ("received_at".into(), Value::TimestampMillis(self.received_at)),
            ("project".into(), Value::String(self.project.clone())),
            ("event_name".into(), Value::String(self.event_name.clone())),
            ("user_id".into(), Value::String(self.user_id.clone())),
            ("email".into(), optional_string(&self.email)),
            ("identity_attributes".into(), Value::String(self.identity_attributes.clone())),
            ("data".into(), Value::String(self.data.clone())),
            ("development_mode".into(), Value::Boolean(self.development_mode)),
            ("created_at".into(), optional_millis(self.created_at)),
            ("source".into(), optional_string(&self.source)),
            ("extras".into(), Value::String(self.extras.clone())),
            ("user_agent".into(), optional_string(&self.user_agent)),
        ]
    }

    fn from_fields(mut f: Fields) -> Result<Self, DecodeError> {
        Ok(Self {
            event_id: f.uuid("event_id")?,
            received_at: f.millis("received_at")?,
            project: f.string("project")?,
            event_name: f.string("event_name")?,
            user_id: f.string("user_id")?,
            email: f.optional_string("email")?,
            identity_attributes: f.string("identity_attributes")?,
            data: f.string("data")?,
            development_mode: f.boolean("development_mode")?,
            created_at: f.optional_millis("created_at")?,
            source: f.optional_string("source")?,
            extras: f.string("extras")?,
            user_agent: f.optional_string("user_agent")?,
        })
    }
}
