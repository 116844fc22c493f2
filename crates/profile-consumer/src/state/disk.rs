//! The local store of the profiles (fjall, a pure-Rust LSM tree): one fjall partition
//! per events partition, holding each profile as its profiles-topic value, and a
//! checkpoint per partition saying how far along the profiles topic that content is.
//!
//! Invariant: a partition's content is the profiles topic's partition read up to its
//! checkpoint's `end` (last value per key, a tombstone removes). Every change is
//! committed in one atomic fjall batch together with its new checkpoint, so a crash
//! (kill -9, a lost journal tail) leaves an older consistent checkpoint, never a torn
//! one; the restore reads the topic from there ([`crate::kafka::restore`]).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use fjall::{Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};

/// A failure of the local store (I/O, a corrupt file, the directory in use).
#[derive(Debug, thiserror::Error)]
#[error("profile state in {dir}: {reason}")]
pub struct StateError {
    pub dir: PathBuf,
    pub reason: String,
}

/// How far along the profiles topic a partition's stored content is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// The profiles-topic offset the content is complete up to (exclusive).
    pub end: i64,
    /// When it was written (ms since the epoch).
    pub at_ms: i64,
}

/// Where a restore starts reading the profiles topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// From the checkpoint's end: the stored content is kept.
    Checkpoint(i64),
    /// From the partition's first offset, after the stored content is wiped.
    Beginning(Restart),
}

/// Why a restore reads the whole partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Nothing is stored for the partition.
    NoCheckpoint,
    /// The topic does not hold the checkpoint's offset (recreated, or records deleted).
    OutOfRange,
    /// Others wrote since a checkpoint older than `state.max_checkpoint_age_ms`: a
    /// tombstone among their records may have been compacted away.
    TooOld,
}

impl Resume {
    /// Where the restore started: `checkpoint` or `beginning` (a metric label).
    pub fn origin(self) -> &'static str {
        match self {
            Resume::Checkpoint(_) => "checkpoint",
            Resume::Beginning(_) => "beginning",
        }
    }

    /// Why it started there, for the log.
    pub fn reason(self) -> &'static str {
        match self {
            Resume::Checkpoint(_) => "the local store is complete up to its checkpoint",
            Resume::Beginning(restart) => restart.label(),
        }
    }
}

impl Restart {
    pub fn label(self) -> &'static str {
        match self {
            Restart::NoCheckpoint => "no checkpoint",
            Restart::OutOfRange => "checkpoint out of the topic's range",
            Restart::TooOld => "checkpoint older than state.max_checkpoint_age_ms",
        }
    }
}

/// Where to start reading a profiles partition whose offsets run from `low` to `high`.
/// Compaction drops tombstones `delete.retention.ms` after they were written; a
/// checkpoint younger than that has seen every tombstone written after it, and one
/// with nothing written after it needs none.
pub fn resume(checkpoint: Option<Checkpoint>, low: i64, high: i64, now_ms: i64, max_age_ms: i64) -> Resume {
    let Some(checkpoint) = checkpoint else { return Resume::Beginning(Restart::NoCheckpoint) };
    if checkpoint.end < low || checkpoint.end > high {
        return Resume::Beginning(Restart::OutOfRange);
    }
    if checkpoint.end < high && now_ms.saturating_sub(checkpoint.at_ms) > max_age_ms {
        return Resume::Beginning(Restart::TooOld);
    }
    Resume::Checkpoint(checkpoint.end)
}

/// Changes committed at once: profile values (`None` = removed) and checkpoints.
#[derive(Debug, Default)]
pub struct Changes {
    pub values: Vec<(i32, Vec<u8>, Option<Vec<u8>>)>,
    pub checkpoints: BTreeMap<i32, i64>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.checkpoints.is_empty()
    }
}

/// Memory the store may use, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// fjall's block cache.
    pub block_cache: u64,
    /// fjall's memtables, all partitions together.
    pub write_buffer: u64,
}

/// Longest profiles-topic key stored as it is; a longer one (the store takes at most
/// 65535 bytes) is stored as [`LONG_KEY`] and its SHA-256.
const MAX_PLAIN_KEY: usize = 1024;
/// First byte of a hashed key: never the first byte of a plain one (a UTF-8 project name).
const LONG_KEY: u8 = 0xFF;

