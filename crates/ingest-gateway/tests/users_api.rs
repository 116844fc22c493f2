//! The users endpoints' HTTP contract with the real server on port 0 and a memory
//! publisher: every endpoint's success (the decoded `UserCommand`), body forms and token
//! locations, every 400, 401, 404, 405, 413, 415, 429, 500 and 503, CORS and metrics.

mod common;

use bytes::Bytes;
use common::*;
use ingest_gateway::publish::PublishError;
use serde_json::{json, Value};
use vero_model::{UserAction, UserCommand};

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
const JSON: (&str, &str) = ("content-type", "application/json");

/// Every users endpoint: method, path, action, and a minimal valid body (no token).
fn endpoints() -> Vec<(&'static str, &'static str, UserAction, Value)> {
    vec![
        ("POST", "/api/v2/users/track", UserAction::Track, json!({"id": "u1", "data": {"plan": "pro"}})),
        ("PUT", "/api/v2/users/edit", UserAction::Edit, json!({"id": "u1", "changes": {"plan": "team"}})),
        ("PUT", "/api/v2/users/tags/edit", UserAction::Tags, json!({"id": "u1", "add": ["vip"]})),
        ("POST", "/api/v2/users/unsubscribe", UserAction::Unsubscribe, json!({"id": "u1"})),
        ("POST", "/api/v2/users/resubscribe", UserAction::Resubscribe, json!({"id": "u1"})),
        ("PUT", "/api/v2/users/reidentify", UserAction::Reidentify, json!({"id": "u1", "new_id": "u2"})),
        ("POST", "/api/v2/users/delete", UserAction::Delete, json!({"id": "u1"})),
        ("DELETE", "/api/v2/users/delete", UserAction::Delete, json!({"id": "u1"})),
    ]
}

fn with_token(body: &Value, token: &str) -> Value {
    let mut body = body.clone();
    body["auth_token"] = json!(token);
    body
}

fn test_settings() -> ingest_gateway::Settings {
    settings("unused:9092", "unused")
}

async fn send_json(method: &str, url: &str, body: &Value) -> Reply {
    send(method, url, &[JSON], body.to_string()).await
}

fn commands(publisher: &ingest_gateway::publish::MemoryPublisher) -> Vec<UserCommand> {
    publisher
        .records()
        .iter()
        .map(|r| {
            let command = decode_command(&r.payload);
            assert_eq!(r.key, command.user_id.as_bytes(), "key = user_id");
            command
        })
        .collect()
}

