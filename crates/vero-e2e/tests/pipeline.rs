//! gateway → Kafka → event-sink → ClickHouse, on the mock cluster and a real
//! ClickHouse server: what producers send is what analysts see, once per event.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use vero_e2e::{Pipeline, TOKEN};
use vero_model::partition::partition_for_key;

const DEADLINE: Duration = Duration::from_secs(90);

/// One row of `vero.events FINAL` as analysts query it, keyed by column name.
fn rows(tsv_with_names: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = tsv_with_names.lines();
    let names: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    lines.map(|line| names.iter().map(|n| n.to_string()).zip(line.split('\t').map(str::to_owned)).collect()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_accepted_event_lands_once_with_every_field() {
    let pipeline = Pipeline::start(3).await.unwrap();

    // Vero's documented example, verbatim but for the token.
    let documented = json!({
        "auth_token": TOKEN,
        "identity": {"id": "1", "email": "janedoe@getvero.com"},
        "event_name": "user_signed_up",
        "data": {"item": "Blue shoes", "price": 40.00}
    });
    assert_eq!(
        pipeline.post_json("/api/v2/events/track", &documented).await.unwrap(),
        (200, r#"{"status":200,"message":"Success."}"#.to_owned())
    );

    // Real-client variations: numeric id, null email, extra identity attributes,
    // extras with created_at/source, development_mode, tracking_api_key, .json suffix.
    let variations = json!({
        "tracking_api_key": TOKEN,
        "identity": {"id": 42, "email": null, "plan": "pro", "age": 31},
        "event_name": "viewed_product",
        "data": {"sku": "X-1", "qty": 2, "nested": {"ok": true}},
        "development_mode": true,
        "extras": {"created_at": "2026-01-02T03:04:05.678Z", "source": "ios"}
    });
    assert_eq!(pipeline.post_json("/api/v2/events/track.json", &variations).await.unwrap().0, 200);

    // An old client: form-encoded with bracket notation, token as a form field.
    let form = format!("auth_token={TOKEN}&event_name=form_event&identity%5Bid%5D=u-7&identity%5Bemail%5D=f%40x.io&data%5Bcolor%5D=red");
    assert_eq!(pipeline.post("/api/v2/events/track", "application/x-www-form-urlencoded", form).await.unwrap().0, 200);

    // And a stream of events across many users, to spread over the partitions.
    for i in 0..30 {
        let body = json!({"auth_token": TOKEN, "identity": {"id": format!("user-{i}")}, "event_name": "bulk", "data": {"i": i}});
        assert_eq!(pipeline.post_json("/api/v2/events/track", &body).await.unwrap().0, 200, "bulk event {i}");
    }
    // A rejected request must not land anywhere.
    let invalid = json!({"auth_token": TOKEN, "identity": {"email": "no-id@x.io"}, "event_name": "never"});
    assert_eq!(pipeline.post_json("/api/v2/events/track", &invalid).await.unwrap().0, 400);

    let count = pipeline.wait_for("SELECT count() FROM vero.events FINAL", "33", DEADLINE).await;
    assert_eq!(count, "33", "every accepted event is visible once");
    let raw = pipeline.query("SELECT count(), uniqExact(event_id) FROM vero.events").await.unwrap();
    assert_eq!(raw.trim(), "33\t33", "no duplicate row was even written");
    assert_eq!(pipeline.query("SELECT count() FROM vero.events WHERE event_name = 'never'").await.unwrap().trim(), "0");

    // TSV shows NULL as \N.
    let select = "SELECT toString(event_id) AS event_id, project, event_name, user_id, email, identity, data, extras, \
                  source, user_agent, development_mode, received_at_ms, created_at_ms, kafka_partition, kafka_offset \
                  FROM vero.events FINAL WHERE event_name != 'bulk' ORDER BY event_name FORMAT TSVWithNames";
    let found = rows(&pipeline.query(select).await.unwrap());
    assert_eq!(found.len(), 3, "{found:?}");
    let by_name: BTreeMap<&str, &BTreeMap<String, String>> =
        found.iter().map(|r| (r["event_name"].as_str(), r)).collect();

    let signed_up = by_name["user_signed_up"];
    assert_eq!(signed_up["project"], "e2e");
    assert_eq!(signed_up["user_id"], "1");
    assert_eq!(signed_up["email"], "janedoe@getvero.com");
    assert_eq!(signed_up["identity"], "{}");
    let data: Value = serde_json::from_str(&signed_up["data"]).unwrap();
    assert_eq!(data, json!({"item": "Blue shoes", "price": 40.0}), "numbers stay numbers");
    assert_eq!(signed_up["development_mode"], "0");
    assert_eq!(signed_up["created_at_ms"], "\\N");
    assert_eq!(signed_up["user_agent"], "vero-e2e/1.0");
    assert!(
        signed_up["event_id"].len() == 36 && &signed_up["event_id"][14..15] == "7",
        "UUIDv7: {}",
        signed_up["event_id"]
    );
    let received: i64 = signed_up["received_at_ms"].parse().unwrap();
    assert!(received > 1_700_000_000_000, "received_at is ms since epoch: {received}");
    assert_eq!(
        signed_up["kafka_partition"].parse::<i32>().unwrap(),
        partition_for_key(b"1", pipeline.partitions),
        "lineage partition is the key's Java partition"
    );

    let viewed = by_name["viewed_product"];
    assert_eq!(viewed["user_id"], "42", "numeric id as its decimal string");
    assert_eq!(viewed["email"], "\\N", "null email stays null");
    let identity: Value = serde_json::from_str(&viewed["identity"]).unwrap();
    assert_eq!(identity, json!({"plan": "pro", "age": 31}));
    let data: Value = serde_json::from_str(&viewed["data"]).unwrap();
    assert_eq!(data, json!({"sku": "X-1", "qty": 2, "nested": {"ok": true}}));
    assert_eq!(viewed["development_mode"], "1");
    assert_eq!(viewed["created_at_ms"], "1767323045678");
    assert_eq!(viewed["source"], "ios");
    assert_eq!(viewed["kafka_partition"].parse::<i32>().unwrap(), partition_for_key(b"42", pipeline.partitions));

    let form_row = by_name["form_event"];
    assert_eq!((form_row["user_id"].as_str(), form_row["email"].as_str()), ("u-7", "f@x.io"));
    assert_eq!(serde_json::from_str::<Value>(&form_row["data"]).unwrap(), json!({"color": "red"}));

    // Analysts' JSON functions work on the stored text.
    let price = pipeline
        .query(
            "SELECT visitParamExtractFloat(data, 'price') FROM vero.events FINAL WHERE event_name = 'user_signed_up'",
        )
        .await
        .unwrap();
    assert_eq!(price.trim(), "40");

    pipeline.stop().await.unwrap();
}
