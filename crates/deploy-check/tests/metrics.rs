//! Every metric the Grafana dashboard and the Prometheus alert rules query is
//! exported by a running service: the three services are started in-process (their
//! library `run` functions) against librdkafka's mock cluster and a real ClickHouse
//! server, driven so that every labelled series exists (accepted, rejected and
//! dead-lettered records), and their `/metrics` pages are scraped until every
//! queried series appears — or the deadline names the ones that never did.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use deploy_check::exposition::Exposition;
use deploy_check::grafana::{dashboard_queries, rule_queries, Query};
use deploy_check::promql::{selectors, Selector};
use deploy_check::repo::root;
use deploy_check::services::Service;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use vero_model::topics;
use vero_testkit::clickhouse::ClickHouseServer;
use vero_testkit::mock_kafka::MockKafka;

/// Series Prometheus makes itself for every target; no service exports them.
const PROMETHEUS_OWN: [&str; 1] = ["up"];
/// Generous: ClickHouse start, migrations and consumer-group joins on a busy 2-core box.
const DEADLINE: Duration = Duration::from_secs(180);

fn queries() -> Vec<Query> {
    let dashboards = root().join("deploy/grafana/dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dashboards).unwrap() {
        let path = entry.unwrap().path();
        let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        out.extend(dashboard_queries(&dashboard));
    }
    let rules_text = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap();
    let rules: serde_json::Value = serde_norway::from_str(&rules_text).unwrap();
    out.extend(rule_queries(&rules).unwrap());
    out
}

/// Selectors of all queries, each with the queries that use it.
fn queried() -> BTreeMap<Selector, Vec<String>> {
    let mut out: BTreeMap<Selector, Vec<String>> = BTreeMap::new();
    for query in queries() {
        for selector in selectors(&query.expr).unwrap_or_else(|e| panic!("{}: {e}", query.origin)) {
            if !PROMETHEUS_OWN.contains(&selector.metric.as_str()) {
                out.entry(selector).or_default().push(query.origin.clone());
            }
        }
    }
    out
}

#[test]
fn dashboard_and_rules_parse_and_cover_every_required_panel() {
    let queries = queries();
    assert!(queries.len() >= 20, "only {} queries found", queries.len());
    let all: String = queries.iter().map(|q| q.expr.as_str()).collect::<Vec<_>>().join("\n");
    // The issue's list: ingest rate, 4xx/5xx by reason, produce latency, consumer
    // lag, insert rate, DLQ.
    for needle in [
        "vero_gateway_events_accepted_total",
        "vero_gateway_events_rejected_total",
        "vero_gateway_produce_latency_seconds_bucket",
        "vero_sink_consumer_lag",
        "vero_sink_rows_inserted_total",
        "vero_sink_dlq_records_total",
    ] {
        assert!(all.contains(needle), "no query reads {needle}");
    }
    assert!(queried().len() >= 10);
}

/// How long one exchange with a service may take.
const EXCHANGE: Duration = Duration::from_secs(30);

/// The whole answer of `GET path`, "" on failure.
async fn get(addr: SocketAddr, path: &str) -> String {
    vero_testkit::http::get(addr, path, EXCHANGE).await.unwrap_or_default()
}

/// The whole answer of a POST of `body` to `/api/v2/events/track`, "" on failure.
async fn post_track(addr: SocketAddr, body: &str) -> String {
    vero_testkit::http::post(addr, "/api/v2/events/track", "application/json", body, EXCHANGE).await.unwrap_or_default()
}

async fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

