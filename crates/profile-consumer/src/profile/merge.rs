//! The merge rules (also in `docs/profiles.md`). Pure functions of the records applied,
//! so a replay of the same records yields the same profile.
//!
//! * Every identity attribute (email and any other key) is versioned by
//!   [`Version`]`(event time, received_at, offset)`; a write replaces the stored value
//!   only when its version is greater. Commands carry no client time: their event time
//!   is their received_at.
//! * first_seen / last_seen: min / max event time of every record applied;
//!   event_count and last_event_name: track events only (last = greatest version).
//! * Tags: `tags_add` then `tags_remove` of one command (a tag in both ends removed).
//! * Subscription: the last unsubscribe/resubscribe in partition order, with its time.
//! * A moved-in profile (reidentify) merges field by field with the same rules; the
//!   subscription with the later change wins, tags are united, counts add up once per
//!   move (`merged_from` remembers the moves already merged).

use serde_json::{Map, Value};
use vero_model::{TrackEvent, UserAction, UserCommand};

use super::{ProfileState, Version};

/// The `attributes` JSON of a record is not a JSON object.
#[derive(Debug, thiserror::Error)]
#[error("`{field}` is not a JSON object: {reason}")]
pub struct BadAttributes {
    pub field: &'static str,
    pub reason: String,
}

fn parse_object(field: &'static str, text: &str) -> Result<Map<String, Value>, BadAttributes> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(BadAttributes { field, reason: format!("found {other}") }),
        Err(e) => Err(BadAttributes { field, reason: e.to_string() }),
    }
}

/// Check a record's JSON before applying anything, so a bad record changes nothing.
pub fn validate_event(event: &TrackEvent) -> Result<Map<String, Value>, BadAttributes> {
    parse_object("identity_attributes", &event.identity_attributes)
}

pub fn validate_command(command: &UserCommand) -> Result<Map<String, Value>, BadAttributes> {
    parse_object("attributes", &command.attributes)
}

impl ProfileState {
    /// Has the events-topic record at `(partition, offset)` already been applied?
    pub fn has_applied(&self, partition: i32, offset: i64) -> bool {
        self.events_partition == partition && offset <= self.events_offset
    }

    fn set_attribute(&mut self, name: String, value: Value, version: Version) {
        match self.attributes.get(&name) {
            Some((_, current)) if *current >= version => {}
            _ => {
                self.attributes.insert(name, (value, version));
            }
        }
    }

    fn seen_at(&mut self, time: i64) {
        self.first_seen = Some(self.first_seen.map_or(time, |t| t.min(time)));
        self.last_seen = Some(self.last_seen.map_or(time, |t| t.max(time)));
    }

    fn applied(&mut self, partition: i32, offset: i64) {
        self.events_partition = partition;
        self.events_offset = offset;
    }

    /// Apply a track event (its identity attributes already validated into `identity`).
    pub fn apply_event(&mut self, event: &TrackEvent, identity: Map<String, Value>, partition: i32, offset: i64) {
        let version = Version(event.event_time(), event.received_at, offset);
        // A null email means "not sent" (one client always sends the key): it never
        // erases a known email.
        if let Some(email) = &event.email {
            self.set_attribute("email".into(), Value::String(email.clone()), version);
        }
        for (name, value) in identity {
            self.set_attribute(name, value, version);
        }
        self.seen_at(event.event_time());
        self.event_count += 1;
        if self.last_event.as_ref().is_none_or(|(_, last)| version > *last) {
            self.last_event = Some((event.event_name.clone(), version));
        }
        self.applied(partition, offset);
    }

    /// Apply a command that stays on this profile (every action but reidentify and
    /// delete, which the service handles because they move or erase the profile).
    pub fn apply_command(
        &mut self,
        command: &UserCommand,
        attributes: Map<String, Value>,
        partition: i32,
        offset: i64,
    ) {
        let version = Version(command.received_at, command.received_at, offset);
        match command.action {
            UserAction::Track | UserAction::Edit => {
                if let Some(email) = &command.email {
                    self.set_attribute("email".into(), Value::String(email.clone()), version);
                }
                for (name, value) in attributes {
                    self.set_attribute(name, value, version);
                }
            }
            UserAction::Tags => {
                self.tags.extend(command.tags_add.iter().cloned());
                for tag in &command.tags_remove {
                    self.tags.remove(tag);
                }
            }
            UserAction::Unsubscribe | UserAction::Resubscribe => {
                self.subscribed = command.action == UserAction::Resubscribe;
                self.subscription_changed_at = Some(command.received_at);
            }
            UserAction::Reidentify | UserAction::Delete => {}
        }
        self.seen_at(command.received_at);
        self.applied(partition, offset);
    }

