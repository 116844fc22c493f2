//! A whole pipeline in one test process, on real components: Apache Kafka (one broker
//! shared by the tests of a binary, `vero_testkit::kafka::shared`), a real ClickHouse
//! server process, the gateway serving HTTP on port 0 and
//! producing to Kafka, and the consumers consuming from it. Every name (topics, groups)
//! is unique per pipeline and every ClickHouse server is the test's own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vero_testkit::clickhouse::ClickHouseServer;
use vero_testkit::kafka::KafkaCluster;
use vero_testkit::unique_name;

pub mod cluster;
pub mod secured;

/// The token every e2e pipeline's gateway accepts, for project `e2e`.
pub const TOKEN: &str = "e2e-token";

pub fn config_dir(service: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config").join(service)
}

fn vars(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

/// A running service task and the token that stops it.
pub struct Running {
    pub shutdown: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.task).await??
    }
}

/// Start the gateway on `127.0.0.1:0` with config/gateway, `VERO_ENV=local` and
/// `vars`, accepting [`TOKEN`] for project `e2e`; returns its address.
pub async fn start_gateway(vars: Vec<(String, String)>) -> anyhow::Result<(SocketAddr, Running)> {
    let mut settings = ingest_gateway::Settings::load_with_env(&config_dir("gateway"), Some("local"), vars)?;
    settings.projects = vec![ingest_gateway::config::Project { name: "e2e".into(), tokens: vec![TOKEN.into()] }];
    settings.validate()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(ingest_gateway::run(settings, listener, shutdown.clone()));
    Ok((address, Running { shutdown, task }))
}

/// Start the event sink with its ops endpoints on `127.0.0.1:0`; returns their address.
pub async fn start_sink(settings: event_sink::Settings) -> anyhow::Result<(SocketAddr, Running)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let ops = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(event_sink::run(settings, listener, shutdown.clone()));
    Ok((ops, Running { shutdown, task }))
}

/// Start the profile consumer with its ops endpoints on `127.0.0.1:0`; returns their
/// address.
pub async fn start_profiles(settings: profile_consumer::Settings) -> anyhow::Result<(SocketAddr, Running)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let ops = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(profile_consumer::run(settings, listener, shutdown.clone()));
    Ok((ops, Running { shutdown, task }))
}

