//! The build's librdkafka speaks TLS, SCRAM-SHA-512 and PLAIN (OpenSSL compiled in),
//! and the test kit's secured Apache Kafka node takes them: one record produced and
//! read back over `SASL_SSL` with SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN, and over
//! `SSL` with a client
//! certificate. A wrong password and a client certificate from another CA connect to
//! nothing.

use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use vero_testkit::kafka::Listener;
use vero_testkit::secured_kafka::{Properties, SecuredKafka, SCRAM_PASSWORD};
use vero_testkit::unique_name;

fn config(servers: &str, properties: &Properties) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", servers).set_log_level(RDKafkaLogLevel::Emerg);
    for (name, value) in properties {
        config.set(name, value);
    }
    config
}

/// Produce one record and read it back; `Err` names what failed.
async fn round_trip(servers: &str, properties: &Properties, topic: &str, timeout: Duration) -> Result<(), String> {
    let producer: FutureProducer =
        config(servers, properties).set("message.timeout.ms", timeout.as_millis().to_string()).create().unwrap();
    let payload = unique_name("payload");
    producer
        .send(FutureRecord::to(topic).key("k").payload(&payload), timeout)
        .await
        .map_err(|(e, _)| format!("produce: {e}"))?;
    let consumer: BaseConsumer = config(servers, properties)
        .set("group.id", unique_name("tls"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = std::time::Instant::now() + timeout;
    tokio::task::block_in_place(|| {
        while std::time::Instant::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
                if message.payload() == Some(payload.as_bytes()) {
                    return Ok(());
                }
            }
        }
        Err("not read back".to_owned())
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn scram_plain_and_client_certificates_connect_and_bad_credentials_do_not() {
    let secured = tokio::task::block_in_place(SecuredKafka::start).expect("secured Kafka starts");
    let topic = unique_name("tls_kit");
    secured.kafka.create_topic(&topic, 1).await.unwrap();
    let (sasl, ssl) = (secured.servers(Listener::SaslSsl), secured.servers(Listener::Ssl));
    let long = Duration::from_secs(60);

    let scram = secured.scram(SCRAM_PASSWORD, "ca.crt");
    round_trip(&sasl, &scram, &topic, long).await.expect("SCRAM-SHA-512");
    let sha256: Properties = scram
        .into_iter()
        .map(|(k, v)| if k == "sasl.mechanism" { (k, "SCRAM-SHA-256".to_owned()) } else { (k, v) })
        .collect();
    round_trip(&sasl, &sha256, &topic, long).await.expect("SCRAM-SHA-256");
    round_trip(&sasl, &secured.plain(), &topic, long).await.expect("PLAIN");
    round_trip(&ssl, &secured.mtls("client"), &topic, long).await.expect("client certificate");

    let short = Duration::from_secs(8);
    let wrong = round_trip(&sasl, &secured.scram("wrong", "ca.crt"), &topic, short).await;
    assert!(wrong.is_err(), "a wrong password must not connect");
    let untrusted = round_trip(&sasl, &secured.scram(SCRAM_PASSWORD, "other-ca.crt"), &topic, short).await;
    assert!(untrusted.is_err(), "a broker certificate from another CA must not be trusted");
    let foreign = round_trip(&ssl, &secured.mtls("other-client"), &topic, short).await;
    assert!(foreign.is_err(), "a client certificate from another CA must be refused");
}
