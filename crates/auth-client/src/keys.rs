//! Auth's public keys, fetched from its JWKS and kept in memory through any outage.

use std::{collections::HashMap, sync::RwLock, time::Instant};

use jsonwebtoken::{DecodingKey, jwk::JwkSet};

#[derive(Default)]
pub struct KeyCache {
    keys: RwLock<HashMap<String, DecodingKey>>,
    last_fetch_attempt: tokio::sync::Mutex<Option<Instant>>,
}

impl KeyCache {
    pub fn get(&self, kid: &str) -> Option<DecodingKey> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).get(kid).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// Replaces the key set. Keys of an unusable kind (no `kid`, not a signing key we
    /// can build) are skipped.
    pub fn replace(&self, set: &JwkSet) -> usize {
        let keys: HashMap<String, DecodingKey> =
            set.keys.iter().filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?))).collect();
        let count = keys.len();
        if count > 0 {
            *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        }
        count
    }

    /// Serialises fetches, and tells whether one is due: `None` when another fetch
    /// happened less than `min_interval` ago.
    pub async fn fetch_slot(&self, min_interval: std::time::Duration) -> Option<tokio::sync::MutexGuard<'_, Option<Instant>>> {
        let mut last = self.last_fetch_attempt.lock().await;
        if last.is_some_and(|at| at.elapsed() < min_interval) {
            return None;
        }
        *last = Some(Instant::now());
        Some(last)
    }
}
