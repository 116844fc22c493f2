//! `extras.created_at`: the client-side event time, in any of the forms clients send:
//! an RFC 3339 string, or a Unix timestamp (number or numeric string) in seconds, or
//! in milliseconds when it is too large to be seconds.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Timestamps at or above this are milliseconds: as seconds it would be the year 5138,
/// as milliseconds it is March 1973.
const MILLIS_THRESHOLD: f64 = 100_000_000_000.0;
/// Latest accepted time (year 9999) in ms, so that every accepted value is a valid
/// Avro timestamp-millis and a valid ClickHouse DateTime64.
const MAX_MILLIS: f64 = 253_402_300_799_999.0;

/// The value is not a time in any accepted form (the caller names the field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotATime;

/// `Ok(None)` for null, else the time in ms since the Unix epoch.
pub fn parse_created_at(value: &Value) -> Result<Option<i64>, NotATime> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_f64().map(from_unix).ok_or(NotATime)?.map(Some),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(number) = s.parse::<f64>() {
                return from_unix(number).map(Some);
            }
            let time = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| NotATime)?;
            let millis = time.unix_timestamp_nanos() / 1_000_000;
            i64::try_from(millis).ok().filter(|ms| (0.0..=MAX_MILLIS).contains(&(*ms as f64))).map(Some).ok_or(NotATime)
        }
        _ => Err(NotATime),
    }
}

fn from_unix(number: f64) -> Result<i64, NotATime> {
    if !number.is_finite() || number < 0.0 {
        return Err(NotATime);
    }
    let millis = if number >= MILLIS_THRESHOLD { number } else { number * 1000.0 };
    if millis > MAX_MILLIS {
        return Err(NotATime);
    }
    Ok(millis.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepted_forms() {
        let ms = 1_764_000_000_000;
        for value in [
            json!(1_764_000_000),
            json!(1_764_000_000_000_i64),
            json!("1764000000"),
            json!("1764000000000"),
            json!(1_764_000_000.0),
            json!("2025-11-24T16:00:00Z"),
            json!("2025-11-24T17:00:00+01:00"),
        ] {
            assert_eq!(parse_created_at(&value), Ok(Some(ms)), "{value}");
        }
        assert_eq!(parse_created_at(&json!(1_764_000_000.5)), Ok(Some(ms + 500)));
        assert_eq!(parse_created_at(&json!("2025-11-24T16:00:00.123Z")), Ok(Some(ms + 123)));
        assert_eq!(parse_created_at(&Value::Null), Ok(None));
    }

    #[test]
    fn rejected_forms() {
        for value in [
            json!("yesterday"),
            json!("2025-11-24"),
            json!("2025-11-24 16:00:00"),
            json!(-1),
            json!(true),
            json!({"t": 1}),
            json!(1e300),
            json!("NaN"),
            json!("1969-12-31T23:59:59Z"),
        ] {
            assert_eq!(parse_created_at(&value), Err(NotATime), "{value}");
        }
    }
}
