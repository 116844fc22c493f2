//! End-to-end check: poll ClickHouse while the load runs and after it, until every
//! event answered 200 is queryable (or the deadline passes), then report what is
//! missing, what is duplicated, and how long after its 200 each event became
//! queryable.
//!
//! Events are found by the markers the workload puts into `data`
//! (`loadgen_run`, `loadgen_seq`), extracted with `visitParamExtract*`, which every
//! ClickHouse version since 1.1 has. Each poll re-reads the whole run
//! (`GROUP BY seq`), so the check is exact even though rows arrive out of order.
//! Queries go to ClickHouse's HTTP interface as plain TabSeparated text: the smallest
//! client that works on every server version the project meets (18.16 in Debian).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

use crate::config::E2eConfig;
use crate::report::{new_histogram, E2eReport, Percentiles};
use crate::run::unix_millis;

/// When each acknowledged event got its 200 (unix ms), by sequence number. Grows
/// with the run, which is itself bounded.
#[derive(Debug, Default)]
pub struct AckLog {
    acks: Mutex<HashMap<u64, u64>>,
}

impl AckLog {
    pub fn record(&self, seq: u64, at_ms: u64) {
        self.acks.lock().expect("ack log lock").insert(seq, at_ms);
    }

    fn snapshot(&self) -> HashMap<u64, u64> {
        self.acks.lock().expect("ack log lock").clone()
    }

    fn all_in(&self, seen: &HashMap<u64, Seen>) -> bool {
        self.acks.lock().expect("ack log lock").keys().all(|seq| seen.contains_key(seq))
    }
}

/// What ClickHouse holds for one sequence number.
#[derive(Debug, Clone, Copy)]
struct Seen {
    first_ms: u64,
    rows: u64,
    event_ids: u64,
}

/// Polls one ClickHouse table for one run's events.
pub struct Checker {
    client: Client<HttpConnector, Full<Bytes>>,
    url: String,
    user: String,
    password: String,
    query: String,
    poll_interval: Duration,
    timeout: Duration,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password stays out of debug output.
        f.debug_struct("Checker").field("url", &self.url).field("query", &self.query).finish_non_exhaustive()
    }
}

fn plain_identifier(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl Checker {
    pub fn new(url: &str, config: &E2eConfig, run_id: &str) -> Result<Self, String> {
        if !plain_identifier(&config.clickhouse_table) || config.clickhouse_table.contains('-') {
            return Err(format!("--clickhouse-table {:?} must be database.table", config.clickhouse_table));
        }
        if !plain_identifier(run_id) {
            return Err(format!("--run-id {run_id:?} may only contain letters, digits, '_', '-' and '.'"));
        }
        let query = format!(
            "SELECT visitParamExtractUInt(data, 'loadgen_seq') AS seq, count() AS rows, uniqExact(event_id) AS ids \
             FROM {} WHERE visitParamExtractString(data, 'loadgen_run') = '{run_id}' GROUP BY seq FORMAT TabSeparated",
            config.clickhouse_table
        );
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            url: url.trim_end_matches('/').to_owned() + "/",
            user: config.clickhouse_user.clone(),
            password: config.clickhouse_password.clone(),
            query,
            poll_interval: Duration::from_millis(config.poll_interval_ms.max(10)),
            timeout: Duration::from_secs_f64(config.e2e_timeout.max(0.0)),
        })
    }

    async fn poll(&self) -> Result<Vec<(u64, u64, u64)>, String> {
        let request = Request::post(&self.url)
            .header("X-ClickHouse-User", &self.user)
            .header("X-ClickHouse-Key", &self.password)
            .body(Full::new(Bytes::from(self.query.clone())))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(Duration::from_secs(30), self.client.request(request))
            .await
            .map_err(|_| "ClickHouse query timed out".to_string())?
            .map_err(|e| format!("ClickHouse unreachable: {e}"))?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        let text = String::from_utf8_lossy(&body);
        if !status.is_success() {
            return Err(format!("ClickHouse answered {status}: {}", text.trim()));
        }
        text.lines().filter(|l| !l.is_empty()).map(parse_row).collect()
    }

    /// Poll until the load is over and every acked event was seen, or the deadline
    /// after the load passes, or `shutdown`.
    pub async fn watch(
        self,
        acks: std::sync::Arc<AckLog>,
        load_over: CancellationToken,
        shutdown: CancellationToken,
    ) -> anyhow::Result<E2eReport> {
        let mut seen: HashMap<u64, Seen> = HashMap::new();
        let mut last_error;
        let mut over_since: Option<Instant> = None;
        loop {
            match self.poll().await {
                Ok(rows) => {
                    let now = unix_millis();
                    for (seq, rows, event_ids) in rows {
                        let entry = seen.entry(seq).or_insert(Seen { first_ms: now, rows, event_ids });
                        entry.rows = rows;
                        entry.event_ids = event_ids;
                    }
                    last_error = None;
                }
                Err(e) => {
                    tracing::warn!("end-to-end poll failed: {e}");
                    last_error = Some(e);
                }
            }
            if load_over.is_cancelled() {
                let since = *over_since.get_or_insert_with(Instant::now);
                if (last_error.is_none() && acks.all_in(&seen)) || since.elapsed() >= self.timeout {
                    break;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.poll_interval) => {}
            }
        }
        let waited = over_since.map(|t| t.elapsed().as_secs_f64()).unwrap_or_default();
        Ok(summarize(&acks.snapshot(), &seen, waited, self.poll_interval, last_error))
    }
}

