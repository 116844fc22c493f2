//! The lifecycle of the partitions a group consumer owns, as one explicit state
//! machine shared by both consumers (the event sink and the profile consumer).
//!
//! A partition of a topic is, for this member:
//!
//! * **not owned**: never assigned, or revoked. Nothing of it is taken or stored;
//!   its next owner reads it from the committed offset.
//! * **owned**: assigned by a rebalance; its records are taken.
//! * **blocked** at an offset: it reached a record whose writer schema this build
//!   does not know (operator-fixable: a rollout of consumers that know it). Paused,
//!   nothing from that offset on is taken or stored, `/readyz` is held, until the
//!   partition is revoked (the new owner reads it again from that record).
//! * **parked**: its ClickHouse shard keeps failing. Parking is by *partition
//!   number*, across topics: the profile consumer's events and handoff partition `p`
//!   belong to the same users, so to the same shard. Paused; records still delivered
//!   are dropped and the first offset of each topic is remembered; once a probe finds
//!   the shard answering, each topic is rewound there and resumed. Revoking the
//!   partition forgets the park (the next owner reads from the committed offset,
//!   which never covers a parked record).
//! * **paused for a write**: every owned partition, while a write runs long
//!   (retries while ClickHouse is down), so the consumer can be polled for the group
//!   session without taking more records. When the write ends, only the partitions
//!   neither blocked nor parked resume.
//!
//! Blocked and parked are independent (a blocked partition whose shard fails stays
//! paused after the shard answers again). [`Partitions`] holds the rules and has no
//! Kafka client: every transition returns the partitions to pause, resume or rewind,
//! and [`Lifecycle`] applies them to the consumer, the readiness holds and the gauges.
//! [`Rebalances`] is what a consumer context's rebalance callbacks record for the
//! loop, which applies it with [`Lifecycle::rebalanced`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::IntGauge;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use crate::health::Health;

/// How long a write (or a restore) may keep a consumer from polling before every
/// owned partition is paused and the consumer is polled again, so rebalances and the
/// group session are served. Until then a rebalance waits (at most this long) and
/// finds the write done; pausing drops librdkafka's prefetched records, which a short
/// write should not pay for.
pub const PAUSE_AFTER: Duration = Duration::from_millis(1000);

/// A topic and one of its partitions.
pub type TopicPartition = (String, i32);

/// What to do with a record received from a partition (see [`Partitions::take`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// An owned partition, neither blocked nor parked: the record is processed.
    Process,
    /// Blocked at an earlier offset, or parked (the offset is then noted as where the
    /// partition resumes), or not owned: dropped; it is read again later, by this
    /// member or the next owner.
    Drop,
}

/// A parked partition number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    /// Topic -> where it resumes: the first offset read and not written. A topic
    /// without an entry resumes where the consumer stands.
    pub rewind: BTreeMap<String, i64>,
    pub next_probe: Instant,
}

/// A parked partition whose shard answers again: rewind each topic, then resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unparked {
    pub partition: i32,
    pub rewind: BTreeMap<String, i64>,
    /// What resumes after the rewind: the partition's owned topics that are not
    /// blocked (nothing while a write holds every partition paused).
    pub resume: Vec<TopicPartition>,
}

/// What a revoke ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revoked {
    /// Partitions that were blocked (their readiness hold is released).
    pub unblocked: Vec<TopicPartition>,
    /// Partition numbers that were parked.
    pub unparked: Vec<i32>,
}

/// The rules of the lifecycle (see the module doc), without a Kafka client.
#[derive(Debug, Default)]
pub struct Partitions {
    /// Topic -> owned partition -> the offset it is blocked at, if it is.
    owned: BTreeMap<String, BTreeMap<i32, Option<i64>>>,
    parked: BTreeMap<i32, Parked>,
    paused_for_write: bool,
}

