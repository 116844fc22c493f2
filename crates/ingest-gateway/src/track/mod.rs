//! `POST /api/v2/events/track`: from the request's fields to a validated
//! [`vero_model::TrackEvent`]; the Avro encoding is `vero_model::encode_event`.
//!
//! Guarantees: every invalid input is a 400 whose message names the field
//! (`identity.id`, `extras.created_at`, …); JSON types inside `identity` attributes,
//! `data` and `extras` are kept as sent; an explicit request id (`Idempotency-Key`
//! header or `extras.message_id`, [`message_id`]) is recorded as `extras.message_id`.

pub mod batch;
mod created_at;
mod event;
pub mod message_id;

pub use crate::stamp::Stamp;
pub use batch::build_batch;
pub use created_at::parse_created_at;
pub use event::{build_event, OBJECT_FIELDS};
