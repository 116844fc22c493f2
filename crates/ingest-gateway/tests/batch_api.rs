//! `POST /api/v2/events/batch` with the real server on port 0 and a memory publisher: every
//! event stored in order, the limits by count and bytes (413 naming the setting), all
//! or nothing on an invalid event, gzip, and a batch stored in part: 503, and the
//! client's repeat produces every event again with the same request keys, which the
//! consumers drop (crates/vero-e2e/tests/retries.rs shows that end to end).

mod common;

use common::*;
use ingest_gateway::publish::PublishError;
use serde_json::{json, Value};
use vero_model::request_key::request_key;

const BATCH: &str = "/api/v2/events/batch";
const JSON: (&str, &str) = ("content-type", "application/json");

fn events(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"identity": {"id": format!("u{}", i % 3)}, "event_name": format!("e{i}"), "data": {"i": i}}))
        .collect()
}

fn batch(events: Vec<Value>) -> Value {
    json!({"auth_token": TOKEN, "events": events})
}

fn stored(publisher: &ingest_gateway::publish::MemoryPublisher) -> Vec<vero_model::TrackEvent> {
    publisher.records().iter().map(|r| vero_model::decode_event(&r.payload).unwrap()).collect()
}

#[tokio::test]
async fn a_batch_is_stored_event_by_event_in_order() {
    let (gw, publisher) = start_memory(settings("unused:9092", "unused")).await;
    let mut sent = events(5);
    sent[1]["extras"] = json!({"message_id": "order-1", "created_at": 1_764_000_000});
    let reply = post_json(&gw.url(BATCH), &batch(sent)).await;
    assert_eq!((reply.status, reply.json()), (200, json!({"status": 200, "message": "Success."})));
    let records = publisher.records();
    let names: Vec<String> = stored(&publisher).into_iter().map(|e| e.event_name).collect();
    assert_eq!(names, ["e0", "e1", "e2", "e3", "e4"]);
    assert_eq!(records[3].key, b"u0", "keyed by user like events/track");
    let second = &stored(&publisher)[1];
    assert_eq!((second.project.as_str(), second.created_at), ("shop", Some(1_764_000_000_000)));
    assert_eq!(vero_model::request_key::message_id(&second.extras).as_deref(), Some("order-1"));

    // The .json suffix, the token in the query string, and a gzip body.
    let url = format!("{}?auth_token={TOKEN}", gw.url("/api/v2/events/batch.json"));
    let body = json!({"events": events(2)}).to_string();
    let reply = send("POST", &url, &[JSON, ("content-encoding", "gzip")], gzip(body.as_bytes())).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(publisher.records().len(), 7);
    let metrics = get(&gw.url("/metrics")).await.body;
    assert!(metrics.contains(r#"vero_gateway_events_accepted_total{project="shop"} 7"#), "{metrics}");
    assert!(metrics.contains(r#"vero_gateway_http_requests_total{route="events_batch",status="200"} 2"#), "{metrics}");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn limits_by_count_and_bytes_name_their_setting_and_store_nothing() {
    let mut settings = settings("unused:9092", "unused");
    settings.http.batch_max_events = 10;
    settings.http.batch_max_body_bytes = 4096;
    let (gw, publisher) = start_memory(settings).await;
    let url = gw.url(BATCH);
    let reply = post_json(&url, &batch(events(11))).await;
    assert_eq!(reply.expect_error(413), "A batch holds at most 10 events (http.batch_max_events); this one has 11.");
    let big = batch(vec![json!({"identity": {"id": "1"}, "event_name": "x", "data": {"blob": "a".repeat(5000)}})]);
    let reply = post_json(&url, &big).await;
    assert_eq!(reply.expect_error(413), "Request body exceeds 4096 bytes (http.batch_max_body_bytes).");
    let bomb = gzip(big.to_string().as_bytes());
    let reply = send("POST", &url, &[JSON, ("content-encoding", "gzip")], bomb).await;
    assert_eq!(reply.expect_error(413), "Decompressed request body exceeds 4096 bytes (http.batch_max_body_bytes).");
    // events/track keeps its own limit: the batch limit is not the single request's.
    assert_eq!(post_json(&gw.url("/api/v2/events/track"), &track_body(TOKEN, "1", "x")).await.status, 200);
    assert_eq!(publisher.records().len(), 1);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn one_invalid_event_rejects_the_whole_batch() {
    let (gw, publisher) = start_memory(settings("unused:9092", "unused")).await;
    let url = gw.url(BATCH);
    let mut sent = events(4);
    sent[2]["identity"] = json!({"email": "a@b.c"});
    let reply = post_json(&url, &batch(sent)).await;
    assert_eq!(reply.expect_error(400), "events[2]: identity.id is required.");
    let mut sent = events(3);
    sent[1]["extras"] = json!({"created_at": "soon"});
    let reply = post_json(&url, &batch(sent)).await;
    assert!(reply.expect_error(400).starts_with("events[1]: extras.created_at must be"), "{}", reply.body);
    assert_eq!(post_json(&url, &json!({"events": events(1)})).await.status, 401, "the token is required");
    let keyed = send("POST", &url, &[JSON, ("idempotency-key", "k-1")], batch(events(2)).to_string()).await;
    assert!(keyed.expect_error(400).starts_with("Idempotency-Key names one event"), "{}", keyed.body);
    let form = send("POST", &url, &[("content-type", "application/x-www-form-urlencoded")], "events=1").await;
    assert_eq!(form.status, 415, "{}", form.body);
    assert_eq!(send("GET", &url, &[], "").await.status, 405);
    assert!(publisher.records().is_empty(), "nothing of a rejected batch is stored");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_batch_stored_in_part_is_a_503_and_its_repeat_has_the_same_request_keys() {
    let (gw, publisher) = start_memory(settings("unused:9092", "unused")).await;
    let url = gw.url(BATCH);
    let mut sent = events(4);
    sent[0]["extras"] = json!({"message_id": "m-0"});
    publisher.fail_after(2, PublishError::Timeout);
    let reply = post_json(&url, &batch(sent.clone())).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.header("retry-after"), Some("5"));
    assert_eq!(publisher.records().len(), 2, "the first two were stored before the failure");
    publisher.recover();
    assert_eq!(post_json(&url, &batch(sent)).await.status, 200);
    let stored = stored(&publisher);
    assert_eq!(stored.len(), 6);
    let keys: Vec<_> = stored.iter().map(request_key).collect();
    assert_eq!(keys[..2], keys[2..4], "the repeat of a stored event has its request key: the consumers drop it");
    let distinct: std::collections::BTreeSet<_> = keys[2..].iter().collect();
    assert_eq!(distinct.len(), 4, "the batch's events have keys of their own");
    gw.stop().await.unwrap();
}
