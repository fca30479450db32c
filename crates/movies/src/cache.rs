//! Redis cache of answers that are the same for everyone (film details, pages of a
//! list for one age class, genres, persons).
//!
//! Redis is an optimisation, never a dependency: a miss, an error, an entry that does
//! not decode or an answer slower than the timeout falls through to PostgreSQL, and
//! writing back is done in the background. Failures of reads, writes and decoding are
//! each logged when they start and end and counted (`movies_cache_failures_total`). Entries expire after the TTL; the catalogue changes only when
//! `movies load-demo` runs, which flushes the cache's keys.

use std::{future::Future, sync::Arc, time::Duration};

use redis::aio::ConnectionManager;
use serde::{Serialize, de::DeserializeOwned};
use tracing::Instrument;

/// Counter of failed cache calls, by `call`.
pub const FAILURES: &str = "movies_cache_failures_total";

/// The cache's kinds of call, each logged and counted on its own: a Redis that answers
/// reads but refuses writes (full with `noeviction`, a read-only replica) turns the
/// cache off as surely as one that is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheCall {
    /// `GET` of an answer.
    Read,
    /// `SET` of an answer loaded from PostgreSQL.
    Write,
    /// An entry read that is not an answer of this version (written by another
    /// version, or damaged): answered from PostgreSQL, and overwritten.
    Decode,
}

impl platform::cache_failures::CacheCall for CacheCall {
    const METRIC: &'static str = FAILURES;
    const ALL: &'static [Self] = &[Self::Read, Self::Write, Self::Decode];

    fn index(self) -> usize {
        self as usize
    }

    fn label(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Decode => "decode",
        }
    }

    fn warning(self) -> &'static str {
        match self {
            Self::Read => "cache unavailable; answering from the database until it answers again",
            Self::Write => "could not write to the Redis cache; answering from the database; counted, not logged, until a write works again",
            Self::Decode => "could not decode an entry of the Redis cache; answering from the database; counted, not logged, until one decodes again",
        }
    }
}

pub type CacheFailures = platform::cache_failures::CacheFailures<CacheCall>;

#[derive(Clone)]
pub struct Cache {
    redis: ConnectionManager,
    prefix: Arc<str>,
    ttl: Duration,
    timeout: Duration,
    /// Logs outages once instead of per request, and counts every failure.
    failures: Arc<CacheFailures>,
}

impl Cache {
    pub fn new(redis: ConnectionManager, prefix: &str, ttl: Duration, timeout: Duration) -> Self {
        Self { redis, prefix: format!("{prefix}:v1:").into(), ttl, timeout, failures: Arc::default() }
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
                self.failures.succeeded(CacheCall::Read);
                match serde_json::from_slice(&bytes) {
                    Ok(value) => {
                        self.failures.succeeded(CacheCall::Decode);
                        return Ok(value);
                    }
                    Err(e) => self.failures.failed(CacheCall::Decode, &e),
                }
            }
            Ok(Ok(None)) => self.failures.succeeded(CacheCall::Read),
            Ok(Err(e)) => self.failures.failed(CacheCall::Read, &e),
            Err(_) => self.failures.failed(CacheCall::Read, &"timed out"),
        }
        let value = load().await?;
        if let Ok(bytes) = serde_json::to_vec(&value) {
            let mut redis = self.redis.clone();
            let ttl = self.ttl.as_secs().max(1);
            let timeout = self.timeout;
            let failures = self.failures.clone();
            let span = tracing::info_span!("SET", otel.kind = "client", db.system.name = "redis", db.operation.name = "SET");
            tokio::spawn(
                async move {
                    let mut set = redis::cmd("SET");
                    let set = set.arg(full_key).arg(bytes).arg("EX").arg(ttl).query_async::<()>(&mut redis);
                    match tokio::time::timeout(timeout, set).await {
                        Ok(Ok(())) => failures.succeeded(CacheCall::Write),
                        Ok(Err(e)) => failures.failed(CacheCall::Write, &e),
                        Err(_) => failures.failed(CacheCall::Write, &"timed out"),
                    }
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
}
