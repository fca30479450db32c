//! Revocation state of access tokens, cached in Redis in front of PostgreSQL.
//!
//! PostgreSQL's `sessions.ended_at` is the truth. Redis holds, per session, whether it
//! is live (`1`, for `LIVE_TTL`) or ended (`0`, until every access token of it has
//! expired), plus a denylist of logged-out access tokens by `jti`. A miss, or Redis
//! being down, falls through to PostgreSQL, so losing Redis loses no revocation; an
//! ended session can stay cached as live for at most `LIVE_TTL` if the write that
//! ends it in Redis fails.

use std::time::Duration;

use redis::aio::ConnectionManager;
use uuid::Uuid;

/// How long a session is trusted as live without asking PostgreSQL again.
pub const LIVE_TTL: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Revocations {
    redis: ConnectionManager,
    prefix: String,
    access_ttl: Duration,
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
        Self { redis, prefix: prefix.to_owned(), access_ttl }
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
        let (denied, session): (bool, Option<String>) = redis::pipe()
            .exists(self.jti_key(jti))
            .get(self.session_key(sid))
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(match (denied, session.as_deref()) {
            (true, _) | (_, Some("0")) => Cached::Revoked,
            (false, Some(_)) => Cached::Live,
            (false, None) => Cached::Unknown,
        })
    }

    /// Records a session found live in PostgreSQL. `NX`: never overwrites an "ended"
    /// mark written meanwhile by a logout.
    #[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "redis"))]
    pub async fn remember_live(&self, sid: Uuid) -> redis::RedisResult<()> {
        redis::cmd("SET")
            .arg(self.session_key(sid))
            .arg("1")
            .arg("NX")
            .arg("EX")
            .arg(LIVE_TTL.as_secs())
            .query_async::<()>(&mut self.redis.clone())
            .await
    }

    /// Marks sessions ended for as long as any of their access tokens can live, and
    /// denylists one access token until its expiry.
    #[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "redis"))]
    pub async fn revoke(&self, sessions: &[Uuid], token: Option<(Uuid, i64)>) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        for sid in sessions {
            pipe.set_ex(self.session_key(*sid), "0", self.access_ttl.as_secs()).ignore();
        }
        if let Some((jti, exp)) = token {
            let ttl = (exp - chrono::Utc::now().timestamp()).max(1) as u64;
            pipe.set_ex(self.jti_key(jti), "1", ttl).ignore();
        }
        pipe.query_async::<()>(&mut self.redis.clone()).await
    }

    #[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "redis"))]
    pub async fn ping(&self) -> redis::RedisResult<()> {
        redis::cmd("PING").query_async::<()>(&mut self.redis.clone()).await
    }
}
