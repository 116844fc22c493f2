//! Avro single-object encoding of records.
//!
//! Each Kafka message value is `C3 01`, the writer schema's 8-byte Rabin fingerprint
//! (little-endian), then the Avro binary datum — the Avro specification's
//! "single-object encoding". We chose it over the Confluent wire format because it
//! needs no schema registry service: the fingerprint is derived from the schema
//! itself, so any standard Avro library given the `.avsc` files in `schemas/avro/`
//! (Java's `BinaryMessageDecoder`, apache-avro's `GenericSingleObjectReader`, ...)
//! can identify and decode a message without coordination. Readers here accept every
//! version in [`crate::schemas`] and resolve it to the newest.

use apache_avro::types::Value;
use apache_avro::{from_avro_datum, to_avro_datum};
use uuid::Uuid;

use crate::event::TrackEvent;
use crate::schemas::{track_event_current, track_event_versions, SchemaVersion};

/// The two marker bytes that open a single-object encoded message.
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

/// Why a message could not be decoded. Not retryable: the bytes will not change.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message is {0} bytes, shorter than the 10-byte single-object header")]
    TooShort(usize),
    #[error("message does not start with the Avro single-object marker C3 01")]
    NotSingleObject,
    #[error("unknown writer schema fingerprint {0:016x}")]
    UnknownSchema(u64),
    #[error("Avro datum does not decode: {0}")]
    Avro(String),
    #[error("decoded record field `{0}` is missing or has an unexpected type")]
    Field(&'static str),
}

/// Encode with the current (newest) schema version.
pub fn encode_event(event: &TrackEvent) -> Vec<u8> {
    encode_event_with(event, track_event_current())
}

/// Encode with a specific schema version (older versions drop fields they lack).
pub fn encode_event_with(event: &TrackEvent, version: &SchemaVersion) -> Vec<u8> {
    let fields = event_fields(event);
    let record = match &version.schema {
        apache_avro::Schema::Record(record) if record.fields.len() != fields.len() => {
            Value::Record(fields.into_iter().filter(|(name, _)| record.lookup.contains_key(name)).collect())
        }
        _ => Value::Record(fields),
    };
    let datum = to_avro_datum(&version.schema, record)
        .expect("a TrackEvent always matches its own schema; a failure here is a bug in event_fields");
    let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
    out.extend_from_slice(&SINGLE_OBJECT_MAGIC);
    out.extend_from_slice(&version.fingerprint);
    out.extend_from_slice(&datum);
    out
}

/// Decode a message written with any known schema version.
pub fn decode_event(bytes: &[u8]) -> Result<TrackEvent, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::TooShort(bytes.len()));
    }
    if bytes[..2] != SINGLE_OBJECT_MAGIC {
        return Err(DecodeError::NotSingleObject);
    }
    let fingerprint: [u8; 8] = bytes[2..HEADER_LEN].try_into().expect("slice of 8");
    let writer = track_event_versions()
        .iter()
        .find(|v| v.fingerprint == fingerprint)
        .ok_or(DecodeError::UnknownSchema(u64::from_le_bytes(fingerprint)))?;
    let reader = track_event_current();
    let mut datum = &bytes[HEADER_LEN..];
    let value = from_avro_datum(&writer.schema, &mut datum, Some(&reader.schema))
        .map_err(|e| DecodeError::Avro(e.to_string()))?;
    event_from_value(value)
}

fn optional_string(value: &Option<String>) -> Value {
    match value {
        Some(s) => Value::Union(1, Box::new(Value::String(s.clone()))),
        None => Value::Union(0, Box::new(Value::Null)),
    }
}

fn event_fields(e: &TrackEvent) -> Vec<(String, Value)> {
    let created_at = match e.created_at {
        Some(ms) => Value::Union(1, Box::new(Value::TimestampMillis(ms))),
        None => Value::Union(0, Box::new(Value::Null)),
    };
    vec![
        ("event_id".into(), Value::Uuid(e.event_id)),
        ("received_at".into(), Value::TimestampMillis(e.received_at)),
        ("project".into(), Value::String(e.project.clone())),
        ("event_name".into(), Value::String(e.event_name.clone())),
        ("user_id".into(), Value::String(e.user_id.clone())),
        ("email".into(), optional_string(&e.email)),
        ("identity_attributes".into(), Value::String(e.identity_attributes.clone())),
        ("data".into(), Value::String(e.data.clone())),
        ("development_mode".into(), Value::Boolean(e.development_mode)),
        ("created_at".into(), created_at),
        ("source".into(), optional_string(&e.source)),
        ("extras".into(), Value::String(e.extras.clone())),
        ("user_agent".into(), optional_string(&e.user_agent)),
    ]
}

