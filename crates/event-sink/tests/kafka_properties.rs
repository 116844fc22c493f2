//! `kafka.properties` reaches every Kafka client of the sink, against librdkafka's
//! mock cluster and a real ClickHouse server: with plain extra properties the sink
//! consumes as usual; a value librdkafka refuses for a consumer (`fetch.max.bytes`
//! below `message.max.bytes`) stops the start at the group consumer, one it refuses
//! for an idempotent producer (`max.in.flight.requests.per.connection` above 5) at the
//! DLQ producer, each with librdkafka's message naming the property; `replay-dlq`'s
//! consumer and producer the same way.

mod common;

use common::*;
use tokio_util::sync::CancellationToken;

/// librdkafka's complaints: the consumer-only and the idempotent-producer-only one.
const CONSUMER_ONLY: (&str, &str, &str) =
    ("VERO__KAFKA__PROPERTIES__FETCH_MAX_BYTES", "1000", "`fetch.max.bytes` must be >= `message.max.bytes`");
const PRODUCER_ONLY: (&str, &str, &str) =
    ("VERO__KAFKA__PROPERTIES__MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION", "10", "`max.in.flight` must be set <= 5");

fn settings_with(setup: &Setup, extra: &[(&str, &str)]) -> event_sink::Settings {
    let mut env = setup.env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    event_sink::Settings::load_with_env(&config_dir(), None, env).unwrap()
}

async fn start_error(settings: event_sink::Settings) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let run = event_sink::run(settings, listener, CancellationToken::new());
    let result = tokio::time::timeout(DEADLINE, run).await.expect("the start fails, it does not hang");
    format!("{:#}", result.expect_err("the start must fail"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_of_the_sink_applies_kafka_properties() {
    let setup = setup(1).await;

    for (var, value, expected) in [CONSUMER_ONLY, PRODUCER_ONLY] {
        let err = start_error(settings_with(&setup, &[(var, value)])).await;
        assert!(err.contains(expected), "{var}={value}: {err}");
        let settings = settings_with(&setup, &[(var, value)]);
        let err = format!("{:#}", event_sink::replay_dlq(&settings.kafka, DEADLINE).await.unwrap_err());
        assert!(err.contains(expected), "replay-dlq, {var}={value}: {err}");
    }

    // Valid extra properties (and a secret one) leave the pipeline working.
    let (ops, shutdown, handle) = setup
        .start_sink_with(&[
            ("VERO__KAFKA__PROPERTIES__CLIENT_ID", "vero-sink-under-test"),
            ("VERO__KAFKA__PROPERTIES__SECURITY_PROTOCOL", "plaintext"),
            ("VERO__KAFKA__PROPERTIES__SASL_PASSWORD", "unused-but-secret"),
        ])
        .await;
    produce_events(&setup, 0..5).await;
    setup.wait_for("SELECT count() FROM vero.events FINAL", "5").await;
    wait_metric(ops, "vero_sink_rows_inserted_total", 5.0).await;
    shutdown.cancel();
    handle.await.unwrap();
}