impl Partitions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Take `tp` over (a rebalance assigned it). A partition assigned again starts
    /// unblocked: whoever owned it in between may have moved it on.
    pub fn assign(&mut self, (topic, partition): TopicPartition) {
        self.owned.entry(topic).or_default().insert(partition, None);
    }

    /// Give `partitions` up (a rebalance revoked them, or the session was lost).
    pub fn revoke<'a>(&mut self, partitions: impl IntoIterator<Item = &'a TopicPartition>) -> Revoked {
        let mut revoked = Revoked::default();
        for (topic, partition) in partitions {
            let Some(owned) = self.owned.get_mut(topic) else { continue };
            if let Some(Some(_)) = owned.remove(partition) {
                revoked.unblocked.push((topic.clone(), *partition));
            }
            if owned.is_empty() {
                self.owned.remove(topic);
            }
            if self.parked.remove(partition).is_some() {
                revoked.unparked.push(*partition);
            }
        }
        revoked
    }

    pub fn owns(&self, topic: &str, partition: i32) -> bool {
        self.owned.get(topic).is_some_and(|owned| owned.contains_key(&partition))
    }

    /// Owned partitions of `topic`.
    pub fn owned_count(&self, topic: &str) -> usize {
        self.owned.get(topic).map_or(0, BTreeMap::len)
    }

    /// Every owned partition.
    pub fn owned(&self) -> Vec<TopicPartition> {
        self.owned.iter().flat_map(|(topic, owned)| owned.keys().map(|p| (topic.clone(), *p))).collect()
    }

    /// Whether a record at `offset` of `topic`/`partition` is processed. A parked
    /// partition notes the offset as where that topic resumes, when it is the first.
    pub fn take(&mut self, topic: &str, partition: i32, offset: i64) -> Take {
        let Some(blocked) = self.owned.get(topic).and_then(|owned| owned.get(&partition)) else { return Take::Drop };
        if let Some(parked) = self.parked.get_mut(&partition) {
            parked.note(topic, offset);
            return Take::Drop;
        }
        if blocked.is_some() {
            return Take::Drop;
        }
        Take::Process
    }

    /// Stop `tp` at `offset` (a record with an unknown writer schema). `true` when it
    /// was owned and not blocked yet: the caller pauses it and holds readiness.
    pub fn block(&mut self, topic: &str, partition: i32, offset: i64) -> bool {
        match self.owned.get_mut(topic).and_then(|owned| owned.get_mut(&partition)) {
            Some(blocked @ None) => {
                *blocked = Some(offset);
                true
            }
            _ => false,
        }
    }

    pub fn is_blocked(&self, topic: &str, partition: i32) -> bool {
        self.owned.get(topic).and_then(|owned| owned.get(&partition)).is_some_and(Option::is_some)
    }

    pub fn blocked_count(&self) -> usize {
        self.owned.values().flat_map(BTreeMap::values).filter(|blocked| blocked.is_some()).count()
    }

    /// Park the owned partition numbers of `numbers` until `next_probe`; `first` gives
    /// each topic's first offset read and not written (the lowest counts). Returns the
    /// owned partitions to pause. A number already parked keeps its earlier offsets.
    pub fn park(
        &mut self,
        numbers: impl IntoIterator<Item = i32>,
        first: impl IntoIterator<Item = (TopicPartition, i64)>,
        next_probe: Instant,
    ) -> Vec<TopicPartition> {
        let mut pause = Vec::new();
        for number in numbers {
            let topics: Vec<String> =
                self.owned.iter().filter(|(_, owned)| owned.contains_key(&number)).map(|(t, _)| t.clone()).collect();
            if topics.is_empty() {
                continue;
            }
            self.parked.entry(number).or_insert_with(|| Parked { rewind: BTreeMap::new(), next_probe });
            pause.extend(topics.into_iter().map(|topic| (topic, number)));
        }
        for ((topic, partition), offset) in first {
            if let Some(parked) = self.parked.get_mut(&partition) {
                parked.note(&topic, offset);
            }
        }
        pause
    }

    /// Where `topic` of parked `partition` resumes when nothing of it was read and not
    /// written: the consumer's position when parked (called right after
    /// [`Self::park`]; an offset noted already is earlier and stays).
    pub fn park_position(&mut self, topic: &str, partition: i32, next: i64) {
        if let Some(parked) = self.parked.get_mut(&partition) {
            parked.rewind.entry(topic.to_owned()).or_insert(next);
        }
    }

    pub fn is_parked(&self, partition: i32) -> bool {
        self.parked.contains_key(&partition)
    }

    pub fn parked(&self) -> &BTreeMap<i32, Parked> {
        &self.parked
    }

    /// When the next parked partition is due for a probe of its shard.
    pub fn next_probe(&self) -> Option<Instant> {
        self.parked.values().map(|parked| parked.next_probe).min()
    }

    /// Parked partition numbers due for a probe at `now`.
    pub fn due(&self, now: Instant) -> Vec<i32> {
        self.parked.iter().filter(|(_, parked)| parked.next_probe <= now).map(|(p, _)| *p).collect()
    }

    /// Probe `partition`'s shard again at `at` (it did not answer, or a rewind failed).
    pub fn probe_later(&mut self, partition: i32, at: Instant) {
        if let Some(parked) = self.parked.get_mut(&partition) {
            parked.next_probe = at;
        }
    }

    /// End `partition`'s park (its shard answers). `None` if it was not parked.
    pub fn unpark(&mut self, partition: i32) -> Option<Unparked> {
        let parked = self.parked.remove(&partition)?;
        let resume = if self.paused_for_write {
            Vec::new()
        } else {
            self.owned
                .iter()
                .filter(|(_, owned)| owned.get(&partition).is_some_and(Option::is_none))
                .map(|(topic, _)| (topic.clone(), partition))
                .collect()
        };
        Some(Unparked { partition, rewind: parked.rewind, resume })
    }

    /// Hold every owned partition paused while a write runs long. Returns them all.
    pub fn pause_for_write(&mut self) -> Vec<TopicPartition> {
        self.paused_for_write = true;
        self.owned()
    }

    /// The write is done. Returns what resumes: owned, neither blocked nor parked.
    pub fn end_write_pause(&mut self) -> Vec<TopicPartition> {
        self.paused_for_write = false;
        self.owned().into_iter().filter(|(topic, p)| !self.is_blocked(topic, *p) && !self.is_parked(*p)).collect()
    }

    pub fn is_paused_for_write(&self) -> bool {
        self.paused_for_write
    }
}

