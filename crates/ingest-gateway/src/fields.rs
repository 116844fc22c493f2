//! From a request body to one JSON object of fields, whatever form the client used,
//! and the auth token out of it. Shared by every endpoint.
//!
//! Accepted bodies:
//! * JSON (`application/json`, also `text/plain` which browsers send to skip a CORS
//!   preflight): must be a JSON object.
//! * Form (`application/x-www-form-urlencoded`): flat fields, bracket notation
//!   (`identity[id]=1`, `data[tags][]=a`) parsed with `serde_qs`, and fields the
//!   endpoint names as objects may instead hold a JSON-encoded object
//!   (`identity={"id":1}`). Form values are strings: form bodies cannot carry types.
//! * No `Content-Type`: sniffed (a body starting with `{` is JSON, else a form).
//!
//! The token (`auth_token` or `tracking_api_key`) is removed from the fields so it
//! cannot travel further; a token in the body wins over one in the query string.

use http::HeaderValue;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Nesting accepted in bracket notation (`a[b][c][d][e]=`): plenty for real clients,
/// bounded against hostile inputs.
const FORM_MAX_DEPTH: usize = 5;
pub const TOKEN_FIELDS: [&str; 2] = ["auth_token", "tracking_api_key"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Form,
    /// No Content-Type: decided from the body.
    Sniff,
}

/// Decide the body format from `Content-Type`, before reading the body.
pub fn body_format(content_type: Option<&HeaderValue>) -> Result<BodyFormat, ApiError> {
    let Some(value) = content_type else { return Ok(BodyFormat::Sniff) };
    let text = value.to_str().unwrap_or_default();
    let essence = text.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") || essence.eq_ignore_ascii_case("text/plain") {
        Ok(BodyFormat::Json)
    } else if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Ok(BodyFormat::Form)
    } else if essence.is_empty() {
        Ok(BodyFormat::Sniff)
    } else {
        Err(ApiError::UnsupportedMediaType(
            format!(
                "Content-Type {:?} is not supported; send application/json or application/x-www-form-urlencoded.",
                truncate(text, 100)
            )
            .into(),
        ))
    }
}

/// Parse `body` into its fields. `object_fields` are the fields that form bodies may
/// send as JSON-encoded strings.
pub fn parse(format: BodyFormat, body: &[u8], object_fields: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let format = match format {
        BodyFormat::Sniff if body.trim_ascii_start().starts_with(b"{") => BodyFormat::Json,
        BodyFormat::Sniff => BodyFormat::Form,
        known => known,
    };
    match format {
        BodyFormat::Json => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(fields)) => Ok(fields),
            Ok(_) => Err(ApiError::invalid("Request body must be a JSON object.")),
            Err(e) if body.trim_ascii().is_empty() => {
                Err(ApiError::invalid(format!("Request body is empty; expected a JSON object ({e}).")))
            }
            Err(e) => Err(ApiError::invalid(format!("Request body is not valid JSON: {e}."))),
        },
        _ => parse_form(body, object_fields),
    }
}

fn parse_form(body: &[u8], object_fields: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let mut fields: Map<String, Value> = serde_qs::Config::new(FORM_MAX_DEPTH, false)
        .deserialize_bytes(body)
        .map_err(|e| ApiError::invalid(format!("Request body is not a valid form: {e}.")))?;
    for &name in object_fields {
        if let Some(Value::String(text)) = fields.get(name) {
            let decoded = match serde_json::from_str::<Value>(text) {
                Ok(object @ Value::Object(_)) => object,
                // An empty field means "not sent" (some clients always send the key).
                _ if text.trim().is_empty() => Value::Null,
                _ => return Err(ApiError::invalid(format!("{name} must be a JSON object or use bracket notation."))),
            };
            fields.insert(name.to_owned(), decoded);
        }
    }
    Ok(fields)
}

/// Remove the token fields from `fields` and return the token, falling back to the
/// query string. A token that is not a string counts as missing.
pub fn take_token(fields: &mut Map<String, Value>, query: Option<&str>) -> Option<String> {
    let mut token = None;
    for name in TOKEN_FIELDS {
        if let Some(Value::String(value)) = fields.remove(name) {
            token = token.or(Some(value));
        }
    }
    token.or_else(|| query.and_then(query_token))
}

