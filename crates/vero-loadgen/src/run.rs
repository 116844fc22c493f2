//! A load run: `connections` workers share one request schedule until the run is over,
//! then their histograms and counts merge into a [`Report`].
//!
//! Guarantees: the run is bounded by `--requests` and/or the duration (plus the
//! request timeout for the last answers); every request is counted exactly once, as a
//! status or as an error; in open-loop mode latency is measured from the scheduled
//! start of each request, so queueing in the server (or in the load generator when all
//! connections are busy) shows up in the percentiles instead of lowering the rate.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::SeedableRng;
use tokio_util::sync::CancellationToken;

use crate::client::{Connection, Target};
use crate::config::LoadConfig;
use crate::e2e::{self, AckLog};
use crate::report::{new_histogram, Percentiles, Report};
use crate::workload::Workload;

/// The shared schedule: hands out sequence numbers and their start times.
struct Schedule {
    next_seq: AtomicU64,
    start: Instant,
    warmup_end: Instant,
    /// No request starts at or after this instant.
    end: Option<Instant>,
    max_requests: Option<u64>,
    rate: Option<f64>,
    shutdown: CancellationToken,
    done: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
}

struct Ticket {
    seq: u64,
    /// Open loop: when this request is due.
    due: Option<Instant>,
}

impl Schedule {
    fn next(&self) -> Option<Ticket> {
        if self.shutdown.is_cancelled() {
            return None;
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        if self.max_requests.is_some_and(|max| seq >= max) {
            return None;
        }
        let due = self.rate.map(|rate| self.start + Duration::from_secs_f64(seq as f64 / rate));
        let starts_at = due.unwrap_or_else(Instant::now);
        if self.end.is_some_and(|end| starts_at >= end) {
            return None;
        }
        Some(Ticket { seq, due })
    }
}

/// What one worker saw.
struct WorkerStats {
    all: Histogram<u64>,
    ok: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
    warmup_requests: u64,
    warmup_ok: u64,
    last_done: Option<Instant>,
}

impl WorkerStats {
    fn new() -> Self {
        Self {
            all: new_histogram(),
            ok: new_histogram(),
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            warmup_requests: 0,
            warmup_ok: 0,
            last_done: None,
        }
    }