impl Parked {
    fn note(&mut self, topic: &str, offset: i64) {
        self.rewind.entry(topic.to_owned()).and_modify(|first| *first = (*first).min(offset)).or_insert(offset);
    }
}

/// The rebalances the callbacks saw since the loop last looked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub revoked: BTreeSet<TopicPartition>,
    /// Assigned and not revoked since: a partition revoked and assigned again is in
    /// both (the revoke is applied first).
    pub assigned: BTreeSet<TopicPartition>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty() && self.assigned.is_empty()
    }

    /// The partition numbers revoked (of any topic).
    pub fn revoked_numbers(&self) -> Vec<i32> {
        let numbers: BTreeSet<i32> = self.revoked.iter().map(|(_, p)| *p).collect();
        numbers.into_iter().collect()
    }
}

/// Shared by a consumer's context (its rebalance callbacks write it, inside the
/// loop's poll) and the loop's [`Lifecycle`] (which takes the changes and says when
/// consumption is held paused).
#[derive(Debug, Default)]
pub struct Rebalances {
    changes: Mutex<Changes>,
    /// Set while a write holds every partition paused: partitions assigned meanwhile
    /// are paused at once, so nothing piles up until it resumes.
    paused: AtomicBool,
}

impl Rebalances {
    /// The revoke callback: `list` is no longer this member's.
    pub fn revoked(&self, list: &TopicPartitionList) {
        let mut changes = self.changes.lock().expect("rebalances lock");
        for element in list.elements() {
            let tp = (element.topic().to_owned(), element.partition());
            changes.assigned.remove(&tp);
            changes.revoked.insert(tp);
        }
    }

