//! Which consumer a record put back by `event-sink replay-dlq` is for.
//!
//! A record lands in the shared DLQ because one consumer could not process it; the
//! others had processed the original already. `replay-dlq` marks each replayed record
//! with `vero.dlq.replayed.from` and, when the letter named its consumer,
//! `vero.dlq.replayed.for`. Every consumer applies only replays meant for it, so a
//! replay never changes anything twice (a second row in `vero.events`, a profile
//! counting an event again).

use rdkafka::message::{Headers, Message};
use vero_model::topics::dlq_headers;

/// Whose a replayed letter without `vero.dlq.replayed.for` is (letters written before
/// consumers signed them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsigned {
    /// Apply it (the event sink: it wrote the unsigned letters).
    Mine,
    /// Skip it.
    Theirs,
}

/// Whether `message` is a DLQ replay meant for another consumer than `me`.
pub fn for_another_consumer(message: &impl Message, me: &str, unsigned: Unsigned) -> bool {
    let Some(headers) = message.headers() else { return false };
    let value = |name: &str| headers.iter().find(|h| h.key == name).map(|h| h.value);
    match (value(dlq_headers::REPLAYED_FROM), value(dlq_headers::REPLAYED_FOR).flatten()) {
        (None, _) => false,
        (Some(_), Some(target)) => target != me.as_bytes(),
        (Some(_), None) => unsigned == Unsigned::Theirs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

    fn message(headers: &[(&str, &str)]) -> OwnedMessage {
        let mut owned = OwnedHeaders::new();
        for (key, value) in headers {
            owned = owned.insert(Header { key, value: Some(*value) });
        }
        OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 0, 0, Some(owned))
    }

    #[test]
    fn only_replays_for_someone_else_are_skipped() {
        let from = (dlq_headers::REPLAYED_FROM, "vero.events.dlq/0/7");
        assert!(!for_another_consumer(&message(&[]), "event-sink", Unsigned::Mine));
        assert!(!for_another_consumer(
            &message(&[from, (dlq_headers::REPLAYED_FOR, "event-sink")]),
            "event-sink",
            Unsigned::Mine
        ));
        assert!(for_another_consumer(
            &message(&[from, (dlq_headers::REPLAYED_FOR, "profile-consumer")]),
            "event-sink",
            Unsigned::Mine
        ));
        assert!(!for_another_consumer(&message(&[from]), "event-sink", Unsigned::Mine));
        assert!(for_another_consumer(&message(&[from]), "profile-consumer", Unsigned::Theirs));
    }
}