    /// Merge the profile `moved` (formerly `moved.key.user_id`, moved here by a
    /// reidentify) into this one. Returns false when this move was merged already.
    pub fn merge_moved(&mut self, moved: ProfileState, handoff_offset: i64) -> bool {
        self.handoff_offset = self.handoff_offset.max(handoff_offset);
        let from = moved.key.user_id.clone();
        if self.merged_from.get(&from).is_some_and(|v| *v >= moved.version) {
            return false;
        }
        self.merged_from.insert(from.clone(), moved.version);
        for (name, (value, version)) in moved.attributes {
            self.set_attribute(name, value, version);
        }
        self.tags.extend(moved.tags);
        if moved.subscription_changed_at > self.subscription_changed_at {
            self.subscribed = moved.subscribed;
            self.subscription_changed_at = moved.subscription_changed_at;
        }
        for time in [moved.first_seen, moved.last_seen].into_iter().flatten() {
            self.seen_at(time);
        }
        self.event_count += moved.event_count;
        if let Some((name, version)) = moved.last_event {
            if self.last_event.as_ref().is_none_or(|(_, last)| version > *last) {
                self.last_event = Some((name, version));
            }
        }
        for id in moved.previous_ids.into_iter().chain([from]) {
            if id != self.key.user_id && !self.previous_ids.contains(&id) {
                self.previous_ids.push(id);
            }
        }
        for (id, version) in moved.merged_from {
            let entry = self.merged_from.entry(id).or_insert(version);
            *entry = (*entry).max(version);
        }
        true
    }

