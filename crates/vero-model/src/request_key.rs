//! The identity of a track request, for dropping client retries (`docs/design.md`,
//! "Idempotent retries").
//!
//! Two track events with the same [`request_key`] are the same request sent twice;
//! the consumers keep the first and drop a repeat received within their dedup window.
//! The key is a pure function of the record, so every consumer, every replica and
//! every replay computes the same one, and a consumer in another language can too:
//!
//! * with an explicit id (`extras.message_id`, a non-empty string or an integer; the
//!   gateway's `Idempotency-Key` header lands there): SHA-256 over the tag `id`, then
//!   `project`, `user_id` and the id's text;
//! * otherwise (Vero's rule): SHA-256 over the tag `content`, then `project`,
//!   `event_name`, `user_id`, `data` (the JSON text as recorded: keys in the order
//!   sent) and `created_at` in decimal milliseconds, or empty when not sent.
//!
//! Every part is preceded by its length in bytes as a little-endian u64, after the
//! domain prefix `vero.request_key.v1`, so no two different inputs concatenate alike.
//! The first 16 bytes of the digest become a UUIDv8 (version and variant bits set), the
//! type ClickHouse stores as `vero.events.request_key`. An explicit id is scoped to its
//! user: the same id sent for two users names two requests.

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::TrackEvent;

/// The longest dedup window a consumer accepts (`dedup.window_ms` of the event sink
/// and the profile consumer): 7 days, below the 8 days `vero.events_request_keys`
/// keeps keys.
pub const MAX_WINDOW_MS: u64 = 7 * 24 * 3600 * 1000;

/// The `extras` field that carries a client's explicit request id.
pub const MESSAGE_ID: &str = "message_id";

const DOMAIN: &[u8] = b"vero.request_key.v1";

/// The explicit id in an `extras` JSON text: a non-empty string, or an integer as
/// decimal text. Anything else (absent, null, empty, another type) is no id.
pub fn message_id(extras: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Extras {
        message_id: Option<Value>,
    }
    match serde_json::from_str::<Extras>(extras).ok()?.message_id? {
        Value::String(id) if !id.is_empty() => Some(id),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// The request key of `event` (see the module docs for the exact rule).
pub fn request_key(event: &TrackEvent) -> Uuid {
    let mut hash = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    part(DOMAIN);
    match message_id(&event.extras) {
        Some(id) => {
            for bytes in [b"id".as_slice(), event.project.as_bytes(), event.user_id.as_bytes(), id.as_bytes()] {
                part(bytes);
            }
        }
        None => {
            let created_at = event.created_at.map(|ms| ms.to_string()).unwrap_or_default();
            for bytes in [
                b"content".as_slice(),
                event.project.as_bytes(),
                event.event_name.as_bytes(),
                event.user_id.as_bytes(),
                event.data.as_bytes(),
                created_at.as_bytes(),
            ] {
                part(bytes);
            }
        }
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &str, extras: &str) -> TrackEvent {
        TrackEvent {
            event_id: Uuid::now_v7(),
            received_at: 1_764_000_000_000,
            project: "shop".into(),
            event_name: "purchased".into(),
            user_id: "1".into(),
            email: Some("a@example.com".into()),
            identity_attributes: "{}".into(),
            data: data.into(),
            development_mode: false,
            created_at: None,
            source: None,
            extras: extras.into(),
            user_agent: None,
        }
    }

    #[test]
    fn a_retry_has_the_same_key_whatever_the_gateway_stamped() {
        let first = event(r#"{"item":"shoes"}"#, "{}");
        let mut retry = first.clone();
        retry.event_id = Uuid::now_v7();
        retry.received_at += 1_000;
        retry.email = None;
        retry.identity_attributes = r#"{"plan":"pro"}"#.into();
        retry.user_agent = Some("retrying-client".into());
        let key = request_key(&first);
        assert_eq!(request_key(&retry), key);
        assert_eq!(key.get_version_num(), 8);
        assert_eq!(key.get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn content_parts_each_change_the_key() {
        let base = event(r#"{"item":"shoes"}"#, "{}");
        let key = request_key(&base);
        let mut changed = Vec::new();
        let mut other = base.clone();
        other.data = r#"{"item":"hats"}"#.into();
        changed.push(other);
        let mut other = base.clone();
        other.event_name = "viewed".into();
        changed.push(other);
        let mut other = base.clone();
        other.user_id = "2".into();
        changed.push(other);
        let mut other = base.clone();
        other.project = "blog".into();
        changed.push(other);
        let mut other = base.clone();
        other.created_at = Some(1_763_999_999_000);
        changed.push(other);
        for other in changed {
            assert_ne!(request_key(&other), key, "{other:?}");
        }
        // Length prefixes: moving bytes between parts is another key.
        let (mut a, mut b) = (base.clone(), base.clone());
        (a.event_name, a.user_id) = ("ab".into(), "c".into());
        (b.event_name, b.user_id) = ("a".into(), "bc".into());
        assert_ne!(request_key(&a), request_key(&b));
    }

    #[test]
    fn an_explicit_message_id_replaces_the_content_rule() {
        let first = event(r#"{"n":1}"#, r#"{"message_id":"m-1","source":"ios"}"#);
        let other_data = event(r#"{"n":2}"#, r#"{"source":"web","message_id":"m-1"}"#);
        assert_eq!(request_key(&first), request_key(&other_data));
        assert_ne!(request_key(&first), request_key(&event(r#"{"n":1}"#, r#"{"message_id":"m-2"}"#)));
        assert_ne!(request_key(&first), request_key(&event(r#"{"n":1}"#, "{}")));
        let mut other_user = first.clone();
        other_user.user_id = "2".into();
        assert_ne!(request_key(&first), request_key(&other_user), "scoped to the user");
        assert_eq!(message_id(r#"{"message_id":42}"#).as_deref(), Some("42"));
        for no_id in [r#"{"message_id":""}"#, r#"{"message_id":null}"#, r#"{"message_id":1.5}"#, "{}", "not json"] {
            assert_eq!(message_id(no_id), None, "{no_id}");
        }
    }

    /// Pins the rule: changing it silently would let retries through during a rollout.
    #[test]
    fn the_documented_example_key() {
        let key = request_key(&event(r#"{"item":"Blue shoes","price":40.0}"#, "{}"));
        let mut hash = Sha256::new();
        for part in
            [DOMAIN, b"content", b"shop", b"purchased", b"1", br#"{"item":"Blue shoes","price":40.0}"#.as_slice(), b""]
        {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part);
        }
        let digest = hash.finalize();
        let mut expected = [0u8; 16];
        expected.copy_from_slice(&digest[..16]);
        expected[6] = (expected[6] & 0x0f) | 0x80;
        expected[8] = (expected[8] & 0x3f) | 0x80;
        assert_eq!(key.as_bytes(), &expected);
    }
}
