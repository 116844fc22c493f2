//! One `vero.events` row: a decoded [`TrackEvent`] plus its Kafka lineage.
//!
//! Field names are the column names; the derived time columns (`received_at`,
//! `event_time`) are left to the table's DEFAULT expressions so the same row type fits
//! every schema variant. `inserted_at` is sent by the sink, one value per batch
//! ([`EventRow::stamp`]), instead of the column's `DEFAULT now()`: a retried INSERT of
//! the batch is then byte-identical to the first attempt, which is what a Replicated
//! table's block deduplication recognises (docs/design.md, "Cluster writes"). [`EventRow::from_event`] refuses events whose
//! time cannot be stored (outside 1970..2106, the range of ClickHouse's `DateTime`),
//! because ClickHouse would either reject the whole insert or silently wrap the value.
//! Every row carries its request key, computed here from the event.

use clickhouse::Row;
use serde::Serialize;
use uuid::Uuid;
use vero_model::TrackEvent;

/// Smallest and largest event times (ms since the epoch) every schema variant can hold.
const MIN_TIME_MS: i64 = 0;
const MAX_TIME_MS: i64 = 4_291_747_199_000; // 2105-12-31T23:59:59Z

#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct EventRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: Uuid,
    pub project: String,
    pub event_name: String,
    pub user_id: String,
    pub email: Option<String>,
    pub identity: String,
    pub data: String,
    pub extras: String,
    pub source: Option<String>,
    pub user_agent: Option<String>,
    pub development_mode: u8,
    pub received_at_ms: i64,
    pub created_at_ms: Option<i64>,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    /// The client request's identity ([`vero_model::request_key`]): a repeat within
    /// the dedup window is not inserted (see [`crate::once`]).
    #[serde(with = "clickhouse::serde::uuid")]
    pub request_key: Uuid,
    /// `inserted_at`, seconds since the epoch (UTC): when the batch was first written.
    pub inserted_at: u32,
}

impl EventRow {
    pub fn from_event(event: TrackEvent, partition: i32, offset: i64) -> Result<Self, String> {
        for (field, value) in [("received_at", Some(event.received_at)), ("extras.created_at", event.created_at)] {
            if let Some(ms) = value.filter(|ms| !(MIN_TIME_MS..=MAX_TIME_MS).contains(ms)) {
                return Err(format!("{field} {ms} ms is outside the storable range 1970-01-01..2105-12-31"));
            }
        }
        let request_key = vero_model::request_key::request_key(&event);
        Ok(Self {
            request_key,
            event_id: event.event_id,
            project: event.project,
            event_name: event.event_name,
            user_id: event.user_id,
            email: event.email,
            identity: event.identity_attributes,
            data: event.data,
            extras: event.extras,
            source: event.source,
            user_agent: event.user_agent,
            development_mode: u8::from(event.development_mode),
            received_at_ms: event.received_at,
            created_at_ms: event.created_at,
            kafka_partition: partition,
            kafka_offset: offset,
            inserted_at: now_secs(),
        })
    }

    /// Set `inserted_at` of every row of a batch to `seconds`, once, before its first
    /// INSERT attempt: every retry then sends the same bytes.
    pub fn stamp(rows: &mut [EventRow], seconds: u32) {
        for row in rows {
            row.inserted_at = seconds;
        }
    }

    /// The event back, for the dead-letter topic (every event field is a column).
    pub fn to_event(&self) -> TrackEvent {
        TrackEvent {
            event_id: self.event_id,
            received_at: self.received_at_ms,
            project: self.project.clone(),
            event_name: self.event_name.clone(),
            user_id: self.user_id.clone(),
            email: self.email.clone(),
            identity_attributes: self.identity.clone(),
            data: self.data.clone(),
            development_mode: self.development_mode != 0,
            created_at: self.created_at_ms,
            source: self.source.clone(),
            extras: self.extras.clone(),
            user_agent: self.user_agent.clone(),
        }
    }

    /// Approximate encoded size, for the batch byte limit.
    pub fn approx_bytes(&self) -> usize {
        let optional = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        64 + self.project.len()
            + self.event_name.len()
            + self.user_id.len()
            + optional(&self.email)
            + self.identity.len()
            + self.data.len()
            + self.extras.len()
            + optional(&self.source)
            + optional(&self.user_agent)
    }
}

/// Seconds since the epoch now, as a ClickHouse `DateTime`.
pub fn now_secs() -> u32 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u32::try_from(since.as_secs()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn event(created_at: Option<i64>) -> TrackEvent {
        TrackEvent {
            event_id: Uuid::now_v7(),
            received_at: 1_700_000_000_123,
            project: "p".into(),
            event_name: "signed_up".into(),
            user_id: "1".into(),
            email: None,
            identity_attributes: "{}".into(),
            data: "{}".into(),
            development_mode: true,
            created_at,
            source: None,
            extras: "{}".into(),
            user_agent: None,
        }
    }

    #[test]
    fn maps_every_field_and_keeps_lineage() {
        let e = event(Some(1_699_999_999_000));
        let row = EventRow::from_event(e.clone(), 3, 42).unwrap();
        assert_eq!((row.event_id, row.kafka_partition, row.kafka_offset), (e.event_id, 3, 42));
        assert_eq!((row.development_mode, row.created_at_ms), (1, Some(1_699_999_999_000)));
        assert_eq!(row.request_key, vero_model::request_key::request_key(&e));
        assert!(row.approx_bytes() > 64);
        assert_eq!(row.to_event(), e);
    }

    #[test]
    fn times_outside_the_storable_range_are_refused() {
        let err = EventRow::from_event(event(Some(-1)), 0, 0).unwrap_err();
        assert!(err.contains("extras.created_at"), "{err}");
        assert!(EventRow::from_event(event(Some(MAX_TIME_MS + 1)), 0, 0).is_err());
    }
}
