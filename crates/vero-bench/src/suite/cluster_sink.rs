//! The `cluster` step: the event sink's rows/s into a 2 × 2 ClickHouse cluster
//! (ZooKeeper and four `clickhouse-server` processes from `vero_testkit`, the sink in
//! cluster mode: each shard's `_local` tables written directly, docs/design.md
//! "Cluster writes") next to the same sink into one server, same rows from the same
//! topic, measured in the same run, interleaved: `VERO_BENCH_CLUSTER_ROUNDS` (default 3)
//! rounds of one node then the cluster, each on fresh servers; medians count. Schema
//! migrated before each run, so neither pays for it. Everything shares the machine's cores: the cluster's four servers and
//! ZooKeeper compete with the sink, so the figure is the cost of the cluster path on
//! one box, not a cluster's capacity.

use std::fmt::Write;
use std::process::Command;

use serde::{Deserialize, Serialize};
use vero_testkit::clickhouse::ClickHouseServer;
use vero_testkit::clickhouse_cluster::ClickHouseCluster;

use super::steps::{count, sink_command, time_sink, topic_with_rows};
use super::{Bench, Results};

pub const SHARDS: usize = 2;
pub const REPLICAS: usize = 2;

/// One sink run: seconds from process start to every row counted, and steady state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timing {
    pub secs: f64,
    pub steady_secs: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterSink {
    /// The command of the run that measured it: a partial run of other steps carries
    /// this section over with the header of its own run.
    #[serde(default)]
    pub command: String,
    pub rows: u64,
    /// One timing per round, in order.
    pub single: Vec<Timing>,
    pub cluster: Vec<Timing>,
}

/// The median of `values` (upper middle for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or_default()
}

impl ClusterSink {
    /// Median steady-state seconds of `runs`.
    fn steady(runs: &[Timing]) -> f64 {
        median(runs.iter().map(|t| t.steady_secs).collect())
    }

    fn from_start(runs: &[Timing]) -> f64 {
        median(runs.iter().map(|t| t.secs).collect())
    }
}

/// The sink's config dir with `[cluster] nodes` listing the cluster's HTTP URLs.
fn cluster_config(bench: &Bench, cluster: &ClickHouseCluster) -> anyhow::Result<std::path::PathBuf> {
    let dir = bench.work.join("cluster-sink-config");
    std::fs::create_dir_all(&dir)?;
    let defaults = std::fs::read_to_string("config/event-sink/default.toml")?;
    let nodes: Vec<String> = cluster.http_urls().into_iter().flatten().map(|u| format!("\"{u}\"")).collect();
    let listed = format!("nodes = [{}]", nodes.join(", "));
    anyhow::ensure!(defaults.contains("\nnodes = []\n"), "config/event-sink/default.toml has no [cluster] nodes");
    std::fs::write(dir.join("default.toml"), defaults.replace("\nnodes = []\n", &format!("\n{listed}\n")))?;
    Ok(dir)
}

fn cluster_command(
    bench: &Bench,
    cluster: &ClickHouseCluster,
    config: &std::path::Path,
    topic: &str,
    group: &str,
) -> Command {
    let mut command = sink_command(bench, &cluster.node(0, 0).http_url(), topic, group);
    command.env("VERO_CONFIG_DIR", config).env("VERO__CLICKHOUSE__CLUSTER", cluster.name());
    command
}

fn migrate(mut command: Command) -> anyhow::Result<()> {
    anyhow::ensure!(command.arg("migrate").status()?.success(), "event-sink migrate failed");
    Ok(())
}

