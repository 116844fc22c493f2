//! Explicit request ids over HTTP (real server, memory publisher): the `Idempotency-Key`
//! header is recorded as `extras.message_id`, so a retry carries the same request key
//! as its first attempt whatever else differs; a header that disagrees with the body is
//! a 400 and produces nothing.

mod common;

use common::*;
use serde_json::json;
use vero_model::request_key::request_key;

const TRACK: &str = "/api/v2/events/track";
const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test]
async fn the_idempotency_key_header_is_the_request_key() {
    let (gw, publisher) = start_memory(settings("unused:9092", "unused")).await;
    let body = track_body(TOKEN, "1", "purchased");
    let mut other_data = body.clone();
    other_data["data"] = json!({"item": "Red shoes"});
    let mut in_body = other_data.clone();
    in_body["extras"] = json!({"message_id": "order-17", "source": "ios"});
    for (headers, body) in [
        (vec![JSON, ("idempotency-key", "order-17")], &body),
        (vec![JSON, ("Idempotency-Key", "order-17")], &other_data),
        (vec![JSON, ("idempotency-key", "order-17")], &in_body),
        (vec![JSON], &in_body),
        (vec![JSON], &body),
        (vec![JSON], &body),
    ] {
        let reply = send("POST", &gw.url(TRACK), &headers, body.to_string()).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let events: Vec<_> = publisher.records().iter().map(|r| vero_model::decode_event(&r.payload).unwrap()).collect();
    assert_eq!(events.len(), 6);
    assert_eq!(events[0].extras, r#"{"message_id":"order-17"}"#);
    assert_eq!(events[2].extras, r#"{"message_id":"order-17","source":"ios"}"#);
    let keys: Vec<_> = events.iter().map(request_key).collect();
    assert!(keys[..4].iter().all(|k| *k == keys[0]), "one explicit id, one request: {keys:?}");
    assert_eq!(keys[4], keys[5], "no id: the same content is the same request");
    assert_ne!(keys[4], keys[0]);
    assert_ne!(events[4].event_id, events[5].event_id, "the gateway still gives every record its own id");
}

#[tokio::test]
async fn disagreeing_or_malformed_ids_are_refused() {
    let (gw, publisher) = start_memory(settings("unused:9092", "unused")).await;
    let mut body = track_body(TOKEN, "1", "purchased");
    body["extras"] = json!({"message_id": "a"});
    let reply = send("POST", &gw.url(TRACK), &[JSON, ("idempotency-key", "b")], body.to_string()).await;
    assert_eq!(reply.expect_error(400), "Idempotency-Key and extras.message_id differ; send one of them.");
    body["extras"] = json!({"message_id": {"nested": 1}});
    let message = send("POST", &gw.url(TRACK), &[JSON], body.to_string()).await.expect_error(400);
    assert!(message.starts_with("extras.message_id must be"), "{message}");
    let long = "k".repeat(256);
    let plain = track_body(TOKEN, "1", "purchased").to_string();
    let reply = send("POST", &gw.url(TRACK), &[JSON, ("idempotency-key", &long)], plain).await;
    assert!(reply.expect_error(400).starts_with("Idempotency-Key must be"));
    assert!(publisher.records().is_empty(), "nothing produced for a refused request");
}
