//! The batch being assembled: rows for ClickHouse, user deletes (GDPR erasures),
//! records for the dead-letter topic, and the last offset seen per partition, flushed
//! when any limit (records, bytes, age) is reached, or early (see
//! [`Batch::early_from`]) once nothing more is ready to read. Commands the sink does
//! not act on only advance the offsets.
//!
//! A batch holds, per partition, a contiguous offset range that follows the previous
//! batch's, so "this batch is written" means "every offset up to the batch's last one
//! is handled" and storing that offset is safe.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::config::BatchSettings;
use crate::erase::UserDelete;
use crate::row::EventRow;

/// A record that cannot be written; its kinds here: `decode`, `invalid_row`,
/// `rejected`, `rejected_delete`.
pub use vero_service::dead_letter::DeadLetter;

#[derive(Debug)]
pub struct Batch {
    limits: BatchSettings,
    pub rows: Vec<EventRow>,
    pub dead: Vec<DeadLetter>,
    /// `Delete` commands, applied after `rows` are written.
    pub deletes: Vec<UserDelete>,
    /// Commands skipped (not the sink's business); only their offsets matter.
    skipped: usize,
    /// partition -> last offset in this batch.
    pub last_offsets: BTreeMap<i32, i64>,
    /// partition -> first offset in this batch (where a parked partition is rewound to).
    pub first_offsets: BTreeMap<i32, i64>,
    bytes: usize,
    opened: Option<Instant>,
}

impl Batch {
    pub fn new(limits: BatchSettings) -> Self {
        Self {
            limits,
            rows: Vec::new(),
            dead: Vec::new(),
            deletes: Vec::new(),
            skipped: 0,
            last_offsets: BTreeMap::new(),
            first_offsets: BTreeMap::new(),
            bytes: 0,
            opened: None,
        }
    }

    pub fn push_row(&mut self, row: EventRow) {
        self.note(row.kafka_partition, row.kafka_offset, row.approx_bytes());
        self.rows.push(row);
    }

    pub fn push_dead(&mut self, dead: DeadLetter) {
        let size = 64 + dead.payload.as_ref().map_or(0, Vec::len) + dead.reason.len();
        self.note(dead.partition, dead.offset, size);
        self.dead.push(dead);
    }

    pub fn push_delete(&mut self, delete: UserDelete) {
        let size = 64 + delete.command.project.len() + delete.command.user_id.len();
        self.note(delete.partition, delete.offset, size);
        self.deletes.push(delete);
    }

    /// A record that needs no write: storing the batch's offsets covers it.
    pub fn push_skipped(&mut self, partition: i32, offset: i64) {
        self.note(partition, offset, 0);
        self.skipped += 1;
    }

    fn note(&mut self, partition: i32, offset: i64, bytes: usize) {
        self.opened.get_or_insert_with(Instant::now);
        self.bytes += bytes;
        let last = self.last_offsets.entry(partition).or_insert(offset);
        *last = (*last).max(offset);
        let first = self.first_offsets.entry(partition).or_insert(offset);
        *first = (*first).min(offset);
    }

    pub fn is_empty(&self) -> bool {
        self.last_offsets.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rows.len() + self.dead.len() + self.deletes.len() + self.skipped
    }

    pub fn is_full(&self) -> bool {
        self.len() >= self.limits.max_rows || self.bytes >= self.limits.max_bytes
    }

    /// When the age limit forces a flush (`None` while empty).
    pub fn deadline(&self) -> Option<Instant> {
        self.opened.map(|opened| opened + self.limits.max_age())
    }

    /// When the batch may be written early, once nothing more is ready to read: not
    /// before `min_interval` after the previous write started (`None` while empty).
    pub fn early_from(&self, previous_write: Option<Instant>) -> Option<Instant> {
        let opened = self.opened?;
        let allowed = previous_write.map_or(opened, |at| opened.max(at + self.limits.min_interval()));
        Some(allowed.min(opened + self.limits.max_age()))
    }

    /// Time since the batch's first record (zero while empty).
    pub fn age(&self) -> std::time::Duration {
        self.opened.map(|opened| opened.elapsed()).unwrap_or_default()
    }

    /// Forget everything from `partitions` (revoked: the new owner re-reads them from
    /// the committed offset, which never covers unwritten records).
    pub fn drop_partitions(&mut self, partitions: &[i32]) {
        self.rows.retain(|r| !partitions.contains(&r.kafka_partition));
        self.dead.retain(|d| !partitions.contains(&d.partition));
        self.deletes.retain(|d| !partitions.contains(&d.partition));
        for p in partitions {
            self.last_offsets.remove(p);
            self.first_offsets.remove(p);
        }
        if self.last_offsets.is_empty() {
            // Skipped commands are not kept per partition; the count only sizes the batch.
            self.skipped = 0;
            self.bytes = 0;
            self.opened = None;
        }
    }