fn vars(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_queried_metric_is_exported_by_a_running_service() {
    let wanted = queried();
    let kafka = MockKafka::start(1).unwrap();
    for topic in [topics::EVENTS, topics::EVENTS_DLQ, topics::PROFILES, "vero.profiles.handoff"] {
        kafka.create_topic(topic, 3).unwrap();
    }
    let brokers = kafka.bootstrap_servers().to_owned();
    let clickhouse = tokio::task::spawn_blocking(ClickHouseServer::start).await.unwrap().unwrap();
    // One token per service: a service that fails may cancel its own token, and
    // must not take the others down with it (the failure is reported below).
    let (gateway_stop, sink_stop, profiles_stop) =
        (CancellationToken::new(), CancellationToken::new(), CancellationToken::new());

    // The gateway, with the `make run` overlay's documented token.
    let gateway = ingest_gateway::config::Settings::load_with_env(
        &Service::Gateway.repo_config_dir(),
        Some("local"),
        vars(&[("VERO__KAFKA__BROKERS", brokers.clone()), ("VERO__HTTP__LISTEN", "127.0.0.1:0".into())]),
    )
    .unwrap();
    let (listener, gateway_addr) = bind().await;
    let gateway_task = tokio::spawn(ingest_gateway::run(gateway, listener, gateway_stop.clone()));

    let sink = event_sink::Settings::load_with_env(
        &Service::EventSink.repo_config_dir(),
        None,
        vars(&[
            ("VERO__KAFKA__BROKERS", brokers.clone()),
            ("VERO__KAFKA__GROUP_ID", vero_testkit::unique_name("deploy_check_sink")),
            ("VERO__CLICKHOUSE__URL", clickhouse.http_url()),
            ("VERO__OPS__LISTEN", "127.0.0.1:0".into()),
        ]),
    )
    .unwrap();
    let (listener, sink_addr) = bind().await;
    let sink_task = tokio::spawn(event_sink::run(sink, listener, sink_stop.clone()));

    let mut profiles = profile_consumer::Settings::for_tests(
        &brokers,
        &clickhouse.http_url(),
        &vero_testkit::unique_name("deploy_check_profiles"),
    );
    // The topics exist, as the deployments' topic jobs create them.
    profiles.kafka.create_topics = false;
    let (listener, profiles_addr) = bind().await;
    let profiles_task = tokio::spawn(profile_consumer::run(profiles, listener, profiles_stop.clone()));

    // Traffic that makes every labelled series exist: accepted, rejected (400, 401)
    // and a record no consumer can decode (dead-lettered by both).
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let started = Instant::now();
    let mut accepted = false;
    while !accepted {
        assert!(started.elapsed() < DEADLINE, "the gateway never accepted an event");
        let answer = post_track(
            gateway_addr,
            r#"{"auth_token":"your_auth_token","identity":{"id":"1","email":"a@b.c"},"event_name":"signed_up"}"#,
        )
        .await;
        accepted = answer.starts_with("HTTP/1.1 200");
        if !accepted {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    assert!(post_track(gateway_addr, r#"{"auth_token":"your_auth_token","identity":{}}"#).await.contains(" 400 "));
    assert!(post_track(gateway_addr, r#"{"auth_token":"nope","identity":{"id":"1"},"event_name":"x"}"#)
        .await
        .contains(" 401 "));
    producer
        .send(FutureRecord::to(topics::EVENTS).key("1").payload(&b"not avro"[..]), Duration::from_secs(30))
        .await
        .map_err(|(e, _)| e)
        .unwrap();

    // Scrape until every queried series (with the labels its matchers use) exists.
    // A series, once exported, counts: the union over all scrapes.
    let mut exported = Exposition::default();
    let mut missing: Vec<String>;
    let mut heads = Vec::new();
    loop {
        heads.clear();
        for addr in [gateway_addr, sink_addr, profiles_addr] {
            let page = get(addr, "/metrics").await;
            heads.push(format!("{addr}: {:?}", page.chars().take(300).collect::<String>()));
            exported.extend(Exposition::parse(page.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default()));
        }
        missing = wanted
            .iter()
            .filter_map(|(selector, origins)| {
                let Some(labels) = exported.series.get(&selector.metric) else {
                    return Some(format!("{} (used by {})", selector.metric, origins.join(", ")));
                };
                let unknown: BTreeSet<&String> = selector.labels.difference(labels).collect();
                (!unknown.is_empty())
                    .then(|| format!("{} has no label {unknown:?} (used by {})", selector.metric, origins.join(", ")))
            })
            .collect();
        if missing.is_empty() || started.elapsed() > DEADLINE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for stop in [&gateway_stop, &sink_stop, &profiles_stop] {
        stop.cancel();
    }
    let mut ended = Vec::new();
    for (name, task) in [("gateway", gateway_task), ("event-sink", sink_task), ("profile-consumer", profiles_task)] {
        let result = tokio::time::timeout(Duration::from_secs(60), task).await;
        ended.push(format!("{name}: {result:?}"));
    }
    assert!(
        missing.is_empty(),
        "queried but not exported:\n{}\n\nlast scrape:\n{}\n\nservices ended with:\n{}",
        missing.join("\n"),
        heads.join("\n"),
        ended.join("\n")
    );
    drop(clickhouse);
}
