//! What `events/batch` buys a high-volume producer: the same gateway loaded closed
//! loop at [`CONNECTIONS`] with single `events/track` requests and with
//! `events/batch` requests of [`EVENTS_PER_BATCH`] events, rounds interleaved so that
//! a noisy neighbour on the shared machine hits both alike. The figures are
//! acknowledged events per second and gateway CPU µs per event.

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use vero_loadgen::LoadConfig;

use super::{steps, Bench, Results};

pub const CONNECTIONS: usize = 256;
pub const EVENTS_PER_BATCH: usize = 100;
/// The topic every run produces to (throughput only, no scan).
pub const TOPIC: &str = "bench.batch";
const ROUNDS: usize = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchRun {
    /// `events/track` or `events/batch`.
    pub endpoint: String,
    pub round: usize,
    pub report: vero_loadgen::Report,
    /// CPU cores the gateway used on average during the run.
    pub server_cores: f64,
}

impl BatchRun {
    pub fn events_per_sec(&self) -> f64 {
        self.report.ok_rps * self.report.events_per_request as f64
    }

    /// Gateway CPU time per acknowledged event, in microseconds.
    pub fn cpu_us_per_event(&self) -> f64 {
        self.server_cores / self.events_per_sec().max(1e-9) * 1e6
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BatchBench {
    pub runs: Vec<BatchRun>,
}

impl BatchBench {
    fn median(&self, endpoint: &str, figure: impl Fn(&BatchRun) -> f64) -> f64 {
        let mut values: Vec<f64> = self.runs.iter().filter(|r| r.endpoint == endpoint).map(figure).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or_default()
    }
}

pub async fn run(bench: &Bench, results: &mut Results) -> anyhow::Result<()> {
    let mut measured = BatchBench::default();
    for round in 1..=ROUNDS {
        for (endpoint, batch) in [("events/track", 1), ("events/batch", EVENTS_PER_BATCH)] {
            let (gateway, port) = steps::start_gateway(bench, "ingest-gateway-batch", TOPIC, &[])?;
            let mut config = LoadConfig::for_url(&format!("http://127.0.0.1:{port}/api/v2/{endpoint}"));
            config.connections = CONNECTIONS;
            config.duration = Some(bench.config.secs);
            config.warmup = bench.config.warmup_secs;
            config.batch = batch;
            // One body size, so an event is the same in both runs.
            config.payload_bytes = vec![600];
            let (report, cores) = steps::measured(&gateway, config).await?;
            anyhow::ensure!(report.ok > 0, "{endpoint}: no request was acknowledged");
            measured.runs.push(BatchRun { endpoint: endpoint.into(), round, report, server_cores: cores });
        }
    }
    results.batch = Some(measured);
    Ok(())
}

pub fn render(md: &mut String, batch: Option<&BatchBench>) {
    let _ = writeln!(md, "\n## Batch endpoint\n");
    let Some(batch) = batch else {
        let _ = writeln!(md, "Not measured in this run (see failures above).");
        return;
    };
    let _ = writeln!(
        md,
        "The same gateway, closed loop at {CONNECTIONS} connections, single `events/track` requests against \
         `events/batch` requests of {EVENTS_PER_BATCH} events (600-byte events in both), rounds interleaved; the \
         median counts. Target: batches at least 5× the events/s of single requests.\n"
    );
    let _ = writeln!(md, "| endpoint | round | req/s (200s) | events/s | gateway CPU µs/event | p99 ms |");
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|");
    for run in &batch.runs {
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {:.0} | {:.1} | {:.1} |",
            run.endpoint,
            run.round,
            run.report.ok_rps,
            run.events_per_sec(),
            run.cpu_us_per_event(),
            run.report.ok_latency_ms.p99
        );
    }
    let single = batch.median("events/track", BatchRun::events_per_sec);
    let batched = batch.median("events/batch", BatchRun::events_per_sec);
    let cpu_single = batch.median("events/track", BatchRun::cpu_us_per_event);
    let cpu_batched = batch.median("events/batch", BatchRun::cpu_us_per_event);
    let _ = writeln!(
        md,
        "\nMedian events/s: batch {batched:.0} vs single {single:.0} = **{:.1}×** (target 5×: {}); gateway CPU per \
         event {cpu_batched:.1} vs {cpu_single:.1} µs.",
        batched / single.max(1e-9),
        if batched >= 5.0 * single { "met" } else { "**missed**" }
    );
}
