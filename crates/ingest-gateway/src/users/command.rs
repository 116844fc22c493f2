//! Validate a users endpoint request's fields and build the [`UserCommand`] record.

use serde_json::{Map, Value};
use uuid::Uuid;
use vero_model::{UserAction, UserCommand};

use super::values::{attributes, email, tags};
use crate::error::ApiError;
use crate::stamp::Stamp;
use crate::user_id;

/// Fields a form body may send as JSON-encoded objects (`data={"plan":"pro"}`).
pub const OBJECT_FIELDS: &[&str] = &["data", "changes"];

/// Whether the endpoint may name the user by `email` alone (the spec's "`id` (or
/// `email`)"). Tags, reidentify and delete need the `id`.
pub fn allows_email_only(action: UserAction) -> bool {
    matches!(action, UserAction::Track | UserAction::Edit | UserAction::Unsubscribe | UserAction::Resubscribe)
}

/// Validate `fields` (token already removed) for `action` and build the record.
/// Fields an endpoint does not define are ignored, as on events/track.
pub fn build_command(
    action: UserAction,
    mut fields: Map<String, Value>,
    stamp: Stamp<'_>,
) -> Result<UserCommand, ApiError> {
    let id = user_id::parse(fields.remove("id"), "id")?;
    let email = email(fields.remove("email"))?;
    let user_id = match (id, &email) {
        (Some(id), _) => id,
        (None, Some(email)) if allows_email_only(action) => email.clone(),
        (None, _) if allows_email_only(action) => return Err(ApiError::invalid("id or email is required.")),
        (None, _) => return Err(ApiError::invalid("id is required.")),
    };
    let mut command = UserCommand {
        command_id: Uuid::now_v7(),
        received_at: stamp.received_at,
        project: stamp.project.to_owned(),
        action,
        user_id,
        email,
        attributes: "{}".to_owned(),
        tags_add: Vec::new(),
        tags_remove: Vec::new(),
        new_id: None,
        user_agent: stamp.user_agent.map(str::to_owned),
    };
    match action {
        UserAction::Track => {
            if let Some(data) = attributes(fields.remove("data"), "data")? {
                command.attributes = data;
            }
        }
        UserAction::Edit => {
            command.attributes = attributes(fields.remove("changes"), "changes")?
                .ok_or_else(|| ApiError::invalid("changes is required (an object of attribute changes)."))?;
        }
        UserAction::Tags => {
            command.tags_add = tags(fields.remove("add"), "add")?;
            command.tags_remove = tags(fields.remove("remove"), "remove")?;
            if command.tags_add.is_empty() && command.tags_remove.is_empty() {
                return Err(ApiError::invalid("add or remove is required (a non-empty list of tags)."));
            }
        }
        UserAction::Reidentify => {
            let new_id = user_id::parse(fields.remove("new_id"), "new_id")?
                .ok_or_else(|| ApiError::invalid("new_id is required."))?;
            if new_id == command.user_id {
                return Err(ApiError::invalid("new_id must differ from id."));
            }
            command.new_id = Some(new_id);
        }
        UserAction::Unsubscribe | UserAction::Resubscribe | UserAction::Delete => {}
    }
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const STAMP: Stamp<'static> = Stamp { project: "shop", received_at: 1_764_000_000_000, user_agent: Some("ua/1") };

    fn build(action: UserAction, body: Value) -> Result<UserCommand, ApiError> {
        let Value::Object(fields) = body else { panic!("test body must be an object") };
        build_command(action, fields, STAMP)
    }

    fn message(action: UserAction, body: Value) -> String {
        build(action, body).unwrap_err().to_string()
    }

    #[test]
    fn users_track_carries_every_field() {
        let c =
            build(UserAction::Track, json!({"id": 7, "email": "a@b.c", "data": {"plan": "pro", "age": 31}})).unwrap();
        assert_eq!(c.command_id.get_version_num(), 7);
        assert_eq!((c.action, c.user_id.as_str(), c.email.as_deref()), (UserAction::Track, "7", Some("a@b.c")));
        assert_eq!(
            (c.project.as_str(), c.received_at, c.user_agent.as_deref()),
            ("shop", STAMP.received_at, Some("ua/1"))
        );
        assert_eq!(c.attributes, r#"{"plan":"pro","age":31}"#);
        assert!(c.tags_add.is_empty() && c.tags_remove.is_empty() && c.new_id.is_none());
        assert_eq!(build(UserAction::Track, json!({"id": "1"})).unwrap().attributes, "{}");
    }

    #[test]
    fn email_alone_names_the_user_where_allowed() {
        for action in [UserAction::Track, UserAction::Edit, UserAction::Unsubscribe, UserAction::Resubscribe] {
            let c = build(action, json!({"email": "jane@x.io", "changes": {}})).unwrap();
            assert_eq!((c.user_id.as_str(), c.email.as_deref()), ("jane@x.io", Some("jane@x.io")), "{action:?}");
            assert_eq!(message(action, json!({"email": null, "changes": {}})), "id or email is required.");
        }
        for action in [UserAction::Tags, UserAction::Reidentify, UserAction::Delete] {
            let body = json!({"email": "jane@x.io", "add": ["a"], "new_id": "2"});
            assert_eq!(message(action, body), "id is required.", "{action:?}");
        }
        let both = build(UserAction::Delete, json!({"id": "1", "email": "jane@x.io"})).unwrap();
        assert_eq!((both.user_id.as_str(), both.email.as_deref()), ("1", Some("jane@x.io")));
    }

    #[test]
    fn per_endpoint_fields() {
        let edit = build(UserAction::Edit, json!({"id": "1", "changes": {"plan": "team"}})).unwrap();
        assert_eq!(edit.attributes, r#"{"plan":"team"}"#);
        let tags = build(UserAction::Tags, json!({"id": "1", "add": ["a", "b"], "remove": "c"})).unwrap();
        assert_eq!((tags.tags_add, tags.tags_remove), (vec!["a".to_owned(), "b".to_owned()], vec!["c".to_owned()]));
        let only_remove = build(UserAction::Tags, json!({"id": "1", "remove": ["c"]})).unwrap();
        assert_eq!((only_remove.tags_add.len(), only_remove.tags_remove.len()), (0, 1));
        let re = build(UserAction::Reidentify, json!({"id": "1", "new_id": 2})).unwrap();
        assert_eq!((re.user_id.as_str(), re.new_id.as_deref(), re.attributes.as_str()), ("1", Some("2"), "{}"));
        // Fields of other endpoints are ignored, not applied.
        let unsub = build(UserAction::Unsubscribe, json!({"id": "1", "data": {"x": 1}, "add": ["a"]})).unwrap();
        assert_eq!((unsub.attributes.as_str(), unsub.tags_add.len()), ("{}", 0));
    }

    #[test]
    fn every_invalid_field_is_named() {
        use UserAction::*;
        let cases = [
            (Track, json!({"id": 1.5}), "id must be a string or an integer."),
            (Track, json!({"id": ""}), "id must not be empty."),
            (Track, json!({"id": "1", "email": 5}), "email must be a string or null."),
            (Track, json!({"id": "1", "data": "plan=pro"}), "data must be an object."),
            (Edit, json!({"id": "1"}), "changes is required (an object of attribute changes)."),
            (Edit, json!({"id": "1", "changes": null}), "changes is required (an object of attribute changes)."),
            (Edit, json!({"id": "1", "changes": ["plan"]}), "changes must be an object."),
            (Tags, json!({"id": "1"}), "add or remove is required (a non-empty list of tags)."),
            (
                Tags,
                json!({"id": "1", "add": [], "remove": []}),
                "add or remove is required (a non-empty list of tags).",
            ),
            (Tags, json!({"id": "1", "add": [1]}), "add must be a list of strings."),
            (Tags, json!({"id": "1", "remove": {"a": 1}}), "remove must be a list of strings."),
            (Reidentify, json!({"id": "1"}), "new_id is required."),
            (Reidentify, json!({"id": "1", "new_id": true}), "new_id must be a string or an integer."),
            (Reidentify, json!({"id": 1, "new_id": "1"}), "new_id must differ from id."),
            (Delete, json!({}), "id is required."),
            (Unsubscribe, json!({"id": ["1"]}), "id must be a string or an integer."),
        ];
        for (action, body, expected) in cases {
            assert_eq!(message(action, body.clone()), expected, "{action:?} {body}");
        }
    }
}
