//! The suite's steps. Each starts what it needs, measures, stops it, and records
//! its figures in [`Results`].

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use vero_loadgen::{LoadConfig, Report};

use super::{Bench, HttpRun, OverloadRun, Results, SinkRun};
use crate::procs::{cpu_secs, free_port, memory_kib, wait_for_port, Guard};
use crate::produce::{bare_producer, bare_send, drive};
use crate::records;

const TRACK: &str = "/api/v2/events/track";

fn start_trivial(bench: &Bench) -> anyhow::Result<(Guard, u16)> {
    let port = free_port()?;
    let mut command = Command::new(bench.bins.join("trivial-server"));
    command.arg(format!("127.0.0.1:{port}")).env("RUST_LOG", "warn");
    let mut guard = Guard::spawn("trivial-server", command, &bench.work)?;
    wait_for_port(port, &mut guard, Duration::from_secs(30))?;
    Ok((guard, port))
}

pub(super) fn start_gateway(
    bench: &Bench,
    name: &str,
    topic: &str,
    extra: &[(&str, String)],
) -> anyhow::Result<(Guard, u16)> {
    let port = free_port()?;
    let mut command = Command::new(bench.bins.join("ingest-gateway"));
    command
        .env("VERO_ENV", "local")
        .env("VERO_CONFIG_DIR", "config/gateway")
        .env("RUST_LOG", "warn")
        .env("VERO__HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env("VERO__KAFKA__BROKERS", &bench.brokers)
        .env("VERO__KAFKA__EVENTS_TOPIC", topic);
    for (key, value) in extra {
        command.env(key, value);
    }
    let mut guard = Guard::spawn(name, command, &bench.work)?;
    wait_for_port(port, &mut guard, Duration::from_secs(60))?;
    Ok((guard, port))
}

pub(super) async fn load(config: LoadConfig) -> anyhow::Result<Report> {
    let report = vero_loadgen::run(config, CancellationToken::new()).await?;
    println!("{report}");
    Ok(report)
}

fn closed_loop(bench: &Bench, port: u16, connections: usize) -> LoadConfig {
    let mut config = LoadConfig::for_url(&format!("http://127.0.0.1:{port}{TRACK}"));
    config.connections = connections;
    config.duration = Some(bench.config.secs);
    config.warmup = bench.config.warmup_secs;
    config
}

/// Load `port` and measure the server's CPU over the run.
pub(super) async fn measured(server: &Guard, config: LoadConfig) -> anyhow::Result<(Report, f64)> {
    let cpu_before = cpu_secs(server.pid()).unwrap_or_default();
    let started = Instant::now();
    let report = load(config).await?;
    let cores = (cpu_secs(server.pid()).unwrap_or_default() - cpu_before) / started.elapsed().as_secs_f64();
    Ok((report, cores))
}

/// The connection counts of the HTTP step.
pub const HTTP_CONNECTIONS: [usize; 2] = [32, 256];

/// The topic the gateway produces to in the HTTP run at `connections`.
pub fn http_topic(connections: usize) -> String {
    format!("bench.http.{connections}")
}

pub async fn http(bench: &Bench, results: &mut Results) -> anyhow::Result<()> {
    for connections in HTTP_CONNECTIONS {
        let (server, port) = start_trivial(bench)?;
        let (report, cores) = measured(&server, closed_loop(bench, port, connections)).await?;
        results.http.push(HttpRun {
            server: "trivial".into(),
            connections,
            report,
            server_cores: cores,
            in_kafka: None,
            trimmed: 0,
        });
        drop(server);

        let topic = http_topic(connections);
        let (gateway, port) = start_gateway(bench, "ingest-gateway-http", &topic, &[])?;
        let (report, cores) = measured(&gateway, closed_loop(bench, port, connections)).await?;
        drop(gateway);
        let (brokers, run_id) = (bench.brokers.clone(), report.run_id.clone());
        let scan = tokio::task::spawn_blocking(move || {
            crate::topic_scan::run_sequences(&brokers, &topic, &run_id, Duration::from_secs(300))
        })
        .await??;
        results.http.push(HttpRun {
            server: "gateway".into(),
            connections,
            report,
            server_cores: cores,
            in_kafka: Some(scan.sequences.len() as u64),
            trimmed: scan.trimmed,
        });
    }
    Ok(())
}

pub async fn produce(bench: &Bench, results: &mut Results) -> anyhow::Result<()> {
    let events = records::track_events(bench.config.records, "produce-bench");
    let encoded = Arc::new(records::encoded(&events));
    let topic = vero_model::topics::EVENTS;
    let in_flight = 256;

    let producer = bare_producer(&bench.brokers)?;
    let send = {
        let producer = producer.clone();
        move |records: Arc<Vec<(Vec<u8>, Vec<u8>)>>, i: usize| {
            let producer = producer.clone();
            async move { bare_send(&producer, topic, &records[i].0, &records[i].1).await }
        }
    };
    // Warm the producer's connections and metadata first.
    drive(Arc::new(encoded[..1000.min(encoded.len())].to_vec()), in_flight, send.clone()).await;
    let bare = drive(encoded.clone(), in_flight, send).await;
    println!("bare rdkafka producer: {bare:?}");
    results.produce.push(("bare rdkafka FutureProducer".into(), bare));

    let vars = [("VERO__KAFKA__BROKERS".to_string(), bench.brokers.clone())];
    let settings =
        ingest_gateway::Settings::load_with_env(std::path::Path::new("config/gateway"), Some("local"), vars)?;
    let sink: Arc<dyn ingest_gateway::publish::Publisher> =
        Arc::new(ingest_gateway::publish::KafkaPublisher::new(&settings.kafka)?);
    let send = move |records: Arc<Vec<(Vec<u8>, Vec<u8>)>>, i: usize| {
        let sink = sink.clone();
        async move { sink.produce(&records[i].0, &records[i].1).await.is_ok() }
    };
    drive(Arc::new(encoded[..1000.min(encoded.len())].to_vec()), in_flight, send.clone()).await;
    let gateway = drive(encoded, in_flight, send).await;
    println!("gateway KafkaPublisher: {gateway:?}");
    results.produce.push(("gateway KafkaPublisher".into(), gateway));
    Ok(())
}

pub(super) fn sink_command(bench: &Bench, clickhouse_url: &str, topic: &str, group: &str) -> Command {
    let mut command = Command::new(bench.bins.join("event-sink"));
    command
        .env("VERO_CONFIG_DIR", "config/event-sink")
        // `VERO_BENCH_SINK_LOG=event_sink=debug` shows every INSERT in target/bench/event-sink.log.
        .env("RUST_LOG", std::env::var("VERO_BENCH_SINK_LOG").unwrap_or_else(|_| "warn".into()))
        .env("VERO__KAFKA__BROKERS", &bench.brokers)
        .env("VERO__KAFKA__EVENTS_TOPIC", topic)
        .env("VERO__KAFKA__GROUP_ID", group)
        .env("VERO__CLICKHOUSE__URL", clickhouse_url)
        .env("VERO__OPS__LISTEN", "127.0.0.1:0");
    command
}

/// Make sure `topic` exists: the mock cluster creates a topic on its first produce
/// (it does not serve the admin API's CreateTopics in time), so produce one record
/// that belongs to no load run.
async fn create_topic(brokers: &str, topic: &str) -> anyhow::Result<()> {
    let producer = bare_producer(brokers)?;
    let event = records::track_events(1, "topic-setup").remove(0);
    let (key, payload) = (event.key().to_vec(), vero_model::encode_event(&event));
    anyhow::ensure!(bare_send(&producer, topic, &key, &payload).await, "cannot produce to {topic}");
    Ok(())
}

pub(super) fn count(server: &vero_testkit::clickhouse::ClickHouseServer, table: &str) -> u64 {
    server.query(&format!("SELECT count() FROM {table}")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// A fresh topic `<prefix>_...` holding `rows` generated events after one setup record;
/// returns it and the events.
pub(super) async fn topic_with_rows(
    bench: &Bench,
    prefix: &str,
    rows: u64,
) -> anyhow::Result<(String, Vec<vero_model::TrackEvent>)> {
    let topic = vero_testkit::unique_name(prefix);
    create_topic(&bench.brokers, &topic).await?;
    let events = records::track_events(rows, "sink-bench");
    let encoded = Arc::new(records::encoded(&events));
    let producer = bare_producer(&bench.brokers)?;
    let send = {
        let (producer, topic) = (producer.clone(), topic.clone());
        move |records: Arc<Vec<(Vec<u8>, Vec<u8>)>>, i: usize| {
            let (producer, topic) = (producer.clone(), topic.clone());
            async move { bare_send(&producer, &topic, &records[i].0, &records[i].1).await }
        }
    };
    let produced = drive(encoded, 256, send).await;
    anyhow::ensure!(produced.failed == 0, "{} records not produced", produced.failed);
    Ok((topic, events))
}

/// Run the event sink `command` until `count()` reports `rows_in_topic` rows (bounded);
/// returns the seconds from its start and the steady-state seconds: the time after
/// the first visible batch, scaled to all `rows` measured rows.
pub(super) async fn time_sink(
    bench: &Bench,
    name: &str,
    command: Command,
    rows: u64,
    rows_in_topic: u64,
    count: impl Fn() -> u64,
) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let mut sink = Guard::spawn(name, command, &bench.work)?;
    let mut first_seen = None;
    let deadline = started + Duration::from_secs(600);
    loop {
        let n = count();
        if n > 0 && first_seen.is_none() {
            first_seen = Some((Instant::now(), n));
        }
        if n >= rows_in_topic {
            break;
        }
        anyhow::ensure!(sink.is_running(), "{name} exited:\n{}", sink.log_tail());
        anyhow::ensure!(Instant::now() < deadline, "{name} wrote {n} of {rows} rows in 600 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sink_secs = started.elapsed().as_secs_f64();
    let (first_at, first_rows) = first_seen.expect("rows were seen");
    let steady = first_at.elapsed().as_secs_f64();
    drop(sink);
    // Steady state: rows after the first visible batch over the time after it.
    let steady_secs = if rows > first_rows { steady * rows as f64 / (rows - first_rows) as f64 } else { sink_secs };
    Ok((sink_secs, steady_secs))
}

pub async fn sink(bench: &Bench, results: &mut Results) -> anyhow::Result<()> {
    let rows = bench.config.records;
    let server = tokio::task::spawn_blocking(vero_testkit::clickhouse::ClickHouseServer::start).await??;
    let (topic, events) = topic_with_rows(bench, "bench.sink", rows).await?;

    // Schema first (the sink's own migrations), so neither side pays for it.
    let status = sink_command(bench, &server.http_url(), &topic, "unused").arg("migrate").status()?;
    // The topic holds one setup record besides the measured rows.
    let rows_in_topic = rows + 1;
    anyhow::ensure!(status.success(), "event-sink migrate failed");

    // Baseline: the same rows through clickhouse-client into an identical table.
    server.query("CREATE TABLE vero.events_baseline AS vero.events")?;
    let file = bench.work.join("sink-rows.jsonl");
    let lines: Vec<String> =
        events.iter().enumerate().map(|(i, e)| records::json_each_row(e, (i % 6) as i32, i as i64)).collect();
    std::fs::write(&file, lines.join("\n") + "\n")?;
    let started = Instant::now();
    let status = Command::new("clickhouse-client")
        .args(["--host", "127.0.0.1", "--port", &server.tcp_port().to_string()])
        .args(["--query", "INSERT INTO vero.events_baseline FORMAT JSONEachRow"])
        .stdin(std::fs::File::open(&file)?)
        .status()
        .context("running clickhouse-client")?;
    let client_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(status.success(), "clickhouse-client insert failed");
    anyhow::ensure!(count(&server, "vero.events_baseline") == rows, "baseline row count");

    // Second baseline: what the broker serves to a bare consumer (the sink's ceiling).
    let (brokers, consume_topic) = (bench.brokers.clone(), topic.clone());
    let consume = tokio::task::spawn_blocking(move || {
        crate::consume::consume_all(&brokers, &consume_topic, rows_in_topic, Duration::from_secs(600))
    })
    .await??;
    println!("bare rdkafka consumer: {consume:?}");

    let group = vero_testkit::unique_name("bench-sink");
    let command = sink_command(bench, &server.http_url(), &topic, &group);
    let (sink_secs, sink_steady_secs) =
        time_sink(bench, "event-sink", command, rows, rows_in_topic, || count(&server, "vero.events")).await?;
    results.sink = Some(SinkRun { rows, sink_secs, sink_steady_secs, client_secs, consume: Some(consume) });
    Ok(())
}

pub async fn e2e(bench: &Bench, results: &mut Results) -> anyhow::Result<()> {
    let server = tokio::task::spawn_blocking(vero_testkit::clickhouse::ClickHouseServer::start).await??;
    let topic = vero_testkit::unique_name("bench.e2e");
    create_topic(&bench.brokers, &topic).await?;
    let group = vero_testkit::unique_name("bench-e2e");
    let mut sink =
        Guard::spawn("event-sink-e2e", sink_command(bench, &server.http_url(), &topic, &group), &bench.work)?;
    // Wait for the sink's migrations so the first poll finds the table.
    let deadline = Instant::now() + Duration::from_secs(120);
    while server.query("EXISTS TABLE vero.events").map(|s| s.trim() != "1").unwrap_or(true) {
        anyhow::ensure!(sink.is_running(), "event-sink exited:\n{}", sink.log_tail());
        anyhow::ensure!(Instant::now() < deadline, "sink did not create vero.events");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_gateway, port) = start_gateway(bench, "ingest-gateway-e2e", &topic, &[])?;
    let mut config = LoadConfig::for_url(&format!("http://127.0.0.1:{port}{TRACK}"));
    config.connections = 64;
    config.rate = Some(bench.config.e2e_rate);
    config.duration = Some(bench.config.secs);
    config.e2e.clickhouse_url = Some(server.http_url());
    config.e2e.e2e_timeout = 120.0;
    config.e2e.poll_interval_ms = 100;
    results.e2e = Some(load(config).await?);
    Ok(())
}

pub async fn overload(bench: &Bench, results: &mut Results) -> anyhow::Result<()> {
    // Capacity measured above at 256 connections; the rate limit sheds half of it.
    let capacity =
        results.http.iter().filter(|r| r.server == "gateway").map(|r| r.report.ok_rps).fold(0.0, f64::max).max(1000.0);
    let limit = (capacity / 2.0) as u64;
    let extra = [
        ("VERO__RATE_LIMIT__ENABLED", "true".to_string()),
        ("VERO__RATE_LIMIT__REQUESTS_PER_SECOND", limit.to_string()),
        ("VERO__RATE_LIMIT__BURST", limit.to_string()),
    ];
    let (gateway, port) = start_gateway(bench, "ingest-gateway-overload", vero_model::topics::EVENTS, &extra)?;
    let start_rss = memory_kib(gateway.pid()).map(|m| m.0).unwrap_or_default();
    let mut config = LoadConfig::for_url(&format!("http://127.0.0.1:{port}{TRACK}"));
    config.connections = 512;
    config.rate = Some(capacity * 2.0);
    config.duration = Some(bench.config.overload_secs);
    config.timeout_ms = 5_000;
    let report = load(config).await?;
    let (end_rss, peak) = memory_kib(gateway.pid()).unwrap_or_default();
    let mib = |kib: u64| kib as f64 / 1024.0;
    results.overload = Some(OverloadRun {
        report,
        rate_limit_rps: limit,
        peak_rss_mib: mib(peak),
        start_rss_mib: mib(start_rss),
        end_rss_mib: mib(end_rss),
    });
    Ok(())
}
