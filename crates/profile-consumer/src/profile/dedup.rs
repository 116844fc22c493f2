//! A client's repeated track request does not count in the profile, decided by the
//! event sink's rule (`event_sink::once`, `docs/design.md` "Idempotent retries") so
//! that `vero.events` and the profiles agree: an event whose request key
//! (`vero_model::request_key`) was accepted for the same user less than the dedup
//! window apart (by gateway `received_at`, either direction) is a repeat; repeats are
//! not remembered, so a request sent again after the window is a new event and
//! starts a new window.
//!
//! The accepted keys travel in the profile record (`profile.v2`,
//! `recent_requests`), so a restore from the profiles topic, a redelivery or a
//! partition move decides the same way. They are bounded:
//! * by time: keys more than the window plus [`SKEW_MARGIN_MS`] older than the
//!   newest one are pruned (no event can be a repeat of them any more unless the
//!   gateways' clocks run that far apart);
//! * by count: at most [`vero_model::profile::MAX_RECENT_REQUESTS`] keys; past it the
//!   oldest fall out, and one that falls out while still within the window is
//!   counted (`vero_profiles_request_keys_evicted_total`): a repeat of it would count.
//!   With the default 5-minute window that takes a user sending over 1000 distinct
//!   requests in 5 minutes.

use uuid::Uuid;
use vero_model::profile::{RecentRequest, MAX_RECENT_REQUESTS};

use super::ProfileState;

/// How far apart the gateways' clocks may be while the decision stays exactly the
/// sink's: a key is kept this long past its window, for a repeat whose `received_at`
/// reads earlier than a record applied before it.
pub const SKEW_MARGIN_MS: i64 = 60_000;

/// The dedup settings a profile is applied with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dedup {
    /// `dedup.window_ms`; 0 turns the repeat check off (and keeps no keys).
    pub window_ms: i64,
    /// Most keys per profile.
    pub max_keys: usize,
}

impl Dedup {
    pub fn new(window_ms: u64) -> Self {
        Self { window_ms: i64::try_from(window_ms).unwrap_or(i64::MAX), max_keys: MAX_RECENT_REQUESTS }
    }
}

impl ProfileState {
    /// Whether a track event with request key `key`, received at `received_at`,
    /// repeats a request this profile accepted less than the window apart.
    pub fn is_repeat(&self, key: Uuid, received_at: i64, dedup: Dedup) -> bool {
        dedup.window_ms > 0
            && self
                .recent_requests
                .iter()
                .any(|r| r.request_key == key && received_at.abs_diff(r.received_at) < dedup.window_ms.unsigned_abs())
    }

    /// Remember an accepted request, prune what no event can repeat any more and cap
    /// the list. Returns how many keys fell out to the cap while still within the
    /// window.
    pub fn remember_request(&mut self, key: Uuid, received_at: i64, dedup: Dedup) -> usize {
        if dedup.window_ms <= 0 {
            self.recent_requests.clear();
            return 0;
        }
        let at = self.recent_requests.partition_point(|r| r.received_at <= received_at);
        self.recent_requests.insert(at, RecentRequest { request_key: key, received_at });
        let newest = self.recent_requests.last().map_or(received_at, |r| r.received_at);
        let keep_from = newest.saturating_sub(dedup.window_ms.saturating_add(SKEW_MARGIN_MS));
        let expired = self.recent_requests.partition_point(|r| r.received_at <= keep_from);
        self.recent_requests.drain(..expired);
        let over = self.recent_requests.len().saturating_sub(dedup.max_keys);
        let evicted = self.recent_requests.drain(..over);
        evicted.filter(|r| newest.saturating_sub(r.received_at) < dedup.window_ms).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ProfileKey;

    const WINDOW: Dedup = Dedup { window_ms: 1_000, max_keys: MAX_RECENT_REQUESTS };

    /// Apply-or-skip in topic order, as the service does; true = counted.
    fn counted(profile: &mut ProfileState, key: u128, received_at: i64, dedup: Dedup) -> bool {
        let key = Uuid::from_u128(key);
        if profile.is_repeat(key, received_at, dedup) {
            return false;
        }
        profile.remember_request(key, received_at, dedup);
        true
    }

    fn fresh() -> ProfileState {
        ProfileState::new(ProfileKey::new("shop", "u1"))
    }

    #[test]
    fn decides_like_the_event_sink() {
        // The inputs of event_sink::once's `repeats_within_the_window_are_dropped_in_topic_order`
        // for one partition (one user), with the same decisions.
        let mut profile = fresh();
        profile.remember_request(Uuid::from_u128(2), 9_500, WINDOW); // accepted earlier
        profile.remember_request(Uuid::from_u128(3), 100, WINDOW); // accepted long ago
        let decisions: Vec<bool> = [(1, 1_000), (1, 1_500), (1, 2_000), (2, 10_000), (3, 10_000)]
            .into_iter()
            .map(|(key, at)| counted(&mut profile, key, at, WINDOW))
            .collect();
        assert_eq!(decisions, [true, false, true, false, true]);
    }

    #[test]
    fn a_repeat_with_an_earlier_clock_is_still_a_repeat() {
        let mut profile = fresh();
        assert!(counted(&mut profile, 1, 10_000, WINDOW));
        assert!(counted(&mut profile, 9, 11_500, WINDOW), "another request, later");
        assert!(!counted(&mut profile, 1, 9_200, WINDOW), "less than the window before the accepted one");
        assert!(counted(&mut profile, 1, 8_999, WINDOW), "a window or more before it");
    }

    #[test]
    fn keys_past_the_window_and_margin_are_pruned_and_the_list_is_capped() {
        let mut profile = fresh();
        counted(&mut profile, 1, 0, WINDOW);
        counted(&mut profile, 2, WINDOW.window_ms + SKEW_MARGIN_MS - 1, WINDOW);
        assert_eq!(profile.recent_requests.len(), 2, "within window + margin of the newest");
        counted(&mut profile, 3, WINDOW.window_ms + SKEW_MARGIN_MS, WINDOW);
        assert_eq!(profile.recent_requests.iter().map(|r| r.request_key.as_u128()).collect::<Vec<_>>(), [2, 3]);

        let small = Dedup { window_ms: 1_000, max_keys: 3 };
        let mut profile = fresh();
        let evicted: Vec<usize> =
            (0..5).map(|i| profile.remember_request(Uuid::from_u128(i), 100 * i as i64, small)).collect();
        assert_eq!(evicted, [0, 0, 0, 1, 1], "the oldest fall out, still within the window");
        assert_eq!(profile.recent_requests.len(), 3);
        assert!(counted(&mut profile, 0, 450, small), "fell out: its repeat counts");
        assert!(!counted(&mut profile, 4, 450, small));
    }

    #[test]
    fn a_zero_window_turns_it_off() {
        let off = Dedup { window_ms: 0, max_keys: MAX_RECENT_REQUESTS };
        let mut profile = fresh();
        assert!(counted(&mut profile, 1, 1_000, off));
        assert!(counted(&mut profile, 1, 1_000, off));
        assert!(profile.recent_requests.is_empty());
    }
}
