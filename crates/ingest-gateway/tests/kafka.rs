//! The gateway against librdkafka's mock cluster: what lands in Kafka (key, Java
//! partition, Avro record), faults (broker down → bounded 503, back → 200 without a
//! restart, full queue, too large), readiness and graceful shutdown.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use vero_model::partition::partition_for_key;
use vero_testkit::kafka_probe::read_topic;
use vero_testkit::mock_kafka::MockKafka;
use vero_testkit::unique_name;

const TRACK: &str = "/api/v2/events/track";
const PARTITIONS: i32 = 6;

fn kafka_with_topic() -> (MockKafka, String) {
    let kafka = MockKafka::start(1).unwrap();
    let topic = unique_name("gw_events");
    kafka.create_topic(&topic, PARTITIONS).unwrap();
    (kafka, topic)
}

async fn read(kafka: &MockKafka, topic: &str, expected: usize) -> Vec<vero_testkit::kafka_probe::LandedRecord> {
    let (bootstrap, topic) = (kafka.bootstrap_servers().to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_topic(&bootstrap, &topic, expected, Duration::from_secs(60)))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_events_land_keyed_on_the_java_partition_as_avro() {
    let (kafka, topic) = kafka_with_topic();
    let gw = start_kafka(settings(kafka.bootstrap_servers(), &topic)).await;
    let users = ["1", "42", "user-7", "janedoe@getvero.com", "ü-unicode", "9"];
    for (i, user) in users.iter().enumerate() {
        let mut body = track_body(TOKEN, user, &format!("event_{i}"));
        body["extras"] = json!({"source": "test", "created_at": 1_764_000_000 + i as i64});
        let reply = send(
            "POST",
            &gw.url(TRACK),
            &[("content-type", "application/json"), ("user-agent", "t/1")],
            body.to_string(),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    // Numeric id: key is its decimal string.
    let numeric = json!({"auth_token": TOKEN, "identity": {"id": 12345}, "event_name": "numeric"});
    assert_eq!(post_json(&gw.url(TRACK), &numeric).await.status, 200);

    let records = read(&kafka, &topic, users.len() + 1).await;
    assert_eq!(records.len(), users.len() + 1);
    for record in &records {
        let event = vero_model::decode_event(record.payload.as_deref().unwrap()).unwrap();
        assert_eq!(record.key_str(), event.user_id, "key = identity.id");
        assert_eq!(
            record.partition,
            partition_for_key(record.key.as_deref().unwrap(), PARTITIONS),
            "partition for key {} is the Java client's choice",
            record.key_str()
        );
        assert_eq!(event.project, "shop");
        if event.event_name == "numeric" {
            assert_eq!(event.user_id, "12345");
            continue;
        }
        let i: i64 = event.event_name.trim_start_matches("event_").parse().unwrap();
        assert_eq!(event.user_id, users[i as usize]);
        assert_eq!(event.email, Some(format!("{}@example.com", users[i as usize])));
        assert_eq!(event.data, r#"{"item":"Blue shoes","price":40.0}"#);
        assert_eq!(event.created_at, Some((1_764_000_000 + i) * 1000));
        assert_eq!((event.source.as_deref(), event.user_agent.as_deref()), (Some("test"), Some("t/1")));
    }
    let partitions: HashSet<_> = records.iter().map(|r| r.partition).collect();
    assert!(partitions.len() > 1, "keys spread over partitions: {partitions:?}");
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_is_a_bounded_503_and_recovery_needs_no_restart() {
    let (kafka, topic) = kafka_with_topic();
    let mut settings = settings(kafka.bootstrap_servers(), &topic);
    settings.kafka.delivery_timeout_ms = 1500;
    settings.kafka.readiness_cache_ms = 100;
    let gw = start_kafka(settings).await;
    let url = gw.url(TRACK);
    let mut acknowledged = Vec::new();
    assert_eq!(post_json(&url, &track_body(TOKEN, "u", "before")).await.status, 200);
    acknowledged.push("before".to_owned());
    assert_eq!(get(&gw.url("/readyz")).await.status, 200);

    kafka.all_brokers_down().unwrap();
    let mut unavailable = 0;
    for i in 0..3 {
        let name = format!("during_{i}");
        let started = Instant::now();
        let reply = post_json(&url, &track_body(TOKEN, "u", &name)).await;
        let took = started.elapsed();
        // Bounded: the delivery timeout plus generous slack for a loaded machine.
        assert!(took < Duration::from_millis(1500) + Duration::from_secs(10), "503 took {took:?}");
        match reply.status {
            503 => {
                assert_eq!(reply.header("retry-after"), Some("5"));
                unavailable += 1;
            }
            // A record the broker acknowledged before the outage took hold is fine;
            // what matters is that every 200 is in the topic (checked below).
            200 => acknowledged.push(name),
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    assert!(unavailable >= 2, "events during the outage are answered 503, got {unavailable}");
    let not_ready = eventually(Duration::from_secs(30), || async {
        let reply = get(&gw.url("/readyz")).await;
        (reply.status == 503).then_some(reply.body)
    })
    .await;
    assert!(not_ready.is_some_and(|body| body.contains("not ready")), "readyz reports the outage");

    kafka.all_brokers_up().unwrap();
    let recovered = eventually(Duration::from_secs(60), || {
        let url = url.clone();
        async move {
            let reply = post_json(&url, &track_body(TOKEN, "u", "after")).await;
            (reply.status == 200).then_some(())
        }
    })
    .await;
    assert!(recovered.is_some(), "200 again once the broker is back, same gateway process");
    acknowledged.push("after".to_owned());
    assert!(eventually(Duration::from_secs(30), || async {
        (get(&gw.url("/readyz")).await.status == 200).then_some(())
    })
    .await
    .is_some());

    // All events share key "u", so one partition in produce order: once "after" (the
    // last one) is read, everything before it has been read too. Events answered 503
    // may or may not have landed, so read one more record at a time until it shows up.
    let mut landed = HashSet::new();
    for expected in acknowledged.len()..=acknowledged.len() + 3 {
        landed = read(&kafka, &topic, expected)
            .await
            .iter()
            .map(|r| vero_model::decode_event(r.payload.as_deref().unwrap()).unwrap().event_name)
            .collect::<HashSet<String>>();
        if landed.contains("after") {
            break;
        }
    }
    for name in &acknowledged {
        assert!(landed.contains(name), "event {name} was answered 200 but is not in Kafka");
    }
    gw.stop().await.unwrap();
}

/// The gateway's `vero_gateway_producer_queue_depth` gauge.
async fn queue_depth(gw: &TestGateway) -> i64 {
    get(&gw.url("/metrics"))
        .await
        .body
        .lines()
        .find_map(|l| l.strip_prefix("vero_gateway_producer_queue_depth "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_producer_queue_is_an_immediate_503() {
    let (kafka, topic) = kafka_with_topic();
    let mut settings = settings(kafka.bootstrap_servers(), &topic);
    settings.kafka.queue_max_messages = 1;
    settings.kafka.delivery_timeout_ms = 20_000;
    let gw = start_kafka(settings).await;
    assert_eq!(post_json(&gw.url(TRACK), &track_body(TOKEN, "u", "warm")).await.status, 200);
    kafka.all_brokers_down().unwrap();

    // The first event occupies the only queue slot while the broker is away.
    let url = gw.url(TRACK);
    let first = tokio::spawn(async move { post_json(&url, &track_body(TOKEN, "u", "first")).await });
    // librdkafka's out-queue length counts in-flight protocol requests too, so the
    // depth may read above 1 for a moment: wait for "at least the one event".
    let queued = eventually(Duration::from_secs(30), || async { (queue_depth(&gw).await >= 1).then_some(()) }).await;
    let depth = queue_depth(&gw).await;
    assert!(queued.is_some(), "first event is queued: depth {depth}, first answered: {}", first.is_finished());
    let started = Instant::now();
    let second = post_json(&gw.url(TRACK), &track_body(TOKEN, "u", "second")).await;
    assert!(second.expect_error(503).contains("the producer queue is full"), "{}", second.body);
    assert!(started.elapsed() < Duration::from_secs(10), "queue full does not wait for the delivery timeout");

    kafka.all_brokers_up().unwrap();
    assert_eq!(first.await.unwrap().status, 200, "the queued event is delivered once the broker is back");
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_message_max_bytes_is_413_not_a_retry() {
    let (kafka, topic) = kafka_with_topic();
    let mut settings = settings(kafka.bootstrap_servers(), &topic);
    settings.kafka.message_max_bytes = 2000;
    let gw = start_kafka(settings).await;
    let mut body = track_body(TOKEN, "u", "big");
    body["data"]["padding"] = json!("p".repeat(5000));
    let reply = post_json(&gw.url(TRACK), &body).await;
    assert_eq!(reply.expect_error(413), "The record is larger than the broker accepts.");
    assert_eq!(post_json(&gw.url(TRACK), &track_body(TOKEN, "u", "small")).await.status, 200);
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_and_flushes() {
    let (kafka, topic) = kafka_with_topic();
    let gw = start_kafka(settings(kafka.bootstrap_servers(), &topic)).await;
    assert_eq!(post_json(&gw.url(TRACK), &track_body(TOKEN, "u", "warm")).await.status, 200);
    // Slow acknowledgements: the next request is still in flight when shutdown starts.
    kafka.round_trip_time(1, Duration::from_millis(1500)).unwrap();
    let url = gw.url(TRACK);
    let in_flight = tokio::spawn(async move { post_json(&url, &track_body(TOKEN, "u", "in_flight")).await });
    let queued = eventually(Duration::from_secs(30), || async { (queue_depth(&gw).await >= 1).then_some(()) }).await;
    assert!(queued.is_some(), "the request reached the producer");
    let addr = gw.addr;
    gw.stop().await.expect("serve returns Ok after a graceful shutdown");
    assert_eq!(in_flight.await.unwrap().status, 200, "in-flight request answered before exit");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer accepting");
    kafka.round_trip_time(1, Duration::ZERO).unwrap();
    let names: Vec<String> = read(&kafka, &topic, 2)
        .await
        .iter()
        .map(|r| vero_model::decode_event(r.payload.as_deref().unwrap()).unwrap().event_name)
        .collect();
    assert!(names.contains(&"in_flight".to_owned()), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_broker_rejections_are_413_or_500_and_the_producer_keeps_working() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let (kafka, topic) = kafka_with_topic();
    let gw = start_kafka(settings(kafka.bootstrap_servers(), &topic)).await;
    assert_eq!(post_json(&gw.url(TRACK), &track_body(TOKEN, "u", "warm")).await.status, 200);
    kafka.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE]).unwrap();
    let rejected = post_json(&gw.url(TRACK), &track_body(TOKEN, "u", "rejected")).await;
    assert_eq!(rejected.expect_error(413), "The record is larger than the broker accepts.");
    let after = post_json(&gw.url(TRACK), &track_body(TOKEN, "u", "after")).await;
    assert_eq!(after.status, 200, "a permanent per-record error must not break the producer: {}", after.body);

    kafka
        .request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED])
        .unwrap();
    let denied = post_json(&gw.url(TRACK), &track_body(TOKEN, "u", "denied")).await;
    assert!(denied.expect_error(500).contains("not authorized"), "{}", denied.body);
    // librdkafka keeps failing the topic until its metadata is refreshed (normally
    // every topic.metadata.refresh.interval.ms); /readyz's metadata fetch refreshes it.
    // The producer itself is not in a fatal state.
    assert_eq!(get(&gw.url("/readyz")).await.status, 200);
    let again = post_json(&gw.url(TRACK), &track_body(TOKEN, "u", "again")).await;
    assert_eq!(again.status, 200, "{}", again.body);
    gw.stop().await.unwrap();
}
