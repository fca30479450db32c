//! Auth's public keys, fetched from its JWKS and kept in memory through any outage.

use std::{
    collections::HashMap,
    sync::RwLock,
    time::{Duration, Instant, SystemTime},
};

use jsonwebtoken::{DecodingKey, jwk::JwkSet};

#[derive(Default)]
pub struct KeyCache {
    keys: RwLock<HashMap<String, DecodingKey>>,
    /// When the set held was asked for: it says nothing of keys Auth published later.
    asked_at: RwLock<Option<SystemTime>>,
    last_fetch_attempt: tokio::sync::Mutex<Option<Instant>>,
}

/// Whether a request may fetch the key set now.
pub enum FetchSlot<'a> {
    /// Yes; other fetches wait until this guard is dropped.
    Due(tokio::sync::MutexGuard<'a, Option<Instant>>),
    /// Another fetch happened less than the minimum interval ago.
    Recent,
    /// Another fetch is under way and did not end within the wait.
    Busy,
}

impl KeyCache {
    pub fn get(&self, kid: &str) -> Option<DecodingKey> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).get(kid).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// Replaces the key set with `set`, asked for at `asked_at`. Keys of an unusable
    /// kind (no `kid`, not a signing key we can build) are skipped.
    pub fn replace(&self, set: &JwkSet, asked_at: SystemTime) -> usize {
        let keys: HashMap<String, DecodingKey> =
            set.keys.iter().filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?))).collect();
        let count = keys.len();
        if count > 0 {
            *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
            *self.asked_at.write().unwrap_or_else(|e| e.into_inner()) = Some(asked_at);
        }
        count
    }

    /// Whether the set held was asked for after `moment`.
    pub fn asked_after(&self, moment: SystemTime) -> bool {
        self.asked_at.read().unwrap_or_else(|e| e.into_inner()).is_some_and(|asked| asked > moment)
    }

    /// Serialises fetches, and tells whether one is due: not when another fetch
    /// happened less than `min_interval` ago, nor when one under way does not end
    /// within `wait`.
    pub async fn fetch_slot(&self, min_interval: Duration, wait: Duration) -> FetchSlot<'_> {
        let Ok(mut last) = tokio::time::timeout(wait, self.last_fetch_attempt.lock()).await else {
            return FetchSlot::Busy;
        };
        if last.is_some_and(|at| at.elapsed() < min_interval) {
            return FetchSlot::Recent;
        }
        *last = Some(Instant::now());
        FetchSlot::Due(last)
    }
}
