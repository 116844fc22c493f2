//! The users endpoints (`users/track`, `users/edit`, `users/tags/edit`,
//! `users/unsubscribe`, `users/resubscribe`, `users/reidentify`, `users/delete`): from
//! the request's fields to a validated [`vero_model::UserCommand`].
//!
//! Guarantees: every invalid input is a 400 whose message names the field (`id`,
//! `email`, `data`, `changes`, `add`, `remove`, `new_id`); the command's `user_id` (its
//! Kafka key) is `id`, or the email on the endpoints that allow naming a user by email
//! only; JSON types inside `data` and `changes` are kept as sent.

mod command;
mod values;

pub use command::{allows_email_only, build_command, OBJECT_FIELDS};
