//! The profiles of the assigned partitions, in bounded memory.
//!
//! Three tiers, each profile in one of them at a time:
//! * **working**: the profiles the batch in hand read or changed, changes not yet
//!   written anywhere (bounded by `batch.max_records`);
//! * **cache**: profiles as last written, decoded, least recently used out first,
//!   within a byte budget (`state.memory_mb`, [`Budget`]);
//! * **disk** ([`disk::Disk`]): every profile of the partitions this member restored,
//!   as written to the profiles topic, with the topic offset it is complete up to.
//!
//! A batch's changes reach the disk only after its profiles-topic records were
//! acknowledged ([`ProfileStates::settle`]), so the disk never holds what the topic
//! does not. A partition whose write did not happen (fenced, parked, a profile
//! refused) is dropped from memory ([`ProfileStates::drop_partition`]) and restored
//! before its next record: from its checkpoint, reading only the topic's tail.

pub mod disk;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use quick_cache::unsync::Cache;
use quick_cache::Weighter;
use vero_model::profile::decode_profile;

use crate::profile::{ProfileKey, ProfileState};
pub use disk::{Checkpoint, Disk, StateError};

/// Memory the profile state may use (`state.memory_mb`), split between the decoded
/// profiles cache and the disk store's own caches.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Decoded profiles, weighed by [`weight`].
    pub cache: u64,
    pub disk: disk::Budget,
}

impl Budget {
    /// A quarter for decoded profiles, half for the store's block cache, a quarter
    /// for its memtables.
    pub fn of(bytes: u64) -> Self {
        Self { cache: bytes / 4, disk: disk::Budget { block_cache: bytes / 2, write_buffer: bytes / 4 } }
    }
}

/// The approximate heap bytes of a cached profile: the profile's own
/// ([`ProfileState::heap_bytes`]) plus the cache's copy of its key.
fn weight(key: &(i32, ProfileKey), state: &ProfileState) -> u64 {
    (state.heap_bytes() + std::mem::size_of::<(i32, ProfileKey)>() + key.1.project.len() + key.1.user_id.len()) as u64
}

#[derive(Clone)]
struct Cached {
    state: ProfileState,
    weight: u64,
}

#[derive(Clone)]
struct ByWeight;

impl Weighter<(i32, ProfileKey), Cached> for ByWeight {
    fn weight(&self, _key: &(i32, ProfileKey), value: &Cached) -> u64 {
        value.weight.max(1)
    }
}

/// Hits and misses of the decoded cache (a miss reads the disk).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Lookups {
    pub hits: u64,
    pub misses: u64,
}

pub struct ProfileStates {
    disk: Arc<Disk>,
    /// `None`: known absent (never written, or erased in this batch).
    working: HashMap<(i32, ProfileKey), Option<ProfileState>>,
    cache: Cache<(i32, ProfileKey), Cached, ByWeight>,
    /// Partitions restored: their profiles are on disk, complete.
    restored: BTreeSet<i32>,
    lookups: Lookups,
}

impl ProfileStates {
    pub fn new(disk: Arc<Disk>, cache_bytes: u64) -> Self {
        // quick_cache sizes its table by an estimated item count.
        let items = (cache_bytes / 2048).max(16) as usize;
        Self {
            disk,
            working: HashMap::new(),
            cache: Cache::with_weighter(items, cache_bytes.max(1), ByWeight),
            restored: BTreeSet::new(),
            lookups: Lookups::default(),
        }
    }

    pub fn disk(&self) -> &Arc<Disk> {
        &self.disk
    }

    pub fn is_restored(&self, partition: i32) -> bool {
        self.restored.contains(&partition)
    }

    /// `partition`'s profiles are on disk up to the topic's end.
    pub fn mark_restored(&mut self, partition: i32) {
        self.restored.insert(partition);
    }

    /// Forget what is held of `partition` in memory: it is restored again (from its
    /// checkpoint) before its next record.
    pub fn drop_partition(&mut self, partition: i32) {
        self.restored.remove(&partition);
        self.working.retain(|(p, _), _| *p != partition);
        self.cache.retain(|(p, _), _| *p != partition);
    }