    /// Give the profile a new write version: the wall clock in microseconds, but
    /// always above the previous version so ClickHouse keeps the latest write.
    pub fn bump_version(&mut self, now_micros: i64) {
        self.version = now_micros.max(self.version + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ProfileKey;
    use uuid::Uuid;

    fn event(name: &str, created_at: Option<i64>, received_at: i64, identity: &str) -> TrackEvent {
        TrackEvent {
            event_id: Uuid::now_v7(),
            received_at,
            project: "shop".into(),
            event_name: name.into(),
            user_id: "u1".into(),
            email: None,
            identity_attributes: identity.into(),
            data: "{}".into(),
            development_mode: false,
            created_at,
            source: None,
            extras: "{}".into(),
            user_agent: None,
        }
    }

    fn command(action: UserAction, received_at: i64) -> UserCommand {
        UserCommand {
            command_id: Uuid::now_v7(),
            received_at,
            project: "shop".into(),
            action,
            user_id: "u1".into(),
            email: None,
            attributes: "{}".into(),
            tags_add: vec![],
            tags_remove: vec![],
            new_id: None,
            user_agent: None,
        }
    }

    fn apply(profile: &mut ProfileState, e: &TrackEvent, offset: i64) {
        profile.apply_event(e, validate_event(e).unwrap(), 0, offset);
    }

    fn fresh() -> ProfileState {
        ProfileState::new(ProfileKey::new("shop", "u1"))
    }

    #[test]
    fn newer_client_time_wins_whatever_the_arrival_order() {
        let newer = event("b", Some(2_000), 10, r#"{"plan":"pro"}"#);
        let older = event("a", Some(1_000), 20, r#"{"plan":"free","age":30}"#);
        let mut in_order = fresh();
        apply(&mut in_order, &older, 1);
        apply(&mut in_order, &newer, 2);
        let mut reversed = fresh();
        apply(&mut reversed, &newer, 1);
        apply(&mut reversed, &older, 2);
        for profile in [&in_order, &reversed] {
            assert_eq!(profile.attributes["plan"].0, "pro");
            assert_eq!(profile.attributes["age"].0, 30);
            assert_eq!(profile.last_event.as_ref().unwrap().0, "b");
            assert_eq!((profile.first_seen, profile.last_seen, profile.event_count), (Some(1_000), Some(2_000), 2));
        }
    }

    #[test]
    fn ties_break_on_received_at_then_offset() {
        let mut profile = fresh();
        apply(&mut profile, &event("x", Some(5), 2, r#"{"k":"late-received"}"#), 1);
        apply(&mut profile, &event("x", Some(5), 1, r#"{"k":"early-received"}"#), 2);
        assert_eq!(profile.attributes["k"].0, "late-received");
        apply(&mut profile, &event("x", Some(5), 2, r#"{"k":"higher-offset"}"#), 3);
        assert_eq!(profile.attributes["k"].0, "higher-offset");
    }

    #[test]
    fn null_email_keeps_the_known_email_and_null_attributes_are_values() {
        let mut profile = fresh();
        let mut with_email = event("a", None, 1, r#"{"nickname":"jd"}"#);
        with_email.email = Some("jane@example.com".into());
        apply(&mut profile, &with_email, 1);
        apply(&mut profile, &event("b", None, 2, r#"{"nickname":null}"#), 2);
        assert_eq!(profile.email(), Some("jane@example.com"));
        assert_eq!(profile.attributes["nickname"].0, Value::Null);
    }

    #[test]
    fn commands_merge_tags_and_subscription() {
        let mut profile = fresh();
        let mut tags = command(UserAction::Tags, 1);
        tags.tags_add = vec!["vip".into(), "beta".into(), "x".into()];
        tags.tags_remove = vec!["x".into()];
        profile.apply_command(&tags, Map::new(), 0, 1);
        assert_eq!(profile.tags.iter().collect::<Vec<_>>(), ["beta", "vip"]);
        profile.apply_command(&command(UserAction::Unsubscribe, 7), Map::new(), 0, 2);
        assert!(!profile.subscribed);
        assert_eq!(profile.subscription_changed_at, Some(7));
        let mut edit = command(UserAction::Edit, 9);
        edit.attributes = r#"{"plan":"gold"}"#.into();
        let attributes = validate_command(&edit).unwrap();
        profile.apply_command(&edit, attributes, 0, 3);
        assert_eq!(profile.attributes["plan"].0, "gold");
        assert_eq!(profile.event_count, 0, "commands are not events");
        assert!(profile.has_applied(0, 3) && !profile.has_applied(0, 4) && !profile.has_applied(1, 0));
    }

    #[test]
    fn bad_json_is_rejected_before_anything_changes() {
        assert!(validate_event(&event("a", None, 1, "[1]")).is_err());
        assert!(validate_event(&event("a", None, 1, "{nope")).is_err());
    }

    #[test]
    fn a_moved_profile_merges_once_and_survives_the_wire_form() {
        let mut old = ProfileState::new(ProfileKey::new("shop", "anon"));
        apply(&mut old, &event("visit", Some(100), 1, r#"{"plan":"trial","lang":"en"}"#), 1);
        old.apply_command(&command(UserAction::Unsubscribe, 150), Map::new(), 0, 2);
        old.tags.insert("lead".into());
        old.bump_version(1_000);
        let mut new = fresh();
        apply(&mut new, &event("signup", Some(200), 2, r#"{"plan":"pro"}"#), 5);
        let wire = ProfileState::from_record(old.to_record()).unwrap();
        assert_eq!(wire, old, "the wire form is lossless");
        assert!(new.merge_moved(wire.clone(), 0));
        assert!(!new.merge_moved(wire, 1), "a redelivered move is not merged twice");
        assert_eq!(new.attributes["plan"].0, "pro");
        assert_eq!(new.attributes["lang"].0, "en");
        assert_eq!((new.event_count, new.first_seen, new.last_seen), (2, Some(100), Some(200)));
        assert_eq!(new.last_event.as_ref().unwrap().0, "signup");
        assert!(!new.subscribed && new.tags.contains("lead"));
        assert_eq!(new.previous_ids, ["anon"]);
        assert_eq!(new.handoff_offset, 1);
    }

    #[test]
    fn versions_only_go_up() {
        let mut profile = fresh();
        profile.bump_version(50);
        profile.bump_version(10);
        assert_eq!(profile.version, 51);
    }
}