    /// The assign callback: `list` is this member's now. Paused at once while a write
    /// holds consumption paused; otherwise resumed (librdkafka keeps a partition's
    /// pause across a revoke, and the loop's resume may have come while it was not
    /// assigned).
    pub fn assigned<C: ConsumerContext>(&self, consumer: &impl Consumer<C>, list: &TopicPartitionList) {
        let paused = self.paused.load(Ordering::SeqCst);
        let result = if paused { consumer.pause(list) } else { consumer.resume(list) };
        if let Err(e) = result {
            tracing::warn!(paused, error = %e, "pausing/resuming newly assigned partitions failed");
        }
        self.record_assigned(list);
    }

    fn record_assigned(&self, list: &TopicPartitionList) {
        let mut changes = self.changes.lock().expect("rebalances lock");
        for element in list.elements() {
            changes.assigned.insert((element.topic().to_owned(), element.partition()));
        }
    }

    /// Whether partition number `partition` (any topic) was revoked since the loop
    /// last took the changes: a write checks it just before writing.
    pub fn is_revoked(&self, partition: i32) -> bool {
        self.changes.lock().expect("rebalances lock").revoked.iter().any(|(_, p)| *p == partition)
    }

    fn take(&self) -> Changes {
        std::mem::take(&mut *self.changes.lock().expect("rebalances lock"))
    }
}

/// The gauges a [`Lifecycle`] keeps current.
#[derive(Clone)]
pub struct Gauges {
    pub blocked: IntGauge,
    pub parked: IntGauge,
    /// 1 while a write holds every partition paused.
    pub paused: IntGauge,
}

/// [`Partitions`] applied: pauses, resumes and rewinds on the consumer, the
/// readiness hold of a blocked partition, the gauges. `service` names the consumers
/// an operator rolls out ("event sinks", "profile consumers").
pub struct Lifecycle {
    partitions: Partitions,
    rebalances: Arc<Rebalances>,
    health: Health,
    gauges: Gauges,
    service: &'static str,
}

impl Lifecycle {
    pub fn new(rebalances: Arc<Rebalances>, health: Health, gauges: Gauges, service: &'static str) -> Self {
        Self { partitions: Partitions::new(), rebalances, health, gauges, service }
    }

    pub fn partitions(&self) -> &Partitions {
        &self.partitions
    }

    /// Apply the rebalances the callbacks recorded since the last call: revokes first
    /// (readiness holds released, parks forgotten), then assignments. Returns them,
    /// for what the consumer keeps of its own per partition; `None` if there were none.
    pub fn rebalanced(&mut self) -> Option<Changes> {
        let changes = self.rebalances.take();
        if changes.is_empty() {
            return None;
        }
        let revoked = self.partitions.revoke(&changes.revoked);
        for (topic, partition) in &revoked.unblocked {
            self.health.release(&blocked_hold(topic, *partition));
        }
        for tp in &changes.assigned {
            self.partitions.assign(tp.clone());
        }
        self.observe();
        Some(changes)
    }

    pub fn take(&mut self, topic: &str, partition: i32, offset: i64) -> Take {
        self.partitions.take(topic, partition, offset)
    }

    /// Block `topic`/`partition` at `offset` (see [`Partitions::block`]): pause it,
    /// log, hold `/readyz` naming it. `false` when it was not owned or already blocked.
    pub fn block<C: ConsumerContext>(
        &mut self,
        consumer: &impl Consumer<C>,
        (topic, partition, offset): (&str, i32, i64),
        reason: &str,
    ) -> bool {
        if !self.partitions.block(topic, partition, offset) {
            return false;
        }
        tracing::error!(
            topic,
            partition,
            offset,
            reason,
            "record with an unknown writer schema: partition stopped until a consumer that knows the schema takes it"
        );
        pause(consumer, &[(topic.to_owned(), partition)], "the blocked partition");
        self.health.hold(
            blocked_hold(topic, partition),
            format!(
                "operator action needed: {topic}/{partition} stopped at offset {offset}: {reason} (roll out {} \
                 that know this writer schema)",
                self.service
            ),
        );
        self.observe();
        true
    }