fn query_token(query: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct QueryToken {
        auth_token: Option<String>,
        tracking_api_key: Option<String>,
    }
    let parsed: QueryToken = serde_qs::Config::new(0, false).deserialize_str(query).ok()?;
    parsed.auth_token.or(parsed.tracking_api_key)
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const OBJECTS: &[&str] = &["identity", "data", "extras"];

    fn form(body: &str) -> Value {
        Value::Object(parse(BodyFormat::Form, body.as_bytes(), OBJECTS).unwrap())
    }

    #[test]
    fn content_types() {
        let ct = |s: &'static str| body_format(Some(&HeaderValue::from_static(s)));
        assert_eq!(ct("application/json; charset=utf-8").unwrap(), BodyFormat::Json);
        assert_eq!(ct("Application/JSON").unwrap(), BodyFormat::Json);
        assert_eq!(ct("text/plain;charset=UTF-8").unwrap(), BodyFormat::Json);
        assert_eq!(ct("application/x-www-form-urlencoded").unwrap(), BodyFormat::Form);
        assert_eq!(body_format(None).unwrap(), BodyFormat::Sniff);
        let err = ct("multipart/form-data; boundary=x").unwrap_err();
        assert_eq!(err.status(), 415);
        assert!(err.to_string().contains("multipart/form-data"), "{err}");
    }

    #[test]
    fn bracket_notation_and_json_strings_in_forms() {
        let fields = form("auth_token=t&event_name=signed+up&identity%5Bid%5D=1&identity[email]=a%40b.c&data[price]=40&data[tags][]=x&data[tags][]=y&development_mode=true");
        assert_eq!(
            fields,
            json!({"auth_token":"t","event_name":"signed up","identity":{"id":"1","email":"a@b.c"},
                   "data":{"price":"40","tags":["x","y"]},"development_mode":"true"})
        );
        let fields = form("identity=%7B%22id%22%3A1%2C%22email%22%3Anull%7D&data=%7B%22price%22%3A40.5%7D&extras=");
        assert_eq!(fields, json!({"identity":{"id":1,"email":null},"data":{"price":40.5},"extras":null}));
        let err = parse(BodyFormat::Form, b"identity=notjson", OBJECTS).unwrap_err();
        assert_eq!(err.to_string(), "identity must be a JSON object or use bracket notation.");
    }

    #[test]
    fn form_lists_for_tags() {
        let users = |body: &str| Value::Object(parse(BodyFormat::Form, body.as_bytes(), &["data", "changes"]).unwrap());
        assert_eq!(users("id=1&add[]=a&add[]=b&remove[]=c"), json!({"id":"1","add":["a","b"],"remove":["c"]}));
        assert_eq!(users("id=1&add%5B%5D=a"), json!({"id":"1","add":["a"]}));
        assert_eq!(users("add[0]=a&add[1]=b"), json!({"add":["a","b"]}));
        assert_eq!(users("add=solo&changes=%7B%22n%22%3A1%7D"), json!({"add":"solo","changes":{"n":1}}));
    }

    #[test]
    fn json_bodies_must_be_objects() {
        let err = parse(BodyFormat::Json, b"[1]", OBJECTS).unwrap_err();
        assert_eq!(err.to_string(), "Request body must be a JSON object.");
        let err = parse(BodyFormat::Json, b"{\"a\":", OBJECTS).unwrap_err();
        assert!(err.to_string().starts_with("Request body is not valid JSON"), "{err}");
        assert!(parse(BodyFormat::Json, b"", OBJECTS).unwrap_err().to_string().contains("empty"));
        assert_eq!(parse(BodyFormat::Sniff, b" {\"a\":1}", OBJECTS).unwrap()["a"], 1);
        assert_eq!(parse(BodyFormat::Sniff, b"a=1", OBJECTS).unwrap()["a"], "1");
    }

    #[test]
    fn token_from_body_or_query_and_removed_from_fields() {
        let mut fields = parse(BodyFormat::Json, br#"{"tracking_api_key":"k","x":1}"#, OBJECTS).unwrap();
        assert_eq!(take_token(&mut fields, Some("auth_token=q")).as_deref(), Some("k"));
        assert!(!fields.contains_key("tracking_api_key"));
        let mut fields = Map::new();
        assert_eq!(take_token(&mut fields, Some("a=1&auth_token=q%2Bx")).as_deref(), Some("q+x"));
        assert_eq!(take_token(&mut fields, Some("tracking_api_key=z")).as_deref(), Some("z"));
        assert_eq!(take_token(&mut fields, Some("other=1")), None);
        assert_eq!(take_token(&mut fields, None), None);
        let mut fields = parse(BodyFormat::Json, br#"{"auth_token":5}"#, OBJECTS).unwrap();
        assert_eq!(take_token(&mut fields, None), None);
        assert!(fields.is_empty(), "a non-string token is still removed");
    }
}
