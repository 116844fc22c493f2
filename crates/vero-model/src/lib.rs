//! The records every Vero pipeline service agrees on.
//!
//! * [`event::TrackEvent`]: one accepted `events/track` request, as it sits in Kafka.
//! * [`command::UserCommand`]: one accepted users endpoint request; it shares the
//!   events topic and key so a user's events and commands stay in order.
//! * [`codec`]: Avro single-object encoding of records, with every schema version we
//!   ever wrote kept readable ([`schemas`]); [`fingerprint`]: the specification's
//!   schema fingerprints the message headers carry.
//! * [`request_key`]: the identity of a track request, for dropping client retries.
//! * [`topics`]: topic names and the message key (`identity.id`).
//! * [`partition`]: the partition a Java client (and librdkafka's `murmur2_random`)
//!   picks for a key, so tests and tools can predict placement.

pub mod avro_value;
pub mod codec;
pub mod command;
pub mod event;
pub mod event_writer;
pub mod fingerprint;
pub mod partition;
pub mod profile;
pub mod request_key;
pub mod schemas;
pub mod topics;

pub use codec::{decode_event, decode_record, encode, encode_event, AvroRecord, DecodeError, Record};
pub use command::{UserAction, UserCommand};
pub use event::TrackEvent;
