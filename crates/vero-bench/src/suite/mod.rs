//! The `make bench` suite: every figure next to a baseline measured in the same run,
//! on the same machine, with the load generator on the same box.
//!
//! Steps (each writes its results into [`Results`]; a failed step is recorded as
//! failed and the others still run):
//! 1. HTTP: the trivial hyper baseline vs the gateway, closed loop at 32 and 256
//!    connections, CPU cores used by the server, and a scan of Kafka proving every
//!    200 is there.
//! 2. Produce path: a bare rdkafka producer vs the gateway's `KafkaPublisher`, same
//!    records, 256 in flight.
//! 3. Sink: `event-sink` vs `clickhouse-client` inserting the same rows.
//! 4. End to end: gateway + sink + ClickHouse, open loop, ingest-to-queryable latency.
//! 5. Overload: open loop far above capacity with the rate limit on; statuses and
//!    peak RSS of the gateway.
//! 6. Dedup cost: the gateway from before idempotent retries vs today's
//!    ([`dedup_cost`]).
//! 7. Cluster: the sink into a 2 × 2 ClickHouse cluster vs one node, same rows
//!    ([`cluster_sink`]).
//! 8. Batch: `events/batch` vs single `events/track` requests ([`batch`]).
//! 9. Profiles: the profile consumer's local store vs the previous all-in-memory
//!    release, then millions of profiles, a restart after kill -9 and moved partitions
//!    ([`profile_state`], on Apache Kafka).
//!
//! The broker is librdkafka's mock cluster (`vero-dev-broker`), in its own process
//! (the profiles step starts Apache Kafka of its own).

pub mod batch;
pub mod cluster_sink;
pub mod dedup_cost;
pub mod markdown;
pub mod profile_state;
pub mod sections;
mod steps;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vero_loadgen::Report;

use crate::procs::{bin_dir, Guard};
use crate::produce::ProduceResult;

/// Knobs, from environment variables (documented in docs/benchmarks.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteConfig {
    /// `VERO_BENCH_SECS`: measured seconds per HTTP run.
    pub secs: f64,
    /// `VERO_BENCH_WARMUP_SECS`.
    pub warmup_secs: f64,
    /// `VERO_BENCH_OVERLOAD_SECS`: length of the overload run (default 300).
    pub overload_secs: f64,
    /// `VERO_BENCH_RECORDS`: records for the produce and sink comparisons.
    pub records: u64,
    /// `VERO_BENCH_E2E_RATE`: open-loop requests/s of the end-to-end run.
    pub e2e_rate: f64,
}

