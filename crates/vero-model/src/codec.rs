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

use crate::avro_value::Fields;
use crate::command::UserCommand;
use crate::event::TrackEvent;
use crate::schemas::SchemaVersion;

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
    #[error("expected a {expected} record, found a {found} record")]
    WrongRecord { expected: &'static str, found: &'static str },
}

/// A record type with an Avro schema history in [`crate::schemas`].
pub trait AvroRecord: Sized {
    /// Every schema version, oldest first; writers use the last.
    fn versions() -> &'static [SchemaVersion];
    /// All fields of the newest schema, by name.
    fn to_fields(&self) -> Vec<(String, Value)>;
    /// Build from a record already resolved to the newest schema.
    fn from_fields(fields: Fields) -> Result<Self, DecodeError>;

    fn current() -> &'static SchemaVersion {
        Self::versions().last().expect("at least one schema version")
    }
}

/// Any record that travels on the events topic.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Event(TrackEvent),
    Command(UserCommand),
}

impl Record {
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Event(_) => "TrackEvent",
            Record::Command(_) => "UserCommand",
        }
    }
}

/// Encode with the newest schema version.
pub fn encode<R: AvroRecord>(record: &R) -> Vec<u8> {
    encode_with(record, R::current())
}

/// Encode with a specific schema version (older versions drop fields they lack).
pub fn encode_with<R: AvroRecord>(record: &R, version: &SchemaVersion) -> Vec<u8> {
    let fields = record.to_fields();
    let value = match &version.schema {
        apache_avro::Schema::Record(schema) if schema.fields.len() != fields.len() => {
            Value::Record(fields.into_iter().filter(|(name, _)| schema.lookup.contains_key(name)).collect())
        }
        _ => Value::Record(fields),
    };
    let datum = to_avro_datum(&version.schema, value)
        .expect("a record always matches its own schema; a failure here is a bug in to_fields");
    let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
    out.extend_from_slice(&SINGLE_OBJECT_MAGIC);
    out.extend_from_slice(&version.fingerprint);
    out.extend_from_slice(&datum);
    out
}

/// Split a message into its writer fingerprint and Avro datum.
fn split_header(bytes: &[u8]) -> Result<([u8; 8], &[u8]), DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::TooShort(bytes.len()));
    }
    if bytes[..2] != SINGLE_OBJECT_MAGIC {
        return Err(DecodeError::NotSingleObject);
    }
    let fingerprint: [u8; 8] = bytes[2..HEADER_LEN].try_into().expect("slice of 8");
    Ok((fingerprint, &bytes[HEADER_LEN..]))
}

/// Decode `datum` if `fingerprint` is one of `R`'s versions; `None` if it is not.
fn decode_as<R: AvroRecord>(fingerprint: [u8; 8], mut datum: &[u8]) -> Option<Result<R, DecodeError>> {
    let writer = R::versions().iter().find(|v| v.fingerprint == fingerprint)?;
    let current = R::current();
    // Resolution only when the writer is an older version: resolving against the
    // same schema would rebuild apache-avro's resolution tables for every message.
    let reader = (writer.fingerprint != current.fingerprint).then_some(&current.schema);
    let decoded = from_avro_datum(&writer.schema, &mut datum, reader)
        .map_err(|e| DecodeError::Avro(e.to_string()))
        .and_then(Fields::from_value)
        .and_then(R::from_fields);
    Some(decoded)
}

/// Decode any record of the events topic, written with any known schema version.
pub fn decode_record(bytes: &[u8]) -> Result<Record, DecodeError> {
    let (fingerprint, datum) = split_header(bytes)?;
    if let Some(event) = decode_as::<TrackEvent>(fingerprint, datum) {
        return event.map(Record::Event);
    }
    if let Some(command) = decode_as::<UserCommand>(fingerprint, datum) {
        return command.map(Record::Command);
    }
    Err(DecodeError::UnknownSchema(u64::from_le_bytes(fingerprint)))
}

/// Encode a track event with the newest schema version (the direct writer of
/// [`crate::event_writer`]; byte-identical to [`encode`]).
pub fn encode_event(event: &TrackEvent) -> Vec<u8> {
    crate::event_writer::encode_event(event)
}

/// Encode a track event with a specific schema version.
pub fn encode_event_with(event: &TrackEvent, version: &SchemaVersion) -> Vec<u8> {
    encode_with(event, version)
}

/// Decode a message that must be a track event.
pub fn decode_event(bytes: &[u8]) -> Result<TrackEvent, DecodeError> {
    match decode_record(bytes)? {
        Record::Event(event) => Ok(event),
        other => Err(DecodeError::WrongRecord { expected: "TrackEvent", found: other.kind() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::UserAction;
    use crate::schemas::track_event_versions;
    use apache_avro::GenericSingleObjectReader;
    use uuid::Uuid;

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
    fn commands_round_trip_and_are_told_apart_from_events() {
        let command = UserCommand {
            command_id: Uuid::now_v7(),
            received_at: 1_764_000_000_000,
            project: "shop".into(),
            action: UserAction::Tags,
            user_id: "42".into(),
            email: None,
            attributes: "{}".into(),
            tags_add: vec!["vip".into(), "beta".into()],
            tags_remove: vec!["trial".into()],
            new_id: None,
            user_agent: None,
        };
        let bytes = encode(&command);
        assert_eq!(decode_record(&bytes).unwrap(), Record::Command(command));
        assert!(matches!(decode_event(&bytes), Err(DecodeError::WrongRecord { found: "UserCommand", .. })));
        let event = sample();
        assert_eq!(decode_record(&encode_event(&event)).unwrap(), Record::Event(event));
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
