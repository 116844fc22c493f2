//! `[limits]` over HTTP (real server on port 0, memory publisher): a request that would add
//! more to a profile than the limits allow is a 400 whose message names the field and
//! the limit, and nothing is stored; a request right at each limit is accepted. The
//! repo's default limits (config/gateway/default.toml) are the ones tested.

mod common;

use common::*;
use serde_json::{json, Map, Value};

const JSON: (&str, &str) = ("content-type", "application/json");

async fn put(gw: &TestGateway, path: &str, body: &Value) -> Reply {
    let mut body = body.clone();
    body["auth_token"] = json!(TOKEN);
    send("PUT", &gw.url(path), &[JSON], body.to_string()).await
}

async fn post(gw: &TestGateway, path: &str, body: &Value) -> Reply {
    let mut body = body.clone();
    body["auth_token"] = json!(TOKEN);
    send("POST", &gw.url(path), &[JSON], body.to_string()).await
}

fn attributes(count: usize) -> Map<String, Value> {
    (0..count).map(|i| (format!("a{i}"), json!(i))).collect()
}

#[tokio::test]
async fn ids_longer_than_the_limit_are_refused_on_every_endpoint() {
    let settings = settings("unused:9092", "unused");
    let max = settings.limits.max_id_bytes;
    let (gw, publisher) = start_memory(settings).await;
    let (at_limit, over) = ("x".repeat(max), "x".repeat(max + 1));
    let expected = format!("is {} bytes long; at most {max} (limits.max_id_bytes).", max + 1);

    let reply = post(&gw, "/api/v2/events/track", &json!({"identity": {"id": over}, "event_name": "e"})).await;
    assert_eq!(reply.expect_error(400), format!("identity.id {expected}"));
    let reply = post(&gw, "/api/v2/users/track", &json!({"id": over})).await;
    assert_eq!(reply.expect_error(400), format!("id {expected}"));
    let reply = put(&gw, "/api/v2/users/reidentify", &json!({"id": "u1", "new_id": over})).await;
    assert_eq!(reply.expect_error(400), format!("new_id {expected}"));
    let email = format!("{}@x", "e".repeat(max - 1));
    let reply = post(&gw, "/api/v2/users/track", &json!({"email": email})).await;
    assert_eq!(reply.expect_error(400), format!("email {expected}"));
    assert!(publisher.records().is_empty(), "nothing over a limit is stored");

    let reply = post(&gw, "/api/v2/events/track", &json!({"identity": {"id": at_limit}, "event_name": "e"})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply =
        put(&gw, "/api/v2/users/reidentify", &json!({"id": at_limit, "new_id": at_limit.replace('x', "y")})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(publisher.records().len(), 2);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn too_many_or_too_long_tags_in_one_request_are_refused() {
    let settings = settings("unused:9092", "unused");
    let (max, max_tag) = (settings.limits.max_tags_per_request, settings.limits.max_tag_bytes);
    let (gw, publisher) = start_memory(settings).await;
    let tags = |n: usize, prefix: &str| (0..n).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>();

    let body = json!({"id": "u1", "add": tags(max / 2 + 1, "a"), "remove": tags(max - max / 2, "r")});
    let message = put(&gw, "/api/v2/users/tags/edit", &body).await.expect_error(400);
    assert_eq!(
        message,
        format!("add and remove name {} tags; at most {max} per request (limits.max_tags_per_request).", max + 1)
    );
    let body = json!({"id": "u1", "remove": ["ok", "t".repeat(max_tag + 1)]});
    let message = put(&gw, "/api/v2/users/tags/edit", &body).await.expect_error(400);
    assert_eq!(
        message,
        format!("remove has a tag of {} bytes; at most {max_tag} (limits.max_tag_bytes).", max_tag + 1)
    );
    assert!(publisher.records().is_empty());

    let body = json!({"id": "u1", "add": tags(max - 1, "a"), "remove": ["t".repeat(max_tag)]});
    let reply = put(&gw, "/api/v2/users/tags/edit", &body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let command = decode_command(&publisher.records()[0].payload);
    assert_eq!(command.tags_add.len() + command.tags_remove.len(), max);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn too_many_or_too_large_attributes_are_refused_on_events_and_users() {
    let settings = settings("unused:9092", "unused");
    let (max, max_bytes) = (settings.limits.max_attributes, settings.limits.max_attributes_bytes);
    let (gw, publisher) = start_memory(settings).await;
    let count = |field: &str, n: usize| {
        format!("{field} has {n} attributes; at most {max} per request (limits.max_attributes).")
    };

    // events/track: identity keys (the email counts as one).
    let mut identity = attributes(max);
    identity.insert("id".into(), json!("u1"));
    identity.insert("email".into(), json!("u1@example.com"));
    let reply = post(&gw, "/api/v2/events/track", &json!({"identity": identity, "event_name": "e"})).await;
    assert_eq!(reply.expect_error(400), count("identity", max + 1));
    // users/track data, users/edit changes.
    let reply = post(&gw, "/api/v2/users/track", &json!({"id": "u1", "data": attributes(max + 1)})).await;
    assert_eq!(reply.expect_error(400), count("data", max + 1));
    let reply = put(&gw, "/api/v2/users/edit", &json!({"id": "u1", "changes": attributes(max + 1)})).await;
    assert_eq!(reply.expect_error(400), count("changes", max + 1));
    // Total size: one attribute larger than the limit.
    let big = json!({"id": "u1", "changes": {"bio": "b".repeat(max_bytes)}});
    let message = put(&gw, "/api/v2/users/edit", &big).await.expect_error(400);
    assert!(message.starts_with("changes has ") && message.ends_with("(limits.max_attributes_bytes)."), "{message}");
    assert!(message.contains(&format!("at most {max_bytes} ")), "{message}");
    assert!(publisher.records().is_empty());

    // At the limits: accepted.
    let reply = post(&gw, "/api/v2/users/track", &json!({"id": "u1", "data": attributes(max)})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let mut identity = attributes(max - 1);
    identity.insert("id".into(), json!("u1"));
    identity.insert("email".into(), json!("u1@example.com"));
    let reply = post(&gw, "/api/v2/events/track", &json!({"identity": identity, "event_name": "e"})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(publisher.records().len(), 2);
    gw.stop().await.unwrap();
}