pub async fn run(bench: &Bench, results: &mut Results) -> anyhow::Result<()> {
    let rows = bench.config.records;
    let rounds = std::env::var("VERO_BENCH_CLUSTER_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3usize);
    let (topic, _) = topic_with_rows(bench, "bench.cluster", rows).await?;
    let mut run = ClusterSink { command: results.command.clone(), rows, single: Vec::new(), cluster: Vec::new() };
    for round in 1..=rounds.max(1) {
        let single = one_node(bench, &topic, rows).await?;
        println!("round {round}: event-sink into one node: {single:?}");
        run.single.push(single);
        let clustered = on_cluster(bench, &topic, rows).await?;
        println!("round {round}: event-sink into the {SHARDS}x{REPLICAS} cluster: {clustered:?}");
        run.cluster.push(clustered);
    }
    results.cluster_sink = Some(run);
    Ok(())
}

/// One sink reading all of `topic` (a fresh group) into a fresh server.
async fn one_node(bench: &Bench, topic: &str, rows: u64) -> anyhow::Result<Timing> {
    let server = tokio::task::spawn_blocking(ClickHouseServer::start).await??;
    migrate(sink_command(bench, &server.http_url(), topic, "unused"))?;
    let command = sink_command(bench, &server.http_url(), topic, &vero_testkit::unique_name("bench-one-node"));
    let count = || count(&server, "vero.events");
    let (secs, steady_secs) = time_sink(bench, "event-sink-one-node", command, rows, rows + 1, count).await?;
    Ok(Timing { secs, steady_secs })
}

/// The same into a fresh cluster, counted through the Distributed `vero.events`.
async fn on_cluster(bench: &Bench, topic: &str, rows: u64) -> anyhow::Result<Timing> {
    let cluster = tokio::task::spawn_blocking(start_cluster).await??;
    let config = cluster_config(bench, &cluster)?;
    migrate(cluster_command(bench, &cluster, &config, topic, "unused"))?;
    let command = cluster_command(bench, &cluster, &config, topic, &vero_testkit::unique_name("bench-cluster"));
    let count = || count(cluster.node(0, 0), "vero.events");
    let (secs, steady_secs) = time_sink(bench, "event-sink-cluster", command, rows, rows + 1, count).await?;
    Ok(Timing { secs, steady_secs })
}

/// A fresh cluster; a start that fails is tried again, twice: the test kit picks free
/// ports before the servers bind them, and another process on the machine may take one
/// in between ("Address already in use").
fn start_cluster() -> anyhow::Result<ClickHouseCluster> {
    let mut attempt = 1;
    loop {
        match ClickHouseCluster::start(SHARDS, REPLICAS) {
            Ok(cluster) => return Ok(cluster),
            Err(e) if attempt < 3 => {
                tracing::warn!(attempt, error = %format!("{e:#}").lines().next().unwrap_or_default(), "cluster start failed, retrying");
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The section of `docs/benchmarks.md`.
pub fn render(md: &mut String, run: Option<&ClusterSink>) {
    let _ = writeln!(md, "\n## Sink into a {SHARDS}×{REPLICAS} ClickHouse cluster vs one node (issue 14)\n");
    let Some(run) = run else {
        let _ = writeln!(md, "Not measured in this run (see failures above).");
        return;
    };
    let _ = writeln!(
        md,
        "The same {} rows from one topic (6 partitions), one event-sink each, fresh consumer group, fresh servers; \
         {} rounds of one node then the cluster, interleaved, medians. The cluster (ZooKeeper and {} \
         `clickhouse-server` processes) runs on the same cores as the sink. Steady state: after the first visible \
         batch. Measured by `{}`.\n",
        run.rows,
        run.single.len(),
        SHARDS * REPLICAS,
        run.command
    );
    let _ = writeln!(
        md,
        "| target | steady rows/s per round | median steady rows/s | median rows/s from start | steady ratio vs one node |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    let rate = |secs: f64| run.rows as f64 / secs.max(1e-9);
    let base = ClusterSink::steady(&run.single);
    for (name, runs) in [("one node", &run.single), ("2×2 cluster (shards written directly)", &run.cluster)] {
        let rounds: Vec<String> = runs.iter().map(|t| format!("{:.0}", rate(t.steady_secs))).collect();
        let steady = ClusterSink::steady(runs);
        let _ = writeln!(
            md,
            "| {name} | {} | {:.0} | {:.0} | {:.2} |",
            rounds.join(", "),
            rate(steady),
            rate(ClusterSink::from_start(runs)),
            base / steady.max(1e-9)
        );
    }
}
