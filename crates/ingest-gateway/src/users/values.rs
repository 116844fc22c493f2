//! Field readers of the users endpoints: email, tag lists and attribute objects.
//!
//! Lenient where real clients differ (a single tag instead of a list, an empty form
//! field meaning "not sent"), strict about types: anything else is a 400 naming the
//! field.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// `email`: a string, `null` or absent. A blank string counts as not sent, because
/// form clients always send the key; it must not overwrite a stored email.
pub fn email(value: Option<Value>) -> Result<Option<String>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(email)) if email.trim().is_empty() => Ok(None),
        Some(Value::String(email)) => Ok(Some(email)),
        Some(_) => Err(ApiError::invalid("email must be a string or null.")),
    }
}

/// `add` / `remove`: a list of non-blank strings. A single string is a one-element
/// list (a blank one an empty list); `null` or absent is an empty list. Form bodies
/// send `add[]=a&add[]=b`, which arrives here as a list.
pub fn tags(value: Option<Value>, field: &'static str) -> Result<Vec<String>, ApiError> {
    let not_a_list = || ApiError::invalid(format!("{field} must be a list of strings."));
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(tag)) if tag.trim().is_empty() => Ok(Vec::new()),
        Some(Value::String(tag)) => Ok(vec![tag]),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(tag) if tag.trim().is_empty() => {
                    Err(ApiError::invalid(format!("{field} must not contain blank tags.")))
                }
                Value::String(tag) => Ok(tag),
                _ => Err(not_a_list()),
            })
            .collect(),
        Some(_) => Err(not_a_list()),
    }
}

/// An attribute object (`data`, `changes`) as JSON object text; `None` when absent or
/// `null`, so the caller decides whether it is required.
pub fn attributes(value: Option<Value>, field: &'static str) -> Result<Option<String>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(object)) => Ok(Some(object_text(object))),
        Some(_) => Err(ApiError::invalid(format!("{field} must be an object."))),
    }
}

pub fn object_text(object: Map<String, Value>) -> String {
    Value::Object(object).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn emails() {
        assert_eq!(email(Some(json!("a@b.c"))).unwrap().as_deref(), Some("a@b.c"));
        assert_eq!(email(Some(json!(""))).unwrap(), None);
        assert_eq!(email(Some(Value::Null)).unwrap(), None);
        assert_eq!(email(Some(json!(1))).unwrap_err().to_string(), "email must be a string or null.");
    }

    #[test]
    fn tag_lists() {
        assert_eq!(tags(Some(json!(["a", "b c"])), "add").unwrap(), ["a", "b c"]);
        assert_eq!(tags(Some(json!("solo")), "add").unwrap(), ["solo"]);
        assert!(tags(Some(json!("")), "add").unwrap().is_empty());
        assert!(tags(Some(json!([])), "add").unwrap().is_empty());
        assert!(tags(None, "add").unwrap().is_empty());
        for bad in [json!([1]), json!(5), json!({"0": "a"}), json!([["a"]])] {
            assert_eq!(tags(Some(bad.clone()), "remove").unwrap_err().to_string(), "remove must be a list of strings.");
        }
        assert_eq!(tags(Some(json!(["a", " "])), "add").unwrap_err().to_string(), "add must not contain blank tags.");
    }

    #[test]
    fn attribute_objects_keep_types() {
        let text = attributes(Some(json!({"n": 1.5, "b": true, "o": {"l": [1, null]}})), "data").unwrap();
        assert_eq!(text.as_deref(), Some(r#"{"n":1.5,"b":true,"o":{"l":[1,null]}}"#));
        assert_eq!(attributes(None, "data").unwrap(), None);
        assert_eq!(attributes(Some(json!([1])), "changes").unwrap_err().to_string(), "changes must be an object.");
    }
}