/// The store's key of a profiles-topic key.
fn store_key(key: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    use sha2::Digest;
    if key.len() <= MAX_PLAIN_KEY {
        return key.into();
    }
    let mut hashed = vec![LONG_KEY];
    hashed.extend_from_slice(&sha2::Sha256::digest(key));
    hashed.into()
}

/// Journals kept before memtables are flushed: bounds the replay at start.
const MAX_JOURNAL_BYTES: u64 = 32 * 1024 * 1024;

pub struct Disk {
    dir: PathBuf,
    keyspace: Keyspace,
    checkpoints: PartitionHandle,
    partitions: Mutex<HashMap<i32, PartitionHandle>>,
    /// Held open for its lock: one process per directory.
    _lock: File,
}

impl Disk {
    /// Open (or create) the store in `dir`. Fails when another process holds it.
    pub fn open(dir: &Path, budget: Budget) -> Result<Self, StateError> {
        let fail = |reason: String| StateError { dir: dir.to_owned(), reason };
        std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create the directory: {e}")))?;
        let lock =
            File::create(dir.join("LOCK.vero")).map_err(|e| fail(format!("cannot create the lock file: {e}")))?;
        lock.try_lock().map_err(|e| {
            fail(format!("in use by another process ({e}): give each profile consumer its own state.dir"))
        })?;
        let keyspace = fjall::Config::new(dir.join("fjall"))
            .cache_size(budget.block_cache)
            .max_write_buffer_size(budget.write_buffer.max(1024 * 1024))
            .max_journaling_size(MAX_JOURNAL_BYTES)
            .open()
            .map_err(|e| fail(format!("cannot open: {e}")))?;
        let checkpoints = keyspace
            .open_partition("checkpoints", PartitionCreateOptions::default())
            .map_err(|e| fail(format!("cannot open the checkpoints: {e}")))?;
        Ok(Self { dir: dir.to_owned(), keyspace, checkpoints, partitions: Mutex::default(), _lock: lock })
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display) -> StateError {
        StateError { dir: self.dir.clone(), reason: format!("{what}: {e}") }
    }

    fn partition(&self, partition: i32) -> Result<PartitionHandle, StateError> {
        let mut partitions = self.partitions.lock().expect("partitions lock");
        if let Some(handle) = partitions.get(&partition) {
            return Ok(handle.clone());
        }
        let handle = self
            .keyspace
            .open_partition(&format!("p{partition}"), PartitionCreateOptions::default())
            .map_err(|e| self.fail(&format!("opening partition {partition}"), e))?;
        partitions.insert(partition, handle.clone());
        Ok(handle)
    }

    pub fn checkpoint(&self, partition: i32) -> Result<Option<Checkpoint>, StateError> {
        let value = self.checkpoints.get(partition.to_be_bytes()).map_err(|e| self.fail("reading a checkpoint", e))?;
        Ok(value.and_then(|v| {
            let end = i64::from_be_bytes(v.get(..8)?.try_into().ok()?);
            let at_ms = i64::from_be_bytes(v.get(8..16)?.try_into().ok()?);
            Some(Checkpoint { end, at_ms })
        }))
    }

    /// The stored value of `key` (a profiles-topic key) in `partition`.
    pub fn get(&self, partition: i32, key: &[u8]) -> Result<Option<fjall::Slice>, StateError> {
        self.partition(partition)?
            .get(store_key(key))
            .map_err(|e| self.fail(&format!("reading partition {partition}"), e))
    }

    /// Remove everything stored of `partition`, its checkpoint first.
    pub fn wipe(&self, partition: i32) -> Result<(), StateError> {
        let handle = self.partition(partition)?;
        let mut batch = self.keyspace.batch().durability(Some(PersistMode::Buffer));
        batch.remove(&self.checkpoints, partition.to_be_bytes());
        for key in handle.keys() {
            batch.remove(&handle, key.map_err(|e| self.fail("wiping", e))?);
            if batch.len() >= 10_000 {
                batch.commit().map_err(|e| self.fail("wiping", e))?;
                batch = self.keyspace.batch().durability(Some(PersistMode::Buffer));
            }
        }
        batch.commit().map_err(|e| self.fail("wiping", e))
    }