/// A pipeline on one ClickHouse server ([`Pipeline::start`]) or, with `C` a
/// `ClickHouseCluster`, on a cluster ([`cluster::start`]).
pub struct Pipeline<C = ClickHouseServer> {
    pub kafka: &'static KafkaCluster,
    pub clickhouse: C,
    pub topic: String,
    pub dlq: String,
    pub partitions: i32,
    pub gateway_addr: SocketAddr,
    pub gateway: Running,
    pub sink: Running,
    /// The event sink's `/metrics` listener.
    pub sink_ops: SocketAddr,
    pub profiles: Running,
    /// The profile consumer's `/metrics` listener.
    pub profiles_ops: SocketAddr,
    http: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Pipeline {
    /// Start Kafka, ClickHouse, the gateway, the event sink and the profile consumer.
    pub async fn start(partitions: i32) -> anyhow::Result<Self> {
        Self::start_with(partitions, &[]).await
    }

    /// [`Pipeline::start`] with `sink_overrides` (`VERO__...` variables) for the event
    /// sink, e.g. a short `VERO__DEDUP__WINDOW_MS`; that one is the profile consumer's
    /// setting too (same key in both), and applies to it as well.
    pub async fn start_with(partitions: i32, sink_overrides: &[(&str, &str)]) -> anyhow::Result<Self> {
        let clickhouse = tokio::task::spawn_blocking(ClickHouseServer::start).await??;
        let at = cluster::Consumers::single(clickhouse.http_url());
        Pipeline::start_on(clickhouse, &at, partitions, sink_overrides).await
    }
}

impl<C> Pipeline<C> {
    /// Start Kafka, the gateway and both consumers writing where `at` says (`clickhouse`
    /// is kept for the test's queries and faults).
    pub async fn start_on(
        clickhouse: C,
        at: &cluster::Consumers,
        partitions: i32,
        sink_overrides: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let kafka = tokio::task::spawn_blocking(vero_testkit::kafka::shared).await??;
        let (topic, dlq) = (unique_name("e2e_events"), unique_name("e2e_dlq"));
        kafka.create_topic(&topic, partitions).await?;
        kafka.create_topic(&dlq, 1).await?;

        let (gateway_addr, gateway) = start_gateway(vars(&[
            ("VERO__KAFKA__BROKERS", kafka.bootstrap_servers().to_owned()),
            ("VERO__KAFKA__EVENTS_TOPIC", topic.clone()),
            ("VERO__HTTP__LISTEN", "127.0.0.1:0".to_owned()),
        ]))
        .await?;

        let mut sink_vars = vars(&[
            ("VERO__KAFKA__BROKERS", kafka.bootstrap_servers().to_owned()),
            ("VERO__KAFKA__EVENTS_TOPIC", topic.clone()),
            ("VERO__KAFKA__DLQ_TOPIC", dlq.clone()),
            ("VERO__KAFKA__GROUP_ID", unique_name("e2e_sink")),
            ("VERO__CLICKHOUSE__URL", at.url.clone()),
            ("VERO__BATCH__MAX_AGE_MS", "200".to_owned()),
            ("VERO__OPS__LISTEN", "127.0.0.1:0".to_owned()),
        ]);
        sink_vars.extend(sink_overrides.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let mut sink_settings = event_sink::Settings::load_with_env(&config_dir("event-sink"), None, sink_vars)?;
        at.configure(&mut sink_settings.clickhouse, &mut sink_settings.cluster);
        let (sink_ops, sink) = start_sink(sink_settings).await?;

        // The profile consumer: its topics co-partitioned with the events topic.
        let mut profile_settings =
            profile_consumer::Settings::for_tests(kafka.bootstrap_servers(), &at.url, &unique_name("e2e_profiles"));
        profile_settings.kafka.events_topic = topic.clone();
        profile_settings.kafka.profiles_topic = unique_name("e2e_profiles");
        profile_settings.kafka.handoff_topic = unique_name("e2e_handoff");
        profile_settings.kafka.dlq_topic = dlq.clone();
        profile_settings.kafka.create_topics = false;
        if let Some((_, window)) = sink_overrides.iter().find(|(k, _)| *k == "VERO__DEDUP__WINDOW_MS") {
            profile_settings.dedup.window_ms = window.parse()?;
        }
        at.configure(&mut profile_settings.clickhouse, &mut profile_settings.cluster);
        kafka.create_topic(&profile_settings.kafka.profiles_topic, partitions).await?;
        kafka.create_topic(&profile_settings.kafka.handoff_topic, partitions).await?;
        let (profiles_ops, profiles) = start_profiles(profile_settings).await?;

        let http = Client::builder(TokioExecutor::new()).build_http();
        Ok(Self {
            kafka,
            clickhouse,
            topic,
            dlq,
            partitions,
            gateway_addr,
            gateway,
            sink,
            sink_ops,
            profiles,
            profiles_ops,
            http,
        })
    }

    /// POST `body` to the gateway; returns status and body text.
    pub async fn post(&self, path: &str, content_type: &str, body: impl Into<Bytes>) -> anyhow::Result<(u16, String)> {
        self.send(hyper::Method::POST, path, content_type, body).await
    }

    /// Send a request with any method to the gateway; returns status and body text.
    pub async fn send(
        &self,
        method: hyper::Method,
        path: &str,
        content_type: &str,
        body: impl Into<Bytes>,
    ) -> anyhow::Result<(u16, String)> {
        self.send_with_headers(method, path, &[("content-type", content_type)], body).await
    }

    /// [`Pipeline::send`] with any request headers (a `user-agent` is added).
    pub async fn send_with_headers(
        &self,
        method: hyper::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> anyhow::Result<(u16, String)> {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.gateway_addr))
            .header("user-agent", "vero-e2e/1.0");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body.into()))?;
        let response = self.http.request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// A metric on the event sink's `/metrics`, summed over its label sets (0 when absent).
    pub async fn sink_metric(&self, name: &str) -> anyhow::Result<f64> {
        self.metric(self.sink_ops, name).await
    }

    /// The profile consumer's metric `name`, summed over its label sets.
    pub async fn profiles_metric(&self, name: &str) -> anyhow::Result<f64> {
        self.metric(self.profiles_ops, name).await
    }

    async fn metric(&self, ops: SocketAddr, name: &str) -> anyhow::Result<f64> {
        let uri: hyper::Uri = format!("http://{ops}/metrics").parse()?;
        let response = self.http.get(uri).await?;
        let body = response.into_body().collect().await?.to_bytes();
        Ok(vero_testkit::metrics::sum(&String::from_utf8_lossy(&body), name))
    }

    /// POST a JSON value to the gateway.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<(u16, String)> {
        self.post(path, "application/json", body.to_string()).await
    }

    /// Run a query on ClickHouse (text in, text out). Needs the multi-thread runtime.
    pub async fn query(&self, sql: &str) -> anyhow::Result<String>
    where
        C: cluster::Sql,
    {
        tokio::task::block_in_place(|| self.clickhouse.sql(sql))
    }

    /// Poll `sql` until its trimmed output equals `expected` or the deadline passes;
    /// returns the last output.
    pub async fn wait_for(&self, sql: &str, expected: &str, deadline: Duration) -> String
    where
        C: cluster::Sql,
    {
        let until = Instant::now() + deadline;
        loop {
            let got = self.query(sql).await.unwrap_or_else(|e| format!("error: {e}"));
            if got.trim() == expected || Instant::now() > until {
                return got.trim().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Send a JSON value with `method` to the gateway, expecting 200.
    pub async fn call(&self, method: hyper::Method, path: &str, body: serde_json::Value) {
        let answer = self.send(method.clone(), path, "application/json", body.to_string()).await.unwrap();
        assert_eq!(answer.0, 200, "{method} {path} {body}: {answer:?}");
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.gateway.stop().await?;
        self.sink.stop().await?;
        self.profiles.stop().await
    }
}