fn env_num(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

impl SuiteConfig {
    pub fn from_env() -> Self {
        Self {
            secs: env_num("VERO_BENCH_SECS", 20.0),
            warmup_secs: env_num("VERO_BENCH_WARMUP_SECS", 3.0),
            overload_secs: env_num("VERO_BENCH_OVERLOAD_SECS", 300.0),
            records: env_num("VERO_BENCH_RECORDS", 200_000.0) as u64,
            e2e_rate: env_num("VERO_BENCH_E2E_RATE", 2000.0),
        }
    }
}

/// One server under HTTP load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpRun {
    pub server: String,
    pub connections: usize,
    pub report: Report,
    /// CPU cores the server process used on average during the run.
    pub server_cores: f64,
    /// For the gateway: 200s found in Kafka afterwards (distinct events of the run).
    pub in_kafka: Option<u64>,
    /// For the gateway: records of the run's topic the mock broker's retention had
    /// already removed when it was scanned (unverifiable, not missing).
    #[serde(default)]
    pub trimmed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SinkRun {
    pub rows: u64,
    /// `event-sink`: from process start to every row counted in ClickHouse.
    pub sink_secs: f64,
    /// `event-sink`: from the first row visible to the last (start-up excluded).
    pub sink_steady_secs: f64,
    /// `clickhouse-client`: process start to exit, same rows as JSONEachRow.
    pub client_secs: f64,
    /// A bare rdkafka consumer reading the same topic (the broker's ceiling).
    #[serde(default)]
    pub consume: Option<crate::consume::ConsumeResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OverloadRun {
    pub report: Report,
    pub rate_limit_rps: u64,
    pub peak_rss_mib: f64,
    pub start_rss_mib: f64,
    pub end_rss_mib: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Criterion {
    /// Benchmark name → mean time per iteration in nanoseconds.
    pub mean_ns: std::collections::BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Results {
    pub machine: String,
    pub command: String,
    pub config: Option<SuiteConfig>,
    pub http: Vec<HttpRun>,
    pub produce: Vec<(String, ProduceResult)>,
    pub sink: Option<SinkRun>,
    pub e2e: Option<Report>,
    pub overload: Option<OverloadRun>,
    #[serde(default)]
    pub dedup_cost: Option<dedup_cost::DedupCost>,
    #[serde(default)]
    pub cluster_sink: Option<cluster_sink::ClusterSink>,
    #[serde(default)]
    pub batch: Option<batch::BatchBench>,
    #[serde(default)]
    pub profile_state: Option<profile_state::ProfileStateBench>,
    pub criterion: Criterion,
    /// Steps that failed, with the reason.
    pub failures: Vec<String>,
}

/// Shared by the steps: where binaries and logs are, and the broker.
pub struct Bench {
    pub config: SuiteConfig,
    pub bins: PathBuf,
    pub work: PathBuf,
    pub brokers: String,
    _broker: Guard,
}

impl Bench {
    pub fn start(config: SuiteConfig, work: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&work)?;
        let bins = bin_dir()?;
        let bootstrap_file = work.join("kafka.bootstrap");
        let _ = std::fs::remove_file(&bootstrap_file);
        let mut command = std::process::Command::new(bins.join("vero-dev-broker"));
        // One fresh topic per gateway HTTP run, so each scan sees only its own run.
        let mut http_topics: Vec<String> = steps::HTTP_CONNECTIONS.iter().map(|c| steps::http_topic(*c)).collect();
        http_topics.push(dedup_cost::DEDUP_TOPIC.into());
        http_topics.push(batch::TOPIC.into());
        command.arg(&bootstrap_file).env("VERO_DEV_PARTITIONS", "6").env("VERO_DEV_TOPICS", http_topics.join(","));
        let mut broker = Guard::spawn("vero-dev-broker", command, &work)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let brokers = loop {
            if let Ok(text) = std::fs::read_to_string(&bootstrap_file) {
                if !text.trim().is_empty() {
                    break text.trim().to_owned();
                }
            }
            anyhow::ensure!(broker.is_running(), "vero-dev-broker exited:\n{}", broker.log_tail());
            anyhow::ensure!(std::time::Instant::now() < deadline, "vero-dev-broker did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        Ok(Self { config, bins, work, brokers, _broker: broker })
    }
}

/// Run every step; never fails as a whole (failures are listed in the results).
pub async fn run_all(bench: &Bench, results: &mut Results) {
    results.config = Some(bench.config.clone());
    let mut failures = Vec::new();
    // `VERO_BENCH_STEPS=sink,e2e` runs a subset (for a quick look; `make bench` runs all).
    let wanted = step_wanted;
    macro_rules! step {
        ($name:expr, $call:expr) => {
            if wanted($name) {
                tracing::info!("bench step: {}", $name);
                if let Err(e) = $call.await {
                    tracing::error!("bench step {} failed: {e:#}", $name);
                    failures.push(format!("{}: {e:#}", $name));
                }
            }
        };
    }
    step!("http", steps::http(bench, results));
    step!("produce", steps::produce(bench, results));
    step!("sink", steps::sink(bench, results));
    step!("e2e", steps::e2e(bench, results));
    step!("overload", steps::overload(bench, results));
    step!("dedup", dedup_cost::run(bench, results));
    step!("cluster", cluster_sink::run(bench, results));
    step!("batch", batch::run(bench, results));
    step!("profiles", profile_state::run(bench, results));
    results.failures.extend(failures);
}

/// Whether `VERO_BENCH_STEPS` (e.g. `sink,e2e`; empty = all) selects step `name`.
pub fn step_wanted(name: &str) -> bool {
    let only = std::env::var("VERO_BENCH_STEPS").unwrap_or_default();
    only.trim().is_empty() || only.split(',').any(|s| s.trim() == name)
}

/// `nproc`, CPU model and memory, from `/proc`.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown CPU")
        .to_owned();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or_default();
    format!("{cpus} CPUs (nproc), {model}, {mem_gib:.0} GiB RAM, {}", std::env::consts::OS)
}

/// Mean times of the criterion benchmarks found under `dir` (`<name>/new/estimates.json`).
pub fn read_criterion(dir: &std::path::Path) -> Criterion {
    let mut criterion = Criterion::default();
    let Ok(entries) = std::fs::read_dir(dir) else { return criterion };
    for entry in entries.flatten() {
        let estimates = entry.path().join("new/estimates.json");
        let Ok(text) = std::fs::read_to_string(&estimates) else { continue };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
        if let Some(mean) = json["mean"]["point_estimate"].as_f64() {
            criterion.mean_ns.insert(entry.file_name().to_string_lossy().into_owned(), mean);
        }
    }
    criterion
}
