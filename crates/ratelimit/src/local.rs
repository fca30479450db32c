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
    sync::Mutex,
    time::Instant,
};

use crate::gcra::{self, Outcome, Params};

const SHARDS: usize = 32;

pub(crate) struct LocalStore {
    epoch: Instant,
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
    max_keys_per_shard: usize,
}

struct Shard {
    tats: HashMap<String, u64>,
    /// Size at which expired entries are swept next.
    sweep_at: usize,
}

impl LocalStore {
    pub(crate) fn new(max_keys: usize) -> Self {
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard { tats: HashMap::new(), sweep_at: 1024 })).collect();
        Self { epoch: Instant::now(), hasher: RandomState::new(), shards, max_keys_per_shard: (max_keys / SHARDS).max(1) }
    }

    /// Microseconds on this instance's monotonic clock.
    fn now(&self) -> u64 {
        // Start well above zero so "one window ago" never underflows.
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX / 4) + 1_000_000_000
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
        let outcomes: Vec<Outcome> = keys.iter().map(|(key, params)| gcra::acquire(now, shard.tats.get(key).copied(), *params, cost)).collect();
        if outcomes.iter().all(|o| o.allowed) {
            shard.sweep_if_large(now);
            for ((key, _), outcome) in keys.iter().zip(&outcomes) {
                if let Some(tat) = shard.tats.get_mut(key) {
                    *tat = outcome.new_tat;
                } else if shard.tats.len() < self.max_keys_per_shard {
                    shard.tats.insert(key.clone(), outcome.new_tat);
                }
                // else: the shard is full of live keys (a flood of distinct clients);
                // the request is let through uncounted rather than refused or stored.
            }
        }
        outcomes
    }

    pub(crate) fn refund(&self, tag: &str, keys: &[(String, Params)], cost: u64) {
        let now = self.now();
        let mut shard = self.shard(tag);
        for (key, params) in keys {
            if let Some(&tat) = shard.tats.get(key) {
                match gcra::refund(now, tat, params.interval_us, cost) {
                    Some(tat) => shard.tats.insert(key.clone(), tat),
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
    fn sweep_if_large(&mut self, now: u64) {
        if self.tats.len() >= self.sweep_at {
            self.tats.retain(|_, tat| *tat > now);
            self.sweep_at = (self.tats.len() * 2).max(1024);
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
