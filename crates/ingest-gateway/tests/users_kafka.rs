//! The users endpoints against librdkafka's mock cluster: commands land on the events
//! topic keyed by the user id, on the Java client's partition, interleaved in order
//! with that user's events; an email-only user is keyed by the email.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use vero_model::partition::partition_for_key;
use vero_model::{Record, UserAction};
use vero_testkit::kafka_probe::{read_topic, LandedRecord};
use vero_testkit::mock_kafka::MockKafka;
use vero_testkit::unique_name;

const PARTITIONS: i32 = 6;

async fn read(kafka: &MockKafka, topic: &str, expected: usize) -> Vec<LandedRecord> {
    let (bootstrap, topic) = (kafka.bootstrap_servers().to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_topic(&bootstrap, &topic, expected, Duration::from_secs(60)))
        .await
        .unwrap()
        .unwrap()
}

/// What a landed record is, in a form easy to compare: `event:<name>` or the action.
fn describe(record: &LandedRecord) -> String {
    match vero_model::decode_record(record.payload.as_deref().unwrap()).unwrap() {
        Record::Event(event) => format!("event:{}", event.event_name),
        Record::Command(command) => format!("{:?}", command.action),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_events_and_commands_land_on_one_partition_in_order() {
    let kafka = MockKafka::start(1).unwrap();
    let topic = unique_name("gw_users");
    kafka.create_topic(&topic, PARTITIONS).unwrap();
    let gw = start_kafka(settings(kafka.bootstrap_servers(), &topic)).await;
    let user = "order-user-17";
    let email_user = "only-email@example.com";
    let event = |name: &str| ("POST", "/api/v2/events/track", track_body(TOKEN, user, name));
    let command = |method: &'static str, path: &'static str, body: Value| {
        let mut body = body;
        body["auth_token"] = json!(TOKEN);
        (method, path, body)
    };
    // A user's life: events and commands interleaved, each sent after the previous one
    // was acknowledged, so this is the order the gateway accepted them in.
    let steps = vec![
        event("signed_up"),
        command("POST", "/api/v2/users/track", json!({"id": user, "data": {"plan": "pro"}})),
        command("PUT", "/api/v2/users/edit", json!({"id": user, "changes": {"plan": "team"}})),
        event("viewed_product"),
        command("PUT", "/api/v2/users/tags/edit", json!({"id": user, "add": ["vip"], "remove": ["trial"]})),
        command("POST", "/api/v2/users/unsubscribe", json!({"id": user})),
        command("POST", "/api/v2/users/resubscribe", json!({"id": user})),
        event("purchased"),
        command("PUT", "/api/v2/users/reidentify", json!({"id": user, "new_id": "order-user-18"})),
        command("DELETE", "/api/v2/users/delete", json!({"id": user})),
        // Other users in between must not disturb the order above.
        command("POST", "/api/v2/users/track", json!({"email": email_user, "data": {"a": 1}})),
        command("POST", "/api/v2/users/delete", json!({"id": 4242})),
    ];
    for (method, path, body) in &steps {
        let reply = send(method, &gw.url(path), &[("content-type", "application/json")], body.to_string()).await;
        assert_eq!(reply.status, 200, "{method} {path}: {}", reply.body);
    }

    let records = read(&kafka, &topic, steps.len()).await;
    assert_eq!(records.len(), steps.len(), "every request answered 200 is in the topic");
    for record in &records {
        assert_eq!(
            record.partition,
            partition_for_key(record.key.as_deref().unwrap(), PARTITIONS),
            "key {} is on the Java client's partition",
            record.key_str()
        );
    }
    let mut mine: Vec<&LandedRecord> = records.iter().filter(|r| r.key_str() == user).collect();
    mine.sort_by_key(|r| r.offset);
    assert!(mine.iter().all(|r| r.partition == mine[0].partition), "one partition for the user");
    let order: Vec<String> = mine.iter().map(|r| describe(r)).collect();
    assert_eq!(
        order,
        [
            "event:signed_up",
            "Track",
            "Edit",
            "event:viewed_product",
            "Tags",
            "Unsubscribe",
            "Resubscribe",
            "event:purchased",
            "Reidentify",
            "Delete"
        ]
    );
    let reidentify =
        mine.iter().find_map(|r| match vero_model::decode_record(r.payload.as_deref().unwrap()).unwrap() {
            Record::Command(c) if c.action == UserAction::Reidentify => Some(c),
            _ => None,
        });
    let reidentify = reidentify.expect("reidentify landed");
    assert_eq!((reidentify.user_id.as_str(), reidentify.new_id.as_deref()), (user, Some("order-user-18")));
    assert_eq!(reidentify.project, "shop");

    let by_email: Vec<_> = records.iter().filter(|r| r.key_str() == email_user).collect();
    assert_eq!(by_email.len(), 1, "the email-only user is keyed by the email");
    let numeric: Vec<_> = records.iter().filter(|r| r.key_str() == "4242").collect();
    assert_eq!(numeric.len(), 1, "a numeric id is keyed by its decimal string");
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_commands_during_a_broker_outage_are_503_never_200() {
    let kafka = MockKafka::start(1).unwrap();
    let topic = unique_name("gw_users_down");
    kafka.create_topic(&topic, PARTITIONS).unwrap();
    let mut settings = settings(kafka.bootstrap_servers(), &topic);
    settings.kafka.delivery_timeout_ms = 1500;
    let gw = start_kafka(settings).await;
    let url = gw.url("/api/v2/users/edit");
    let body = |n: i32| json!({"auth_token": TOKEN, "id": "u", "changes": {"n": n}});
    assert_eq!(send("PUT", &url, &[], body(0).to_string()).await.status, 200);

    kafka.all_brokers_down().unwrap();
    let mut acknowledged = vec![0];
    let mut unavailable = 0;
    for n in 1..=3 {
        let reply = send("PUT", &url, &[], body(n).to_string()).await;
        match reply.status {
            503 => {
                assert_eq!(reply.header("retry-after"), Some("5"));
                unavailable += 1;
            }
            // Acknowledged before the outage took hold: fine, it must be in the topic.
            200 => acknowledged.push(n),
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    assert!(unavailable >= 2, "commands during the outage are answered 503, got {unavailable}");
    kafka.all_brokers_up().unwrap();
    let recovered = eventually(Duration::from_secs(60), || {
        let url = url.clone();
        async move { (send("PUT", &url, &[], body(99).to_string()).await.status == 200).then_some(()) }
    })
    .await;
    assert!(recovered.is_some(), "200 again once the broker is back");
    acknowledged.push(99);

    // One key, one partition, produce order: read until the last acknowledged one shows
    // (503'd commands may or may not have landed), then check every 200 is there.
    let mut landed = Vec::new();
    for expected in acknowledged.len()..=acknowledged.len() + 3 {
        landed = read(&kafka, &topic, expected)
            .await
            .iter()
            .map(|r| decode_command(r.payload.as_deref().unwrap()).attributes)
            .collect::<Vec<String>>();
        if landed.iter().any(|a| a == r#"{"n":99}"#) {
            break;
        }
    }
    for n in acknowledged {
        assert!(landed.contains(&format!(r#"{{"n":{n}}}"#)), "command {n} was answered 200 but is not in Kafka");
    }
    gw.stop().await.unwrap();
}
