//! A client's explicit request id: the `Idempotency-Key` header or `extras.message_id`
//! in the body (both name the same thing; the header is recorded as
//! `extras.message_id`). The consumers drop a repeat of a request id within their
//! dedup window (`vero_model::request_key`); without one, the content rule applies.
//!
//! Guarantees: an accepted id is a non-empty string of at most [`MAX_CHARS`]
//! characters (or, in the body, an integer); a header and a body field that disagree
//! are a 400, never a silent choice.

use http::HeaderValue;
use serde_json::{Map, Value};
use vero_model::request_key::MESSAGE_ID;

use crate::error::ApiError;

/// The request header carrying an explicit request id.
pub const HEADER: &str = "idempotency-key";
pub const MAX_CHARS: usize = 255;

/// Record the `Idempotency-Key` header (if sent) as `extras.message_id` in `fields`.
/// A non-object `extras` is left for [`super::build_event`] to reject.
pub fn merge_header(fields: &mut Map<String, Value>, header: Option<&HeaderValue>) -> Result<(), ApiError> {
    let Some(header) = header else { return Ok(()) };
    let id = header
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.chars().count() <= MAX_CHARS)
        .ok_or_else(|| ApiError::invalid("Idempotency-Key must be 1 to 255 visible ASCII characters."))?;
    let extras = fields.entry("extras").or_insert_with(|| Value::Object(Map::new()));
    if extras.is_null() {
        *extras = Value::Object(Map::new());
    }
    let Value::Object(extras) = extras else { return Ok(()) };
    match extras.get(MESSAGE_ID) {
        None | Some(Value::Null) => {
            extras.insert(MESSAGE_ID.to_owned(), Value::String(id.to_owned()));
            Ok(())
        }
        Some(Value::String(body)) if body == id => Ok(()),
        Some(Value::Number(body)) if body.to_string() == id => Ok(()),
        Some(_) => Err(ApiError::invalid("Idempotency-Key and extras.message_id differ; send one of them.")),
    }
}

/// Check `extras.message_id` when present: a non-empty string of at most
/// [`MAX_CHARS`] characters, or an integer.
pub fn validate(extras: Option<&Map<String, Value>>) -> Result<(), ApiError> {
    match extras.and_then(|e| e.get(MESSAGE_ID)) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(id)) if !id.is_empty() && id.chars().count() <= MAX_CHARS => Ok(()),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(()),
        Some(_) => Err(ApiError::invalid(
            "extras.message_id must be a non-empty string of at most 255 characters, or an integer.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(body: Value) -> Map<String, Value> {
        let Value::Object(fields) = body else { panic!("object") };
        fields
    }

    #[test]
    fn the_header_becomes_extras_message_id() {
        let header = HeaderValue::from_static("order-17");
        let mut without_extras = fields(json!({"event_name": "x"}));
        merge_header(&mut without_extras, Some(&header)).unwrap();
        assert_eq!(without_extras["extras"], json!({"message_id": "order-17"}));
        let mut with_extras = fields(json!({"extras": {"source": "ios"}}));
        merge_header(&mut with_extras, Some(&header)).unwrap();
        assert_eq!(with_extras["extras"], json!({"source": "ios", "message_id": "order-17"}));
        let mut same = fields(json!({"extras": {"message_id": "order-17"}}));
        merge_header(&mut same, Some(&header)).unwrap();
        let mut numeric = fields(json!({"extras": {"message_id": 17}}));
        merge_header(&mut numeric, Some(&HeaderValue::from_static("17"))).unwrap();
        let mut untouched = fields(json!({"extras": {"source": "ios"}}));
        merge_header(&mut untouched, None).unwrap();
        assert_eq!(untouched["extras"], json!({"source": "ios"}));
    }

    #[test]
    fn disagreeing_or_malformed_ids_are_refused() {
        let mut differ = fields(json!({"extras": {"message_id": "a"}}));
        let err = merge_header(&mut differ, Some(&HeaderValue::from_static("b"))).unwrap_err();
        assert!(err.to_string().contains("differ"), "{err}");
        let mut any = fields(json!({}));
        for bad in [HeaderValue::from_static(" "), HeaderValue::from_str(&"k".repeat(256)).unwrap()] {
            assert!(merge_header(&mut any, Some(&bad)).is_err(), "{bad:?}");
        }
        assert!(validate(Some(&fields(json!({"message_id": "m"})))).is_ok());
        for bad in [json!(""), json!(1.5), json!(["m"]), json!("m".repeat(256))] {
            assert!(validate(Some(&fields(json!({ "message_id": bad })))).is_err(), "{bad}");
        }
    }
}
