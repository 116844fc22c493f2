//! The HTTP contract with the real server on port 0 and a memory publisher: body forms,
//! tokens, every validation error, limits, CORS, routing, metrics.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use ingest_gateway::publish::PublishError;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TRACK: &str = "/api/v2/events/track";
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
const JSON: (&str, &str) = ("content-type", "application/json");

fn test_settings() -> ingest_gateway::Settings {
    settings("unused:9092", "unused")
}

#[tokio::test]
async fn json_track_is_stored_with_every_field() {
    let (gw, publisher) = start_memory(test_settings()).await;
    let body = json!({
        "auth_token": TOKEN,
        "identity": {"id": 1, "email": null, "plan": "pro"},
        "event_name": "user_signed_up",
        "data": {"item": "Blue shoes", "price": 40.00, "nested": {"n": [1, 2]}},
        "development_mode": true,
        "extras": {"created_at": "2025-11-24T16:00:00Z", "source": "ios"}
    });
    let reply = send("POST", &gw.url(TRACK), &[JSON, ("user-agent", "vero-ruby/1.2")], body.to_string()).await;
    assert_eq!((reply.status, reply.json()), (200, json!({"status": 200, "message": "Success."})));
    let records = publisher.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key, b"1");
    let event = vero_model::decode_event(&records[0].payload).unwrap();
    assert_eq!((event.project.as_str(), event.user_id.as_str(), event.email.clone()), ("shop", "1", None));
    assert_eq!(event.event_name, "user_signed_up");
    assert_eq!(event.identity_attributes, r#"{"plan":"pro"}"#);
    assert_eq!(event.data, r#"{"item":"Blue shoes","price":40.0,"nested":{"n":[1,2]}}"#);
    assert!(event.development_mode);
    assert_eq!((event.created_at, event.source.as_deref()), (Some(1_764_000_000_000), Some("ios")));
    assert_eq!(event.user_agent.as_deref(), Some("vero-ruby/1.2"));
    assert_eq!(event.event_id.get_version_num(), 7);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!((now - event.received_at).abs() < 60_000, "received_at is the gateway's clock");
    assert!(!String::from_utf8_lossy(&records[0].payload).contains(TOKEN), "the token never reaches the record");
    gw.stop().await.unwrap();
}

/// URL, headers, body.
type Case<'a> = (String, Vec<(&'a str, &'a str)>, String);

#[tokio::test]
async fn every_body_and_token_form_is_accepted() {
    let (gw, publisher) = start_memory(test_settings()).await;
    let url = gw.url(TRACK);
    let json_url = gw.url("/api/v2/events/track.json");
    let cases: Vec<Case<'_>> = vec![
        (json_url.clone(), vec![JSON], track_body(TOKEN, "u1", "json_suffix").to_string()),
        (url.clone(), vec![JSON], json!({"tracking_api_key": TOKEN, "identity": {"id": "u2"}, "event_name": "tracking_api_key"}).to_string()),
        (format!("{url}?auth_token={TOKEN}"), vec![JSON], json!({"identity": {"id": "u3"}, "event_name": "query_token"}).to_string()),
        (format!("{url}?tracking_api_key={TOKEN}"), vec![JSON], json!({"identity": {"id": "u4"}, "event_name": "query_key"}).to_string()),
        (url.clone(), vec![FORM], format!("auth_token={TOKEN}&event_name=form_brackets&identity%5Bid%5D=u5&identity[email]=a%40b.c&identity[plan]=pro&data[price]=40&development_mode=true")),
        (url.clone(), vec![FORM], format!("tracking_api_key={TOKEN}&event_name=form_json&identity=%7B%22id%22%3A6%7D&data=%7B%22price%22%3A40.5%7D")),
        (url.clone(), vec![], json!({"auth_token": TOKEN, "identity": {"id": "u7"}, "event_name": "no_content_type"}).to_string()),
        (url.clone(), vec![("content-type", "text/plain;charset=UTF-8")], json!({"auth_token": TOKEN, "identity": {"id": "u8"}, "event_name": "beacon"}).to_string()),
    ];
    for (url, headers, body) in &cases {
        let reply = send("POST", url, headers, body.clone()).await;
        assert_eq!(reply.status, 200, "{url} {body}: {}", reply.body);
    }
    let events: Vec<_> = publisher.records().iter().map(|r| vero_model::decode_event(&r.payload).unwrap()).collect();
    let names: Vec<_> = events.iter().map(|e| e.event_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "json_suffix",
            "tracking_api_key",
            "query_token",
            "query_key",
            "form_brackets",
            "form_json",
            "no_content_type",
            "beacon"
        ]
    );
    let brackets = &events[4];
    assert_eq!((brackets.user_id.as_str(), brackets.email.as_deref()), ("u5", Some("a@b.c")));
    assert_eq!(
        (brackets.identity_attributes.as_str(), brackets.data.as_str()),
        (r#"{"plan":"pro"}"#, r#"{"price":"40"}"#)
    );
    assert!(brackets.development_mode);
    assert_eq!((events[5].user_id.as_str(), events[5].data.as_str()), ("6", r#"{"price":40.5}"#));
    assert!(events.iter().all(|e| e.project == "shop"));
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn tokens_resolve_to_projects_and_bad_tokens_are_401() {
    let (gw, publisher) = start_memory(test_settings()).await;
    let url = gw.url(TRACK);
    assert_eq!(post_json(&url, &track_body(OTHER_TOKEN, "1", "a")).await.status, 200);
    assert_eq!(post_json(&url, &track_body("second-shop-token", "1", "b")).await.status, 200);
    let projects: Vec<_> =
        publisher.records().iter().map(|r| vero_model::decode_event(&r.payload).unwrap().project).collect();
    assert_eq!(projects, ["blog", "shop"]);

    let unknown = post_json(&url, &track_body("not-a-token", "1", "x")).await;
    assert_eq!(unknown.expect_error(401), "Invalid auth token.");
    let missing = post_json(&url, &json!({"identity": {"id": "1"}, "event_name": "x"})).await;
    assert!(missing.expect_error(401).starts_with("Missing auth token"), "{}", missing.body);
    // Authentication comes before validation: no field details for strangers.
    let invalid_and_unknown = post_json(&url, &json!({"auth_token": "nope"})).await;
    assert_eq!(invalid_and_unknown.expect_error(401), "Invalid auth token.");
    assert_eq!(publisher.records().len(), 2, "nothing produced for rejected requests");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn every_bad_input_is_a_400_naming_the_field() {
    let (gw, publisher) = start_memory(test_settings()).await;
    let url = gw.url(TRACK);
    let id = json!({"id": "1"});
    let cases = [
        (json!({"auth_token": TOKEN, "identity": id}), "event_name is required."),
        (json!({"auth_token": TOKEN, "identity": id, "event_name": ""}), "event_name must not be empty."),
        (json!({"auth_token": TOKEN, "identity": id, "event_name": 1}), "event_name must be a string."),
        (
            json!({"auth_token": TOKEN, "identity": id, "event_name": "e".repeat(256)}),
            "event_name must be at most 255 characters.",
        ),
        (json!({"auth_token": TOKEN, "event_name": "x"}), "identity is required (an object with an id)."),
        (json!({"auth_token": TOKEN, "event_name": "x", "identity": ["1"]}), "identity must be an object."),
        (json!({"auth_token": TOKEN, "event_name": "x", "identity": {"email": "a@b.c"}}), "identity.id is required."),
        (json!({"auth_token": TOKEN, "event_name": "x", "identity": {"id": " "}}), "identity.id must not be empty."),
        (
            json!({"auth_token": TOKEN, "event_name": "x", "identity": {"id": true}}),
            "identity.id must be a string or an integer.",
        ),
        (
            json!({"auth_token": TOKEN, "event_name": "x", "identity": {"id": "1", "email": ["a"]}}),
            "identity.email must be a string or null.",
        ),
        (json!({"auth_token": TOKEN, "event_name": "x", "identity": id, "data": "price=1"}), "data must be an object."),
        (
            json!({"auth_token": TOKEN, "event_name": "x", "identity": id, "development_mode": "maybe"}),
            "development_mode must be a boolean.",
        ),
        (json!({"auth_token": TOKEN, "event_name": "x", "identity": id, "extras": [1]}), "extras must be an object."),
        (
            json!({"auth_token": TOKEN, "event_name": "x", "identity": id, "extras": {"source": {}}}),
            "extras.source must be a string.",
        ),
        (
            json!({"auth_token": TOKEN, "event_name": "x", "identity": id, "extras": {"created_at": "last tuesday"}}),
            "extras.created_at must be an RFC 3339 time or a Unix timestamp in seconds or milliseconds.",
        ),
    ];
    for (body, expected) in cases {
        let reply = post_json(&url, &body).await;
        assert_eq!(reply.expect_error(400), expected, "{body}");
    }
    let not_json = send("POST", &url, &[JSON], "{\"auth_token\": ").await;
    assert!(not_json.expect_error(400).starts_with("Request body is not valid JSON"), "{}", not_json.body);
    let array = send("POST", &url, &[JSON], "[1,2]").await;
    assert_eq!(array.expect_error(400), "Request body must be a JSON object.");
    let empty = send("POST", &url, &[JSON], "").await;
    assert!(empty.expect_error(400).starts_with("Request body is empty"), "{}", empty.body);
    let form = send("POST", &url, &[FORM], format!("auth_token={TOKEN}&event_name=x&identity=%7Bbroken")).await;
    assert_eq!(form.expect_error(400), "identity must be a JSON object or use bracket notation.");
    let multipart = send("POST", &url, &[("content-type", "multipart/form-data; boundary=x")], "--x--").await;
    assert!(multipart.expect_error(415).contains("application/json"), "{}", multipart.body);
    assert!(publisher.records().is_empty());
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn body_size_and_gzip_limits() {
    let mut settings = test_settings();
    settings.http.max_body_bytes = 4096;
    settings.http.max_decompressed_bytes = 16 * 1024;
    let (gw, publisher) = start_memory(settings).await;
    let url = gw.url(TRACK);

    let gzipped = gzip(track_body(TOKEN, "gz", "gzipped").to_string().as_bytes());
    let ok = send("POST", &url, &[JSON, ("content-encoding", "gzip")], gzipped).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(vero_model::decode_event(&publisher.records()[0].payload).unwrap().event_name, "gzipped");

    let mut big = track_body(TOKEN, "big", "big");
    big["data"]["padding"] = json!("p".repeat(5000));
    let too_large = post_json(&url, &big).await;
    assert_eq!(too_large.expect_error(413), "Request body exceeds 4096 bytes (http.max_body_bytes).");

    // Small on the wire, huge once inflated: stopped at the decompression cap.
    big["data"]["padding"] = json!("p".repeat(100_000));
    let bomb = gzip(big.to_string().as_bytes());
    assert!(bomb.len() < 4096);
    let reply = send("POST", &url, &[JSON, ("content-encoding", "gzip")], bomb).await;
    assert_eq!(reply.expect_error(413), "Decompressed request body exceeds 16384 bytes (http.max_decompressed_bytes).");

    let corrupt = send("POST", &url, &[JSON, ("content-encoding", "gzip")], "plain text").await;
    assert_eq!(corrupt.expect_error(400), "Request body is not valid gzip (Content-Encoding: gzip).");
    let brotli = send("POST", &url, &[JSON, ("content-encoding", "br")], "x").await;
    assert!(brotli.expect_error(415).contains("\"br\""), "{}", brotli.body);
    assert_eq!(publisher.records().len(), 1);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_413() {
    let mut settings = test_settings();
    settings.http.max_body_bytes = 1000;
    let (gw, _sink) = start_memory(settings).await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let chunk = "a".repeat(600);
    let request = format!(
        "POST {TRACK} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n\
         258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains(r#"{"status":413,"message":"Request body exceeds 1000 bytes (http.max_body_bytes)."}"#),
        "{answer}"
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn routing_heartbeat_404_and_405() {
    let (gw, _sink) = start_memory(test_settings()).await;
    for path in ["/api/v2/heartbeat", "/api/v2/heartbeat.json"] {
        let reply = get(&gw.url(path)).await;
        assert_eq!((reply.status, reply.json()["status"].clone()), (200, json!(200)), "{path}");
    }
    let not_found = get(&gw.url("/api/v2/nope")).await;
    assert_eq!(not_found.expect_error(404), "Not found: /api/v2/nope");
    let wrong_method = get(&gw.url(TRACK)).await;
    assert_eq!(wrong_method.expect_error(405), "Method GET is not allowed here; use POST, OPTIONS.");
    assert_eq!(wrong_method.header("allow"), Some("POST, OPTIONS"));
    let put = send("PUT", &gw.url("/api/v2/heartbeat"), &[], Bytes::new()).await;
    assert_eq!(
        (put.expect_error(405), put.header("allow")),
        ("Method PUT is not allowed here; use GET, HEAD, OPTIONS.".into(), Some("GET, HEAD, OPTIONS"))
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn cors_preflight_and_headers_for_allowed_origins_only() {
    let mut settings = test_settings();
    settings.http.cors.allowed_origins = vec!["https://shop.example".into()];
    let (gw, _sink) = start_memory(settings).await;
    let url = gw.url(TRACK);
    let preflight = send(
        "OPTIONS",
        &url,
        &[
            ("origin", "https://shop.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ],
        Bytes::new(),
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("https://shop.example"));
    assert_eq!(preflight.header("access-control-allow-methods"), Some("POST, OPTIONS"));
    assert_eq!(preflight.header("access-control-allow-headers"), Some("content-type"));
    assert_eq!(preflight.header("access-control-max-age"), Some("600"));
    assert_eq!(preflight.header("vary"), Some("Origin"));

    let foreign = send(
        "OPTIONS",
        &url,
        &[("origin", "https://evil.example"), ("access-control-request-method", "POST")],
        Bytes::new(),
    )
    .await;
    assert_eq!((foreign.status, foreign.header("access-control-allow-origin")), (204, None));

    let body = track_body(TOKEN, "1", "cors").to_string();
    let post = send("POST", &url, &[JSON, ("origin", "https://shop.example")], body.clone()).await;
    assert_eq!(post.status, 200);
    assert_eq!(post.header("access-control-allow-origin"), Some("https://shop.example"));
    assert_eq!(post.header("access-control-expose-headers"), Some("Retry-After"));
    let error = send("POST", &url, &[JSON, ("origin", "https://shop.example")], "{}").await;
    assert_eq!((error.status, error.header("access-control-allow-origin")), (401, Some("https://shop.example")));
    let post = send("POST", &url, &[JSON, ("origin", "https://evil.example")], body).await;
    assert_eq!((post.status, post.header("access-control-allow-origin")), (200, None));
    gw.stop().await.unwrap();

    let (gw, _sink) = start_memory(test_settings()).await;
    let any = send(
        "OPTIONS",
        &gw.url(TRACK),
        &[("origin", "https://x.example"), ("access-control-request-method", "POST")],
        Bytes::new(),
    )
    .await;
    assert_eq!(any.header("access-control-allow-origin"), Some("*"), "default config allows every origin");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn rate_limit_per_token_answers_429_with_retry_after() {
    let mut settings = test_settings();
    settings.rate_limit.enabled = true;
    settings.rate_limit.requests_per_second = 1;
    settings.rate_limit.burst = 2;
    let (gw, publisher) = start_memory(settings).await;
    let url = gw.url(TRACK);
    // A burst of 2 passes; the budget refills at 1/s, so a quick series hits the limit
    // (polling instead of assuming the requests take under a second).
    let mut passed = 0;
    let limited = loop {
        let reply = post_json(&url, &track_body(TOKEN, "1", "burst")).await;
        if reply.status != 200 {
            break reply;
        }
        passed += 1;
        assert!(passed < 20, "no 429 after {passed} requests");
    };
    assert!(passed >= 2, "the burst passes");
    assert_eq!(limited.expect_error(429), "Rate limit exceeded for this token; retry after 1 s.");
    assert_eq!(limited.header("retry-after"), Some("1"));
    assert_eq!(post_json(&url, &track_body(OTHER_TOKEN, "1", "d")).await.status, 200, "other tokens unaffected");
    assert_eq!(publisher.records().len(), passed + 1);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn sink_failures_map_to_503_413_and_500_and_never_200() {
    let (gw, publisher) = start_memory(test_settings()).await;
    let url = gw.url(TRACK);
    let body = track_body(TOKEN, "1", "x");
    publisher.fail_with(PublishError::QueueFull);
    let full = post_json(&url, &body).await;
    assert!(full.expect_error(503).contains("the producer queue is full"), "{}", full.body);
    assert_eq!(full.header("retry-after"), Some("5"));
    publisher.fail_with(PublishError::Timeout);
    let timeout = post_json(&url, &body).await;
    assert!(timeout.expect_error(503).contains("did not acknowledge"), "{}", timeout.body);
    publisher.fail_with(PublishError::TooLarge);
    assert_eq!(post_json(&url, &body).await.expect_error(413), "The record is larger than the broker accepts.");
    publisher.fail_with(PublishError::Rejected("not authorized to write the topic"));
    let rejected = post_json(&url, &body).await;
    assert!(rejected.expect_error(500).contains("not authorized"), "{}", rejected.body);
    assert_eq!(get(&gw.url("/readyz")).await.status, 503);
    publisher.recover();
    assert_eq!(post_json(&url, &body).await.status, 200);
    assert_eq!(get(&gw.url("/readyz")).await.status, 200);
    assert_eq!(publisher.records().len(), 1);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_and_health() {
    let (gw, _sink) = start_memory(test_settings()).await;
    let url = gw.url(TRACK);
    assert_eq!(post_json(&url, &track_body(TOKEN, "1", "a")).await.status, 200);
    assert_eq!(post_json(&url, &track_body("bad", "1", "a")).await.status, 401);
    assert_eq!(post_json(&url, &json!({"auth_token": TOKEN})).await.status, 400);
    assert_eq!(get(&gw.url("/healthz")).await.status, 200);
    let metrics = get(&gw.url("/metrics")).await;
    assert_eq!(metrics.status, 200);
    for line in [
        r#"vero_gateway_http_requests_total{route="events_track",status="200"} 1"#,
        r#"vero_gateway_http_requests_total{route="events_track",status="401"} 1"#,
        r#"vero_gateway_http_requests_total{route="healthz",status="200"} 1"#,
        r#"vero_gateway_events_accepted_total{project="shop"} 1"#,
        r#"vero_gateway_events_rejected_total{reason="unknown_token"} 1"#,
        r#"vero_gateway_events_rejected_total{reason="invalid"} 1"#,
        "vero_gateway_produce_latency_seconds_count 1",
        "vero_gateway_producer_queue_depth 0",
    ] {
        assert!(metrics.body.contains(line), "missing {line} in\n{}", metrics.body);
    }
    assert!(!metrics.body.contains(TOKEN) && !metrics.body.contains("bad"), "tokens never become labels");
    gw.stop().await.unwrap();
}

async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the server did not close the connection within {within:?}");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off() {
    let mut settings = test_settings();
    settings.http.header_read_timeout_ms = 300;
    settings.http.body_read_timeout_ms = 300;
    let (gw, publisher) = start_memory(settings).await;

    // Half a request head, then nothing: closed.
    let mut slow_head = TcpStream::connect(gw.addr).await.unwrap();
    slow_head.write_all(b"POST /api/v2/events/track HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    read_until_closed(&mut slow_head, Duration::from_secs(30)).await;

    // Connected and silent: closed.
    let mut idle = TcpStream::connect(gw.addr).await.unwrap();
    read_until_closed(&mut idle, Duration::from_secs(30)).await;

    // Head complete, body promised but never sent: 408.
    let mut slow_body = TcpStream::connect(gw.addr).await.unwrap();
    slow_body
        .write_all(b"POST /api/v2/events/track HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"auth")
        .await
        .unwrap();
    let answer = read_until_closed(&mut slow_body, Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#"{"status":408,"message":"Request body did not arrive within 300 ms."}"#), "{answer}");
    assert!(publisher.records().is_empty());
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let mut settings = test_settings();
    settings.http.max_connections = 1;
    let (gw, _sink) = start_memory(settings).await;
    let ping = b"GET /api/v2/heartbeat HTTP/1.1\r\nhost: x\r\n\r\n";

    let mut first = TcpStream::connect(gw.addr).await.unwrap();
    first.write_all(ping).await.unwrap();
    let mut buffer = [0u8; 1024];
    let n = first.read(&mut buffer).await.unwrap();
    assert!(buffer[..n].starts_with(b"HTTP/1.1 200"), "first connection served");

    // The first connection is kept alive and holds the only slot.
    let mut second = TcpStream::connect(gw.addr).await.unwrap();
    second.write_all(ping).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(500), second.read(&mut buffer)).await;
    assert!(waited.is_err(), "second connection must not be served while the first holds the slot");

    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(30), second.read(&mut buffer)).await.unwrap().unwrap();
    assert!(buffer[..n].starts_with(b"HTTP/1.1 200"), "served once the slot is free");
    gw.stop().await.unwrap();
}
