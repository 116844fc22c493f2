//! The pipeline on secured connections, each service configured the way an operator
//! would: `VERO__…` variables over the repository's default config files, librdkafka's
//! settings as `VERO__KAFKA__PROPERTIES__…` (dots written as underscores), ClickHouse
//! as `https://` with `VERO__CLICKHOUSE__TLS__CA_FILE`, the gateway's HTTPS as
//! `VERO__HTTP__TLS__CERT_FILE`/`KEY_FILE`.
//!
//! One [`SecuredKafka`] broker serves every test of a test binary ([`broker`]); each
//! [`Secured`] has its own topics and groups and its own ClickHouse server, which
//! listens with HTTPS on the test CA's `server.crt`.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_openssl::client::legacy::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use openssl::ssl::{SslConnector, SslMethod};
use vero_testkit::clickhouse::ClickHouseServer;
use vero_testkit::kafka::Listener;
use vero_testkit::ports::free_ports;
use vero_testkit::secured_kafka::{Properties, SecuredKafka};
use vero_testkit::tls::clickhouse_https_config;
use vero_testkit::unique_name;

use crate::{config_dir, start_gateway, start_profiles, start_sink, Running};

/// The secured broker of this test process, started on first use, never dropped.
pub fn broker() -> &'static SecuredKafka {
    static BROKER: OnceLock<SecuredKafka> = OnceLock::new();
    BROKER.get_or_init(|| SecuredKafka::start().expect("the secured Kafka broker starts (make deps installs Kafka)"))
}

/// `VERO__KAFKA__BROKERS` and one `VERO__KAFKA__PROPERTIES__…` per property.
pub fn kafka_vars(servers: &str, properties: &Properties) -> Vec<(String, String)> {
    let mut vars = vec![("VERO__KAFKA__BROKERS".to_owned(), servers.to_owned())];
    for (name, value) in properties {
        vars.push((format!("VERO__KAFKA__PROPERTIES__{}", name.replace('.', "_").to_uppercase()), value.clone()));
    }
    vars
}