    /// Bring `key` into the working set: from the cache, else the disk.
    fn load(&mut self, partition: i32, key: &ProfileKey) -> Result<(), StateError> {
        let place = (partition, key.clone());
        if self.working.contains_key(&place) {
            return Ok(());
        }
        if let Some((place, cached)) = self.cache.remove(&place) {
            self.lookups.hits += 1;
            self.working.insert(place, Some(cached.state));
            return Ok(());
        }
        self.lookups.misses += 1;
        let state = match self.disk.get(partition, &key.kafka_key())? {
            Some(bytes) => Some(
                decode_profile(&bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|p| ProfileState::from_record(p).map_err(|e| e.to_string()))
                    .map_err(|reason| StateError {
                        dir: self.disk.dir().to_owned(),
                        reason: format!(
                            "the stored profile of {}/{} does not decode: {reason}",
                            key.project, key.user_id
                        ),
                    })?,
            ),
            None => None,
        };
        self.working.insert(place, state);
        Ok(())
    }

    /// The profile of `key`, if it exists.
    pub fn get(&mut self, partition: i32, key: &ProfileKey) -> Result<Option<&ProfileState>, StateError> {
        self.load(partition, key)?;
        Ok(self.working.get(&(partition, key.clone())).and_then(Option::as_ref))
    }

    /// The profile of `key`, created with `fresh` when it does not exist.
    pub fn get_or_create(
        &mut self,
        partition: i32,
        key: &ProfileKey,
        fresh: impl FnOnce() -> ProfileState,
    ) -> Result<&mut ProfileState, StateError> {
        self.load(partition, key)?;
        let slot = self.working.get_mut(&(partition, key.clone())).expect("loaded");
        Ok(slot.get_or_insert_with(fresh))
    }

    /// Take `key`'s profile out: it no longer exists.
    pub fn remove(&mut self, partition: i32, key: &ProfileKey) -> Result<Option<ProfileState>, StateError> {
        self.load(partition, key)?;
        Ok(self.working.get_mut(&(partition, key.clone())).and_then(Option::take))
    }

    /// A profile of the working set (what the batch in hand touched).
    pub fn working(&self, partition: i32, key: &ProfileKey) -> Option<&ProfileState> {
        self.working.get(&(partition, key.clone())).and_then(Option::as_ref)
    }

    /// After a batch's write: commit `written` (profiles-topic values as sent, `None`
    /// a tombstone) with each partition's new checkpoint (`ends`, the topic's end
    /// as this member knows it), and move the working set of the partitions `kept`
    /// says are still this member's to the cache. Everything else of the working set
    /// is dropped. A commit that fails drops its partitions (they restore from the
    /// last checkpoint) and is returned.
    pub fn settle(
        &mut self,
        written: Vec<(i32, ProfileKey, Option<Vec<u8>>)>,
        ends: impl Fn(i32) -> Option<i64>,
        kept: impl Fn(i32) -> bool,
    ) -> Result<(), StateError> {
        let mut changes = disk::Changes::default();
        let mut unknown_end = BTreeSet::new();
        for (partition, key, value) in written {
            if !kept(partition) {
                continue;
            }
            match ends(partition) {
                Some(end) => {
                    changes.checkpoints.insert(partition, end);
                    changes.values.push((partition, key.kafka_key(), value));
                }
                None => {
                    unknown_end.insert(partition);
                }
            }
        }
        let partitions: BTreeSet<i32> = changes.checkpoints.keys().copied().collect();
        let committed = self.disk.commit(changes);
        for (place, state) in std::mem::take(&mut self.working) {
            let Some(state) = state else { continue };
            if kept(place.0) && !unknown_end.contains(&place.0) {
                let weight = weight(&place, &state);
                self.cache.insert(place, Cached { state, weight });
            }
        }
        for partition in unknown_end {
            self.drop_partition(partition);
        }
        if committed.is_err() {
            for partition in partitions {
                self.drop_partition(partition);
            }
        }
        committed
    }

    /// Profiles held decoded in memory (working set and cache).
    pub fn in_memory(&self) -> usize {
        self.working.len() + self.cache.len()
    }

