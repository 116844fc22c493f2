//! Validate a track request's fields and build the [`TrackEvent`] record.

use serde_json::{Map, Value};
use uuid::Uuid;
use vero_model::TrackEvent;

use super::created_at::parse_created_at;
use crate::error::ApiError;
use crate::stamp::Stamp;
use crate::user_id;

/// Fields a form body may send as JSON-encoded objects.
pub const OBJECT_FIELDS: &[&str] = &["identity", "data", "extras"];
const EVENT_NAME_MAX_CHARS: usize = 255;

/// Validate `fields` (token already removed) and build the record.
pub fn build_event(mut fields: Map<String, Value>, stamp: Stamp<'_>) -> Result<TrackEvent, ApiError> {
    let event_name = event_name(fields.remove("event_name"))?;
    let mut identity = match fields.remove("identity") {
        Some(Value::Object(identity)) => identity,
        None | Some(Value::Null) => return Err(ApiError::invalid("identity is required (an object with an id).")),
        Some(_) => return Err(ApiError::invalid("identity must be an object.")),
    };
    let user_id = user_id::parse(identity.shift_remove("id"), "identity.id")?
        .ok_or_else(|| ApiError::invalid("identity.id is required."))?;
    let email = match identity.shift_remove("email") {
        None | Some(Value::Null) => None,
        Some(Value::String(email)) => Some(email),
        Some(_) => return Err(ApiError::invalid("identity.email must be a string or null.")),
    };
    let data = optional_object(fields.remove("data"), "data must be an object.")?;
    let development_mode = development_mode(fields.remove("development_mode"))?;
    let extras = optional_object(fields.remove("extras"), "extras must be an object.")?;
    let created_at = match extras.as_ref().and_then(|e| e.get("created_at")) {
        None => None,
        Some(value) => parse_created_at(value).map_err(|_| {
            ApiError::invalid(
                "extras.created_at must be an RFC 3339 time or a Unix timestamp in seconds or milliseconds.",
            )
        })?,
    };
    super::message_id::validate(extras.as_ref())?;
    let source = match extras.as_ref().and_then(|e| e.get("source")) {
        None | Some(Value::Null) => None,
        Some(Value::String(source)) => Some(source.clone()),
        Some(_) => return Err(ApiError::invalid("extras.source must be a string.")),
    };
    Ok(TrackEvent {
        event_id: Uuid::now_v7(),
        received_at: stamp.received_at,
        project: stamp.project.to_owned(),
        event_name,
        user_id,
        email,
        identity_attributes: object_text(Some(identity)),
        data: object_text(data),
        development_mode,
        created_at,
        source,
        extras: object_text(extras),
        user_agent: stamp.user_agent.map(str::to_owned),
    })
}

fn event_name(value: Option<Value>) -> Result<String, ApiError> {
    match value {
        None | Some(Value::Null) => Err(ApiError::invalid("event_name is required.")),
        Some(Value::String(name)) if name.trim().is_empty() => Err(ApiError::invalid("event_name must not be empty.")),
        Some(Value::String(name)) if name.chars().count() > EVENT_NAME_MAX_CHARS => {
            Err(ApiError::invalid("event_name must be at most 255 characters."))
        }
        Some(Value::String(name)) => Ok(name),
        Some(_) => Err(ApiError::invalid("event_name must be a string.")),
    }
}

/// Booleans, and the spellings form bodies and loosely typed clients send.
fn development_mode(value: Option<Value>) -> Result<bool, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(Value::String(s)) if matches!(s.as_str(), "true" | "1" | "True" | "TRUE") => Ok(true),
        Some(Value::String(s)) if matches!(s.as_str(), "false" | "0" | "False" | "FALSE" | "") => Ok(false),
        Some(Value::Number(n)) if n.as_u64() == Some(1) => Ok(true),
        Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(false),
        Some(_) => Err(ApiError::invalid("development_mode must be a boolean.")),
    }
}

fn optional_object(value: Option<Value>, message: &'static str) -> Result<Option<Map<String, Value>>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(object)) => Ok(Some(object)),
        Some(_) => Err(ApiError::invalid(message)),
    }
}

