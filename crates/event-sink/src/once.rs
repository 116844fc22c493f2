//! Each event once in `vero.events`, without `FINAL`: which rows of a batch must not be
//! inserted, decided right before every INSERT attempt (reasoning in `docs/design.md`,
//! "Exactly-once into ClickHouse" and "Idempotent retries").
//!
//! * **Already written** (exactly-once by Kafka position): `vero.events_written` holds,
//!   per partition, the highest offset in `vero.events`, filled by the same INSERT
//!   through a materialized view (migration `0002_exactly_once`). Within a partition
//!   rows are inserted in offset order, so every record at or below that offset was
//!   inserted, refused (dead-lettered) or dropped as a repeat already: such rows are
//!   skipped. A crash, a rebalance or a retried INSERT whose first attempt landed
//!   therefore never inserts a row twice.
//! * **A client's repeat** (idempotent retries): a row whose `request_key` was written
//!   for the same partition with a `received_at` less than the dedup window apart, or
//!   occurs earlier in the same batch within the window, is dropped. The decision
//!   depends only on what is in ClickHouse and on topic order, so a replay decides the
//!   same way.
//! * **Not ours** (fencing): rows of partitions this instance no longer owns are not
//!   written. [`Fence`] tracks ownership from the rebalance callbacks and the
//!   partitions an INSERT is writing; a revoke waits (bounded) until no INSERT of the
//!   revoked partitions is in flight, so the next owner's "already written" check runs
//!   after the old owner's last INSERT of them. What it cannot cover: an owner frozen
//!   (SIGSTOP) between its check and the end of its INSERT for longer than the group
//!   session, then resumed, finishes that one INSERT (documented in docs/design.md).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use clickhouse::Client;
use uuid::Uuid;
use vero_clickhouse::Failure;

use crate::route::Tables;
use crate::row::EventRow;

/// Keys per lookup query: keeps the statement far below ClickHouse's default
/// `max_query_size` (256 KiB).
const KEYS_PER_QUERY: usize = 2000;

/// Why a row is not inserted (the `reason` label of `vero_sink_rows_skipped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// At or below the partition's written offset.
    Written,
    /// The same request within the dedup window.
    Repeat,
    /// The partition was revoked from this instance.
    NotOwned,
}

impl Skip {
    pub fn label(self) -> &'static str {
        match self {
            Skip::Written => "written",
            Skip::Repeat => "repeat",
            Skip::NotOwned => "not_owned",
        }
    }
}

/// Ownership of partitions and the partitions an INSERT is writing right now.
#[derive(Debug)]
pub struct Fence {
    state: Mutex<FenceState>,
    changed: Condvar,
    /// How long a revoke waits for an in-flight INSERT of its partitions.
    revoke_wait: Duration,
}

#[derive(Debug, Default)]
struct FenceState {
    owned: BTreeSet<i32>,
    writing: BTreeMap<i32, usize>,
    /// Bumped by every assignment: on a cluster a replica is synced again before it is
    /// trusted for partitions this instance did not own when it last synced (their
    /// previous owner may have written to another replica).
    generation: u64,
}

impl Fence {
    pub fn new(revoke_wait: Duration) -> Self {
        Self { state: Mutex::default(), changed: Condvar::new(), revoke_wait }
    }

    pub fn assign(&self, partitions: &[i32]) {
        let mut state = self.state.lock().expect("fence lock");
        state.owned.extend(partitions);
        state.generation += 1;
    }

    /// How many assignments this instance has taken (see [`FenceState::generation`]).
    pub fn generation(&self) -> u64 {
        self.state.lock().expect("fence lock").generation
    }

    /// Give `partitions` up: no INSERT of them starts from now on, and this returns once
    /// none is in flight (or after the revoke wait; returns false then).
    pub fn revoke(&self, partitions: &[i32]) -> bool {
        let deadline = Instant::now() + self.revoke_wait;
        let mut state = self.state.lock().expect("fence lock");
        for p in partitions {
            state.owned.remove(p);
        }
        loop {
            if !partitions.iter().any(|p| state.writing.contains_key(p)) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self.changed.wait_timeout(state, deadline - now).expect("fence lock").0;
        }
    }

