//! The users endpoints end to end: HTTP → gateway → Kafka → profile consumer and
//! event sink → ClickHouse, on the mock cluster and a real ClickHouse server. Each
//! effect is checked through the queries `docs/profiles.md` gives analysts.

use std::time::Duration;

use hyper::Method;
use serde_json::json;
use vero_e2e::{Pipeline, TOKEN};

const DEADLINE: Duration = Duration::from_secs(90);

fn event(user: &str, name: &str, identity: serde_json::Value) -> serde_json::Value {
    let mut identity = identity;
    identity["id"] = json!(user);
    json!({"auth_token": TOKEN, "identity": identity, "event_name": name, "data": {}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attributes_tags_and_subscription_reach_the_profile() {
    let p = Pipeline::start(3).await.unwrap();
    p.call(Method::POST, "/api/v2/events/track", event("u1", "signed_up", json!({"email": "u1@x.io", "plan": "free"})))
        .await;
    p.call(Method::POST, "/api/v2/users/track", json!({"auth_token": TOKEN, "id": "u1", "data": {"city": "Oslo"}}))
        .await;
    p.call(
        Method::PUT,
        "/api/v2/users/edit.json",
        json!({"auth_token": TOKEN, "id": "u1", "changes": {"plan": "pro"}}),
    )
    .await;
    p.call(
        Method::PUT,
        "/api/v2/users/tags/edit",
        json!({"auth_token": TOKEN, "id": "u1", "add": ["vip", "beta"], "remove": []}),
    )
    .await;
    p.call(Method::PUT, "/api/v2/users/tags/edit", json!({"auth_token": TOKEN, "id": "u1", "remove": ["beta"]})).await;
    p.call(Method::POST, "/api/v2/users/unsubscribe", json!({"auth_token": TOKEN, "id": "u1"})).await;

    let profile = p
        .wait_for(
            "SELECT email, visitParamExtractString(attributes, 'plan'), visitParamExtractString(attributes, 'city'), \
             tags, subscribed, subscription_changed_at_ms > 0, event_count FROM vero.profiles_live \
             WHERE project = 'e2e' AND user_id = 'u1'",
            "u1@x.io\tpro\tOslo\t['vip']\t0\t1\t1",
            DEADLINE,
        )
        .await;
    assert_eq!(profile, "u1@x.io\tpro\tOslo\t['vip']\t0\t1\t1");
    assert_eq!(p.query("SELECT user_id FROM vero.profiles_live WHERE has(tags, 'vip')").await.unwrap().trim(), "u1");

    p.call(Method::POST, "/api/v2/users/resubscribe.json", json!({"auth_token": TOKEN, "id": "u1"})).await;
    let subscribed = p.wait_for("SELECT subscribed FROM vero.profiles_live WHERE user_id = 'u1'", "1", DEADLINE).await;
    assert_eq!(subscribed, "1");
    // Commands are not events: analysts see only the one event.
    assert_eq!(p.wait_for("SELECT count() FROM vero.events FINAL", "1", DEADLINE).await, "1");
    p.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reidentify_then_more_events_keeps_one_person() {
    let p = Pipeline::start(3).await.unwrap();
    p.call(Method::POST, "/api/v2/events/track", event("anon-7", "viewed", json!({"color": "blue"}))).await;
    p.call(Method::POST, "/api/v2/events/track", event("anon-7", "added_to_cart", json!({}))).await;
    assert_eq!(
        p.wait_for("SELECT event_count FROM vero.profiles_live WHERE user_id = 'anon-7'", "2", DEADLINE).await,
        "2"
    );

    p.call(
        Method::PUT,
        "/api/v2/users/reidentify",
        json!({"auth_token": TOKEN, "id": "anon-7", "new_id": "customer-42"}),
    )
    .await;
    p.call(Method::POST, "/api/v2/events/track", event("customer-42", "purchased", json!({"email": "c42@x.io"}))).await;

    // The profile moved to the new id, merged with what came after.
    let moved = p
        .wait_for(
            "SELECT event_count, visitParamExtractString(attributes, 'color'), email, has(previous_ids, 'anon-7') \
             FROM vero.profiles_live WHERE project = 'e2e' AND user_id = 'customer-42'",
            "3\tblue\tc42@x.io\t1",
            DEADLINE,
        )
        .await;
    assert_eq!(moved, "3\tblue\tc42@x.io\t1");
    assert_eq!(
        p.wait_for("SELECT count() FROM vero.profiles_live WHERE user_id = 'anon-7'", "0", DEADLINE).await,
        "0",
        "the old id has no profile of its own any more"
    );
    // The old id resolves to the new one.
    let alias = p
        .query("SELECT argMax(new_id, at_ms) FROM vero.user_aliases WHERE project = 'e2e' AND old_id = 'anon-7'")
        .await
        .unwrap();
    assert_eq!(alias.trim(), "customer-42");
    // The person's full history across the reidentify, as docs/profiles.md queries it.
    let history = p
        .wait_for(
            "SELECT groupArray(event_name) FROM (SELECT event_name FROM vero.events FINAL \
             WHERE project = 'e2e' AND user_id IN ( \
                SELECT arrayJoin(arrayPushBack(previous_ids, user_id)) FROM vero.profiles_live \
                WHERE project = 'e2e' AND user_id = 'customer-42') \
             ORDER BY received_at_ms)",
            "['viewed','added_to_cart','purchased']",
            DEADLINE,
        )
        .await;
    assert_eq!(history, "['viewed','added_to_cart','purchased']");
    p.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_erases_the_person_and_a_later_event_starts_afresh() {
    let p = Pipeline::start(3).await.unwrap();
    p.call(
        Method::POST,
        "/api/v2/events/track",
        event("gone", "signed_up", json!({"email": "gone@x.io", "plan": "pro"})),
    )
    .await;
    p.call(Method::POST, "/api/v2/events/track", event("gone", "viewed", json!({}))).await;
    p.call(Method::POST, "/api/v2/events/track", event("stays", "signed_up", json!({}))).await;
    assert_eq!(p.wait_for("SELECT count() FROM vero.events FINAL", "3", DEADLINE).await, "3");
    assert_eq!(p.wait_for("SELECT count() FROM vero.profiles_live", "2", DEADLINE).await, "2");

    p.call(Method::DELETE, "/api/v2/users/delete", json!({"auth_token": TOKEN, "id": "gone"})).await;
    p.call(Method::POST, "/api/v2/events/track", event("gone", "came_back", json!({}))).await;

    // Events before the delete are erased; the one after it stays.
    let events = p
        .wait_for(
            "SELECT groupArray(event_name) FROM (SELECT event_name FROM vero.events FINAL WHERE user_id = 'gone')",
            "['came_back']",
            DEADLINE,
        )
        .await;
    assert_eq!(events, "['came_back']");
    assert_eq!(p.query("SELECT count() FROM vero.events FINAL WHERE user_id = 'stays'").await.unwrap().trim(), "1");
    // The profile was erased; the later event started a new one without the old data.
    let profile = p
        .wait_for(
            "SELECT concat(toString(event_count), '|', ifNull(email, ''), '|', visitParamExtractString(attributes, 'plan')) \
             FROM vero.profiles_live WHERE user_id = 'gone'",
            "1||",
            DEADLINE,
        )
        .await;
    assert_eq!(profile, "1||");
    let leftovers = p
        .wait_for("SELECT count() FROM vero.profiles WHERE user_id = 'gone' AND email = 'gone@x.io'", "0", DEADLINE)
        .await;
    assert_eq!(leftovers, "0", "no row keeps the erased email");
    p.stop().await.unwrap();
}