    /// Park `numbers` (see [`Partitions::park`]) and pause them; a topic of theirs
    /// with nothing read and not written resumes where the consumer stands now.
    pub fn park<C: ConsumerContext>(
        &mut self,
        consumer: &impl Consumer<C>,
        numbers: impl IntoIterator<Item = i32>,
        first: impl IntoIterator<Item = (TopicPartition, i64)>,
        next_probe: Instant,
    ) {
        let paused = self.partitions.park(numbers, first, next_probe);
        let positions = consumer.position().map(|list| list.to_topic_map()).unwrap_or_default();
        for (topic, partition) in &paused {
            if let Some(Offset::Offset(next)) = positions.get(&(topic.clone(), *partition)) {
                self.partitions.park_position(topic, *partition, *next);
            }
        }
        pause(consumer, &paused, "parked partitions");
        let rewinds: BTreeMap<i32, &BTreeMap<String, i64>> =
            paused.iter().filter_map(|(_, p)| Some((*p, &self.partitions.parked.get(p)?.rewind))).collect();
        tracing::warn!(
            ?rewinds,
            "partitions parked while their ClickHouse shard fails (partition -> topic -> offset they resume from)"
        );
        self.observe();
    }

    /// Rewind and resume each of `answering` (their shard answers again); the others of
    /// `due`, and any whose rewind failed, are probed again at `later`.
    pub fn probed<C: ConsumerContext>(
        &mut self,
        consumer: &impl Consumer<C>,
        due: &[i32],
        answering: &std::collections::BTreeSet<i32>,
        later: Instant,
    ) {
        for &partition in due {
            if !answering.contains(&partition) {
                self.partitions.probe_later(partition, later);
                continue;
            }
            let Some(unparked) = self.partitions.unpark(partition) else { continue };
            let failed = unparked.rewind.iter().find_map(|(topic, offset)| {
                let seek = consumer.seek(topic, partition, Offset::Offset(*offset), std::time::Duration::from_secs(10));
                seek.err().map(|e| (topic, e))
            });
            if let Some((topic, e)) = failed {
                tracing::warn!(topic = %topic, partition, error = %e, "rewinding a parked partition failed; trying again later");
                self.partitions.parked.insert(partition, Parked { rewind: unparked.rewind, next_probe: later });
                continue;
            }
            resume(consumer, &unparked.resume, "a parked partition");
            tracing::info!(partition, rewound_to = ?unparked.rewind, "ClickHouse shard answers again: parked partition resumed");
        }
        self.observe();
    }

    /// Pause every owned partition while a write runs long.
    pub fn pause_for_write<C: ConsumerContext>(&mut self, consumer: &impl Consumer<C>) {
        self.rebalances.paused.store(true, Ordering::SeqCst);
        let all = self.partitions.pause_for_write();
        pause(consumer, &all, "the assigned partitions");
        self.observe();
    }

    /// Resume what the write paused, except blocked and parked partitions.
    pub fn end_write_pause<C: ConsumerContext>(&mut self, consumer: &impl Consumer<C>) {
        self.rebalances.paused.store(false, Ordering::SeqCst);
        let resumed = self.partitions.end_write_pause();
        resume(consumer, &resumed, "the assigned partitions");
        self.observe();
    }

    fn observe(&self) {
        self.gauges.blocked.set(self.partitions.blocked_count() as i64);
        self.gauges.parked.set(self.partitions.parked.len() as i64);
        self.gauges.paused.set(i64::from(self.partitions.paused_for_write));
    }
}

/// The readiness hold of a blocked partition.
pub fn blocked_hold(topic: &str, partition: i32) -> String {
    format!("blocked {topic}/{partition}")
}

