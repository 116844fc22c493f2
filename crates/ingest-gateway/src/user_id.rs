//! User ids as clients send them, shared by every endpoint (`identity.id`, `id`,
//! `new_id`).
//!
//! Guarantees: an accepted id is a non-blank string, or an integer rendered as its
//! decimal string (`1` → `"1"`, as the spec asks). Floats, booleans, arrays and
//! objects are rejected with a 400 naming the field, never truncated or stringified.

use serde_json::Value;

use crate::error::ApiError;

/// Read the id in `value` (the field `field`); `Ok(None)` when absent or `null`, so the
/// caller decides whether the field is required.
pub fn parse(value: Option<Value>, field: &str) -> Result<Option<String>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) if id.trim().is_empty() => {
            Err(ApiError::invalid(format!("{field} must not be empty.")))
        }
        Some(Value::String(id)) => Ok(Some(id)),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Some(_) => Err(ApiError::invalid(format!("{field} must be a string or an integer."))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_and_integers_are_ids() {
        assert_eq!(parse(Some(json!("u-1")), "id").unwrap().as_deref(), Some("u-1"));
        assert_eq!(parse(Some(json!(-7)), "id").unwrap().as_deref(), Some("-7"));
        assert_eq!(
            parse(Some(json!(18_446_744_073_709_551_615_u64)), "id").unwrap().as_deref(),
            Some("18446744073709551615")
        );
        assert_eq!(parse(None, "id").unwrap(), None);
        assert_eq!(parse(Some(Value::Null), "id").unwrap(), None);
    }

    #[test]
    fn everything_else_is_a_400_naming_the_field() {
        assert_eq!(parse(Some(json!(" ")), "new_id").unwrap_err().to_string(), "new_id must not be empty.");
        for bad in [json!(1.5), json!(true), json!([1]), json!({"id": 1})] {
            let err = parse(Some(bad.clone()), "identity.id").unwrap_err();
            assert_eq!(err.to_string(), "identity.id must be a string or an integer.", "{bad}");
        }
    }
}
