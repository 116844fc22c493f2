//! How long a writer waits for one replica: gray failures (a replica that hangs
//! instead of refusing: SIGSTOP, a dead disk, a half-open connection) bounded by time,
//! not by a failed attempt.
//!
//! An attempt that has not answered after [`Patience::stalled_after`] is *stalled*:
//! from then on the consumer's `…_shard_failing{shard}` is 1, `/readyz` says which
//! shard and replica, and the replica is pinged (`SELECT 1`). A replica that does not
//! answer a ping within [`Patience::ping_timeout`] hangs: the attempt is abandoned as a
//! retryable failure, so the shard fails over to its next replica (about 2 s after
//! the attempt began at the default park deadline: 1 s to stall plus a ping of at
//! most a fifth of it). A replica that answers its pings
//! is only slow (a large INSERT on a loaded server, a replica waiting for ZooKeeper):
//! the attempt goes on, at most [`Patience::limit`] (`clickhouse.request_timeout_ms`).
//! Why pings and not a fixed attempt deadline: an INSERT of a full batch may take
//! seconds on a healthy replica, and cutting it would retry it forever.
//!
//! Abandoning is safe for the writers: an INSERT the hung replica finishes later is
//! the same block the retry sends to the other replica, and the shard's block
//! deduplication in ZooKeeper keeps one (docs/design.md, "Cluster writes").

use std::future::Future;
use std::time::Duration;

use clickhouse::Client;
use prometheus::IntGaugeVec;
use tokio::time::Instant;
use vero_clickhouse::Failure;
use vero_service::health::Health;

/// The waiting policy of one write attempt to one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    /// No answer for this long: the attempt is reported stalled and pinging starts.
    pub stalled_after: Duration,
    /// A ping not answered within this long means the replica hangs.
    pub ping_timeout: Duration,
    /// The longest an attempt may take however its replica answers pings.
    pub limit: Duration,
}

impl Patience {
    /// 1 s to stall, 1.5 s per ping, both at most a fifth of `park_after` (the
    /// failover must come well before the shard is parked); `request_timeout` caps
    /// an attempt.
    pub fn new(park_after: Duration, request_timeout: Duration) -> Self {
        let fifth = park_after / 5;
        Self {
            stalled_after: Duration::from_secs(1).min(fifth),
            ping_timeout: Duration::from_millis(1500).min(fifth),
            limit: request_timeout,
        }
    }
}

/// Where a consumer shows stalled writes: its `…_shard_failing{shard}` gauge and its
/// `/readyz` (held not ready until the stalled attempt ends).
#[derive(Clone)]
pub struct Stalls {
    pub shard_failing: IntGaugeVec,
    pub health: Health,
}

/// Reported from the first second of a stall until it ends, however it ends (an
/// answer, abandoned, or the caller dropping the attempt at its park deadline).
struct Stalled<'a> {
    stalls: Option<&'a Stalls>,
    key: String,
    started: Instant,
}

impl<'a> Stalled<'a> {
    fn report(stalls: Option<&'a Stalls>, shard: u32, url: &str, started: Instant) -> Self {
        let key = format!("stalled-shard-{shard}");
        let waited = started.elapsed();
        tracing::warn!(shard, replica = url, ?waited, "ClickHouse write stalled: no answer yet, pinging the replica");
        if let Some(stalls) = stalls {
            stalls.shard_failing.with_label_values(&[&shard.to_string()]).set(1);
            stalls.health.hold(key.clone(), format!("ClickHouse shard {shard}: a write to {url} has not answered"));
        }
        Self { stalls, key, started }
    }
}

impl Drop for Stalled<'_> {
    fn drop(&mut self) {
        tracing::info!(key = %self.key, lasted = ?self.started.elapsed(), "ClickHouse write stall over");
        if let Some(stalls) = self.stalls {
            stalls.health.release(&self.key);
        }
    }
}

/// Run `work`, an attempt on the replica at `client` (`url`, of shard `shard`), under
/// `patience` (module docs); a hung or too slow replica ends it as retryable.
pub async fn watch<T>(
    patience: &Patience,
    stalls: Option<&Stalls>,
    (shard, url, client): (u32, &str, &Client),
    work: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    let started = Instant::now();
    let limit = started + patience.limit;
    tokio::pin!(work);
    tokio::select! {
        outcome = &mut work => return outcome,
        _ = tokio::time::sleep_until(started + patience.stalled_after) => {}
    }
    let _stalled = Stalled::report(stalls, shard, url, started);
    loop {
        let ping = async {
            let answered = tokio::time::timeout(patience.ping_timeout, client.query("SELECT 1").execute()).await;
            if matches!(answered, Ok(Ok(()))) {
                // Alive: ask again a little later.
                tokio::time::sleep(patience.ping_timeout).await;
                true
            } else {
                false
            }
        };
        tokio::select! {
            outcome = &mut work => return outcome,
            alive = ping => if !alive {
                return Err(Failure::Retryable(format!(
                    "replica {url} hangs: no answer to the write for {:?} nor to a ping within {:?}",
                    started.elapsed(),
                    patience.ping_timeout
                )));
            },
            _ = tokio::time::sleep_until(limit) => {
                return Err(Failure::Retryable(format!("replica {url}: no answer within {:?}", patience.limit)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failover_comes_well_before_the_park_deadline() {
        let default = Patience::new(Duration::from_secs(5), Duration::from_secs(30));
        // 1 s to stall, then a ping of at most a fifth of the 5 s park deadline.
        assert_eq!(default.stalled_after + default.ping_timeout, Duration::from_millis(2000));
        let short = Patience::new(Duration::from_secs(1), Duration::from_secs(30));
        assert!(short.stalled_after + short.ping_timeout < Duration::from_secs(1), "{short:?}");
    }
}
