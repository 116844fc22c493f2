//! Avro single-object encoding of a [`TrackEvent`], written straight into one buffer:
//! the hot path behind [`crate::encode_event`].
//!
//! Why: the generic encoder ([`crate::codec::encode`]) builds an
//! `apache_avro::types::Value` tree (a copy of every string) and validates it against
//! the schema on every call; in the gateway's profile that was the largest single cost
//! after the kernel's network work (~3.6 µs of ~7 µs of per-request user code).
//! Writing the datum directly is a few hundred nanoseconds.
//!
//! Guarantees:
//! * The bytes are identical to the generic encoder's (tests compare them on many
//!   records, and decode them with [`crate::decode_event`]).
//! * It writes the layout of one schema version, [`LAYOUT`]. If that is not the
//!   newest track event schema (someone added a version), every call falls back to
//!   the generic encoder, so a new schema can never be written with the old layout;
//!   a test fails until this encoder is updated.

use std::sync::LazyLock;

use crate::codec::SINGLE_OBJECT_MAGIC;
use crate::schemas::track_event_versions;
use crate::TrackEvent;

/// The schema file whose field order and types [`write_datum`] follows.
pub const LAYOUT: &str = "track_event.v2.avsc";

/// The fingerprint to write, when [`LAYOUT`] is the newest version.
static FAST_PATH: LazyLock<Option<[u8; 8]>> = LazyLock::new(|| {
    let newest = track_event_versions().last()?;
    (newest.file == LAYOUT).then_some(newest.fingerprint)
});

/// Whether the direct encoder is in use (false: falling back to the generic one).
pub fn fast_path_active() -> bool {
    FAST_PATH.is_some()
}

/// Encode `event` with the newest schema version.
pub fn encode_event(event: &TrackEvent) -> Vec<u8> {
    let Some(fingerprint) = *FAST_PATH else { return crate::codec::encode(event) };
    let mut out = Vec::with_capacity(encoded_len_estimate(event));
    out.extend_from_slice(&SINGLE_OBJECT_MAGIC);
    out.extend_from_slice(&fingerprint);
    write_datum(event, &mut out);
    out
}

/// Upper bound on the encoded size: the strings plus at most 10 bytes per varint
/// (one capacity, no reallocation).
fn encoded_len_estimate(event: &TrackEvent) -> usize {
    let optional = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    let strings = event.project.len()
        + event.event_name.len()
        + event.user_id.len()
        + event.identity_attributes.len()
        + event.data.len()
        + event.extras.len()
        + optional(&event.email)
        + optional(&event.source)
        + optional(&event.user_agent);
    SINGLE_OBJECT_MAGIC.len() + 8 + 36 + strings + 20 * 10
}

/// The Avro binary datum of `track_event.v2.avsc`, fields in schema order.
fn write_datum(event: &TrackEvent, out: &mut Vec<u8>) {
    let mut uuid = uuid::Uuid::encode_buffer();
    write_str(event.event_id.hyphenated().encode_lower(&mut uuid), out);
    write_long(event.received_at, out);
    write_str(&event.project, out);
    write_str(&event.event_name, out);
    write_str(&event.user_id, out);
    write_optional_str(event.email.as_deref(), out);
    write_str(&event.identity_attributes, out);
    write_str(&event.data, out);
    out.push(u8::from(event.development_mode));
    match event.created_at {
        None => write_long(0, out),
        Some(millis) => {
            write_long(1, out);
            write_long(millis, out);
        }
    }
    write_optional_str(event.source.as_deref(), out);
    write_str(&event.extras, out);
    write_optional_str(event.user_agent.as_deref(), out);
}

/// `["null", "string"]`: branch index, then the string.
fn write_optional_str(value: Option<&str>, out: &mut Vec<u8>) {
    match value {
        None => write_long(0, out),
        Some(s) => {
            write_long(1, out);
            write_str(s, out);
        }
    }
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    write_long(s.len() as i64, out);
    out.extend_from_slice(s.as_bytes());
}

/// Avro `long`: zig-zag, then little-endian base-128 varint.
fn write_long(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn event(i: u64) -> TrackEvent {
        let pick = |n: u64| i.is_multiple_of(n);
        TrackEvent {
            event_id: Uuid::now_v7(),
            received_at: 1_764_000_000_000 + i as i64,
            project: "shop".into(),
            event_name: if pick(3) { "é".repeat(200) } else { format!("event_{i}") },
            user_id: i.to_string(),
            email: (!pick(2)).then(|| format!("user{i}@example.com")),
            identity_attributes: if pick(4) { "{}".into() } else { r#"{"plan":"pro","age":31}"#.into() },
            data: format!(r#"{{"item":"Blue shoes","n":{i},"pad":"{}"}}"#, "x".repeat((i * 37 % 3000) as usize)),
            development_mode: pick(5),
            created_at: match i % 3 {
                0 => None,
                1 => Some(0),
                _ => Some(253_402_300_799_000 - i as i64),
            },
            source: pick(7).then(|| "ios".to_owned()),
            extras: if pick(7) { r#"{"source":"ios"}"#.into() } else { "{}".into() },
            user_agent: (!pick(6)).then(|| "Mozilla/5.0 (X11; Linux x86_64) ünïcode".to_owned()),
        }
    }

    #[test]
    fn the_layout_is_the_newest_schema() {
        assert!(
            fast_path_active(),
            "{LAYOUT} is no longer the newest track event schema: update write_datum to the new \
             version's fields and LAYOUT (until then every event goes through the generic encoder)"
        );
    }

    #[test]
    fn bytes_are_identical_to_the_generic_encoder_and_decode() {
        for i in 0..500 {
            let event = event(i);
            let fast = encode_event(&event);
            assert_eq!(fast, crate::codec::encode(&event), "record {i}");
            assert_eq!(crate::decode_event(&fast).unwrap(), event, "record {i}");
        }
    }

    #[test]
    fn longs_at_varint_boundaries() {
        for n in [0, -1, 1, 63, -64, 64, -65, 8191, 8192, i64::MAX, i64::MIN, 1_764_000_000_000] {
            let mut e = event(1);
            e.received_at = n;
            e.created_at = Some(n);
            assert_eq!(encode_event(&e), crate::codec::encode(&e), "{n}");
        }
    }
}