/// Topics and an HTTPS ClickHouse for one secured pipeline.
pub struct Secured {
    pub kafka: &'static SecuredKafka,
    pub clickhouse: ClickHouseServer,
    /// `https://127.0.0.1:<port>` of `clickhouse`.
    pub clickhouse_url: String,
    pub topic: String,
    pub dlq: String,
    pub profiles_topic: String,
    pub handoff_topic: String,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Secured {
    /// The shared broker, new co-partitioned topics, and a ClickHouse server with
    /// HTTPS on the test CA's certificate.
    pub async fn new(partitions: i32) -> anyhow::Result<Self> {
        let kafka = tokio::task::spawn_blocking(broker).await?;
        let (topic, dlq) = (unique_name("tls_events"), unique_name("tls_dlq"));
        let (profiles_topic, handoff_topic) = (unique_name("tls_profiles"), unique_name("tls_handoff"));
        kafka.kafka.create_topic(&topic, partitions).await?;
        kafka.kafka.create_topic(&dlq, 1).await?;
        kafka.kafka.create_topic_with(&profiles_topic, partitions, &[("cleanup.policy", "compact")]).await?;
        kafka.kafka.create_topic(&handoff_topic, partitions).await?;
        let (cert, key) = (kafka.file("server.crt"), kafka.file("server.key"));
        let (clickhouse, https) = tokio::task::spawn_blocking(move || {
            let ports = free_ports(3)?;
            let extra = clickhouse_https_config(ports[2], &cert, &key, None);
            anyhow::Ok((ClickHouseServer::start_with(ports[0], ports[1], &extra)?, ports[2]))
        })
        .await??;
        let mut tls = SslConnector::builder(SslMethod::tls_client())?;
        tls.set_ca_file(kafka.file("ca.crt"))?;
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        let http = Client::builder(TokioExecutor::new()).build(HttpsConnector::with_connector(connector, tls)?);
        Ok(Self {
            kafka,
            clickhouse,
            clickhouse_url: format!("https://127.0.0.1:{https}"),
            topic,
            dlq,
            profiles_topic,
            handoff_topic,
            http,
        })
    }

    /// A consumer's variables: Kafka over `listener` with `properties`, ClickHouse
    /// over HTTPS verified with the test CA, the events and DLQ topics, `group`, a
    /// short retry backoff, and `more`.
    fn consumer_vars(
        &self,
        listener: Listener,
        properties: &Properties,
        group: &str,
        more: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let mut vars = kafka_vars(&self.kafka.servers(listener), properties);
        let ca = self.kafka.file("ca.crt").display().to_string();
        let common = [
            ("VERO__CLICKHOUSE__URL", self.clickhouse_url.as_str()),
            ("VERO__CLICKHOUSE__TLS__CA_FILE", &ca),
            ("VERO__KAFKA__EVENTS_TOPIC", &self.topic),
            ("VERO__KAFKA__DLQ_TOPIC", &self.dlq),
            ("VERO__KAFKA__GROUP_ID", group),
            ("VERO__RETRY__MAX_BACKOFF_MS", "1000"),
        ];
        vars.extend(common.iter().chain(more).map(|(key, value)| ((*key).to_owned(), (*value).to_owned())));
        vars
    }

    /// The gateway producing over `listener` with `properties`; with `https`, serving
    /// HTTPS on the test CA's certificate. Returns its base URL.
    pub async fn gateway(
        &self,
        listener: Listener,
        properties: &Properties,
        https: bool,
    ) -> anyhow::Result<(String, Running)> {
        let mut vars = kafka_vars(&self.kafka.servers(listener), properties);
        vars.push(("VERO__KAFKA__EVENTS_TOPIC".into(), self.topic.clone()));
        vars.push(("VERO__KAFKA__DELIVERY_TIMEOUT_MS".into(), "10000".into()));
        if https {
            vars.push(("VERO__HTTP__TLS__CERT_FILE".into(), self.kafka.file("server.crt").display().to_string()));
            vars.push(("VERO__HTTP__TLS__KEY_FILE".into(), self.kafka.file("server.key").display().to_string()));
        }
        let (address, running) = start_gateway(vars).await?;
        let scheme = if https { "https" } else { "http" };
        // `localhost`: the name the certificate is for (and what an SDK would use).
        Ok((format!("{scheme}://localhost:{}", address.port()), running))
    }

    /// The event sink reading over `listener` with `properties`, writing ClickHouse
    /// over HTTPS; `group` is its consumer group. Returns its ops address.
    pub async fn sink(
        &self,
        listener: Listener,
        properties: &Properties,
        group: &str,
    ) -> anyhow::Result<(SocketAddr, Running)> {
        let vars = self.consumer_vars(listener, properties, group, &[("VERO__BATCH__MAX_AGE_MS", "200")]);
        start_sink(event_sink::Settings::load_with_env(&config_dir("event-sink"), None, vars)?).await
    }

    /// The profile consumer, like [`Secured::sink`].
    pub async fn profiles(
        &self,
        listener: Listener,
        properties: &Properties,
        group: &str,
    ) -> anyhow::Result<(SocketAddr, Running)> {
        let more = [
            ("VERO__KAFKA__PROFILES_TOPIC", self.profiles_topic.as_str()),
            ("VERO__KAFKA__HANDOFF_TOPIC", &self.handoff_topic),
            ("VERO__KAFKA__CREATE_TOPICS", "false"),
            ("VERO__BATCH__LINGER_MS", "50"),
            ("VERO__OPS__LISTEN", "127.0.0.1:0"),
            // A temporary store of its own (the default directory is a deployment's).
            ("VERO__STATE__DIR", ""),
        ];
        let vars = self.consumer_vars(listener, properties, group, &more);
        let settings: profile_consumer::Settings =
            vero_service::settings::load_with_env(&config_dir("profile-consumer"), None, vars)?;
        start_profiles(settings).await
    }

    /// `GET url` (HTTP or HTTPS with the test CA): status and body.
    pub async fn get(&self, url: &str) -> anyhow::Result<(u16, String)> {
        self.request(hyper::Method::GET, url, Bytes::new()).await
    }

    /// `POST url` with a JSON body: status and body.
    pub async fn post_json(&self, url: &str, body: &serde_json::Value) -> anyhow::Result<(u16, String)> {
        self.request(hyper::Method::POST, url, Bytes::from(body.to_string())).await
    }

    async fn request(&self, method: hyper::Method, url: &str, body: Bytes) -> anyhow::Result<(u16, String)> {
        let request = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json")
            .body(Full::new(body))?;
        let response = tokio::time::timeout(Duration::from_secs(60), self.http.request(request)).await??;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// A metric on a consumer's `/metrics`, summed over its label sets.
    pub async fn metric(&self, ops: SocketAddr, name: &str) -> anyhow::Result<f64> {
        let (_, body) = self.get(&format!("http://{ops}/metrics")).await?;
        Ok(vero_testkit::metrics::sum(&body, name))
    }

    /// Poll `sql` on ClickHouse until its trimmed output is `expected` or `deadline`
    /// passed; the last output.
    pub async fn wait_for(&self, sql: &str, expected: &str, deadline: Duration) -> String {
        let until = Instant::now() + deadline;
        loop {
            let got = tokio::task::block_in_place(|| self.clickhouse.query(sql)).unwrap_or_else(|e| format!("{e}"));
            if got.trim() == expected || Instant::now() > until {
                return got.trim().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Poll `GET url` until `check` holds for (status, body) or `deadline` passed; the
    /// last answer.
    pub async fn wait_until(&self, url: &str, deadline: Duration, check: impl Fn(u16, &str) -> bool) -> (u16, String) {
        let until = Instant::now() + deadline;
        loop {
            let got = self.get(url).await.unwrap_or_else(|e| (0, format!("{e}")));
            if check(got.0, &got.1) || Instant::now() > until {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