fn object_text(object: Option<Map<String, Value>>) -> String {
    match object {
        None => "{}".to_owned(),
        Some(object) => Value::Object(object).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const STAMP: Stamp<'static> = Stamp { project: "shop", received_at: 1_764_000_000_000, user_agent: Some("ua/1") };

    fn build(body: Value) -> Result<TrackEvent, ApiError> {
        let Value::Object(fields) = body else { panic!("test body must be an object") };
        build_event(fields, STAMP)
    }

    fn message(body: Value) -> String {
        build(body).unwrap_err().to_string()
    }

    #[test]
    fn the_documented_example_becomes_a_record() {
        let event = build(json!({
            "identity": {"id": "1", "email": "janedoe@getvero.com", "plan": "pro", "age": 31},
            "event_name": "user_signed_up",
            "data": {"item": "Blue shoes", "price": 40.00, "nested": {"a": [1, true, null]}},
            "extras": {"created_at": 1_763_999_999, "source": "ios"},
            "development_mode": true
        }))
        .unwrap();
        assert_eq!(event.event_id.get_version_num(), 7);
        assert_eq!((event.project.as_str(), event.received_at), ("shop", STAMP.received_at));
        assert_eq!((event.event_name.as_str(), event.user_id.as_str()), ("user_signed_up", "1"));
        assert_eq!(event.email.as_deref(), Some("janedoe@getvero.com"));
        assert_eq!(event.identity_attributes, r#"{"plan":"pro","age":31}"#);
        assert_eq!(event.data, r#"{"item":"Blue shoes","price":40.0,"nested":{"a":[1,true,null]}}"#);
        assert!(event.development_mode);
        assert_eq!(event.created_at, Some(1_763_999_999_000));
        assert_eq!(event.source.as_deref(), Some("ios"));
        assert_eq!(event.extras, r#"{"created_at":1763999999,"source":"ios"}"#);
        assert_eq!(event.user_agent.as_deref(), Some("ua/1"));
    }

    #[test]
    fn optional_parts_default_and_ids_may_be_numbers() {
        let event = build(json!({"identity": {"id": 42, "email": null}, "event_name": "x"})).unwrap();
        assert_eq!((event.user_id.as_str(), event.email.clone()), ("42", None));
        assert_eq!(
            (event.data.as_str(), event.extras.as_str(), event.identity_attributes.as_str()),
            ("{}", "{}", "{}")
        );
        assert!(!event.development_mode && event.created_at.is_none() && event.source.is_none());
        let big = build(json!({"identity": {"id": 18_446_744_073_709_551_615_u64}, "event_name": "x"})).unwrap();
        assert_eq!(big.user_id, "18446744073709551615");
        let form = build(json!({"identity": {"id": "7"}, "event_name": "x", "development_mode": "1"})).unwrap();
        assert!(form.development_mode);
    }

    #[test]
    fn every_invalid_field_is_named() {
        let id = json!({"id": "1"});
        let cases = [
            (json!({"identity": id}), "event_name is required."),
            (json!({"identity": id, "event_name": ""}), "event_name must not be empty."),
            (json!({"identity": id, "event_name": 5}), "event_name must be a string."),
            (json!({"identity": id, "event_name": "x".repeat(256)}), "event_name must be at most 255 characters."),
            (json!({"event_name": "x"}), "identity is required (an object with an id)."),
            (json!({"event_name": "x", "identity": "1"}), "identity must be an object."),
            (json!({"event_name": "x", "identity": {"email": "a@b.c"}}), "identity.id is required."),
            (json!({"event_name": "x", "identity": {"id": ""}}), "identity.id must not be empty."),
            (json!({"event_name": "x", "identity": {"id": 1.5}}), "identity.id must be a string or an integer."),
            (json!({"event_name": "x", "identity": {"id": [1]}}), "identity.id must be a string or an integer."),
            (
                json!({"event_name": "x", "identity": {"id": "1", "email": 3}}),
                "identity.email must be a string or null.",
            ),
            (json!({"event_name": "x", "identity": id, "data": [1]}), "data must be an object."),
            (
                json!({"event_name": "x", "identity": id, "development_mode": "yes"}),
                "development_mode must be a boolean.",
            ),
            (json!({"event_name": "x", "identity": id, "extras": "ios"}), "extras must be an object."),
            (json!({"event_name": "x", "identity": id, "extras": {"source": 1}}), "extras.source must be a string."),
        ];
        for (body, expected) in cases {
            assert_eq!(message(body.clone()), expected, "{body}");
        }
        let err = message(json!({"event_name": "x", "identity": id, "extras": {"created_at": "soon"}}));
        assert!(err.starts_with("extras.created_at must be"), "{err}");
        assert_eq!("x".repeat(255).len(), 255);
        assert!(build(json!({"identity": id, "event_name": "é".repeat(255)})).is_ok(), "limit counts characters");
    }
}
