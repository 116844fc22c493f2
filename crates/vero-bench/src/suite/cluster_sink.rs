//! The `cluster` step: the event sink's rows/s into a 2 × 2 ClickHouse cluster
//! (ZooKeeper and four `clickhouse-server` processes from `vero_testkit`, the sink in
//! cluster mode: each shard's `_local` tables written directly, docs/design.md
//! "Cluster writes") next to the same sink into one server, same rows from the same
//! topic, measured in the same run. Schema migrated before each run, so neither pays
//! for it. Everything shares the machine's cores: the cluster's four servers and
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
    pub rows: u64,
    pub single: Timing,
    pub cluster: Timing,
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
    let (topic, _) = topic_with_rows(bench, "bench.cluster", rows).await?;
    let rows_in_topic = rows + 1;

    let server = tokio::task::spawn_blocking(ClickHouseServer::start).await??;
    migrate(sink_command(bench, &server.http_url(), &topic, "unused"))?;
    let command = sink_command(bench, &server.http_url(), &topic, &vero_testkit::unique_name("bench-one-node"));
    let (secs, steady_secs) =
        time_sink(bench, "event-sink-one-node", command, rows, rows_in_topic, || count(&server, "vero.events")).await?;
    let single = Timing { secs, steady_secs };
    drop(server);
    println!("event-sink into one node: {single:?}");

    let cluster = tokio::task::spawn_blocking(|| ClickHouseCluster::start(SHARDS, REPLICAS)).await??;
    let config = cluster_config(bench, &cluster)?;
    migrate(cluster_command(bench, &cluster, &config, &topic, "unused"))?;
    let command = cluster_command(bench, &cluster, &config, &topic, &vero_testkit::unique_name("bench-cluster"));
    let entry = cluster.node(0, 0);
    let (secs, steady_secs) =
        time_sink(bench, "event-sink-cluster", command, rows, rows_in_topic, || count(entry, "vero.events")).await?;
    let clustered = Timing { secs, steady_secs };
    println!("event-sink into the {SHARDS}x{REPLICAS} cluster: {clustered:?}");
    results.cluster_sink = Some(ClusterSink { rows, single, cluster: clustered });
    Ok(())
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
        "The same {} rows from one topic (6 partitions), one event-sink each, fresh consumer group; the cluster \
         (ZooKeeper and {} `clickhouse-server` processes) runs on the same cores as the sink. Steady state: after \
         the first visible batch.\n",
        run.rows,
        SHARDS * REPLICAS
    );
    let _ = writeln!(md, "| target | seconds from start | rows/s | steady rows/s | steady ratio vs one node |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    let rate = |secs: f64| run.rows as f64 / secs.max(1e-9);
    for (name, t) in [("one node", &run.single), ("2×2 cluster (shards written directly)", &run.cluster)] {
        let ratio = run.single.steady_secs / t.steady_secs.max(1e-9);
        let _ =
            writeln!(md, "| {name} | {:.2} | {:.0} | {:.0} | {ratio:.2} |", t.secs, rate(t.secs), rate(t.steady_secs));
    }
}