#[tokio::test]
async fn every_endpoint_stores_its_command_with_every_field() {
    let (gw, publisher) = start_memory(test_settings()).await;
    let bodies = [
        json!({"id": 1, "email": "jane@example.com", "data": {"first_name": "Jane", "age": 31, "tags": {"n": [1]}}}),
        json!({"id": "1", "changes": {"plan": "team", "seats": 5.5}}),
        json!({"id": "1", "add": ["vip", "beta"], "remove": ["trial"]}),
        json!({"id": "1"}),
        json!({"id": "1", "email": null}),
        json!({"id": "1", "new_id": 2}),
        json!({"id": "1"}),
        json!({"id": "1", "email": "jane@example.com"}),
    ];
    for ((method, path, _, _), body) in endpoints().iter().zip(&bodies) {
        let reply =
            send(method, &gw.url(path), &[JSON, ("user-agent", "vero-php/2")], with_token(body, TOKEN).to_string())
                .await;
        assert_eq!((reply.status, reply.json()), (200, json!({"status": 200, "message": "Success."})), "{path}");
    }
    let got = commands(&publisher);
    let actions: Vec<_> = got.iter().map(|c| c.action).collect();
    assert_eq!(actions, endpoints().iter().map(|e| e.2).collect::<Vec<_>>());
    for c in &got {
        assert_eq!((c.project.as_str(), c.user_id.as_str()), ("shop", "1"), "{c:?}");
        assert_eq!(c.user_agent.as_deref(), Some("vero-php/2"));
        assert_eq!(c.command_id.get_version_num(), 7);
        assert!((now_millis() - c.received_at).abs() < 60_000, "received_at is the gateway's clock");
    }
    assert_eq!(got[0].email.as_deref(), Some("jane@example.com"));
    assert_eq!(got[0].attributes, r#"{"first_name":"Jane","age":31,"tags":{"n":[1]}}"#);
    assert_eq!(got[1].attributes, r#"{"plan":"team","seats":5.5}"#);
    assert_eq!(
        (got[2].tags_add.clone(), got[2].tags_remove.clone()),
        (vec!["vip".into(), "beta".into()], vec!["trial".into()])
    );
    assert_eq!(got[2].attributes, "{}");
    assert!(got[3..].iter().all(|c| c.attributes == "{}" && c.tags_add.is_empty() && c.tags_remove.is_empty()));
    assert_eq!(got[4].email, None);
    assert_eq!(got[5].new_id.as_deref(), Some("2"));
    assert!(got.iter().enumerate().all(|(i, c)| (i == 5) == c.new_id.is_some()), "new_id only on reidentify");
    assert_eq!(got[7].email.as_deref(), Some("jane@example.com"));
    let ids: std::collections::HashSet<_> = got.iter().map(|c| c.command_id).collect();
    assert_eq!(ids.len(), got.len(), "every command gets its own id");
    for record in publisher.records() {
        assert!(!String::from_utf8_lossy(&record.payload).contains(TOKEN), "the token never reaches the record");
    }
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn every_endpoint_answers_with_the_json_suffix() {
    let (gw, publisher) = start_memory(test_settings()).await;
    for (method, path, _, body) in endpoints() {
        let reply = send_json(method, &gw.url(&format!("{path}.json")), &with_token(&body, TOKEN)).await;
        assert_eq!(reply.status, 200, "{method} {path}.json: {}", reply.body);
    }
    let actions: Vec<_> = commands(&publisher).iter().map(|c| c.action).collect();
    assert_eq!(actions, endpoints().iter().map(|e| e.2).collect::<Vec<_>>());
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn users_named_by_email_only_are_keyed_by_email_where_the_spec_allows_it() {
    let (gw, publisher) = start_memory(test_settings()).await;
    let email = "only-email@example.com";
    let by_email = [
        ("POST", "/api/v2/users/track", json!({"email": email, "data": {"plan": "pro"}})),
        ("PUT", "/api/v2/users/edit", json!({"email": email, "changes": {"plan": "team"}})),
        ("POST", "/api/v2/users/unsubscribe", json!({"email": email})),
        ("POST", "/api/v2/users/resubscribe", json!({"email": email})),
    ];
    for (method, path, body) in &by_email {
        assert_eq!(send_json(method, &gw.url(path), &with_token(body, TOKEN)).await.status, 200, "{path}");
    }
    let got = commands(&publisher);
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|c| c.user_id == email && c.email.as_deref() == Some(email)), "{got:?}");
    assert_eq!(publisher.records()[0].key, email.as_bytes());

    let id_only = [
        ("PUT", "/api/v2/users/tags/edit", json!({"email": email, "add": ["a"]})),
        ("PUT", "/api/v2/users/reidentify", json!({"email": email, "new_id": "2"})),
        ("POST", "/api/v2/users/delete", json!({"email": email})),
        ("DELETE", "/api/v2/users/delete", json!({"email": email})),
    ];
    for (method, path, body) in &id_only {
        let reply = send_json(method, &gw.url(path), &with_token(body, TOKEN)).await;
        assert_eq!(reply.expect_error(400), "id is required.", "{method} {path}");
    }
    let neither = send_json("POST", &gw.url("/api/v2/users/track"), &with_token(&json!({"email": ""}), TOKEN)).await;
    assert_eq!(neither.expect_error(400), "id or email is required.");
    assert_eq!(publisher.records().len(), 4, "nothing produced for rejected requests");
    gw.stop().await.unwrap();
}

/// Method, path, headers, body.
type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, String);

#[tokio::test]
async fn form_bodies_and_every_token_location_are_accepted() {
    let (gw, publisher) = start_memory(test_settings()).await;
    let url = |path: &str| gw.url(path);
    let cases: Vec<Case<'_>> = vec![
        (
            "POST",
            url("/api/v2/users/track"),
            vec![FORM],
            format!("auth_token={TOKEN}&id=f1&email=f1%40x.io&data[plan]=pro&data[langs][]=en"),
        ),
        (
            "PUT",
            url("/api/v2/users/edit"),
            vec![FORM],
            format!("tracking_api_key={TOKEN}&id=f2&changes=%7B%22seats%22%3A3%7D"),
        ),
        ("PUT", url("/api/v2/users/edit"), vec![FORM], format!("auth_token={TOKEN}&id=f3&changes[plan]=team")),
        (
            "PUT",
            url("/api/v2/users/tags/edit"),
            vec![FORM],
            format!("auth_token={TOKEN}&id=f4&add[]=a&add[]=b&remove=c"),
        ),
        ("PUT", url("/api/v2/users/tags/edit"), vec![FORM], format!("auth_token={TOKEN}&id=f5&add%5B0%5D=x&remove=")),
        ("POST", url("/api/v2/users/unsubscribe"), vec![FORM], format!("auth_token={TOKEN}&id=f6&email=")),
        (
            "PUT",
            url(&format!("/api/v2/users/reidentify?auth_token={TOKEN}")),
            vec![JSON],
            json!({"id": "f7", "new_id": "f7b"}).to_string(),
        ),
        (
            "DELETE",
            url(&format!("/api/v2/users/delete?tracking_api_key={TOKEN}")),
            vec![],
            json!({"id": "f8"}).to_string(),
        ),
        (
            "POST",
            url("/api/v2/users/resubscribe"),
            vec![("content-type", "text/plain;charset=UTF-8")],
            json!({"auth_token": TOKEN, "id": 9}).to_string(),
        ),
    ];
    for (method, url, headers, body) in &cases {
        let reply = send(method, url, headers, body.clone()).await;
        assert_eq!(reply.status, 200, "{method} {url} {body}: {}", reply.body);
    }
    let got = commands(&publisher);
    let ids: Vec<_> = got.iter().map(|c| c.user_id.as_str()).collect();
    assert_eq!(ids, ["f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "9"]);
    assert_eq!(got[0].email.as_deref(), Some("f1@x.io"));
    let attributes: Value = serde_json::from_str(&got[0].attributes).unwrap();
    assert_eq!(attributes, json!({"plan": "pro", "langs": ["en"]}), "bracket notation, values as strings");
    assert_eq!(got[1].attributes, r#"{"seats":3}"#, "a JSON-encoded form field keeps its types");
    assert_eq!(got[2].attributes, r#"{"plan":"team"}"#);
    assert_eq!((got[3].tags_add.clone(), got[3].tags_remove.clone()), (vec!["a".into(), "b".into()], vec!["c".into()]));
    assert_eq!((got[4].tags_add.clone(), got[4].tags_remove.len()), (vec!["x".to_owned()], 0));
    assert_eq!(
        (got[5].action, got[5].email.clone()),
        (UserAction::Unsubscribe, None),
        "an empty form email is not sent"
    );
    assert_eq!(got[6].new_id.as_deref(), Some("f7b"));
    assert_eq!(got[7].action, UserAction::Delete);
    assert!(got.iter().all(|c| c.project == "shop"));
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn every_bad_input_is_a_400_naming_the_field() {
    let (gw, publisher) = start_memory(test_settings()).await;
    let cases = [
        ("POST", "/api/v2/users/track", json!({}), "id or email is required."),
        ("POST", "/api/v2/users/track", json!({"id": 1.5}), "id must be a string or an integer."),
        ("POST", "/api/v2/users/track", json!({"id": " "}), "id must not be empty."),
        ("POST", "/api/v2/users/track", json!({"id": "1", "email": ["a"]}), "email must be a string or null."),
        ("POST", "/api/v2/users/track", json!({"id": "1", "data": [1]}), "data must be an object."),
        ("PUT", "/api/v2/users/edit", json!({"id": "1"}), "changes is required (an object of attribute changes)."),
        ("PUT", "/api/v2/users/edit", json!({"id": "1", "changes": "plan"}), "changes must be an object."),
        ("PUT", "/api/v2/users/edit", json!({"changes": {"a": 1}}), "id or email is required."),
        ("PUT", "/api/v2/users/tags/edit", json!({"id": "1"}), "add or remove is required (a non-empty list of tags)."),
        (
            "PUT",
            "/api/v2/users/tags/edit",
            json!({"id": "1", "add": [], "remove": null}),
            "add or remove is required (a non-empty list of tags).",
        ),
        ("PUT", "/api/v2/users/tags/edit", json!({"id": "1", "add": [true]}), "add must be a list of strings."),
        ("PUT", "/api/v2/users/tags/edit", json!({"id": "1", "remove": 3}), "remove must be a list of strings."),
        ("PUT", "/api/v2/users/tags/edit", json!({"id": "1", "add": ["ok", ""]}), "add must not contain blank tags."),
        ("PUT", "/api/v2/users/tags/edit", json!({"add": ["a"]}), "id is required."),
        ("POST", "/api/v2/users/unsubscribe", json!({"id": {"n": 1}}), "id must be a string or an integer."),
        ("POST", "/api/v2/users/resubscribe", json!({"email": 7}), "email must be a string or null."),
        ("PUT", "/api/v2/users/reidentify", json!({"id": "1"}), "new_id is required."),
        ("PUT", "/api/v2/users/reidentify", json!({"new_id": "2"}), "id is required."),
        ("PUT", "/api/v2/users/reidentify", json!({"id": "1", "new_id": ""}), "new_id must not be empty."),
        (
            "PUT",
            "/api/v2/users/reidentify",
            json!({"id": "1", "new_id": [2]}),
            "new_id must be a string or an integer.",
        ),
        ("PUT", "/api/v2/users/reidentify", json!({"id": 5, "new_id": "5"}), "new_id must differ from id."),
        ("POST", "/api/v2/users/delete", json!({}), "id is required."),
        ("DELETE", "/api/v2/users/delete", json!({"id": false}), "id must be a string or an integer."),
    ];
    for (method, path, body, expected) in cases {
        let reply = send_json(method, &gw.url(path), &with_token(&body, TOKEN)).await;
        assert_eq!(reply.expect_error(400), expected, "{method} {path} {body}");
    }
    for (method, path, _, _) in endpoints() {
        let url = gw.url(path);
        let broken = send(method, &url, &[JSON], "{\"auth_token\": ").await;
        assert!(broken.expect_error(400).starts_with("Request body is not valid JSON"), "{path}: {}", broken.body);
        let array = send(method, &url, &[JSON], "[1]").await;
        assert_eq!(array.expect_error(400), "Request body must be a JSON object.", "{path}");
        let empty = send(method, &url, &[JSON], "").await;
        assert!(empty.expect_error(400).starts_with("Request body is empty"), "{path}: {}", empty.body);
    }
    let form =
        send("PUT", &gw.url("/api/v2/users/edit"), &[FORM], format!("auth_token={TOKEN}&id=1&changes=%7Bbroken")).await;
    assert_eq!(form.expect_error(400), "changes must be a JSON object or use bracket notation.");
    assert!(publisher.records().is_empty());
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn tokens_are_checked_before_fields_on_every_endpoint() {
    let (gw, publisher) = start_memory(test_settings()).await;
    for (method, path, _, body) in endpoints() {
        let url = gw.url(path);
        let missing = send_json(method, &url, &body).await;
        assert!(missing.expect_error(401).starts_with("Missing auth token"), "{path}: {}", missing.body);
        let unknown = send_json(method, &url, &with_token(&body, "not-a-token")).await;
        assert_eq!(unknown.expect_error(401), "Invalid auth token.", "{path}");
        // No field details for strangers: an invalid body with a bad token is still 401.
        let invalid = send_json(method, &url, &json!({"auth_token": "nope", "id": [1]})).await;
        assert_eq!(invalid.expect_error(401), "Invalid auth token.", "{path}");
        let other_project = send_json(method, &url, &with_token(&body, OTHER_TOKEN)).await;
        assert_eq!(other_project.status, 200, "{path}: {}", other_project.body);
    }
    let got = commands(&publisher);
    assert_eq!(got.len(), endpoints().len(), "only the requests with a valid token were produced");
    assert!(got.iter().all(|c| c.project == "blog"));
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn wrong_methods_are_405_with_allow_and_unknown_users_paths_404() {
    let (gw, publisher) = start_memory(test_settings()).await;
    let cases = [
        ("GET", "/api/v2/users/track", "POST, OPTIONS"),
        ("PUT", "/api/v2/users/track", "POST, OPTIONS"),
        ("POST", "/api/v2/users/edit", "PUT, OPTIONS"),
        ("GET", "/api/v2/users/edit.json", "PUT, OPTIONS"),
        ("POST", "/api/v2/users/tags/edit", "PUT, OPTIONS"),
        ("DELETE", "/api/v2/users/tags/edit", "PUT, OPTIONS"),
        ("PUT", "/api/v2/users/unsubscribe", "POST, OPTIONS"),
        ("GET", "/api/v2/users/resubscribe", "POST, OPTIONS"),
        ("POST", "/api/v2/users/reidentify", "PUT, OPTIONS"),
        ("PUT", "/api/v2/users/delete", "POST, DELETE, OPTIONS"),
        ("GET", "/api/v2/users/delete.json", "POST, DELETE, OPTIONS"),
        ("PATCH", "/api/v2/users/edit", "PUT, OPTIONS"),
    ];
    for (method, path, allow) in cases {
        let body = with_token(&json!({"id": "1", "changes": {}, "add": ["a"], "new_id": "2"}), TOKEN);
        let reply = send_json(method, &gw.url(path), &body).await;
        let message = reply.expect_error(405);
        assert_eq!(message, format!("Method {method} is not allowed here; use {allow}."), "{method} {path}");
        assert_eq!(reply.header("allow"), Some(allow), "{method} {path}");
    }
    for path in
        ["/api/v2/users", "/api/v2/users/tags", "/api/v2/users/edit/", "/api/v2/user/track", "/api/v2/users/nope"]
    {
        let reply = send_json("POST", &gw.url(path), &with_token(&json!({"id": "1"}), TOKEN)).await;
        assert_eq!(reply.expect_error(404), format!("Not found: {path}"));
    }
    assert!(publisher.records().is_empty());
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn body_limits_and_content_types_apply_to_every_endpoint() {
    let mut settings = test_settings();
    settings.http.max_body_bytes = 2048;
    settings.http.max_decompressed_bytes = 8192;
    let (gw, publisher) = start_memory(settings).await;
    for (method, path, _, body) in endpoints() {
        let url = gw.url(path);
        let mut big = with_token(&body, TOKEN);
        big["padding"] = json!("p".repeat(3000));
        assert_eq!(
            send_json(method, &url, &big).await.expect_error(413),
            "Request body exceeds 2048 bytes (http.max_body_bytes).",
            "{path}"
        );
        big["padding"] = json!("p".repeat(50_000));
        let bomb = send(method, &url, &[JSON, ("content-encoding", "gzip")], gzip(big.to_string().as_bytes())).await;
        assert_eq!(
            bomb.expect_error(413),
            "Decompressed request body exceeds 8192 bytes (http.max_decompressed_bytes).",
            "{path}"
        );
        let multipart = send(method, &url, &[("content-type", "multipart/form-data; boundary=x")], "--x--").await;
        assert!(multipart.expect_error(415).contains("application/json"), "{path}: {}", multipart.body);
        let gzipped = gzip(with_token(&body, TOKEN).to_string().as_bytes());
        let ok = send(method, &url, &[JSON, ("content-encoding", "gzip")], gzipped).await;
        assert_eq!(ok.status, 200, "{path}: {}", ok.body);
    }
    assert_eq!(publisher.records().len(), endpoints().len(), "only the gzipped valid requests were produced");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn sink_failures_are_503_413_or_500_and_never_200() {
    let (gw, publisher) = start_memory(test_settings()).await;
    for (method, path, _, body) in endpoints() {
        let url = gw.url(path);
        let body = with_token(&body, TOKEN);
        publisher.fail_with(PublishError::QueueFull);
        let full = send_json(method, &url, &body).await;
        assert!(full.expect_error(503).contains("the producer queue is full"), "{path}: {}", full.body);
        assert_eq!(full.header("retry-after"), Some("5"));
        publisher.fail_with(PublishError::Timeout);
        let timeout = send_json(method, &url, &body).await;
        assert!(timeout.expect_error(503).contains("did not acknowledge"), "{path}: {}", timeout.body);
        assert_eq!(timeout.header("retry-after"), Some("5"));
        publisher.fail_with(PublishError::Unavailable);
        assert!(send_json(method, &url, &body).await.expect_error(503).contains("Kafka is unavailable"));
        publisher.fail_with(PublishError::TooLarge);
        let large = send_json(method, &url, &body).await;
        assert_eq!(large.expect_error(413), "The record is larger than the broker accepts.", "{path}");
        publisher.fail_with(PublishError::Rejected("not authorized to write the topic"));
        assert!(send_json(method, &url, &body).await.expect_error(500).contains("not authorized"), "{path}");
        publisher.recover();
        assert_eq!(send_json(method, &url, &body).await.status, 200, "{path}");
    }
    assert_eq!(publisher.records().len(), endpoints().len(), "only the requests answered 200 were stored");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn the_rate_limit_covers_users_endpoints_with_429_and_retry_after() {
    let mut settings = test_settings();
    settings.rate_limit.enabled = true;
    settings.rate_limit.requests_per_second = 1;
    settings.rate_limit.burst = 1;
    let (gw, publisher) = start_memory(settings).await;
    let mut answered_200 = 0;
    for (method, path, _, body) in endpoints() {
        // The budget refills at 1/s, so a quick series hits the limit; poll for the 429
        // instead of assuming how long each request takes.
        let mut tries = 0;
        let limited = loop {
            let reply = send_json(method, &gw.url(path), &with_token(&body, TOKEN)).await;
            if reply.status != 200 {
                break reply;
            }
            answered_200 += 1;
            tries += 1;
            assert!(tries < 20, "no 429 on {path} after {tries} requests");
        };
        assert_eq!(limited.expect_error(429), "Rate limit exceeded for this token; retry after 1 s.", "{path}");
        assert_eq!(limited.header("retry-after"), Some("1"));
    }
    assert_eq!(publisher.records().len(), answered_200, "a 429 produces nothing");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn cors_preflights_name_each_endpoints_methods() {
    let mut settings = test_settings();
    settings.http.cors.allowed_origins = vec!["https://shop.example".into()];
    let (gw, _sink) = start_memory(settings).await;
    for (method, path, _, body) in endpoints() {
        let url = gw.url(path);
        let preflight = send(
            "OPTIONS",
            &url,
            &[("origin", "https://shop.example"), ("access-control-request-method", method)],
            Bytes::new(),
        )
        .await;
        assert_eq!(preflight.status, 204, "{path}");
        let allow = ingest_gateway::http::router::Route::resolve(path).unwrap().allow();
        assert!(allow.contains(method), "{path}: {allow}");
        assert_eq!(preflight.header("access-control-allow-methods"), Some(allow), "{path}");
        assert_eq!(preflight.header("access-control-allow-origin"), Some("https://shop.example"));
        let actual =
            send(method, &url, &[JSON, ("origin", "https://shop.example")], with_token(&body, TOKEN).to_string()).await;
        assert_eq!(actual.status, 200, "{path}: {}", actual.body);
        assert_eq!(actual.header("access-control-allow-origin"), Some("https://shop.example"));
        assert_eq!(actual.header("access-control-expose-headers"), Some("Retry-After"));
        let foreign = send(method, &url, &[JSON, ("origin", "https://evil.example")], "{}").await;
        assert_eq!((foreign.status, foreign.header("access-control-allow-origin")), (401, None), "{path}");
    }
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_count_every_users_route_and_action() {
    let (gw, _sink) = start_memory(test_settings()).await;
    for (method, path, _, body) in endpoints() {
        assert_eq!(send_json(method, &gw.url(path), &with_token(&body, TOKEN)).await.status, 200, "{path}");
    }
    let tags = gw.url("/api/v2/users/tags/edit");
    assert_eq!(send_json("PUT", &tags, &with_token(&json!({"id": "1"}), TOKEN)).await.status, 400);
    assert_eq!(send_json("PUT", &tags, &with_token(&json!({"id": "1"}), "bad")).await.status, 401);
    assert_eq!(send_json("GET", &gw.url("/api/v2/users/track"), &json!({})).await.status, 405);
    let metrics = get(&gw.url("/metrics")).await;
    assert_eq!(metrics.status, 200);
    for line in [
        r#"vero_gateway_http_requests_total{route="users_track",status="200"} 1"#,
        r#"vero_gateway_http_requests_total{route="users_track",status="405"} 1"#,
        r#"vero_gateway_http_requests_total{route="users_edit",status="200"} 1"#,
        r#"vero_gateway_http_requests_total{route="users_tags_edit",status="200"} 1"#,
        r#"vero_gateway_http_requests_total{route="users_tags_edit",status="400"} 1"#,
        r#"vero_gateway_http_requests_total{route="users_tags_edit",status="401"} 1"#,
        r#"vero_gateway_http_requests_total{route="users_unsubscribe",status="200"} 1"#,
        r#"vero_gateway_http_requests_total{route="users_resubscribe",status="200"} 1"#,
        r#"vero_gateway_http_requests_total{route="users_reidentify",status="200"} 1"#,
        r#"vero_gateway_http_requests_total{route="users_delete",status="200"} 2"#,
        r#"vero_gateway_user_commands_accepted_total{action="track",project="shop"} 1"#,
        r#"vero_gateway_user_commands_accepted_total{action="tags",project="shop"} 1"#,
        r#"vero_gateway_user_commands_accepted_total{action="delete",project="shop"} 2"#,
        r#"vero_gateway_user_commands_rejected_total{action="tags",reason="invalid"} 1"#,
        r#"vero_gateway_user_commands_rejected_total{action="tags",reason="unknown_token"} 1"#,
        r#"vero_gateway_user_commands_rejected_total{action="track",reason="method_not_allowed"} 1"#,
        "vero_gateway_produce_latency_seconds_count 8",
    ] {
        assert!(metrics.body.contains(line), "missing {line} in\n{}", metrics.body);
    }
    assert!(!metrics.body.contains("vero_gateway_events_accepted_total{"), "users commands are not counted as events");
    assert!(!metrics.body.contains(TOKEN) && !metrics.body.contains("bad"), "tokens never become labels");
    gw.stop().await.unwrap();
}
