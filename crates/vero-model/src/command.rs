//! The user command record: one accepted users endpoint request.
//!
//! Commands travel on the events topic, keyed by the user id like events, so a
//! consumer sees a user's events and commands in the order the gateway accepted them
//! (see `docs/design.md`).

use apache_avro::types::Value;
use uuid::Uuid;

use crate::avro_value::{optional_string, string_array, Fields};
use crate::codec::{AvroRecord, DecodeError};
use crate::schemas::{user_command_versions, SchemaVersion};

/// What a users endpoint asks for. Symbols match the Avro enum `UserAction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserAction {
    /// `POST users/track`: create the user or merge `attributes`.
    Track,
    /// `PUT users/edit`: merge `attributes` (the request's `changes`).
    Edit,
    /// `PUT users/tags/edit`: add `tags_add`, remove `tags_remove`.
    Tags,
    Unsubscribe,
    Resubscribe,
    /// `PUT users/reidentify`: the user is known as `new_id` from now on.
    Reidentify,
    /// `POST|DELETE users/delete`: erase the user and their profile.
    Delete,
}

impl UserAction {
    pub const ALL: [UserAction; 7] = [
        UserAction::Track,
        UserAction::Edit,
        UserAction::Tags,
        UserAction::Unsubscribe,
        UserAction::Resubscribe,
        UserAction::Reidentify,
        UserAction::Delete,
    ];

    pub fn symbol(self) -> &'static str {
        match self {
            UserAction::Track => "TRACK",
            UserAction::Edit => "EDIT",
            UserAction::Tags => "TAGS",
            UserAction::Unsubscribe => "UNSUBSCRIBE",
            UserAction::Resubscribe => "RESUBSCRIBE",
            UserAction::Reidentify => "REIDENTIFY",
            UserAction::Delete => "DELETE",
        }
    }

    fn index(self) -> u32 {
        Self::ALL.iter().position(|a| *a == self).expect("listed in ALL") as u32
    }

    pub fn from_symbol(symbol: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.symbol() == symbol)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserCommand {
    /// UUIDv7 stamped by the gateway.
    pub command_id: Uuid,
    /// Gateway receive time, ms since the Unix epoch (UTC).
    pub received_at: i64,
    pub project: String,
    pub action: UserAction,
    /// `id`, or the email when the request named the user by email only.
    pub user_id: String,
    pub email: Option<String>,
    /// JSON object text of the attributes to merge (`{}` when none).
    pub attributes: String,
    pub tags_add: Vec<String>,
    pub tags_remove: Vec<String>,
    /// `users/reidentify` only.
    pub new_id: Option<String>,
    pub user_agent: Option<String>,
}

impl UserCommand {
    /// The Kafka key: the user id.
    pub fn key(&self) -> &[u8] {
        crate::topics::user_key(&self.user_id)
    }
}

impl AvroRecord for UserCommand {
    fn versions() -> &'static [SchemaVersion] {
        user_command_versions()
    }

    fn to_fields(&self) -> Vec<(String, Value)> {
        vec![
            ("command_id".into(), Value::Uuid(self.command_id)),
            ("received_at".into(), Value::TimestampMillis(self.received_at)),
            ("project".into(), Value::String(self.project.clone())),
            ("action".into(), Value::Enum(self.action.index(), self.action.symbol().into())),
            ("user_id".into(), Value::String(self.user_id.clone())),
            ("email".into(), optional_string(&self.email)),
            ("attributes".into(), Value::String(self.attributes.clone())),
            ("tags_add".into(), string_array(&self.tags_add)),
            ("tags_remove".into(), string_array(&self.tags_remove)),
            ("new_id".into(), optional_string(&self.new_id)),
            ("user_agent".into(), optional_string(&self.user_agent)),
        ]
    }

    fn from_fields(mut f: Fields) -> Result<Self, DecodeError> {
        let action = f.enum_symbol("action")?;
        Ok(Self {
            command_id: f.uuid("command_id")?,
            received_at: f.millis("received_at")?,
            project: f.string("project")?,
            action: UserAction::from_symbol(&action).ok_or(DecodeError::Field("action"))?,
            user_id: f.string("user_id")?,
            email: f.optional_string("email")?,
            attributes: f.string("attributes")?,
            tags_add: f.string_array("tags_add")?,
            tags_remove: f.string_array("tags_remove")?,
            new_id: f.optional_string("new_id")?,
            user_agent: f.optional_string("user_agent")?,
        })
    }
}
