//! Redis cache of answers that are the same for everyone (film details, pages of a
//! list for one age class, genres, persons).
//!
//! Redis is an optimisation, never a dependency: a miss, an error or an answer slower
//! than the timeout falls through to PostgreSQL, and writing back is done in the
//! background. Entries expire after the TTL; the catalogue changes only when
//! `movies load-demo` runs, which flushes the cache's keys.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use redis::aio::ConnectionManager;
use serde::{Serialize, de::DeserializeOwned};
use tracing::Instrument;

#[derive(Clone)]
pub struct Cache {
    redis: ConnectionManager,
    prefix: Arc<str>,
    ttl: Duration,
    timeout: Duration,
    /// Whether the last call failed, to log outages once instead of per request.
    failing: Arc<AtomicBool>,
}

impl Cache {
    pub fn new(redis: ConnectionManager, prefix: &str, ttl: Duration, timeout: Duration) -> Self {
        Self { redis, prefix: format!("{prefix}:v1:").into(), ttl, timeout, failing: Arc::default() }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// The cached value of `key`, or `load()`'s, which is then cached.
    pub async fn get_or_load<T, E, F, Fut>(&self, key: &str, load: F) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if !self.enabled() {
            return load().await;
        }
        let full_key = format!("{}{key}", self.prefix);
        let span = tracing::info_span!("GET", otel.kind = "client", db.system.name = "redis", db.operation.name = "GET");
        let mut redis = self.redis.clone();
        let mut get = redis::cmd("GET");
        let cached = tokio::time::timeout(self.timeout, get.arg(&full_key).query_async::<Option<Vec<u8>>>(&mut redis).instrument(span)).await;
        match cached {
            Ok(Ok(Some(bytes))) => {
                self.recovered();
                if let Ok(value) = serde_json::from_slice(&bytes) {
                    return Ok(value);
                }
            }
            Ok(Ok(None)) => self.recovered(),
            Ok(Err(e)) => self.failed(&e.to_string()),
            Err(_) => self.failed("timed out"),
        }
        let value = load().await?;
        if let Ok(bytes) = serde_json::to_vec(&value) {
            let mut redis = self.redis.clone();
            let ttl = self.ttl.as_secs().max(1);
            let timeout = self.timeout;
            let span = tracing::info_span!("SET", otel.kind = "client", db.system.name = "redis", db.operation.name = "SET");
            tokio::spawn(
                async move {
                    let _ =
                        tokio::time::timeout(timeout, redis::cmd("SET").arg(full_key).arg(bytes).arg("EX").arg(ttl).query_async::<()>(&mut redis))
                            .await;
                }
                .instrument(span),
            );
        }
        Ok(value)
    }

    /// Deletes every key of this cache (after the catalogue changed).
    pub async fn clear(&self) -> redis::RedisResult<()> {
        let mut redis = self.redis.clone();
        let pattern = format!("{}*", self.prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) =
                redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(500).query_async(&mut redis).await?;
            if !keys.is_empty() {
                redis::cmd("DEL").arg(keys).query_async::<()>(&mut redis).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    fn failed(&self, why: &str) {
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = why, "cache unavailable; answering from the database");
        }
    }

    fn recovered(&self) {
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("cache available again");
        }
    }
}
