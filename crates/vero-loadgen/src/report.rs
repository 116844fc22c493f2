//! The run report: counts by outcome, throughput and HDR latency percentiles, plus the
//! end-to-end results when ClickHouse was checked. Serializes to JSON for the bench
//! suite and renders as text for people.

use std::collections::BTreeMap;
use std::fmt;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latency histograms record microseconds, from 1 µs to 10 minutes, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid")
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn from_micros(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

impl fmt::Display for Percentiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  (mean {:.2} ms, n={})",
            self.p50, self.p90, self.p99, self.p999, self.max, self.mean, self.count
        )
    }
}

/// What one load run measured (warmup excluded).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub run_id: String,
    pub url: String,
    pub connections: usize,
    /// Events in each request (`--batch`); events/s = `ok_rps` × this.
    #[serde(default = "one")]
    pub events_per_request: usize,
    /// Open-loop target rate, `None` for closed loop.
    pub target_rate: Option<f64>,
    /// Seconds from the end of the warmup to the last measured answer.
    pub elapsed_secs: f64,
    /// Measured requests that got an HTTP answer or failed.
    pub requests: u64,
    /// Answers with status 200.
    pub ok: u64,
    /// Answers by HTTP status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Failures without an HTTP answer, by kind (`connect`, `timeout`, `io`).
    pub errors: BTreeMap<String, u64>,
    /// Answered requests per second (any status).
    pub answered_rps: f64,
    /// 200s per second.
    pub ok_rps: f64,
    /// Latency of every answered request.
    pub latency_ms: Percentiles,
    /// Latency of the 200s only.
    pub ok_latency_ms: Percentiles,
    /// Requests sent during the warmup (not in the figures above).
    pub warmup_requests: u64,
    /// Every 200 of the run, warmup included: what must be in Kafka afterwards.
    pub acked_total: u64,
    pub e2e: Option<E2eReport>,
}

impl Report {
    pub fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// End-to-end results: did every acknowledged event become queryable, and how fast.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct E2eReport {
    /// Events answered 200 during the run (warmup included).
    pub acked: u64,
    /// Acknowledged events found in ClickHouse.
    pub found: u64,
    /// Acknowledged events never found before the deadline.
    pub missing: u64,
    /// Events stored in more than one row (raw rows, before any FINAL/dedup).
    pub duplicate_rows: u64,
    /// Events stored under more than one `event_id`: the gateway produced them twice.
    pub duplicate_event_ids: u64,
    /// Events found that were not answered 200 (e.g. timed out at the client after
    /// the gateway had produced them). Not an error: the client would retry.
    pub stored_without_ack: u64,
    /// Seconds waited after the load ended.
    pub waited_secs: f64,
    /// From the 200 reaching the load generator to the event showing up in a query.
    /// Resolution: the poll interval.
    pub ingest_to_queryable_ms: Percentiles,
    pub poll_interval_ms: u64,
    /// The last failed ClickHouse query, if the last query failed (the reason events
    /// count as missing may then be the query, not the pipeline).
    pub last_query_error: Option<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.target_rate {
            Some(rate) => format!("open loop at {rate:.0} req/s"),
            None => "closed loop".into(),
        };
        writeln!(f, "run {} against {} ({} connections, {mode})", self.run_id, self.url, self.connections)?;
        writeln!(
            f,
            "  {} requests in {:.2} s: {:.0} answered/s, {:.0} ok/s ({} warmup requests not counted)",
            self.requests, self.elapsed_secs, self.answered_rps, self.ok_rps, self.warmup_requests
        )?;
        if self.events_per_request > 1 {
            let events = self.ok_rps * self.events_per_request as f64;
            writeln!(f, "  {} events per request: {events:.0} acknowledged events/s", self.events_per_request)?;
        }
        let statuses: Vec<String> = self.statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        writeln!(f, "  statuses  {}", if statuses.is_empty() { "none".into() } else { statuses.join(", ") })?;
        if !self.errors.is_empty() {
            let errors: Vec<String> = self.errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            writeln!(f, "  errors    {}", errors.join(", "))?;
        }
        writeln!(f, "  latency   {}", self.latency_ms)?;
        writeln!(f, "  200s      {}", self.ok_latency_ms)?;
        if let Some(e2e) = &self.e2e {
            writeln!(
                f,
                "  e2e       {} acked, {} found, {} missing, {} duplicate rows, {} duplicate event ids, {} stored without ack (waited {:.1} s)",
                e2e.acked,
                e2e.found,
                e2e.missing,
                e2e.duplicate_rows,
                e2e.duplicate_event_ids,
                e2e.stored_without_ack,
                e2e.waited_secs
            )?;
            writeln!(
                f,
                "  ingest-to-queryable  {} (poll every {} ms)",
                e2e.ingest_to_queryable_ms, e2e.poll_interval_ms
            )?;
            if let Some(error) = &e2e.last_query_error {
                writeln!(f, "  last ClickHouse query failed: {error}")?;
            }
        }
        Ok(())
    }
}

/// Reports written before `events_per_request` existed carried one event per request.
fn one() -> usize {
    1
}