    /// Start writing `partitions`: returns the ones still owned, marked as being
    /// written until the returned guard is dropped.
    pub fn begin(&self, partitions: &BTreeSet<i32>) -> Writing<'_> {
        let mut state = self.state.lock().expect("fence lock");
        let owned: BTreeSet<i32> = partitions.iter().copied().filter(|p| state.owned.contains(p)).collect();
        for p in &owned {
            *state.writing.entry(*p).or_default() += 1;
        }
        Writing { fence: self, owned }
    }
}

/// Partitions an INSERT may write; they stay marked as in flight until dropped.
#[derive(Debug)]
pub struct Writing<'a> {
    fence: &'a Fence,
    pub owned: BTreeSet<i32>,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        let mut state = self.fence.state.lock().expect("fence lock");
        for p in &self.owned {
            if let Some(count) = state.writing.get_mut(p) {
                *count -= 1;
                if *count == 0 {
                    state.writing.remove(p);
                }
            }
        }
        drop(state);
        self.fence.changed.notify_all();
    }
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct Written {
    kafka_partition: i32,
    kafka_offset: i64,
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct KnownKey {
    #[serde(with = "clickhouse::serde::uuid")]
    request_key: Uuid,
    received_at_ms: i64,
}

/// For every row, `None` (insert it) or why not, read from `tables` at `client` (the
/// server, or the shard replica the INSERT goes to). `owned` are the partitions this
/// instance may write; `window_ms` 0 turns the repeat check off.
pub async fn decide(
    client: &Client,
    tables: &Tables,
    rows: &[&EventRow],
    owned: &BTreeSet<i32>,
    window_ms: i64,
) -> Result<Vec<Option<Skip>>, Failure> {
    let mut decisions: Vec<Option<Skip>> =
        rows.iter().map(|r| (!owned.contains(&r.kafka_partition)).then_some(Skip::NotOwned)).collect();
    let partitions: BTreeSet<i32> = rows.iter().map(|r| r.kafka_partition).filter(|p| owned.contains(p)).collect();
    if partitions.is_empty() {
        return Ok(decisions);
    }
    let list = partitions.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    let written: Vec<Written> = client
        .query(&format!(
            "SELECT kafka_partition, max(kafka_offset) AS kafka_offset FROM {} \
             WHERE kafka_partition IN ({list}) GROUP BY kafka_partition",
            tables.written
        ))
        .fetch_all()
        .await?;
    let written: HashMap<i32, i64> = written.into_iter().map(|w| (w.kafka_partition, w.kafka_offset)).collect();
    for (decision, row) in decisions.iter_mut().zip(rows) {
        if decision.is_none() && written.get(&row.kafka_partition).is_some_and(|w| row.kafka_offset <= *w) {
            *decision = Some(Skip::Written);
        }
    }
    if window_ms > 0 {
        let known = known_keys(client, tables.request_keys, rows, &decisions, window_ms).await?;
        mark_repeats(rows, &mut decisions, known, window_ms);
    }
    Ok(decisions)
}

/// `(partition, key)` -> received_at of every written row with a key among the
/// candidate rows', within the window of them.
async fn known_keys(
    client: &Client,
    table: &str,
    rows: &[&EventRow],
    decisions: &[Option<Skip>],
    window_ms: i64,
) -> Result<HashMap<(i32, Uuid), Vec<i64>>, Failure> {
    let mut by_partition: BTreeMap<i32, (BTreeSet<Uuid>, i64, i64)> = BTreeMap::new();
    for (row, _) in rows.iter().zip(decisions).filter(|(_, d)| d.is_none()) {
        let entry = by_partition.entry(row.kafka_partition).or_insert((BTreeSet::new(), i64::MAX, i64::MIN));
        entry.0.insert(row.request_key);
        entry.1 = entry.1.min(row.received_at_ms);
        entry.2 = entry.2.max(row.received_at_ms);
    }
    let mut known: HashMap<(i32, Uuid), Vec<i64>> = HashMap::new();
    for (partition, (keys, first, last)) in by_partition {
        let keys: Vec<Uuid> = keys.into_iter().collect();
        for chunk in keys.chunks(KEYS_PER_QUERY) {
            let list = chunk.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(",");
            let found: Vec<KnownKey> = client
                .query(&format!(
                    "SELECT request_key, received_at_ms FROM {table} \
                     WHERE kafka_partition = {partition} AND request_key IN ({list}) \
                     AND received_at_ms > {} AND received_at_ms < {}",
                    first.saturating_sub(window_ms),
                    last.saturating_add(window_ms)
                ))
                .fetch_all()
                .await?;
            for key in found {
                known.entry((partition, key.request_key)).or_default().push(key.received_at_ms);
            }
        }
    }
    Ok(known)
}

/// Drop every candidate row whose key was accepted (written, or earlier in this batch)
/// less than `window_ms` apart from it. Rows are taken in batch (= topic) order.
fn mark_repeats(
    rows: &[&EventRow],
    decisions: &mut [Option<Skip>],
    mut accepted: HashMap<(i32, Uuid), Vec<i64>>,
    window_ms: i64,
) {
    for (row, decision) in rows.iter().zip(decisions.iter_mut()) {
        if decision.is_some() {
            continue;
        }
        let times = accepted.entry((row.kafka_partition, row.request_key)).or_default();
        if times.iter().any(|t| (row.received_at_ms - t).abs() < window_ms) {
            *decision = Some(Skip::Repeat);
        } else {
            times.push(row.received_at_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn row(partition: i32, offset: i64, key: u128, received_at_ms: i64) -> EventRow {
        let mut row = crate::batch::tests::row(partition, offset);
        row.request_key = Uuid::from_u128(key);
        row.received_at_ms = received_at_ms;
        row
    }

    #[test]
    fn repeats_within_the_window_are_dropped_in_topic_order() {
        let rows = [
            row(0, 1, 1, 1_000),
            row(0, 2, 1, 1_500),  // repeat of offset 1
            row(0, 3, 1, 2_000),  // exactly the window after offset 1: a new request
            row(1, 4, 1, 1_500),  // another partition: another user
            row(0, 5, 2, 10_000), // written before at 9_500
            row(0, 6, 3, 10_000), // written before, but long ago
        ];
        let refs: Vec<&EventRow> = rows.iter().collect();
        let mut decisions = vec![None; rows.len()];
        let known = HashMap::from([((0, Uuid::from_u128(2)), vec![9_500]), ((0, Uuid::from_u128(3)), vec![100])]);
        mark_repeats(&refs, &mut decisions, known, 1_000);
        assert_eq!(decisions, [None, Some(Skip::Repeat), None, None, Some(Skip::Repeat), None]);
    }

    #[test]
    fn a_revoke_waits_for_the_insert_in_flight_and_stops_new_ones() {
        let fence = Arc::new(Fence::new(Duration::from_secs(10)));
        fence.assign(&[0, 1]);
        let writing = fence.begin(&BTreeSet::from([0, 1, 2]));
        assert_eq!(writing.owned, BTreeSet::from([0, 1]), "partition 2 was never assigned");
        let started = Instant::now();
        let revoker = std::thread::spawn({
            let fence = fence.clone();
            move || fence.revoke(&[1])
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(!revoker.is_finished(), "the revoke waits for the INSERT");
        drop(writing);
        assert!(revoker.join().unwrap());
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(fence.begin(&BTreeSet::from([0, 1])).owned, BTreeSet::from([0]));

        let bounded = Fence::new(Duration::from_millis(50));
        bounded.assign(&[0]);
        let _stuck = bounded.begin(&BTreeSet::from([0]));
        assert!(!bounded.revoke(&[0]), "gives up after the revoke wait");
    }
}
