//! What idempotent retries (issue 10) cost the gateway: today's gateway without its
//! request-id handling against today's, same load, same run, interleaved so that a
//! noisy neighbour on the shared machine hits both alike.
//!
//! The gateway's share of the dedup is small by design (docs/design.md, "Idempotent
//! retries"): it only validates and records an explicit request id
//! (`Idempotency-Key` / `extras.message_id`); the request key is computed by the
//! consumers. So three gateways are loaded, closed loop at [`CONNECTIONS`]:
//! * `baseline`: today's source with the two request-id calls (`message_id::merge_header`,
//!   `message_id::validate`) removed (`VERO_BENCH_BASELINE_GATEWAY`, built by
//!   `scripts/bench.sh` into `target/bench/`), bodies without a message id;
//! * `current`: today's gateway, the same bodies;
//! * `current + message_id`: today's gateway, every body with `extras.message_id`.
//!
//! The step is skipped (recorded as failed, with the reason) when no baseline binary
//! is given.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use vero_loadgen::{LoadConfig, Report};

use super::{Bench, Results};
use crate::procs::{free_port, wait_for_port, Guard};

/// Closed-loop connections: the gateway's saturation point in the HTTP step.
pub const CONNECTIONS: usize = 256;
/// Each variant is measured this many times, interleaved.
const ROUNDS: usize = 5;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DedupCostRun {
    pub variant: String,
    pub round: usize,
    pub report: Report,
    /// CPU cores the gateway used on average during the run.
    pub server_cores: f64,
}

impl DedupCostRun {
    /// Gateway CPU time per answered request, in microseconds: the cost itself, less
    /// sensitive than req/s to other work on a shared machine.
    pub fn cpu_us_per_request(&self) -> f64 {
        let answered = self.report.answered_rps.max(1e-9);
        self.server_cores / answered * 1e6
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DedupCost {
    pub runs: Vec<DedupCostRun>,
}

impl DedupCost {
    /// Median req/s (200s) of a variant over its rounds.
    pub fn median_rps(&self, variant: &str) -> Option<f64> {
        self.median(variant, |r| r.report.ok_rps)
    }

    /// Median gateway CPU µs per request of a variant over its rounds.
    pub fn median_cpu_us(&self, variant: &str) -> Option<f64> {
        self.median(variant, DedupCostRun::cpu_us_per_request)
    }

    fn median(&self, variant: &str, figure: impl Fn(&DedupCostRun) -> f64) -> Option<f64> {
        let mut values: Vec<f64> = self.runs.iter().filter(|r| r.variant == variant).map(figure).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied()
    }
}

pub const BASELINE: &str = "baseline";
pub const CURRENT: &str = "current";
pub const CURRENT_WITH_IDS: &str = "current + message_id";

/// A gateway binary and its config directory.
struct Gateway {
    binary: PathBuf,
    config_dir: PathBuf,
}

impl Gateway {
    fn start(&self, bench: &Bench, name: &str, topic: &str) -> anyhow::Result<(Guard, u16)> {
        let port = free_port()?;
        let mut command = Command::new(&self.binary);
        command
            .env("VERO_ENV", "local")
            .env("VERO_CONFIG_DIR", &self.config_dir)
            .env("RUST_LOG", "warn")
            .env("VERO__HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env("VERO__KAFKA__BROKERS", &bench.brokers)
            .env("VERO__KAFKA__EVENTS_TOPIC", topic);
        let mut guard = Guard::spawn(name, command, &bench.work)?;
        wait_for_port(port, &mut guard, Duration::from_secs(60))?;
        Ok((guard, port))
    }
}

pub async fn run(bench: &Bench, results: &mut Results) -> anyhow::Result<()> {
    let baseline_binary = std::env::var_os("VERO_BENCH_BASELINE_GATEWAY")
        .map(PathBuf::from)
        .context("VERO_BENCH_BASELINE_GATEWAY is not set (scripts/bench.sh builds the baseline gateway)")?;
    anyhow::ensure!(baseline_binary.exists(), "baseline gateway {} does not exist", baseline_binary.display());
    let baseline = Gateway {
        config_dir: std::env::var_os("VERO_BENCH_BASELINE_CONFIG")
            .map(PathBuf::from)
            .context("VERO_BENCH_BASELINE_CONFIG is not set (the baseline's config/gateway)")?,
        binary: baseline_binary,
    };
    let current = Gateway { binary: bench.bins.join("ingest-gateway"), config_dir: "config/gateway".into() };
    let mut cost = DedupCost { runs: Vec::new() };
    for round in 1..=ROUNDS {
        for (variant, gateway, message_ids) in
            [(BASELINE, &baseline, false), (CURRENT, &current, false), (CURRENT_WITH_IDS, &current, true)]
        {
            tracing::info!(variant, round, "dedup cost run");
            // Every run produces to the same topic: throughput only, no scan.
            let (server, port) = gateway.start(bench, "ingest-gateway-dedup", DEDUP_TOPIC)?;
            let mut config = LoadConfig::for_url(&format!("http://127.0.0.1:{port}/api/v2/events/track"));
            config.connections = CONNECTIONS;
            config.duration = Some(bench.config.secs);
            config.warmup = bench.config.warmup_secs;
            config.message_ids = message_ids;
            let (report, server_cores) = super::steps::measured(&server, config).await?;
            drop(server);
            cost.runs.push(DedupCostRun { variant: variant.into(), round, report, server_cores });
        }
    }
    results.dedup_cost = Some(cost);
    Ok(())
}

/// The topic of this step (created by the suite's broker).
pub const DEDUP_TOPIC: &str = "bench.dedup";
