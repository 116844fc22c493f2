//! `POST /api/v2/events/batch`: many track events under one token, all or nothing.
//!
//! The body is a JSON object `{"auth_token": "...", "events": [<track event>, ...]}`;
//! each event has the shape of an `events/track` body without the token. Every event
//! is validated (and checked against `[limits]`) before anything is produced, so an
//! invalid event is a 400 naming its index and field (`events[3]: identity.id is
//! required.`) and nothing of the batch is stored. The gateway answers 200 only after
//! every event was acknowledged; any other answer means the client sends the whole
//! batch again, which is safe: each event's request key (its `extras.message_id`, or
//! its content) makes a repeat invisible to the consumers within their dedup window
//! (docs/gateway.md, "Batches").

use serde_json::{Map, Value};
use vero_model::TrackEvent;

use super::build_event;
use crate::error::ApiError;
use crate::limits::LimitsSettings;
use crate::stamp::Stamp;

/// The body field holding the events.
pub const EVENTS_FIELD: &str = "events";

/// Validate a batch's fields (token already removed) and build one record per event,
/// in the order sent. `max_events` is `http.batch_max_events`.
pub fn build_batch(
    mut fields: Map<String, Value>,
    stamp: Stamp<'_>,
    max_events: usize,
    limits: &LimitsSettings,
) -> Result<Vec<TrackEvent>, ApiError> {
    let events = match fields.remove(EVENTS_FIELD) {
        Some(Value::Array(events)) => events,
        None | Some(Value::Null) => {
            return Err(ApiError::invalid("events is required: a list of track events (objects)."))
        }
        Some(_) => return Err(ApiError::invalid("events must be a list of track events (objects).")),
    };
    if let Some(field) = fields.keys().next() {
        let field: String = field.chars().take(50).collect();
        return Err(ApiError::invalid(format!(
            "{field:?} is not a batch field: a batch holds auth_token and events; every event field goes inside \
             each element of events."
        )));
    }
    if events.is_empty() {
        return Err(ApiError::invalid("events must hold at least one event."));
    }
    if events.len() > max_events {
        return Err(ApiError::TooLarge(
            format!(
                "A batch holds at most {max_events} events (http.batch_max_events); this one has {}.",
                events.len()
            )
            .into(),
        ));
    }
    events
        .into_iter()
        .enumerate()
        .map(|(index, event)| {
            let at = |error: ApiError| match error {
                ApiError::Invalid(message) => ApiError::invalid(format!("events[{index}]: {message}")),
                ApiError::TooLarge(message) => ApiError::TooLarge(format!("events[{index}]: {message}").into()),
                other => other,
            };
            let Value::Object(fields) = event else {
                return Err(ApiError::invalid(format!("events[{index}] must be an object (a track event).")));
            };
            if let Some(token) = crate::fields::TOKEN_FIELDS.iter().find(|t| fields.contains_key(**t)) {
                return Err(ApiError::invalid(format!(
                    "events[{index}]: {token} belongs at the top of the batch, once, not inside an event."
                )));
            }
            let event = build_event(fields, stamp).map_err(at)?;
            limits.check_event(&event).map_err(at)?;
            Ok(event)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const STAMP: Stamp<'static> = Stamp { project: "shop", received_at: 1_764_000_000_000, user_agent: None };

    fn limits() -> LimitsSettings {
        LimitsSettings {
            max_id_bytes: 64,
            max_tags_per_request: 10,
            max_tag_bytes: 64,
            max_attributes: 3,
            max_attributes_bytes: 1000,
        }
    }

    fn build(body: Value, max: usize) -> Result<Vec<TrackEvent>, ApiError> {
        let Value::Object(fields) = body else { panic!("test body must be an object") };
        build_batch(fields, STAMP, max, &limits())
    }

    fn event(id: &str) -> Value {
        json!({"identity": {"id": id}, "event_name": "viewed", "extras": {"message_id": format!("m-{id}")}})
    }

    #[test]
    fn every_event_becomes_a_record_in_order() {
        let events = build(json!({"events": [event("1"), event("2"), event("3")]}), 3).unwrap();
        let users: Vec<&str> = events.iter().map(|e| e.user_id.as_str()).collect();
        assert_eq!(users, ["1", "2", "3"]);
        assert!(events.iter().all(|e| e.project == "shop" && e.received_at == STAMP.received_at));
        assert_eq!(events[1].extras, r#"{"message_id":"m-2"}"#);
        let ids: std::collections::BTreeSet<_> = events.iter().map(|e| e.event_id).collect();
        assert_eq!(ids.len(), 3, "each event has its own id");
    }

    #[test]
    fn the_first_invalid_event_is_named_by_index_and_field() {
        let cases = [
            (json!({}), 400, "events is required: a list of track events (objects)."),
            (json!({"events": {}}), 400, "events must be a list of track events (objects)."),
            (json!({"events": []}), 400, "events must hold at least one event."),
            (json!({"events": [event("1")], "event_name": "x"}), 400, "\"event_name\" is not a batch field"),
            (json!({"events": [event("1"), 7]}), 400, "events[1] must be an object (a track event)."),
            (json!({"events": [event("1"), {"event_name": "x"}]}), 400, "events[1]: identity is required"),
            (
                json!({"events": [event("1"), event("2"), {"identity": {"id": "3"}, "event_name": 5}]}),
                400,
                "events[2]: event_name must be a string.",
            ),
            (
                json!({"events": [{"identity": {"id": "1", "a": 1, "b": 2, "c": 3, "d": 4}, "event_name": "x"}]}),
                400,
                "events[0]: identity has 4 attributes",
            ),
            (
                json!({"events": [{"identity": {"id": "1"}, "event_name": "x", "tracking_api_key": "t"}]}),
                400,
                "events[0]: tracking_api_key belongs at the top of the batch",
            ),
            (
                json!({"events": [event("1"), event("2"), event("3"), event("4")]}),
                413,
                "A batch holds at most 3 events (http.batch_max_events); this one has 4.",
            ),
        ];
        for (body, status, message) in cases {
            let error = build(body.clone(), 3).unwrap_err();
            assert_eq!(error.status().as_u16(), status, "{body}: {error}");
            assert!(error.to_string().starts_with(message), "{body}: {error}");
        }
    }
}
