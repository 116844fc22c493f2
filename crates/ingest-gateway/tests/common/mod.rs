//! Shared test harness: settings for a test, the real server started in-process on
//! port 0 (with a memory publisher or Kafka), and a small HTTP client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ingest_gateway::config::{Project, Settings};
use ingest_gateway::publish::{MemoryPublisher, Publisher};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "test-token-shop";
pub const OTHER_TOKEN: &str = "test-token-blog";

/// The repo's defaults plus the `local` overlay, with test projects and `brokers`.
pub fn settings(brokers: &str, topic: &str) -> Settings {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/gateway");
    let vars = [
        ("VERO__KAFKA__BROKERS".to_string(), brokers.to_string()),
        ("VERO__KAFKA__EVENTS_TOPIC".to_string(), topic.to_string()),
        ("VERO__HTTP__LISTEN".to_string(), "127.0.0.1:0".to_string()),
    ];
    let mut settings = Settings::load_with_env(&dir, Some("local"), vars).expect("test settings load");
    settings.projects = vec![
        Project { name: "shop".into(), tokens: vec![TOKEN.into(), "second-shop-token".into()] },
        Project { name: "blog".into(), tokens: vec![OTHER_TOKEN.into()] },
    ];
    settings.validate().expect("test settings are valid");
    settings
}

pub struct TestGateway {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Cancel and wait for `serve` to return.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.task).await.expect("gateway stops")?
    }
}

pub async fn start_with_sink(settings: Settings, publisher: Arc<dyn Publisher>) -> TestGateway {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(ingest_gateway::serve(settings, listener, publisher, shutdown.clone()));
    TestGateway { addr, shutdown, task }
}

pub async fn start_memory(settings: Settings) -> (TestGateway, Arc<MemoryPublisher>) {
    let publisher = Arc::new(MemoryPublisher::new());
    (start_with_sink(settings, publisher.clone()).await, publisher)
}

pub async fn start_kafka(settings: Settings) -> TestGateway {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(ingest_gateway::run(settings, listener, shutdown.clone()));
    TestGateway { addr, shutdown, task }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body {:?} is not JSON: {e}", self.body))
    }

    pub fn message(&self) -> String {
        self.json()["message"].as_str().unwrap_or_default().to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Assert the spec's error shape and return the message.
    pub fn expect_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.json()["status"], status, "body: {}", self.body);
        self.message()
    }
}

pub async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body.into())).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(60), client.request(request))
        .await
        .expect("answer within 60 s")
        .expect("request succeeds");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply { status: parts.status.as_u16(), headers: parts.headers, body: String::from_utf8_lossy(&body).into_owned() }
}

pub async fn post_json(url: &str, body: &serde_json::Value) -> Reply {
    send("POST", url, &[("content-type", "application/json")], body.to_string()).await
}

pub async fn get(url: &str) -> Reply {
    send("GET", url, &[], Bytes::new()).await
}

/// The documented example with `user` as identity.id and `token` as auth_token.
pub fn track_body(token: &str, user: &str, event_name: &str) -> serde_json::Value {
    serde_json::json!({
        "auth_token": token,
        "identity": {"id": user, "email": format!("{user}@example.com")},
        "event_name": event_name,
        "data": {"item": "Blue shoes", "price": 40.0}
    })
}

/// Poll `check` until it returns Some or `deadline` passes.
pub async fn eventually<T, F, Fut>(deadline: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() > until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Decode a payload that must be a `UserCommand`.
pub fn decode_command(payload: &[u8]) -> vero_model::UserCommand {
    match vero_model::decode_record(payload).expect("payload decodes") {
        vero_model::Record::Command(command) => command,
        other => panic!("expected a UserCommand, got a {}", other.kind()),
    }
}

/// Milliseconds since the Unix epoch, for checking `received_at`.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// `data` gzip-compressed, as a client sends it with `Content-Encoding: gzip`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}