    /// Commit `changes` atomically (flushed to the OS: a killed process loses none).
    pub fn commit(&self, changes: Changes) -> Result<(), StateError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut batch = self.keyspace.batch().durability(Some(PersistMode::Buffer));
        for (partition, key, value) in changes.values {
            let handle = self.partition(partition)?;
            let key = store_key(&key).into_owned();
            match value {
                Some(value) => batch.insert(&handle, key, value),
                None => batch.remove(&handle, key),
            }
        }
        let now = now_ms();
        for (partition, end) in changes.checkpoints {
            let mut value = end.to_be_bytes().to_vec();
            value.extend_from_slice(&now.to_be_bytes());
            batch.insert(&self.checkpoints, partition.to_be_bytes(), value);
        }
        batch.commit().map_err(|e| self.fail("committing", e))
    }

    /// Write everything committed through to the disk (fsync), at stop.
    pub fn sync(&self) -> Result<(), StateError> {
        self.keyspace.persist(PersistMode::SyncAll).map_err(|e| self.fail("syncing", e))
    }

    /// Bytes on disk (tables and journals).
    pub fn disk_bytes(&self) -> u64 {
        self.keyspace.disk_space()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Budget = Budget { block_cache: 1 << 20, write_buffer: 1 << 20 };

    #[test]
    fn a_restore_resumes_from_a_usable_checkpoint_only() {
        let at = |end, at_ms| Some(Checkpoint { end, at_ms });
        assert_eq!(resume(None, 0, 10, 1_000, 100), Resume::Beginning(Restart::NoCheckpoint));
        assert_eq!(resume(at(5, 990), 0, 10, 1_000, 100), Resume::Checkpoint(5));
        assert_eq!(resume(at(5, 990), 6, 10, 1_000, 100), Resume::Beginning(Restart::OutOfRange));
        assert_eq!(resume(at(11, 990), 0, 10, 1_000, 100), Resume::Beginning(Restart::OutOfRange));
        assert_eq!(resume(at(5, 800), 0, 10, 1_000, 100), Resume::Beginning(Restart::TooOld));
        // Nothing written since: however old, the content is the topic's.
        assert_eq!(resume(at(10, 0), 0, 10, 1_000, 100), Resume::Checkpoint(10));
    }

    #[test]
    fn values_and_checkpoints_commit_together_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let disk = Disk::open(dir.path(), BUDGET).unwrap();
            assert_eq!(disk.checkpoint(3).unwrap(), None);
            let mut changes = Changes::default();
            changes.values.push((3, b"a".to_vec(), Some(b"1".to_vec())));
            changes.values.push((3, b"b".to_vec(), Some(b"2".to_vec())));
            changes.checkpoints.insert(3, 7);
            disk.commit(changes).unwrap();
            let mut changes = Changes::default();
            changes.values.push((3, b"a".to_vec(), None));
            changes.checkpoints.insert(3, 9);
            disk.commit(changes).unwrap();
        }
        let disk = Disk::open(dir.path(), BUDGET).unwrap();
        assert_eq!(disk.checkpoint(3).unwrap().map(|c| c.end), Some(9));
        assert_eq!(disk.get(3, b"a").unwrap(), None);
        assert_eq!(disk.get(3, b"b").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(disk.get(4, b"b").unwrap(), None, "partitions are apart");
        let long = vec![b'L'; 300_000];
        let mut changes = Changes::default();
        changes.values.push((3, long.clone(), Some(b"3".to_vec())));
        disk.commit(changes).unwrap();
        assert_eq!(disk.get(3, &long).unwrap().as_deref(), Some(&b"3"[..]), "a key longer than the store takes");
        disk.wipe(3).unwrap();
        assert_eq!(disk.checkpoint(3).unwrap(), None);
        assert_eq!(disk.get(3, b"b").unwrap(), None);
    }

    #[test]
    fn a_directory_serves_one_process() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Disk::open(dir.path(), BUDGET).unwrap();
        let second = Disk::open(dir.path(), BUDGET).err().expect("locked").to_string();
        assert!(second.contains("in use by another process"), "{second}");
    }
}