    fn merge(&mut self, other: WorkerStats) {
        let _ = self.all.add(&other.all);
        let _ = self.ok.add(&other.ok);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        self.warmup_requests += other.warmup_requests;
        self.warmup_ok += other.warmup_ok;
        self.last_done = self.last_done.max(other.last_done);
    }
}

pub(crate) fn unix_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

async fn worker(
    schedule: Arc<Schedule>,
    target: Arc<Target>,
    workload: Arc<Workload>,
    acks: Option<Arc<AckLog>>,
    timeout: Duration,
    seed: u64,
) -> WorkerStats {
    let mut stats = WorkerStats::new();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut connection = Connection::default();
    let mut body = Vec::with_capacity(4096);
    while let Some(ticket) = schedule.next() {
        if let Some(due) = ticket.due {
            tokio::select! {
                _ = schedule.shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(due.into()) => {}
            }
        }
        workload.body(ticket.seq, &mut rng, &mut body);
        let started = ticket.due.unwrap_or_else(Instant::now);
        let measured = started >= schedule.warmup_end;
        let outcome = connection.post_json(&target, Bytes::copy_from_slice(&body), timeout).await;
        let now = Instant::now();
        let micros = now.saturating_duration_since(started).as_micros().max(1) as u64;
        schedule.done.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(status) => {
                if status == 200 {
                    schedule.ok.fetch_add(1, Ordering::Relaxed);
                    stats.warmup_ok += u64::from(!measured);
                    if let Some(acks) = &acks {
                        acks.record(ticket.seq, unix_millis());
                    }
                }
                if measured {
                    stats.all.saturating_record(micros);
                    if status == 200 {
                        stats.ok.saturating_record(micros);
                    }
                    *stats.statuses.entry(status).or_default() += 1;
                }
            }
            Err(e) => {
                schedule.failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("request {} failed: {e}", ticket.seq);
                if measured {
                    *stats.errors.entry(e.kind().to_owned()).or_default() += 1;
                }
                if e.kind() == "connect" {
                    // Do not spin against a server that refuses connections.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        if measured {
            stats.last_done = Some(now);
        } else {
            stats.warmup_requests += 1;
        }
    }
    stats
}

fn progress_bar(config: &LoadConfig) -> indicatif::ProgressBar {
    if config.quiet {
        return indicatif::ProgressBar::hidden();
    }
    let (len, unit) = match (config.requests, config.measured_duration()) {
        (Some(n), None) => (n, "req"),
        (_, Some(d)) => ((config.warmup() + d).as_millis() as u64, "ms"),
        (None, None) => (0, "req"),
    };
    let bar = indicatif::ProgressBar::new(len);
    let template = format!("{{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {unit}  {{msg}}");
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Run the load described by `config` until it is over or `shutdown` is cancelled.
pub async fn run(config: LoadConfig, shutdown: CancellationToken) -> anyhow::Result<Report> {
    config.validate().map_err(anyhow::Error::msg)?;
    let target = Arc::new(Target::parse(&config.url).map_err(anyhow::Error::msg)?);
    let run_id = match &config.run_id {
        Some(id) => id.clone(),
        None => format!("lg-{}", uuid::Uuid::now_v7().simple()),
    };
    let e2e_target = match &config.e2e.clickhouse_url {
        Some(url) => Some(e2e::Checker::new(url, &config.e2e, &run_id).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let workload = Arc::new(Workload::new(&config, &run_id));
    let start = Instant::now();
    let warmup_end = start + config.warmup();
    let schedule = Arc::new(Schedule {
        next_seq: AtomicU64::new(0),
        start,
        warmup_end,
        end: config.measured_duration().map(|d| warmup_end + d),
        max_requests: config.requests,
        rate: config.rate,
        shutdown: shutdown.child_token(),
        done: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let acks = e2e_target.as_ref().map(|_| Arc::new(AckLog::default()));
    let load_over = CancellationToken::new();
    let poller = e2e_target.map(|checker| {
        let (acks, load_over, shutdown) = (acks.clone().expect("set with e2e"), load_over.clone(), shutdown.clone());
        tokio::spawn(async move { checker.watch(acks, load_over, shutdown).await })
    });

    let bar = progress_bar(&config);
    let ticker = {
        let (schedule, bar, requests_mode) = (schedule.clone(), bar.clone(), config.measured_duration().is_none());
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let done = schedule.done.load(Ordering::Relaxed);
                let now = Instant::now();
                let rps = (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
                last = (now, done);
                bar.set_position(if requests_mode {
                    done
                } else {
                    now.duration_since(schedule.start).as_millis() as u64
                });
                bar.set_message(format!(
                    "{rps:.0} req/s  ok {}  failed {}",
                    schedule.ok.load(Ordering::Relaxed),
                    schedule.failed.load(Ordering::Relaxed)
                ));
            }
        })
    };

    let timeout = config.timeout();
    let workers: Vec<_> = (0..config.connections)
        .map(|i| {
            let (schedule, target, workload, acks) = (schedule.clone(), target.clone(), workload.clone(), acks.clone());
            tokio::spawn(worker(schedule, target, workload, acks, timeout, 0x5eed_0000 + i as u64))
        })
        .collect();
    let mut stats = WorkerStats::new();
    for worker in workers {
        stats.merge(worker.await?);
    }
    ticker.abort();
    bar.finish_and_clear();
    load_over.cancel();
    let e2e = match poller {
        Some(poller) => Some(poller.await??),
        None => None,
    };

    let elapsed = stats.last_done.map(|t| t.saturating_duration_since(warmup_end)).unwrap_or_default().as_secs_f64();
    let requests = stats.all.len() + stats.errors.values().sum::<u64>();
    let ok = stats.statuses.get(&200).copied().unwrap_or(0);
    let per_sec = |n: u64| if elapsed > 0.0 { n as f64 / elapsed } else { 0.0 };
    Ok(Report {
        run_id,
        url: config.url.clone(),
        connections: config.connections,
        events_per_request: config.batch,
        target_rate: config.rate,
        elapsed_secs: elapsed,
        requests,
        ok,
        answered_rps: per_sec(stats.all.len()),
        ok_rps: per_sec(ok),
        latency_ms: Percentiles::from_micros(&stats.all),
        ok_latency_ms: Percentiles::from_micros(&stats.ok),
        statuses: stats.statuses,
        errors: stats.errors,
        warmup_requests: stats.warmup_requests,
        acked_total: ok + stats.warmup_ok,
        e2e,
    })
}