/// Field-by-field access to a decoded record.
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn take(&mut self, name: &'static str) -> Result<Value, DecodeError> {
        let at = self.0.iter().position(|(n, _)| n == name).ok_or(DecodeError::Field(name))?;
        Ok(std::mem::replace(&mut self.0[at].1, Value::Null))
    }

    fn string(&mut self, name: &'static str) -> Result<String, DecodeError> {
        match self.take(name)? {
            Value::String(s) => Ok(s),
            _ => Err(DecodeError::Field(name)),
        }
    }

    fn uuid(&mut self, name: &'static str) -> Result<Uuid, DecodeError> {
        match self.take(name)? {
            Value::Uuid(u) => Ok(u),
            Value::String(s) => s.parse().map_err(|_| DecodeError::Field(name)),
            _ => Err(DecodeError::Field(name)),
        }
    }

    fn millis(&mut self, name: &'static str) -> Result<i64, DecodeError> {
        match self.take(name)? {
            Value::TimestampMillis(ms) | Value::Long(ms) => Ok(ms),
            _ => Err(DecodeError::Field(name)),
        }
    }

    fn boolean(&mut self, name: &'static str) -> Result<bool, DecodeError> {
        match self.take(name)? {
            Value::Boolean(b) => Ok(b),
            _ => Err(DecodeError::Field(name)),
        }
    }

    fn optional(&mut self, name: &'static str) -> Result<Option<Value>, DecodeError> {
        match self.take(name)? {
            Value::Union(_, inner) if *inner == Value::Null => Ok(None),
            Value::Union(_, inner) => Ok(Some(*inner)),
            Value::Null => Ok(None),
            _ => Err(DecodeError::Field(name)),
        }
    }

    fn optional_string(&mut self, name: &'static str) -> Result<Option<String>, DecodeError> {
        match self.optional(name)? {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(DecodeError::Field(name)),
        }
    }

    fn optional_millis(&mut self, name: &'static str) -> Result<Option<i64>, DecodeError> {
        match self.optional(name)? {
            None => Ok(None),
            Some(Value::TimestampMillis(ms) | Value::Long(ms)) => Ok(Some(ms)),
            Some(_) => Err(DecodeError::Field(name)),
        }
    }
}

fn event_from_value(value: Value) -> Result<TrackEvent, DecodeError> {
    let Value::Record(fields) = value else {
        return Err(DecodeError::Avro("top-level value is not a record".into()));
    };
    let mut f = Fields(fields);
    Ok(TrackEvent {
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

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::GenericSingleObjectReader;

    fn sample() -> TrackEvent {
        TrackEvent {
            event_id: Uuid::now_v7(),
            received_at: 1_764_000_000_123,
            project: "shop".into(),
            event_name: "user_signed_up".into(),
            user_id: "1".into(),
            email: Some("janedoe@getvero.com".into()),
            identity_attributes: r#"{"plan":"pro","age":31}"#.into(),
            data: r#"{"item":"Blue shoes","price":40.0,"tags":["a"],"nested":{"x":1}}"#.into(),
            development_mode: true,
            created_at: Some(1_763_999_999_000),
            source: Some("ios".into()),
            extras: r#"{"created_at":"2025-11-24T15:59:59Z","source":"ios"}"#.into(),
            user_agent: Some("vero-ruby/1.0".into()),
        }
    }

    #[test]
    fn round_trips_every_field() {
        let event = sample();
        assert_eq!(decode_event(&encode_event(&event)).unwrap(), event);
        let bare = TrackEvent { email: None, created_at: None, source: None, user_agent: None, ..sample() };
        assert_eq!(decode_event(&encode_event(&bare)).unwrap(), bare);
    }

    #[test]
    fn a_standard_avro_reader_decodes_our_messages_given_the_avsc() {
        let avsc = crate::schemas::TRACK_EVENT_VERSIONS.last().unwrap().1;
        let schema = apache_avro::Schema::parse_str(avsc).unwrap();
        let reader = GenericSingleObjectReader::new(schema).unwrap();
        let value = reader.read_value(&mut &encode_event(&sample())[..]).unwrap();
        let Value::Record(fields) = value else { panic!("not a record") };
        let name = fields.iter().find(|(n, _)| n == "event_name").unwrap();
        assert_eq!(name.1, Value::String("user_signed_up".into()));
    }

    #[test]
    fn a_record_written_with_the_previous_version_decodes_with_defaults() {
        let v1 = &track_event_versions()[0];
        let event = sample();
        let decoded = decode_event(&encode_event_with(&event, v1)).unwrap();
        assert_eq!(decoded.user_agent, None, "field added in v2 takes its default");
        assert_eq!(decoded, TrackEvent { user_agent: None, ..event });
    }

    #[test]
    fn garbage_is_a_clear_error() {
        assert!(matches!(decode_event(b"{}"), Err(DecodeError::TooShort(2))));
        assert!(matches!(decode_event(b"not avro at all"), Err(DecodeError::NotSingleObject)));
        let mut unknown = encode_event(&sample());
        unknown[2] ^= 0xff;
        assert!(matches!(decode_event(&unknown), Err(DecodeError::UnknownSchema(_))));
        let truncated = &encode_event(&sample())[..20];
        assert!(matches!(decode_event(truncated), Err(DecodeError::Avro(_))));
    }
}
