//! A client's repeated request does not count in the profile (issue 10), by the event
//! sink's rule, against the mock cluster and a real ClickHouse: the same request
//! twice within `dedup.window_ms` counts once and changes nothing else; a window or
//! more apart it counts twice; requests differing only in `data` are two; an
//! explicit `extras.message_id` makes two bodies one request; and the decision
//! survives a restart, the keys being restored from the profiles topic.
//!
//! Windows are measured on the records' `received_at`, so a small window elapses by
//! choosing the times, without sleeping.

mod common;

use common::{event, Pipeline};
use vero_model::profile::Profile;
use vero_model::TrackEvent;

const WINDOW_MS: u64 = 2_000;

/// `event_count`, `last_event_name`, `first_seen_ms`, `last_seen_ms` of a profile.
fn summary_sql(user: &str) -> String {
    format!(
        "SELECT event_count, last_event_name, first_seen_ms, last_seen_ms FROM vero.profiles FINAL \
         WHERE user_id = '{user}' AND deleted = 0 FORMAT TSV"
    )
}

/// The same request as `original`, sent again (a new event id, received at `received_at`).
fn again(original: &TrackEvent, received_at: i64) -> TrackEvent {
    TrackEvent { event_id: uuid::Uuid::now_v7(), received_at, ..original.clone() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_within_the_window_counts_once_and_after_it_twice() {
    let pipeline = Pipeline::start();
    let outputs = vero_testkit::unique_name("out");
    let mut settings = pipeline.settings(&vero_testkit::unique_name("group"), &outputs);
    settings.dedup.window_ms = WINDOW_MS;
    let consumer = pipeline.start_consumer(settings).await;

    // The retry arrives later than the next request: had it counted, it would be the
    // last event and the last time seen.
    let mut signup = event("a", "signup", None, 10_000, "{}");
    signup.data = r#"{"item":"Blue shoes"}"#.into();
    pipeline.send_event(&signup).await;
    pipeline.send_event(&event("a", "visit", None, 11_000, "{}")).await;
    pipeline.send_event(&again(&signup, 11_500)).await;
    pipeline.wait_for_query(&summary_sql("a"), |a| a == "2\tvisit\t10000\t11000\n").await;
    consumer.wait_for_metric("vero_profiles_records_total{outcome=\"repeat\"}", 1.0).await;

    // Exactly the window after the accepted request: a new event (the sink's `<`).
    pipeline.send_event(&again(&signup, 10_000 + WINDOW_MS as i64)).await;
    pipeline.wait_for_query(&summary_sql("a"), |a| a == "3\tsignup\t10000\t12000\n").await;

    // Only `data` differs: two requests.
    let mut shoes = event("b", "purchase", None, 10_000, "{}");
    shoes.data = r#"{"price":40}"#.into();
    let other = TrackEvent { data: r#"{"price":41}"#.into(), ..again(&shoes, 10_100) };
    pipeline.send_event(&shoes).await;
    pipeline.send_event(&other).await;
    pipeline.wait_for_query(&summary_sql("b"), |a| a.starts_with("2\t")).await;

    // An explicit id names one request, whatever the bodies say.
    let mut keyed = event("c", "order", None, 10_000, "{}");
    keyed.extras = r#"{"message_id":"order-17"}"#.into();
    let changed =
        TrackEvent { data: r#"{"price":99}"#.into(), event_name: "order_again".into(), ..again(&keyed, 10_200) };
    pipeline.send_event(&keyed).await;
    pipeline.send_event(&changed).await;
    pipeline.send_event(&event("c", "marker", None, 10_300, "{}")).await;
    pipeline.wait_for_query(&summary_sql("c"), |a| a == "2\tmarker\t10000\t10300\n").await;
    assert_eq!(consumer.metric("vero_profiles_records_total{outcome=\"repeat\"}").await, 2.0);
    assert_eq!(consumer.metric("vero_profiles_request_keys_evicted_total").await, 0.0);
    consumer.stop().await;

    // The accepted keys travel in the profile record (schema v2), repeats are not kept.
    let topic = pipeline.read_profiles(&format!("{outputs}.profiles"));
    let a = &topic[&Profile::key_for("shop", "a")];
    let keys: Vec<(uuid::Uuid, i64)> = a.recent_requests.iter().map(|r| (r.request_key, r.received_at)).collect();
    let signup_key = vero_model::request_key::request_key(&signup);
    assert_eq!(keys.iter().filter(|(k, _)| *k == signup_key).map(|(_, at)| *at).collect::<Vec<_>>(), [10_000, 12_000]);
    assert_eq!(keys.len(), 3, "signup twice and the visit: {keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_after_a_restart_is_still_dropped() {
    let pipeline = Pipeline::start();
    let (group, outputs) = (vero_testkit::unique_name("group"), vero_testkit::unique_name("out"));
    let settings = || {
        let mut s = pipeline.settings(&group, &outputs);
        s.dedup.window_ms = WINDOW_MS;
        s
    };
    let first = pipeline.start_consumer(settings()).await;
    let original = event("r", "signup", None, 10_000, "{}");
    pipeline.send_event(&original).await;
    pipeline.wait_for_query(&summary_sql("r"), |a| a == "1\tsignup\t10000\t10000\n").await;
    first.stop().await;

    // The restarted instance knows the key from the profiles topic only.
    let second = pipeline.start_consumer(settings()).await;
    pipeline.send_event(&again(&original, 10_900)).await;
    pipeline.send_event(&event("r", "marker", None, 10_950, "{}")).await;
    pipeline.wait_for_query(&summary_sql("r"), |a| a == "2\tmarker\t10000\t10950\n").await;
    assert_eq!(second.metric("vero_profiles_restored_total").await, 1.0, "the profile came from the topic");
    assert_eq!(second.metric("vero_profiles_records_total{outcome=\"repeat\"}").await, 1.0);
    assert_eq!(second.metric("vero_profiles_records_total{outcome=\"applied\"}").await, 1.0);
    second.stop().await;
}
