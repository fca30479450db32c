//! The in-process store: the same GCRA as in Redis, kept in this instance's memory.
//!
//! It serves while Redis is down or slow, so each instance then enforces the policies
//! on its own (the limit becomes per instance rather than shared). Keys are sharded by
//! their hash tag, so the keys of one all-or-nothing check always sit in one shard and
//! are decided under one lock, as in one Redis Cluster slot.
//!
//! Why not `governor`: the sign-in rules need an all-or-nothing check of several keys,
//! giving a request back (refund) and forgetting a key (reset), and the fallback must
//! answer with the same numbers as Redis (same `RateLimit` headers). Sharing the
//! arithmetic of [`crate::gcra`] with the Lua script gives all of that in a few lines.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use crate::gcra::{self, Outcome, Params};

const SHARDS: usize = 32;

pub(crate) struct LocalStore {
    epoch: Instant,
    /// Added to the clock: only tests move it, to let keys expire without waiting.
    skew_us: AtomicU64,
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
    max_keys_per_shard: usize,
}

struct Shard {
    tats: HashMap<String, Entry>,
    /// Size at which expired entries are swept next; never above the shard's bound, so a
    /// full shard is always swept before a new key is turned away.
    sweep_at: usize,
    /// A full shard whose sweep freed little is swept again only after this time, so a
    /// flood of live keys costs a sweep per 100 ms, not one per request.
    full_sweep_after: u64,
}

/// How long a full shard waits before it is swept again, in microseconds.
const FULL_SWEEP_PAUSE_US: u64 = 100_000;

/// A key's theoretical arrival time and, in the optimistic limiter's copy of Redis,
/// the charges decided here and not yet answered by Redis.
#[derive(Clone, Copy)]
struct Entry {
    tat: u64,
    pending: u32,
}

impl Entry {
    fn new(tat: u64) -> Self {
        Self { tat, pending: 0 }
    }
}

impl LocalStore {
    pub(crate) fn new(max_keys: usize) -> Self {
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard { tats: HashMap::new(), sweep_at: 1024, full_sweep_after: 0 })).collect();
        Self { epoch: Instant::now(), skew_us: AtomicU64::new(0), hasher: RandomState::new(), shards, max_keys_per_shard: (max_keys / SHARDS).max(1) }
    }

    /// Microseconds on this instance's monotonic clock.
    fn now(&self) -> u64 {
        // Start well above zero so "one window ago" never underflows.
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX / 4) + 1_000_000_000 + self.skew_us.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    fn advance(&self, by: std::time::Duration) {
        self.skew_us.fetch_add(by.as_micros() as u64, Ordering::Relaxed);
    }

    fn shard(&self, tag: &str) -> std::sync::MutexGuard<'_, Shard> {
        let index = (self.hasher.hash_one(tag) as usize) % self.shards.len();
        // A panic while holding the lock cannot leave a TAT half-written: recover.
        self.shards[index].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Decides a request against every key at once; charges all of them or none.
    pub(crate) fn acquire(&self, tag: &str, keys: &[(String, Params)], cost: u64) -> Vec<Outcome> {
        let now = self.now();
        let mut shard = self.shard(tag);
        let outcomes: Vec<Outcome> = keys.iter().map(|(key, params)| gcra::acquire(now, shard.tats.get(key).map(|e| e.tat), *params, cost)).collect();
        if outcomes.iter().all(|o| o.allowed) {
            shard.sweep_if_large(now, self.max_keys_per_shard);
            for ((key, _), outcome) in keys.iter().zip(&outcomes) {
                if let Some(entry) = shard.tats.get_mut(key) {
                    entry.tat = outcome.new_tat;
                } else if shard.tats.len() < self.max_keys_per_shard {
                    shard.tats.insert(key.clone(), Entry::new(outcome.new_tat));
                }
                // else: the shard is full of live keys (a flood of distinct clients);
                // the request is let through uncounted rather than refused or stored.
            }
        }
        outcomes
    }

    /// The optimistic path of [`crate::Limiter`]: decides and charges locally, but only
    /// when every key has been synced with Redis (is present) and keeps at least half
    /// its burst after this request. None (nothing charged) otherwise.
    pub(crate) fn acquire_if_far(&self, tag: &str, keys: &[(String, Params)], cost: u64) -> Option<Vec<Outcome>> {
        let now = self.now();
        let mut shard = self.shard(tag);
        let mut outcomes = Vec::with_capacity(keys.len());
        for (key, params) in keys {
            let outcome = gcra::acquire(now, Some(shard.tats.get(key)?.tat), *params, cost);
            if !outcome.allowed || outcome.remaining * 2 < params.burst {
                return None;
            }
            outcomes.push(outcome);
        }
        for ((key, _), outcome) in keys.iter().zip(&outcomes) {
            if let Some(entry) = shard.tats.get_mut(key) {
                entry.tat = outcome.new_tat;
                entry.pending += 1;
            }
        }
        Some(outcomes)
    }

    /// Whether any of the keys has charges on their way to Redis.
    pub(crate) fn pending(&self, tag: &str, keys: &[(String, Params)]) -> bool {
        let shard = self.shard(tag);
        keys.iter().any(|(key, _)| shard.tats.get(key).is_some_and(|e| e.pending > 0))
    }

    /// Takes Redis's word for the keys' state where it knows of more charges than the
    /// copy (another instance's): `reset_us` from now, each is back to a full burst,
    /// which fixes its TAT whatever the two clocks read. `answered` is true
    /// when this was the answer to a background charge, which is then no longer pending.
    /// Charges still pending are added on top, so the copy never counts fewer than
    /// this instance has allowed.
    pub(crate) fn sync(&self, tag: &str, keys: &[(String, Params)], outcomes: &[Outcome], answered: bool) {
        let now = self.now();
        let mut shard = self.shard(tag);
        shard.sweep_if_large(now, self.max_keys_per_shard);
        for ((key, params), outcome) in keys.iter().zip(outcomes) {
            if let Some(entry) = shard.tats.get_mut(key) {
                if answered {
                    entry.pending = entry.pending.saturating_sub(1);
                }
                // Never backwards: answers to background charges can arrive out of
                // order, and an older one knows of fewer charges than the copy does.
                entry.tat = entry.tat.max(now + outcome.reset_us + u64::from(entry.pending) * params.interval_us);
            } else if shard.tats.len() < self.max_keys_per_shard {
                shard.tats.insert(key.clone(), Entry::new(now + outcome.reset_us));
            }
        }
    }

    pub(crate) fn refund(&self, tag: &str, keys: &[(String, Params)], cost: u64) {
        let now = self.now();
        let mut shard = self.shard(tag);
        for (key, params) in keys {
            if let Some(entry) = shard.tats.get(key).copied() {
                match gcra::refund(now, entry.tat, params.interval_us, cost) {
                    Some(tat) => shard.tats.insert(key.clone(), Entry { tat, ..entry }),
                    None => shard.tats.remove(key),
                };
            }
        }
    }

    pub(crate) fn reset(&self, tag: &str, keys: &[String]) {
        let mut shard = self.shard(tag);
        for key in keys {
            shard.tats.remove(key);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap().tats.len()).sum()
    }
}