    /// Bytes of decoded profiles in the cache (by [`weight`]).
    pub fn cache_bytes(&self) -> u64 {
        self.cache.weight()
    }

    /// Cache hits and misses since the last call.
    pub fn take_lookups(&mut self) -> Lookups {
        std::mem::take(&mut self.lookups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(dir: &std::path::Path, cache: u64) -> ProfileStates {
        let disk = Disk::open(dir, disk::Budget { block_cache: 1 << 20, write_buffer: 1 << 20 }).unwrap();
        ProfileStates::new(Arc::new(disk), cache)
    }

    fn encoded(state: &ProfileState) -> Option<Vec<u8>> {
        Some(vero_model::encode(&state.to_record()))
    }

    #[test]
    fn settled_profiles_are_read_back_from_cache_then_disk() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = states(dir.path(), 1 << 20);
        let key = ProfileKey::new("p", "u1");
        let profile = s.get_or_create(0, &key, || ProfileState::new(key.clone())).unwrap();
        profile.event_count = 3;
        let value = encoded(s.working(0, &key).unwrap());
        s.settle(vec![(0, key.clone(), value)], |_| Some(12), |_| true).unwrap();
        assert_eq!(s.take_lookups(), Lookups { hits: 0, misses: 1 }, "a new profile is looked for on disk");
        assert_eq!(s.get(0, &key).unwrap().map(|p| p.event_count), Some(3));
        assert_eq!(s.take_lookups(), Lookups { hits: 1, misses: 0 });
        assert_eq!(s.disk().checkpoint(0).unwrap().map(|c| c.end), Some(12));
        drop(s);
        let mut s = states(dir.path(), 1 << 20);
        assert_eq!(s.get(0, &key).unwrap().map(|p| p.event_count), Some(3));
        assert_eq!(s.take_lookups(), Lookups { hits: 0, misses: 1 });
    }

    #[test]
    fn an_unsettled_change_never_reaches_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = states(dir.path(), 1 << 20);
        let key = ProfileKey::new("p", "u1");
        s.get_or_create(1, &key, || ProfileState::new(key.clone())).unwrap().event_count = 1;
        let value = encoded(s.working(1, &key).unwrap());
        s.settle(vec![(1, key.clone(), value)], |_| Some(1), |_| true).unwrap();
        // The next batch changes it, but its write is fenced: the partition is dropped.
        s.get_or_create(1, &key, || unreachable!()).unwrap().event_count = 2;
        let value = encoded(s.working(1, &key).unwrap());
        s.settle(vec![(1, key.clone(), value)], |_| Some(2), |_| false).unwrap();
        s.drop_partition(1);
        assert!(!s.is_restored(1));
        assert_eq!(s.get(1, &key).unwrap().map(|p| p.event_count), Some(1));
        assert_eq!(s.disk().checkpoint(1).unwrap().map(|c| c.end), Some(1));
    }

    #[test]
    fn an_erased_profile_is_removed_and_the_cache_keeps_to_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = states(dir.path(), 64 * 1024);
        let mut written = Vec::new();
        for i in 0..1000 {
            let key = ProfileKey::new("p", format!("user-{i}"));
            s.get_or_create(2, &key, || ProfileState::new(key.clone())).unwrap().event_count = i;
            written.push((2, key.clone(), encoded(s.working(2, &key).unwrap())));
        }
        s.settle(written, |_| Some(1000), |_| true).unwrap();
        assert!(s.cache_bytes() <= 64 * 1024, "{}", s.cache_bytes());
        assert!(s.in_memory() < 1000);
        let key = ProfileKey::new("p", "user-7");
        assert_eq!(s.get(2, &key).unwrap().map(|p| p.event_count), Some(7));
        assert!(s.remove(2, &key).unwrap().is_some());
        assert!(s.get(2, &key).unwrap().is_none(), "erased within the batch");
        s.settle(vec![(2, key.clone(), None)], |_| Some(1001), |_| true).unwrap();
        assert!(s.get(2, &key).unwrap().is_none(), "erased on disk");
    }
}
