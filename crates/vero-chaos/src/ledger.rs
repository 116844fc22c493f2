//! The ledger load: numbered events, sent as `events/track` requests and (by every
//! other connection, when `batch_size` > 1) as `events/batch` requests of
//! `batch_size` events, and a record of every answer.
//!
//! Every event carries `data.chaos_run` (this run) and `data.chaos_seq` (unique in
//! the run), so each event can be found again in ClickHouse. A request that gets no
//! `200` (503, a timeout, a refused connection) is retried, as a Vero client
//! library would, with the *same* body (a whole batch again), alternating between the
//! gateway replicas; the ledger counts every attempt. What the check relies on:
//! * `acked`: sequence numbers that got a 200 (alone or in their batch) — each must be
//!   in ClickHouse once;
//! * `sent`: every sequence number tried — nothing else may be in ClickHouse (a
//!   request whose answer was lost may have landed: that is not a loss).
//!
//! The load is bounded by its duration (and a cancellation token) and sends only to
//! the loopback gateways it is given.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use vero_loadgen::client::{Connection, Target};

#[derive(Debug, Clone)]
pub struct LoadSettings {
    pub run_id: String,
    pub token: String,
    pub users: u32,
    /// Events per second over all connections.
    pub rate: u32,
    /// Events per `events/batch` request of the batching connections (every odd one);
    /// 1 = every connection sends `events/track` only.
    pub batch_size: u32,
    pub connections: u32,
    /// How long a client waits for an answer before it gives up and retries.
    pub client_timeout: Duration,
    /// How many times one request is sent at most.
    pub max_attempts: u32,
    pub retry_backoff: Duration,
}

/// What happened to the requests, shared with the load tasks.
#[derive(Debug, Default)]
pub struct Ledger {
    inner: Mutex<Inner>,
    next_seq: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    /// seq -> user id, for every request sent at least once.
    sent: BTreeMap<u64, String>,
    acked: BTreeSet<u64>,
    /// Requests given up on after `max_attempts` (never a 200).
    abandoned: BTreeSet<u64>,
    attempts: u64,
    /// Non-200 answers and transport failures by kind ("503", "timeout", ...).
    failures: BTreeMap<String, u64>,
}

/// A copy of the ledger at one moment.
#[derive(Debug, Clone, Default)]
pub struct LedgerSnapshot {
    pub sent: BTreeMap<u64, String>,
    pub acked: BTreeSet<u64>,
    pub abandoned: BTreeSet<u64>,
    pub attempts: u64,
    pub failures: BTreeMap<String, u64>,
}

impl Ledger {
    pub fn snapshot(&self) -> LedgerSnapshot {
        let inner = self.inner.lock().expect("ledger lock");
        LedgerSnapshot {
            sent: inner.sent.clone(),
            acked: inner.acked.clone(),
            abandoned: inner.abandoned.clone(),
            attempts: inner.attempts,
            failures: inner.failures.clone(),
        }
    }

    pub fn acked_count(&self) -> usize {
        self.inner.lock().expect("ledger lock").acked.len()
    }

    /// One attempt of a request carrying the events `events` (sequence number, user).
    fn record_attempt(&self, events: &[(u64, String)], outcome: Result<u16, String>) -> bool {
        let mut inner = self.inner.lock().expect("ledger lock");
        inner.attempts += 1;
        for (seq, user) in events {
            inner.sent.entry(*seq).or_insert_with(|| user.clone());
        }
        match outcome {
            Ok(200) => {
                inner.acked.extend(events.iter().map(|(seq, _)| *seq));
                true
            }
            Ok(status) => {
                *inner.failures.entry(status.to_string()).or_default() += 1;
                false
            }
            Err(kind) => {
                *inner.failures.entry(kind).or_default() += 1;
                false
            }
        }
    }
}

/// The event name of request `seq`: a few names, so profiles' `last_event_name` is checked.
pub fn event_name(seq: u64) -> String {
    format!("chaos_{}", seq % 3)
}

fn event(settings: &LoadSettings, seq: u64, user: &str) -> serde_json::Value {
    serde_json::json!({
        "identity": {"id": user},
        "event_name": event_name(seq),
        "data": {"chaos_run": settings.run_id, "chaos_seq": seq},
    })
}

/// The body of a request carrying `events`: `events/track` for one, `events/batch` for
/// more.
fn body(settings: &LoadSettings, events: &[(u64, String)]) -> Bytes {
    let body = match events {
        [(seq, user)] => {
            let mut body = event(settings, *seq, user);
            body["auth_token"] = settings.token.clone().into();
            body
        }
        _ => serde_json::json!({
            "auth_token": settings.token,
            "events": events.iter().map(|(seq, user)| event(settings, *seq, user)).collect::<Vec<_>>(),
        }),
    };
    Bytes::from(body.to_string())
}

/// Send load to `gateways` (`http://host:port`) until `duration` has passed or `stop`
/// is cancelled; requests in retry when the time is up get their remaining attempts.
pub async fn run(
    settings: LoadSettings,
    gateways: Vec<String>,
    ledger: Arc<Ledger>,
    duration: Duration,
    stop: CancellationToken,
) {
    let targets_at = |path: &str| -> Arc<Vec<Target>> {
        Arc::new(gateways.iter().map(|g| Target::parse(&format!("{g}{path}")).expect("gateway URL")).collect())
    };
    let (track, batch) = (targets_at("/api/v2/events/track"), targets_at("/api/v2/events/batch"));
    let end = tokio::time::Instant::now() + duration;
    let per_connection =
        Duration::from_secs_f64(f64::from(settings.connections.max(1)) / f64::from(settings.rate.max(1)));
    let mut tasks = Vec::new();
    for worker in 0..settings.connections.max(1) {
        let batching = worker % 2 == 1 && settings.batch_size > 1;
        let (events_per_request, targets) =
            if batching { (settings.batch_size, batch.clone()) } else { (1, track.clone()) };
        let (settings, ledger, stop) = (settings.clone(), ledger.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut connections: Vec<Connection> = targets.iter().map(|_| Connection::default()).collect();
            let mut ticker = tokio::time::interval(per_connection * events_per_request);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut turn = worker as usize;
            while tokio::time::Instant::now() < end && !stop.is_cancelled() {
                ticker.tick().await;
                let first = ledger.next_seq.fetch_add(u64::from(events_per_request), Ordering::Relaxed);
                let events: Vec<(u64, String)> = (first..first + u64::from(events_per_request))
                    .map(|seq| (seq, format!("user-{}", seq % u64::from(settings.users.max(1)))))
                    .collect();
                let payload = body(&settings, &events);
                let mut acked = false;
                for attempt in 0..settings.max_attempts.max(1) {
                    turn = (turn + 1) % targets.len();
                    let outcome = connections[turn]
                        .post_json(&targets[turn], payload.clone(), settings.client_timeout)
                        .await
                        .map_err(|e| e.kind().to_string());
                    if ledger.record_attempt(&events, outcome) {
                        acked = true;
                        break;
                    }
                    if attempt + 1 < settings.max_attempts {
                        tokio::time::sleep(settings.retry_backoff).await;
                    }
                }
                if !acked {
                    ledger.inner.lock().expect("ledger lock").abandoned.extend(events.iter().map(|(seq, _)| *seq));
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}
