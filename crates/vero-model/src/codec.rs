//! Avro single-object encoding of records.
//!
//! Each Kafka message value is `C3 01`, the writer schema's 8-byte CRC-64-AVRO
//! (Rabin) fingerprint of its Parsing Canonical Form (little-endian), then the Avro
//! binary datum — the Avro specification's "single-object encoding". We chose it over
//! the Confluent wire format because it needs no schema registry service: the
//! fingerprint is derived from the schema itself, so a standard Avro library given the
//! `.avsc` files in `schemas/avro/` (Java's `BinaryMessageDecoder`, fastavro with
//! `fingerprint(..., "CRC-64-AVRO")`; tests in `tests/independent_decoders.rs` run
//! both) identifies and decodes a message without coordination.
//!
//! Writers write the specification's fingerprint ([`crate::fingerprint`]). Readers
//! here accept every version in [`crate::schemas`], by its specification or its legacy
//! (apache-avro 0.21) fingerprint, and resolve it to the newest. apache-avro 0.21's
//! own `GenericSingleObjectReader::new` computes the legacy fingerprint, so a Rust
//! consumer using it directly must pass the header through `new_with_header_builder`
//! (a test below shows how).

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

impl DecodeError {
    /// Whether an operator can make this message readable without touching it: a
    /// writer schema this build does not know (a producer rolled out before its
    /// consumers) reads once a version that knows it takes over, so the record must
    /// wait (never be dead-lettered or committed). Every other error is the bytes'
    /// own: a bad record.
    pub fn is_unknown_schema(&self) -> bool {
        matches!(self, Self::UnknownSchema(_))
    }
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
pub(crate) fn split_header(bytes: &[u8]) -> Result<([u8; 8], &[u8]), DecodeError> {
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
    let writer = R::versions().iter().find(|v| v.matches(fingerprint))?;
    let current = R::current();
    // Resolution only when the writer is an older version: resolving against the
    // same schema would rebuild apache-avro's resolution tables for every message.
    let reader = (!std::ptr::eq(writer, current)).then_some(&current.schema);
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
    use crate::fingerprint::Form::Spec;
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

    /// The single-object header for the specification's fingerprint of an `.avsc`.
    struct SpecHeader(Vec<u8>);
    impl apache_avro::headers::HeaderBuilder for SpecHeader {
        fn build_header(&self) -> Vec<u8> {
            self.0.clone()
        }
    }

    #[test]
    fn apache_avros_reader_decodes_our_messages_given_the_avsc_and_the_spec_header() {
        let avsc = crate::schemas::TRACK_EVENT_VERSIONS.last().unwrap().1;
        let schema = apache_avro::Schema::parse_str(avsc).unwrap();
        let fingerprint = crate::fingerprint::fingerprint(avsc, Spec).unwrap();
        let header = SpecHeader([&SINGLE_OBJECT_MAGIC[..], &fingerprint].concat());
        let reader = GenericSingleObjectReader::new_with_header_builder(schema, header).unwrap();
        let value = reader.read_value(&mut &encode_event(&sample())[..]).unwrap();
        let Value::Record(fields) = value else { panic!("not a record") };
        let name = fields.iter().find(|(n, _)| n == "event_name").unwrap();
        assert_eq!(name.1, Value::String("user_signed_up".into()));
    }

    #[test]
    fn writers_put_the_specifications_fingerprint_in_the_header() {
        let event = encode_event(&sample());
        assert_eq!(event[2..10], track_event_versions().last().unwrap().fingerprint);
        assert_eq!(
            event[2..10],
            crate::fingerprint::fingerprint(crate::schemas::TRACK_EVENT_VERSIONS[1].1, Spec).unwrap()
        );
        let v1 = encode_event_with(&sample(), &track_event_versions()[0]);
        assert_eq!(
            v1[2..10],
            crate::fingerprint::fingerprint(crate::schemas::TRACK_EVENT_VERSIONS[0].1, Spec).unwrap()
        );
    }

    /// `bytes` as a record written before the switch: the legacy fingerprint of `version`.
    fn with_legacy_header(mut bytes: Vec<u8>, version: &SchemaVersion) -> Vec<u8> {
        bytes[2..10].copy_from_slice(&version.legacy_fingerprint);
        bytes
    }

    #[test]
    fn records_with_the_legacy_fingerprint_still_decode() {
        let event = sample();
        let [v1, v2] = track_event_versions() else { panic!("two track event versions") };
        assert_eq!(decode_event(&with_legacy_header(encode_event(&event), v2)).unwrap(), event);
        let old = decode_event(&with_legacy_header(encode_event_with(&event, v1), v1)).unwrap();
        assert_eq!(old, TrackEvent { user_agent: None, ..event });
        let command = sample_command();
        let legacy = with_legacy_header(encode(&command), UserCommand::current());
        assert_eq!(decode_record(&legacy).unwrap(), Record::Command(command));
    }

    #[test]
    fn a_record_written_with_the_previous_version_decodes_with_defaults() {
        let v1 = &track_event_versions()[0];
        let event = sample();
        let decoded = decode_event(&encode_event_with(&event, v1)).unwrap();
        assert_eq!(decoded.user_agent, None, "field added in v2 takes its default");
        assert_eq!(decoded, TrackEvent { user_agent: None, ..event });
    }

    fn sample_command() -> UserCommand {
        UserCommand {
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
        }
    }

    #[test]
    fn commands_round_trip_and_are_told_apart_from_events() {
        let command = sample_command();
        let bytes = encode(&command);
        assert_eq!(decode_record(&bytes).unwrap(), Record::Command(command));
        assert!(matches!(decode_event(&bytes), Err(DecodeError::WrongRecord { found: "UserCommand", .. })));
        let event = sample();
        assert_eq!(decode_record(&encode_event(&event)).unwrap(), Record::Event(event));
    }

    /// The worked example of `docs/design.md` ("Records on the wire"), kept true here.
    #[test]
    fn the_design_docs_worked_example() {
        let event = TrackEvent {
            event_id: Uuid::parse_str("019ab5f2-3c4d-7e8f-9a0b-1c2d3e4f5a6b").unwrap(),
            received_at: 1_764_000_000_123,
            project: "local".into(),
            event_name: "user_signed_up".into(),
            user_id: "1".into(),
            email: Some("janedoe@getvero.com".into()),
            identity_attributes: "{}".into(),
            data: r#"{"item":"Blue shoes","price":40.0}"#.into(),
            development_mode: false,
            created_at: None,
            source: None,
            extras: "{}".into(),
            user_agent: None,
        };
        let hex: String = encode_event(&event).iter().map(|b| format!("{b:02x}")).collect();
        let expected = concat!(
            "c301",             // single-object marker
            "d5eae38f53074c38", // CRC-64-AVRO of track_event.v2's canonical form, little-endian
            "48",
            "30313961623566322d336334642d376538662d396130622d316332643365346635613662", // event_id
            "f6a1bfe9d666",                                                             // received_at 1764000000123
            "0a",
            "6c6f63616c", // project "local"
            "1c",
            "757365725f7369676e65645f7570", // event_name
            "02",
            "31", // user_id "1"
            "02",
            "26",
            "6a616e65646f65406765747665726f2e636f6d", // email: union branch 1, the string
            "04",
            "7b7d", // identity_attributes "{}"
            "44",
            "7b226974656d223a22426c75652073686f6573222c227072696365223a34302e307d", // data
            "00",                                                                   // development_mode false
            "00",                                                                   // created_at null (union branch 0)
            "00",                                                                   // source null
            "04",
            "7b7d", // extras "{}"
            "00",   // user_agent null
        );
        assert_eq!(hex, expected);
    }

    #[test]
    fn garbage_is_a_clear_error() {
        assert!(matches!(decode_event(b"{}"), Err(DecodeError::TooShort(2))));
        assert!(matches!(decode_event(b"not avro at all"), Err(DecodeError::NotSingleObject)));
        let mut unknown = encode_event(&sample());
        unknown[2] ^= 0xff;
        assert!(matches!(decode_event(&unknown), Err(DecodeError::UnknownSchema(_))));
        assert!(decode_event(&unknown).unwrap_err().is_unknown_schema(), "waits for a rollout");
        assert!(!decode_event(b"not avro at all").unwrap_err().is_unknown_schema(), "a bad record");
        let truncated = &encode_event(&sample())[..20];
        assert!(matches!(decode_event(truncated), Err(DecodeError::Avro(_))));
    }
}
