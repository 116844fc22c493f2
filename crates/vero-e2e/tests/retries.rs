//! A client retrying over HTTP, through the whole pipeline (gateway → Kafka → event
//! sink → ClickHouse): the same request twice within the dedup window is one row in a
//! plain `count()`, once the window has elapsed it is a second row, a request differing
//! only in `data` is another row, and an `Idempotency-Key` makes two bodies one request.
//! The profile consumer, with the same `dedup.window_ms`, counts exactly those rows.

use std::time::Duration;

use serde_json::json;
use vero_e2e::{Pipeline, TOKEN};

const DEADLINE: Duration = Duration::from_secs(90);
const TRACK: &str = "/api/v2/events/track";
/// Short enough to let it elapse in the test, long enough for two quick requests.
const WINDOW_MS: u64 = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_within_the_window_are_one_row_and_after_it_two() {
    let window = WINDOW_MS.to_string();
    let pipeline = Pipeline::start_with(2, &[("VERO__DEDUP__WINDOW_MS", &window)]).await.unwrap();
    let json = ("content-type", "application/json");
    let post = |body: serde_json::Value, key: Option<&'static str>| {
        let pipeline = &pipeline;
        async move {
            let mut headers = vec![json];
            headers.extend(key.map(|k| ("idempotency-key", k)));
            let answer =
                pipeline.send_with_headers(hyper::Method::POST, TRACK, &headers, body.to_string()).await.unwrap();
            assert_eq!(answer.0, 200, "{answer:?}");
        }
    };
    let count = |sql: &'static str, expected: &'static str| pipeline.wait_for(sql, expected, DEADLINE);
    let body = json!({
        "auth_token": TOKEN,
        "identity": {"id": "1", "email": "janedoe@getvero.com"},
        "event_name": "user_signed_up",
        "data": {"item": "Blue shoes", "price": 40.00}
    });
    post(body.clone(), None).await;
    post(body.clone(), None).await; // the retry
    let mut other_data = body.clone();
    other_data["data"]["price"] = json!(41.0);
    post(other_data, None).await;
    // Both keyed requests carry the same id: one request, though the bodies differ.
    let mut keyed = body.clone();
    keyed["event_name"] = json!("purchased");
    post(keyed.clone(), Some("order-17")).await;
    keyed["data"]["price"] = json!(99.0);
    post(keyed, Some("order-17")).await;
    let marker = json!({"auth_token": TOKEN, "identity": {"id": "1"}, "event_name": "marker"});
    post(marker, None).await;
    // The marker is behind every request above on the user's partition.
    assert_eq!(count("SELECT count() FROM vero.events WHERE event_name = 'marker'", "1").await, "1");
    assert_eq!(
        count("SELECT count() FROM vero.events WHERE event_name = 'user_signed_up'", "2").await,
        "2",
        "the retry is no row; other data is"
    );
    assert_eq!(pipeline.query("SELECT count() FROM vero.events").await.unwrap().trim(), "4");
    let keyed_rows = pipeline.query("SELECT data FROM vero.events WHERE event_name = 'purchased'").await.unwrap();
    assert_eq!(keyed_rows.trim(), r#"{"item":"Blue shoes","price":40.0}"#, "the first of the keyed requests");
    // The profile consumer drops the same repeats (same dedup.window_ms): its count
    // is the user's rows.
    let profile = "SELECT event_count FROM vero.profiles FINAL WHERE user_id = '1' AND deleted = 0";
    assert_eq!(pipeline.wait_for(profile, "4", DEADLINE).await, "4", "the profile counts what vero.events holds");

    // After the window the same request is a new event.
    tokio::time::sleep(Duration::from_millis(WINDOW_MS + 500)).await;
    post(body.clone(), None).await;
    assert_eq!(count("SELECT count() FROM vero.events WHERE event_name = 'user_signed_up'", "3").await, "3");
    assert_eq!(pipeline.query("SELECT count() FROM vero.events").await.unwrap().trim(), "5");
    assert_eq!(pipeline.wait_for(profile, "5", DEADLINE).await, "5");
    pipeline.stop().await.unwrap();
}

/// `events/batch` sent again after a failure (a 503, a lost answer): the client repeats
/// the whole batch, and every event is one row, whether it carries
/// `extras.message_id` or is recognised by its content.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_sent_again_shows_each_event_once() {
    let pipeline = Pipeline::start_with(2, &[]).await.unwrap();
    let json = ("content-type", "application/json");
    let send = |body: serde_json::Value| {
        let pipeline = &pipeline;
        async move {
            let answer = pipeline
                .send_with_headers(hyper::Method::POST, "/api/v2/events/batch", &[json], body.to_string())
                .await
                .unwrap();
            assert_eq!(answer.0, 200, "{answer:?}");
        }
    };
    let batch = json!({"auth_token": TOKEN, "events": [
        {"identity": {"id": "1"}, "event_name": "viewed", "extras": {"message_id": "b-1"}},
        {"identity": {"id": "2"}, "event_name": "viewed", "data": {"page": 2}},
        {"identity": {"id": "1"}, "event_name": "bought", "extras": {"created_at": 1_764_000_000}},
    ]});
    for _ in 0..3 {
        send(batch.clone()).await;
    }
    send(json!({"auth_token": TOKEN, "events": [
        {"identity": {"id": "1"}, "event_name": "marker"},
        {"identity": {"id": "2"}, "event_name": "marker"},
    ]}))
    .await;
    let markers = "SELECT count() FROM vero.events WHERE event_name = 'marker'";
    assert_eq!(pipeline.wait_for(markers, "2", DEADLINE).await, "2");
    let rows =
        pipeline.query("SELECT user_id, event_name FROM vero.events ORDER BY user_id, event_name").await.unwrap();
    assert_eq!(rows.trim(), "1\tbought\n1\tmarker\n1\tviewed\n2\tmarker\n2\tviewed", "each event once");
    let profile = "SELECT user_id, event_count FROM vero.profiles FINAL WHERE deleted = 0 ORDER BY user_id";
    assert_eq!(pipeline.wait_for(profile, "1\t3\n2\t2", DEADLINE).await, "1\t3\n2\t2", "the profiles count each once");
    pipeline.stop().await.unwrap();
}
