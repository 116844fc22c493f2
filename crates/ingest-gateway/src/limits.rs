//! Bounds on what one request may add to a user's profile (`[limits]`), so that a
//! profile, which the profile consumer writes as one Kafka record, can never exceed the
//! message size: ids, tags per request (and each tag), attributes per request and
//! their total size. A request over a bound is a 400 whose message names the field,
//! the limit's key and its value; nothing is truncated.
//!
//! Checked on the built record, after the field validation of each endpoint. Counting
//! attributes needs the JSON text parsed again, which the hot path avoids: a JSON
//! object of `n` members is at least `6n + 1` bytes long (`{"a":1,"b":2}`), so text
//! shorter than that for `n = max_attributes + 1` cannot hold too many and is not
//! parsed.

use serde::Deserialize;
use vero_model::{TrackEvent, UserCommand};

use crate::error::ApiError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSettings {
    /// Longest user id in bytes: `identity.id`, `id`, `new_id`, an email used as the id.
    pub max_id_bytes: usize,
    /// Most tags in one `users/tags/edit` request, `add` and `remove` together.
    pub max_tags_per_request: usize,
    /// Longest tag in bytes.
    pub max_tag_bytes: usize,
    /// Most attributes in one request: the identity keys of `events/track` (email
    /// included), `data` of `users/track`, `changes` of `users/edit`.
    pub max_attributes: usize,
    /// Largest total size of those attributes as JSON text (email included), in bytes.
    pub max_attributes_bytes: usize,
}

impl LimitsSettings {
    /// Every bound must allow something.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (key, value) in [
            ("limits.max_id_bytes", self.max_id_bytes),
            ("limits.max_tags_per_request", self.max_tags_per_request),
            ("limits.max_tag_bytes", self.max_tag_bytes),
            ("limits.max_attributes", self.max_attributes),
            ("limits.max_attributes_bytes", self.max_attributes_bytes),
        ] {
            anyhow::ensure!(value > 0, "{key} must be positive");
        }
        Ok(())
    }

    /// An `events/track` event within the bounds, or the 400 naming the first one broken.
    pub fn check_event(&self, event: &TrackEvent) -> Result<(), ApiError> {
        self.id("identity.id", &event.user_id)?;
        let email = event.email.as_deref().map_or(0, str::len);
        let email_count = usize::from(event.email.is_some());
        self.attributes("identity", &event.identity_attributes, email, email_count)
    }

    /// A users command within the bounds, or the 400 naming the first one broken.
    pub fn check_command(&self, command: &UserCommand) -> Result<(), ApiError> {
        let id_field = if command.email.as_deref() == Some(command.user_id.as_str()) { "email" } else { "id" };
        self.id(id_field, &command.user_id)?;
        if let Some(new_id) = &command.new_id {
            self.id("new_id", new_id)?;
        }
        let tags = command.tags_add.len() + command.tags_remove.len();
        if tags > self.max_tags_per_request {
            return Err(ApiError::invalid(format!(
                "add and remove name {tags} tags; at most {} per request (limits.max_tags_per_request).",
                self.max_tags_per_request
            )));
        }
        for (field, list) in [("add", &command.tags_add), ("remove", &command.tags_remove)] {
            if let Some(tag) = list.iter().find(|t| t.len() > self.max_tag_bytes) {
                return Err(ApiError::invalid(format!(
                    "{field} has a tag of {} bytes; at most {} (limits.max_tag_bytes).",
                    tag.len(),
                    self.max_tag_bytes
                )));
            }
        }
        let field = match command.action {
            vero_model::UserAction::Edit => "changes",
            _ => "data",
        };
        let email = command.email.as_deref().map_or(0, str::len);
        self.attributes(field, &command.attributes, email, usize::from(command.email.is_some()))
    }

    fn id(&self, field: &str, id: &str) -> Result<(), ApiError> {
        if id.len() > self.max_id_bytes {
            return Err(ApiError::invalid(format!(
                "{field} is {} bytes long; at most {} (limits.max_id_bytes).",
                id.len(),
                self.max_id_bytes
            )));
        }
        Ok(())
    }

    /// `text` is a JSON object; `extra_bytes` / `extra_count` add the email.
    fn attributes(&self, field: &str, text: &str, extra_bytes: usize, extra_count: usize) -> Result<(), ApiError> {
        let bytes = text.len() + extra_bytes;
        if bytes > self.max_attributes_bytes {
            return Err(ApiError::invalid(format!(
                "{field} has {bytes} bytes of attributes; at most {} (limits.max_attributes_bytes).",
                self.max_attributes_bytes
            )));
        }
        // Members needed to exceed the limit (the email is one), each at least 6 bytes.
        let needed = self.max_attributes + 1 - extra_count.min(self.max_attributes);
        let could_exceed = text.len() > 6 * needed;
        if could_exceed {
            let count = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
                .map_or(0, |object| object.len())
                + extra_count;
            if count > self.max_attributes {
                return Err(ApiError::invalid(format!(
                    "{field} has {count} attributes; at most {} per request (limits.max_attributes).",
                    self.max_attributes
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LimitsSettings {
        LimitsSettings {
            max_id_bytes: 8,
            max_tags_per_request: 2,
            max_tag_bytes: 4,
            max_attributes: 3,
            max_attributes_bytes: 64,
        }
    }

    #[test]
    fn the_shortest_text_of_too_many_attributes_is_counted() {
        let l = limits();
        // 4 members in the fewest bytes: must be parsed and refused.
        let four = r#"{"a":1,"b":2,"c":3,"d":4}"#;
        assert_eq!(four.len(), 6 * 4 + 1);
        let err = l.attributes("data", four, 0, 0).unwrap_err().to_string();
        assert_eq!(err, "data has 4 attributes; at most 3 per request (limits.max_attributes).");
        assert!(l.attributes("data", r#"{"a":1,"b":2,"c":3}"#, 0, 0).is_ok());
        // The email counts as one.
        assert!(l.attributes("identity", r#"{"a":1,"b":2,"c":3}"#, 1, 1).is_err());
        assert!(l.attributes("identity", r#"{"a":1,"b":2}"#, 1, 1).is_ok());
    }

    #[test]
    fn messages_name_the_field_and_the_limit() {
        let l = limits();
        assert_eq!(
            l.id("new_id", "123456789").unwrap_err().to_string(),
            "new_id is 9 bytes long; at most 8 (limits.max_id_bytes)."
        );
        let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(60));
        assert!(l.attributes("changes", &big, 0, 0).unwrap_err().to_string().contains("(limits.max_attributes_bytes)"));
    }
}
