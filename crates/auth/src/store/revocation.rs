//! Revocation state of access tokens, cached in Redis in front of PostgreSQL.
//!
//! PostgreSQL's `sessions.ended_at` is the truth. Redis holds, per session, whether it
//! is live (`1`, for `LIVE_TTL`) or ended (`0`, until every access token of it has
//! expired), plus a denylist of logged-out access tokens by `jti`. A miss, or Redis
//! being down, falls through to PostgreSQL, so losing Redis loses no revocation; an
//! ended session can stay cached as live for at most `LIVE_TTL` if the write that
//! ends it in Redis fails.
//!
//! Reads never wait on a sick Redis: each is bounded by `READ_TIMEOUT`, and after a
//! failure reads skip Redis for `READ_PAUSE` (the connection manager would otherwise
//! hold every read for its reconnection attempts, about half a second, while Redis is
//! down). Writes of revocations are always attempted, so a false alarm never leaves a
//! stale live mark behind.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use redis::aio::ConnectionManager;
use uuid::Uuid;

/// How long a session is trusted as live without asking PostgreSQL again.
pub const LIVE_TTL: Duration = Duration::from_secs(30);

/// Longest a read waits for Redis before the caller asks PostgreSQL (below the 100 ms
/// the request path allows it, so the failure is seen and pauses the reads).
pub const READ_TIMEOUT: Duration = Duration::from_millis(80);

/// After a failed or slow call, reads skip Redis this long, then try it again.
pub const READ_PAUSE: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Revocations {
    redis: ConnectionManager,
    prefix: String,
    access_ttl: Duration,
    health: Arc<Health>,
}

/// Whether reads should skip Redis for now.
struct Health {
    epoch: Instant,
    /// Milliseconds after `epoch` until which reads skip Redis.
    paused_until: AtomicU64,
}

impl Health {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn paused(&self) -> bool {
        self.now() < self.paused_until.load(Ordering::Relaxed)
    }

    fn record<T>(&self, result: &redis::RedisResult<T>) {
        match result {
            Ok(_) => self.paused_until.store(0, Ordering::Relaxed),
            Err(_) => self.paused_until.store(self.now() + READ_PAUSE.as_millis() as u64, Ordering::Relaxed),
        }
    }
}

fn unavailable(why: &'static str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, why))
}

#[derive(Debug, PartialEq, Eq)]
pub enum Cached {
    /// The token's `jti` is denylisted or its session is known to have ended.
    Revoked,
    Live,
    Unknown,
}

impl Revocations {
    pub fn new(redis: ConnectionManager, prefix: &str, access_ttl: Duration) -> Self {
        let health = Arc::new(Health { epoch: Instant::now(), paused_until: AtomicU64::new(0) });
        Self { redis, prefix: prefix.to_owned(), access_ttl, health }
    }

    /// A read: skipped while paused, bounded by `READ_TIMEOUT`; a failure pauses reads.
    async fn read<T>(&self, call: impl Future<Output = redis::RedisResult<T>>) -> redis::RedisResult<T> {
        if self.health.paused() {
            return Err(unavailable("Redis failed a moment ago; reads skip it for now"));
        }
        let result = tokio::time::timeout(READ_TIMEOUT, call).await.unwrap_or_else(|_| Err(unavailable("Redis read timed out")));
        self.health.record(&result);
        result
    }

    /// A write: always attempted (bounded by the connection's own timeouts).
    async fn write<T>(&self, call: impl Future<Output = redis::RedisResult<T>>) -> redis::RedisResult<T> {
        let result = call.await;
        self.health.record(&result);
        result
    }

    fn jti_key(&self, jti: Uuid) -> String {
        format!("{}:jti:{}", self.prefix, jti.simple())
    }

    fn session_key(&self, sid: Uuid) -> String {
        format!("{}:sess:{}", self.prefix, sid.simple())
    }

    /// Looks both keys up in one round trip.
    #[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "redis"))]
    pub async fn lookup(&self, jti: Uuid, sid: Uuid) -> redis::RedisResult<Cached> {
        let mut pipe = redis::pipe();
        pipe.exists(self.jti_key(jti)).get(self.session_key(sid));
        let (denied, session): (bool, Option<String>) = self.read(pipe.query_async(&mut self.redis.clone())).await?;
        Ok(Self::state(denied, session))
    }

    /// [`Self::lookup`] plus one more command, `also`, in the same round trip (and
    /// under the same deadline and pause): the profile of `GET /users/me`.
    #[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "redis"))]
    pub async fn lookup_with<T: redis::FromRedisValue>(&self, jti: Uuid, sid: Uuid, also: redis::Cmd) -> redis::RedisResult<(Cached, T)> {
        let mut pipe = redis::pipe();
        pipe.exists(self.jti_key(jti)).get(self.session_key(sid)).add_command(also);
        let (denied, session, more): (bool, Option<String>, T) = self.read(pipe.query_async(&mut self.redis.clone())).await?;
        Ok((Self::state(denied, session), more))
    }

    fn state(denied: bool, session: Option<String>) -> Cached {
        match (denied, session.as_deref()) {
            (true, _) | (_, Some("0")) => Cached::Revoked,
            (false, Some(_)) => Cached::Live,
            (false, None) => Cached::Unknown,
        }
    }

    /// Records a session found live in PostgreSQL. `NX`: never overwrites an "ended"
    /// mark written meanwhile by a logout.
    #[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "redis"))]
    pub async fn remember_live(&self, sid: Uuid) -> redis::RedisResult<()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.session_key(sid)).arg("1").arg("NX").arg("EX").arg(LIVE_TTL.as_secs());
        // A cache fill, not a revocation: skipped like a read when Redis is sick.
        self.read(cmd.query_async::<()>(&mut self.redis.clone())).await
    }

    /// Marks sessions ended for as long as any of their access tokens can live, and
    /// denylists one access token until its expiry.
    #[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "redis"))]
    pub async fn revoke(&self, sessions: &[Uuid], token: Option<(Uuid, i64)>) -> redis::RedisResult<()> {
        // An empty pipeline is an error of the client's ("empty command"), which would
        // count as Redis failing and pause the cache's reads: a password change with no
        // other session to end did that.
        if sessions.is_empty() && token.is_none() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for sid in sessions {
            pipe.set_ex(self.session_key(*sid), "0", self.access_ttl.as_secs()).ignore();
        }
        if let Some((jti, exp)) = token {
            let ttl = (exp - chrono::Utc::now().timestamp()).max(1) as u64;
            pipe.set_ex(self.jti_key(jti), "1", ttl).ignore();
        }
        self.write(pipe.query_async::<()>(&mut self.redis.clone())).await
    }

    #[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "redis"))]
    pub async fn ping(&self) -> redis::RedisResult<()> {
        self.write(redis::cmd("PING").query_async::<()>(&mut self.redis.clone())).await
    }
}
