//! Test harness: Apache Kafka (one broker shared by the tests of a binary), a real
//! ClickHouse server, a producer that
//! places records like the gateway (murmur2_random), and the real service started
//! in-process on port 0.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use profile_consumer::Settings;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vero_model::profile::{decode_profile, Profile};
use vero_model::{TrackEvent, UserAction, UserCommand};
use vero_testkit::clickhouse::ClickHouseServer;
use vero_testkit::kafka::KafkaCluster;

pub const PARTITIONS: i32 = 4;
pub const DEADLINE: Duration = Duration::from_secs(90);

pub struct Pipeline {
    pub kafka: &'static KafkaCluster,
    pub clickhouse: ClickHouseServer,
    pub producer: FutureProducer,
    pub events_topic: String,
}

pub struct Running {
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub ops: std::net::SocketAddr,
}

impl Pipeline {
    pub fn start() -> Self {
        vero_service::telemetry::init("profile-consumer-test");
        let kafka = vero_testkit::kafka::shared().unwrap();
        let events_topic = vero_testkit::unique_name("events");
        kafka.create_topic_blocking(&events_topic, PARTITIONS).unwrap();
        let clickhouse = ClickHouseServer::start().unwrap();
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", kafka.bootstrap_servers())
            .set("partitioner", "murmur2_random")
            .set("enable.idempotence", "true")
            .create()
            .unwrap();
        Self { kafka, clickhouse, producer, events_topic }
    }

    /// Settings for one consumer group with its own output topics.
    pub fn settings(&self, group: &str, outputs: &str) -> Settings {
        let mut s = Settings::for_tests(self.kafka.bootstrap_servers(), &self.clickhouse.http_url(), group);
        s.kafka.events_topic = self.events_topic.clone();
        s.kafka.profiles_topic = format!("{outputs}.profiles");
        s.kafka.handoff_topic = format!("{outputs}.handoff");
        s.kafka.dlq_topic = format!("{outputs}.dlq");
        // Created here (an existing one is kept), so that consumers of one group
        // started together do not race to create them.
        s.kafka.create_topics = false;
        for topic in [&s.kafka.profiles_topic, &s.kafka.handoff_topic, &s.kafka.dlq_topic] {
            self.kafka.create_topic_blocking(topic, PARTITIONS).unwrap();
        }
        s
    }

    pub async fn start_consumer(&self, settings: Settings) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ops = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(profile_consumer::run(settings, listener, shutdown.clone()));
        Running { shutdown, task, ops }
    }

    pub async fn send(&self, key: &str, payload: Vec<u8>) {
        self.producer
            .send(FutureRecord::to(&self.events_topic).key(key).payload(&payload), Timeout::Never)
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    pub async fn send_event(&self, event: &TrackEvent) {
        self.send(&event.user_id, vero_model::encode(event)).await;
    }

    pub async fn send_command(&self, command: &UserCommand) {
        self.send(&command.user_id, vero_model::encode(command)).await;
    }

    /// Run `sql` until `check` accepts its answer or the deadline passes.
    pub async fn wait_for_query(&self, sql: &str, check: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let answer = self.clickhouse.query(sql).unwrap_or_else(|e| format!("<error {e}>"));
            if check(&answer) {
                return answer;
            }
            assert!(started.elapsed() < DEADLINE, "timed out waiting on {sql}\nlast answer: {answer}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Write `user`'s profile (project `shop`) back to the profiles `topic`, changed by
    /// `change`, to the user's partition: what another member owning it would write.
    pub async fn write_profile_as_another_member(&self, topic: &str, user: &str, change: impl FnOnce(&mut Profile)) {
        let mut theirs = self.read_profiles(topic).remove(&Profile::key_for("shop", user)).expect("the user's profile");
        change(&mut theirs);
        let partition = vero_model::partition::partition_for_key(user.as_bytes(), PARTITIONS);
        let (key, payload) = (theirs.key(), vero_model::codec::encode(&theirs));
        let record = FutureRecord::to(topic).partition(partition).key(&key).payload(&payload);
        self.producer.send(record, Timeout::Never).await.map_err(|(e, _)| e).unwrap();
    }

    /// The latest value of every key of a profiles topic (tombstones remove).
    pub fn read_profiles(&self, topic: &str) -> BTreeMap<Vec<u8>, Profile> {
        let records = vero_testkit::kafka_probe::read_topic(
            self.kafka.bootstrap_servers(),
            topic,
            usize::MAX,
            Duration::from_secs(5),
        )
        .unwrap();
        let mut latest = BTreeMap::new();
        for record in records {
            let key = record.key.clone().unwrap_or_default();
            match &record.payload {
                Some(bytes) => {
                    latest.insert(key, decode_profile(bytes).unwrap());
                }
                None => {
                    latest.remove(&key);
                }
            }
        }
        latest
    }
}

impl Running {
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(DEADLINE, self.task).await.expect("service stops").unwrap().unwrap();
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let body = vero_testkit::http::get(self.ops, "/metrics", DEADLINE).await.unwrap();
        vero_testkit::metrics::sum(&body, name)
    }

    /// The raw HTTP answer of `/readyz`.
    pub async fn readyz(&self) -> String {
        vero_testkit::http::get(self.ops, "/readyz", DEADLINE).await.unwrap()
    }

    /// Wait until `name` is exactly `value` (a gauge going back to 0, say).
    pub async fn wait_for_metric_eq(&self, name: &str, value: f64) {
        let started = Instant::now();
        loop {
            let now = self.metric(name).await;
            if now == value {
                return;
            }
            assert!(started.elapsed() < DEADLINE, "{name} stayed at {now}, wanted {value}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn wait_for_metric(&self, name: &str, at_least: f64) {
        let started = Instant::now();
        loop {
            let value = self.metric(name).await;
            if value >= at_least {
                return;
            }
            assert!(started.elapsed() < DEADLINE, "{name} stayed at {value}, wanted {at_least}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

pub fn event(user: &str, name: &str, created_at: Option<i64>, received_at: i64, identity: &str) -> TrackEvent {
    TrackEvent {
        event_id: Uuid::now_v7(),
        received_at,
        project: "shop".into(),
        event_name: name.into(),
        user_id: user.into(),
        email: None,
        identity_attributes: identity.into(),
        data: "{}".into(),
        development_mode: false,
        created_at,
        source: None,
        extras: "{}".into(),
        user_agent: None,
    }
}

pub fn command(user: &str, action: UserAction, received_at: i64) -> UserCommand {
    UserCommand {
        command_id: Uuid::now_v7(),
        received_at,
        project: "shop".into(),
        action,
        user_id: user.into(),
        email: None,
        attributes: "{}".into(),
        tags_add: vec![],
        tags_remove: vec![],
        new_id: None,
        user_agent: None,
    }
}

/// Two user ids on different partitions.
pub fn ids_on_different_partitions(a: &str, b_prefix: &str) -> (String, String) {
    let pa = vero_model::partition::partition_for_key(a.as_bytes(), PARTITIONS);
    let b = (0..)
        .map(|i| format!("{b_prefix}{i}"))
        .find(|b| vero_model::partition::partition_for_key(b.as_bytes(), PARTITIONS) != pa)
        .unwrap();
    (a.to_owned(), b)
}
