//! Helpers shared by the sink's integration tests: Apache Kafka (one broker shared by
//! the tests of a binary, [`vero_testkit::kafka::shared`]) and a real
//! ClickHouse server per test, the sink started in-process, producers, and polling
//! reads of ClickHouse and of the sink's metrics.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use event_sink::Settings;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vero_model::TrackEvent;
use vero_testkit::clickhouse::ClickHouseServer;
use vero_testkit::kafka::KafkaCluster;
use vero_testkit::unique_name;

pub const DEADLINE: Duration = Duration::from_secs(90);

pub struct Setup {
    pub kafka: &'static KafkaCluster,
    pub clickhouse: ClickHouseServer,
    pub topic: String,
    pub dlq: String,
    pub group: String,
}

pub async fn setup(partitions: i32) -> Setup {
    let kafka = tokio::task::spawn_blocking(vero_testkit::kafka::shared).await.unwrap().unwrap();
    let (topic, dlq, group) = (unique_name("events"), unique_name("dlq"), unique_name("sink"));
    kafka.create_topic(&topic, partitions).await.unwrap();
    kafka.create_topic(&dlq, 1).await.unwrap();
    let clickhouse = tokio::task::spawn_blocking(ClickHouseServer::start).await.unwrap().unwrap();
    Setup { kafka, clickhouse, topic, dlq, group }
}

pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/event-sink")
}

impl Setup {
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("VERO__KAFKA__BROKERS", self.kafka.bootstrap_servers().to_owned()),
            ("VERO__KAFKA__EVENTS_TOPIC", self.topic.clone()),
            ("VERO__KAFKA__DLQ_TOPIC", self.dlq.clone()),
            ("VERO__KAFKA__GROUP_ID", self.group.clone()),
            ("VERO__CLICKHOUSE__URL", self.clickhouse.http_url()),
            ("VERO__BATCH__MAX_ROWS", "40".to_owned()),
            ("VERO__BATCH__MAX_AGE_MS", "200".to_owned()),
            ("VERO__RETRY__MAX_BACKOFF_MS", "500".to_owned()),
            ("VERO__OPS__LISTEN", "127.0.0.1:0".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Start the sink in-process; returns its ops address and its shutdown token.
    pub async fn start_sink(&self) -> (std::net::SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        self.start_sink_in_group(&self.group).await
    }

    /// Start the sink in-process as a member of consumer group `group`.
    pub async fn start_sink_in_group(
        &self,
        group: &str,
    ) -> (std::net::SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        self.start_sink_with(&[("VERO__KAFKA__GROUP_ID", group)]).await
    }

    /// Start the sink in-process with `overrides` on top of [`Setup::env`].
    pub async fn start_sink_with(
        &self,
        overrides: &[(&str, &str)],
    ) -> (std::net::SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let mut env = self.env();
        env.extend(overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let settings = Settings::load_with_env(&config_dir(), None, env).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { event_sink::run(settings, listener, shutdown).await.unwrap() }
        });
        (addr, shutdown, handle)
    }

    /// The answer of `sql` (through the test kit's ClickHouse client), "" on failure.
    pub async fn query(&self, sql: &str) -> String {
        tokio::task::block_in_place(|| self.clickhouse.query(sql)).unwrap_or_default()
    }

    pub async fn wait_for(&self, sql: &str, expected: &str) {
        let deadline = Instant::now() + DEADLINE;
        let mut last = String::new();
        while Instant::now() < deadline {
            last = self.query(sql).await;
            if last.trim() == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("`{sql}` stayed at {last:?}, expected {expected:?}\n{}", self.clickhouse.logs_tail());
    }
}

pub fn event(n: usize) -> TrackEvent {
    TrackEvent {
        event_id: Uuid::now_v7(),
        received_at: 1_700_000_000_000 + n as i64,
        project: "demo".into(),
        event_name: "purchased".into(),
        user_id: format!("user-{}", n % 7),
        email: Some(format!("u{n}@example.com")),
        identity_attributes: r#"{"plan":"pro"}"#.into(),
        data: format!(r#"{{"item":"Blue shoes","price":{n}.5,"nested":{{"a":[1,2]}}}}"#),
        development_mode: n.is_multiple_of(2),
        created_at: Some(1_699_999_999_000 + n as i64),
        source: Some("web".into()),
        extras: r#"{"source":"web"}"#.into(),
        user_agent: Some("vero-node/1.0".into()),
    }
}

pub fn producer(setup: &Setup) -> FutureProducer {
    ClientConfig::new().set("bootstrap.servers", setup.kafka.bootstrap_servers()).create().unwrap()
}

pub async fn produce(producer: &FutureProducer, topic: &str, key: &str, payload: &[u8]) {
    producer
        .send(FutureRecord::to(topic).key(key).payload(payload), Timeout::After(Duration::from_secs(30)))
        .await
        .unwrap();
}

pub async fn produce_events(setup: &Setup, range: std::ops::Range<usize>) {
    let producer = producer(setup);
    for n in range {
        let e = event(n);
        produce(&producer, &setup.topic, &e.user_id, &vero_model::encode_event(&e)).await;
    }
}

/// `GET path` on the sink's ops listener: the body on 200, else an error with the
/// status line, headers and body.
pub async fn ops_get(ops: std::net::SocketAddr, path: &str) -> anyhow::Result<String> {
    let answer = vero_testkit::http::get(ops, path, Duration::from_secs(30)).await?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    anyhow::ensure!(head.contains(" 200 "), "{head}\n{body}");
    Ok(body.to_owned())
}

pub async fn metric(ops: std::net::SocketAddr, name: &str) -> f64 {
    vero_testkit::metrics::sum(&ops_get(ops, "/metrics").await.unwrap_or_default(), name)
}

pub async fn wait_metric(ops: std::net::SocketAddr, name: &str, at_least: f64) {
    let deadline = Instant::now() + DEADLINE;
    while metric(ops, name).await < at_least {
        assert!(Instant::now() < deadline, "{name} never reached {at_least}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