impl Shard {
    /// Drops keys back to a full burst (their TAT has passed): they are the same as absent.
    ///
    /// The next sweep comes when the shard has doubled, but at its bound at the latest:
    /// before, a sweep that left more than half the bound live set the next one beyond
    /// the bound, which the shard never reached, so once full of expired keys it never
    /// swept again and let every new subject through uncounted for good.
    fn sweep_if_large(&mut self, now: u64, max_keys: usize) {
        let full = self.tats.len() >= max_keys;
        if self.tats.len() >= self.sweep_at && (!full || now >= self.full_sweep_after) {
            self.tats.retain(|_, entry| entry.tat > now || entry.pending > 0);
            self.sweep_at = (self.tats.len() * 2).clamp(1024.min(max_keys), max_keys);
            if self.tats.len() >= max_keys - max_keys / 10 {
                self.full_sweep_after = now + FULL_SWEEP_PAUSE_US;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOW: Params = Params { interval_us: 60_000_000, burst: 2 };

    fn keys(names: &[&str]) -> Vec<(String, Params)> {
        names.iter().map(|n| (n.to_string(), SLOW)).collect()
    }

    #[test]
    fn several_keys_are_charged_all_or_nothing() {
        let store = LocalStore::new(10_000);
        // "a" alone uses its burst of 2.
        assert!(store.acquire("t", &keys(&["a"]), 1)[0].allowed);
        assert!(store.acquire("t", &keys(&["a"]), 1)[0].allowed);
        // "a" refuses, so "b" must not be charged.
        let both = store.acquire("t", &keys(&["a", "b"]), 1);
        assert!(!both[0].allowed && both[1].allowed);
        assert_eq!(store.acquire("t", &keys(&["b"]), 1)[0].remaining, 1, "b was not charged by the refused check");
    }

    #[test]
    fn refund_and_reset_give_requests_back() {
        let store = LocalStore::new(10_000);
        store.acquire("t", &keys(&["a"]), 1);
        store.acquire("t", &keys(&["a"]), 1);
        assert!(!store.acquire("t", &keys(&["a"]), 1)[0].allowed);
        store.refund("t", &keys(&["a"]), 1);
        assert!(store.acquire("t", &keys(&["a"]), 1)[0].allowed);
        store.reset("t", &["a".to_owned()]);
        assert_eq!(store.acquire("t", &keys(&["a"]), 1)[0].remaining, 1);
    }

    /// A flood of distinct keys fills every shard while they are live, then they all
    /// expire: new subjects are counted again, not let through uncounted for good.
    #[test]
    fn a_store_filled_with_expired_keys_counts_new_subjects_again() {
        const ONE_PER_SECOND: Params = Params { interval_us: 1_000_000, burst: 1 };
        let store = LocalStore::new(SHARDS * 2048);
        for i in 0..SHARDS * 2048 * 2 {
            let key = format!("flood{i}");
            store.acquire(&key, &[(key.clone(), ONE_PER_SECOND)], 1);
        }
        store.advance(std::time::Duration::from_secs(2));
        for victim in 0..64 {
            let key = format!("victim{victim}");
            let allowed = (0..5).filter(|_| store.acquire(&key, &[(key.clone(), SLOW)], 1)[0].allowed).count();
            assert_eq!(allowed, 2, "victim {victim} was not counted");
        }
    }

    #[test]
    fn memory_is_bounded_under_a_flood_of_distinct_keys() {
        let store = LocalStore::new(SHARDS * 100);
        for i in 0..10_000 {
            let key = format!("k{i}");
            assert!(store.acquire(&key, &[(key.clone(), SLOW)], 1)[0].allowed);
        }
        assert!(store.len() <= SHARDS * 100, "{}", store.len());
    }
}