    /// Hand out the contents and start over.
    pub fn take(&mut self) -> Batch {
        std::mem::replace(self, Batch::new(self.limits.clone()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::row::EventRow;
    use std::time::Duration;

    pub(crate) fn row(partition: i32, offset: i64) -> EventRow {
        EventRow {
            event_id: uuid::Uuid::now_v7(),
            project: "p".into(),
            event_name: "e".into(),
            user_id: "u".into(),
            email: None,
            identity: "{}".into(),
            data: "{}".into(),
            extras: "{}".into(),
            source: None,
            user_agent: None,
            development_mode: 0,
            received_at_ms: 1,
            created_at_ms: None,
            kafka_partition: partition,
            kafka_offset: offset,
            request_key: uuid::Uuid::now_v7(),
            inserted_at: 1,
        }
    }

    fn limits(max_rows: usize, max_bytes: usize) -> BatchSettings {
        BatchSettings { max_rows, max_bytes, max_age_ms: 1000, min_interval_ms: 200, compress_inserts: false }
    }

    #[test]
    fn flushes_on_rows_or_bytes_and_tracks_last_offsets() {
        let mut batch = Batch::new(limits(3, 1 << 20));
        assert!(batch.deadline().is_none());
        batch.push_row(row(0, 5));
        batch.push_row(row(1, 9));
        assert!(!batch.is_full() && batch.deadline().is_some());
        let (opened, deadline) = (batch.deadline().unwrap() - Duration::from_secs(1), batch.deadline());
        assert_eq!(batch.early_from(None), Some(opened), "no write yet: as soon as idle");
        let long_ago = opened - Duration::from_secs(5);
        assert_eq!(batch.early_from(Some(long_ago)), Some(opened));
        assert_eq!(batch.early_from(Some(opened)), Some(opened + Duration::from_millis(200)));
        assert_eq!(batch.early_from(Some(opened + Duration::from_secs(5))), deadline, "capped at the age limit");
        batch.push_dead(DeadLetter {
            topic: "vero.events".into(),
            partition: 0,
            offset: 6,
            key: None,
            payload: Some(b"junk".to_vec()),
            kind: "decode",
            reason: "bad".into(),
        });
        assert!(batch.is_full());
        assert_eq!(batch.last_offsets, BTreeMap::from([(0, 6), (1, 9)]));
        assert_eq!(batch.first_offsets, BTreeMap::from([(0, 5), (1, 9)]));
        let taken = batch.take();
        assert_eq!(taken.len(), 3);
        assert!(batch.is_empty() && batch.deadline().is_none());

        let mut by_bytes = Batch::new(limits(1000, 100));
        by_bytes.push_row(row(0, 1));
        assert!(!by_bytes.is_full());
        by_bytes.push_row(row(0, 2));
        assert!(by_bytes.is_full());
    }

    #[test]
    fn deletes_and_skipped_commands_count_and_advance_offsets() {
        let mut batch = Batch::new(limits(3, 1 << 20));
        batch.push_skipped(0, 4);
        assert!(!batch.is_empty(), "a batch of skipped commands still has offsets to store");
        batch.push_delete(crate::erase::tests::delete("p", "a", 1, 7));
        batch.push_row(row(0, 5));
        assert!(batch.is_full());
        assert_eq!(batch.last_offsets, BTreeMap::from([(0, 5), (1, 7)]));
        batch.drop_partitions(&[1]);
        assert!(batch.deletes.is_empty());
        batch.drop_partitions(&[0]);
        assert!(batch.is_empty());
        assert_eq!(batch.len(), 0);
    }

    #[test]
    fn revoked_partitions_are_dropped() {
        let mut batch = Batch::new(limits(10, 1 << 20));
        batch.push_row(row(0, 1));
        batch.push_row(row(1, 1));
        batch.drop_partitions(&[0]);
        assert_eq!(batch.rows.len(), 1);
        assert_eq!(batch.last_offsets, BTreeMap::from([(1, 1)]));
        assert_eq!(batch.first_offsets, BTreeMap::from([(1, 1)]));
        batch.drop_partitions(&[1]);
        assert!(batch.is_empty() && batch.deadline().is_none());
    }
}