fn list(partitions: &[TopicPartition]) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for (topic, partition) in partitions {
        list.add_partition(topic, *partition);
    }
    list
}

/// Pause `partitions` (none: nothing); a failure is logged naming `what`.
pub fn pause<C: ConsumerContext>(consumer: &impl Consumer<C>, partitions: &[TopicPartition], what: &str) {
    if partitions.is_empty() {
        return;
    }
    if let Err(e) = consumer.pause(&list(partitions)) {
        tracing::warn!(error = %e, what, "pausing failed");
    }
}

/// Resume `partitions` (none: nothing); a failure is logged naming `what`.
pub fn resume<C: ConsumerContext>(consumer: &impl Consumer<C>, partitions: &[TopicPartition], what: &str) {
    if partitions.is_empty() {
        return;
    }
    if let Err(e) = consumer.resume(&list(partitions)) {
        tracing::warn!(error = %e, what, "resuming failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        (topic.to_owned(), partition)
    }

    fn owning(partitions: &[(&str, i32)]) -> Partitions {
        let mut state = Partitions::new();
        for (topic, partition) in partitions {
            state.assign(tp(topic, *partition));
        }
        state
    }

    #[test]
    fn only_owned_partitions_are_processed() {
        let mut state = owning(&[("events", 0)]);
        assert_eq!(state.take("events", 0, 5), Take::Process);
        assert_eq!(state.take("events", 1, 5), Take::Drop, "never assigned");
        assert_eq!(state.take("handoff", 0, 5), Take::Drop, "another topic");
        state.revoke(&[tp("events", 0)]);
        assert_eq!(state.take("events", 0, 6), Take::Drop, "revoked");
        assert!(!state.owns("events", 0) && state.owned().is_empty());
    }

    #[test]
    fn a_blocked_partition_takes_nothing_until_revoked_and_starts_unblocked_when_assigned_again() {
        let mut state = owning(&[("events", 0), ("events", 1)]);
        assert!(state.block("events", 0, 7));
        assert!(!state.block("events", 0, 9), "already blocked: the first offset stays");
        assert!(!state.block("events", 3, 1), "not owned");
        assert_eq!(state.take("events", 0, 8), Take::Drop);
        assert_eq!(state.take("events", 1, 8), Take::Process, "the others go on");
        assert_eq!(state.blocked_count(), 1);
        let revoked = state.revoke(&[tp("events", 0)]);
        assert_eq!(revoked.unblocked, vec![tp("events", 0)]);
        assert_eq!(state.blocked_count(), 0);
        state.assign(tp("events", 0));
        assert_eq!(state.take("events", 0, 7), Take::Process, "a new owner reads it again");
    }

    #[test]
    fn parking_pauses_every_topic_of_the_number_and_remembers_the_first_offsets() {
        let now = Instant::now();
        let mut state = owning(&[("events", 2), ("handoff", 2), ("events", 3)]);
        let pause = state.park([2, 9], [(tp("events", 2), 40), (tp("events", 2), 30), (tp("events", 3), 5)], now);
        assert_eq!(pause, vec![tp("events", 2), tp("handoff", 2)], "9 is not owned; 3 is not parked");
        assert!(state.is_parked(2) && !state.is_parked(3) && !state.is_parked(9));
        // Nothing of handoff 2 was read and not written: it resumes where it stands.
        state.park_position("handoff", 2, 11);
        state.park_position("events", 2, 99);
        // Records still delivered are dropped; an earlier one moves the rewind back.
        assert_eq!(state.take("events", 2, 41), Take::Drop);
        assert_eq!(state.take("handoff", 2, 12), Take::Drop);
        assert_eq!(state.take("events", 2, 20), Take::Drop);
        let rewind = &state.parked()[&2].rewind;
        assert_eq!(rewind, &BTreeMap::from([("events".to_owned(), 20), ("handoff".to_owned(), 11)]));
        assert_eq!(state.take("events", 3, 6), Take::Process);
    }

    #[test]
    fn probes_come_due_and_an_answering_shard_resumes_its_unblocked_topics() {
        let now = Instant::now();
        let mut state = owning(&[("events", 2), ("handoff", 2), ("events", 4)]);
        state.park([2], [(tp("events", 2), 40)], now + Duration::from_secs(5));
        state.park([4], [], now + Duration::from_secs(1));
        assert_eq!(state.next_probe(), Some(now + Duration::from_secs(1)));
        assert_eq!(state.due(now), Vec::<i32>::new());
        assert_eq!(state.due(now + Duration::from_secs(5)), vec![2, 4]);
        state.probe_later(4, now + Duration::from_secs(30));
        assert_eq!(state.due(now + Duration::from_secs(5)), vec![2]);

        assert!(state.block("handoff", 2, 3));
        let unparked = state.unpark(2).expect("parked");
        assert_eq!(unparked.rewind, BTreeMap::from([("events".to_owned(), 40)]));
        assert_eq!(unparked.resume, vec![tp("events", 2)], "the blocked topic stays paused");
        assert!(!state.is_parked(2) && state.unpark(2).is_none());
        assert_eq!(state.take("events", 2, 40), Take::Process);
    }

    #[test]
    fn revoking_a_parked_partition_forgets_the_park() {
        let mut state = owning(&[("events", 1)]);
        state.park([1], [(tp("events", 1), 10)], Instant::now());
        let revoked = state.revoke(&[tp("events", 1)]);
        assert_eq!(revoked.unparked, vec![1]);
        assert!(!state.is_parked(1) && state.next_probe().is_none());
    }

    #[test]
    fn rebalances_keep_the_order_that_matters() {
        let one = |topic: &str, partition: i32| {
            let mut list = TopicPartitionList::new();
            list.add_partition(topic, partition);
            list
        };
        let rebalances = Rebalances::default();
        // Assigned, then revoked before the loop looked: not ours.
        rebalances.record_assigned(&one("events", 1));
        rebalances.revoked(&one("events", 1));
        // Revoked, then assigned again: the revoke is applied first, then it is ours.
        rebalances.revoked(&one("events", 2));
        rebalances.record_assigned(&one("events", 2));
        assert!(rebalances.is_revoked(1) && rebalances.is_revoked(2) && !rebalances.is_revoked(3));
        let changes = rebalances.take();
        assert_eq!(changes.revoked, BTreeSet::from([tp("events", 1), tp("events", 2)]));
        assert_eq!(changes.assigned, BTreeSet::from([tp("events", 2)]));
        assert_eq!(changes.revoked_numbers(), vec![1, 2]);
        assert!(rebalances.take().is_empty(), "taken once");

        let mut state = owning(&[("events", 1), ("events", 2)]);
        state.block("events", 2, 5);
        state.revoke(&changes.revoked);
        for tp in &changes.assigned {
            state.assign(tp.clone());
        }
        assert_eq!(state.owned(), vec![tp("events", 2)]);
        assert!(!state.is_blocked("events", 2), "a fresh ownership");
    }

    #[test]
    fn a_write_pause_holds_everything_and_releases_only_what_may_run() {
        let now = Instant::now();
        let mut state = owning(&[("events", 0), ("events", 1), ("events", 2)]);
        state.block("events", 0, 1);
        state.park([1], [], now);
        assert_eq!(state.pause_for_write(), vec![tp("events", 0), tp("events", 1), tp("events", 2)]);
        assert!(state.is_paused_for_write());
        // A shard answering during the write: rewound, but resumed only with the rest.
        assert_eq!(state.unpark(1).expect("parked").resume, Vec::<TopicPartition>::new());
        state.park([1], [], now);
        state.assign(tp("events", 3));
        assert_eq!(state.end_write_pause(), vec![tp("events", 2), tp("events", 3)]);
        assert!(!state.is_paused_for_write());
    }
}