fn parse_row(line: &str) -> Result<(u64, u64, u64), String> {
    let mut fields = line.split('\t').map(str::parse::<u64>);
    match (fields.next(), fields.next(), fields.next()) {
        (Some(Ok(seq)), Some(Ok(rows)), Some(Ok(ids))) => Ok((seq, rows, ids)),
        _ => Err(format!("unexpected ClickHouse row {line:?}")),
    }
}

fn summarize(
    acks: &HashMap<u64, u64>,
    seen: &HashMap<u64, Seen>,
    waited_secs: f64,
    poll_interval: Duration,
    last_query_error: Option<String>,
) -> E2eReport {
    let mut latency = new_histogram();
    let mut report = E2eReport {
        acked: acks.len() as u64,
        waited_secs,
        poll_interval_ms: poll_interval.as_millis() as u64,
        last_query_error,
        ..E2eReport::default()
    };
    for (seq, ack_ms) in acks {
        match seen.get(seq) {
            Some(s) => {
                report.found += 1;
                // Seen before the 200 reached us counts as immediately queryable.
                latency.saturating_record(s.first_ms.saturating_sub(*ack_ms).max(1) * 1000);
            }
            None => report.missing += 1,
        }
    }
    for (seq, s) in seen {
        report.duplicate_rows += u64::from(s.rows > 1);
        report.duplicate_event_ids += u64::from(s.event_ids > 1);
        report.stored_without_ack += u64::from(!acks.contains_key(seq));
    }
    report.ingest_to_queryable_ms = Percentiles::from_micros(&latency);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_missing_duplicates_and_strays() {
        let acks: HashMap<u64, u64> = [(1, 1_000), (2, 1_000), (3, 1_000)].into();
        let seen: HashMap<u64, Seen> = [
            (1, Seen { first_ms: 1_250, rows: 1, event_ids: 1 }),
            (2, Seen { first_ms: 1_500, rows: 2, event_ids: 1 }),
            (9, Seen { first_ms: 1_500, rows: 2, event_ids: 2 }),
        ]
        .into();
        let r = summarize(&acks, &seen, 1.0, Duration::from_millis(100), None);
        assert_eq!((r.acked, r.found, r.missing), (3, 2, 1));
        assert_eq!((r.duplicate_rows, r.duplicate_event_ids, r.stored_without_ack), (2, 1, 1));
        assert_eq!(r.ingest_to_queryable_ms.count, 2);
        assert!((r.ingest_to_queryable_ms.max - 500.0).abs() < 1.0, "{:?}", r.ingest_to_queryable_ms);
    }

    #[test]
    fn rows_parse_or_fail_clearly() {
        assert_eq!(parse_row("5\t1\t1").unwrap(), (5, 1, 1));
        assert!(parse_row("x\t1").unwrap_err().contains("unexpected"));
    }

    #[test]
    fn names_that_would_change_the_query_are_refused() {
        let mut config = crate::config::LoadConfig::for_url("http://127.0.0.1:1/").e2e;
        assert!(Checker::new("http://127.0.0.1:8123", &config, "run'; DROP").is_err());
        config.clickhouse_table = "vero.events; DROP".into();
        assert!(Checker::new("http://127.0.0.1:8123", &config, "run").is_err());
    }
}
