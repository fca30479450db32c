//! Accounts as `GET /users/me` shows them, cached in Redis in front of PostgreSQL.
//!
//! `GET /users/me` is the most frequent authenticated call. Its profile is read in the
//! same Redis round trip as the token's revocation state ([`super::Revocations::lookup_with`]),
//! so a hit costs no PostgreSQL query. PostgreSQL stays the truth:
//!
//! - `{prefix}:user:{id}` holds `{generation}:{json}` for `PROFILE_TTL`, filled after a
//!   miss, in the background.
//! - A change of the account (profile, password, a role granted or taken) replaces the
//!   entry, after its commit, with a tombstone for `TOMBSTONE_TTL`. A fill never
//!   overwrites a tombstone, so a request that read the old row just before the change
//!   cannot put it back (unless it took longer than `TOMBSTONE_TTL` between its read
//!   and its fill).
//! - A role renamed or deleted changes many accounts at once: it increments
//!   `{prefix}:profiles:generation`, and an entry filled under an older generation is
//!   a miss. The generation is read in the lookup, before PostgreSQL, so a fill racing
//!   a rename stores the older generation and is ignored.
//!
//! If Redis is down, or a write to it fails, reads fall through to PostgreSQL, and an
//! entry may stay stale for at most `PROFILE_TTL`. Access decisions never read this
//! cache: permissions come from PostgreSQL, revocation from its own keys.

use std::time::Duration;

use redis::{Script, aio::ConnectionManager};
use uuid::Uuid;

use super::users::User;

/// How long a cached profile is served without asking PostgreSQL again.
pub const PROFILE_TTL: Duration = Duration::from_secs(30);

/// How long after a change fills are refused (see the module documentation).
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(5);

const TOMBSTONE: &str = "-";

/// Sets `KEYS[1]` to `ARGV[1]` for `ARGV[2]` seconds unless it holds a tombstone.
const FILL: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
";

#[derive(Clone)]
pub struct Profiles {
    redis: ConnectionManager,
    prefix: String,
    fill: Script,
}

/// What the cache said about an account.
#[derive(Debug)]
pub enum Cached {
    Hit(User),
    /// Not cached, or stale: read PostgreSQL, then [`Profiles::fill`] with this generation.
    Miss {
        generation: u64,
    },
}

impl Profiles {
    pub fn new(redis: ConnectionManager, prefix: &str) -> Self {
        Self { redis, prefix: prefix.to_owned(), fill: Script::new(FILL) }
    }

    fn user_key(&self, id: Uuid) -> String {
        format!("{}:user:{}", self.prefix, id.simple())
    }

    fn generation_key(&self) -> String {
        format!("{}:profiles:generation", self.prefix)
    }

    /// The command that reads an account's entry and the current generation; run it in
    /// a pipeline and give its answer to [`Self::parse`].
    pub fn lookup(&self, id: Uuid) -> redis::Cmd {
        let mut cmd = redis::cmd("MGET");
        cmd.arg(self.user_key(id)).arg(self.generation_key());
        cmd
    }

    /// Reads the answer to [`Self::lookup`]. An entry that does not parse is a miss.
    pub fn parse(id: Uuid, (entry, generation): (Option<String>, Option<u64>)) -> Cached {
        let generation = generation.unwrap_or(0);
        let hit = entry
            .as_deref()
            .and_then(|entry| entry.split_once(':'))
            .and_then(|(filled_in, json)| (filled_in.parse::<u64>().ok()? == generation).then(|| serde_json::from_str::<User>(json).ok()).flatten());
        match hit {
            Some(user) if user.id == id => Cached::Hit(user),
            _ => Cached::Miss { generation },
        }
    }

    /// Caches `user` as read from PostgreSQL after a [`Cached::Miss`] of `generation`.
    #[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "redis"))]
    pub async fn fill(&self, user: &User, generation: u64) -> redis::RedisResult<()> {
        let json = serde_json::to_string(user).map_err(|e| redis::RedisError::from(std::io::Error::other(e)))?;
        self.fill
            .key(self.user_key(user.id))
            .arg(format!("{generation}:{json}"))
            .arg(PROFILE_TTL.as_secs())
            .arg(TOMBSTONE)
            .invoke_async::<()>(&mut self.redis.clone())
            .await
    }

    /// Drops an account's entry after a committed change; logs when Redis refuses
    /// (the entry then expires within `PROFILE_TTL`).
    #[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "redis"))]
    pub async fn forget(&self, id: Uuid) {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.user_key(id)).arg(TOMBSTONE).arg("EX").arg(TOMBSTONE_TTL.as_secs());
        if let Err(e) = cmd.query_async::<()>(&mut self.redis.clone()).await {
            tracing::warn!(error = %e, "could not drop a cached profile; it expires within {} s", PROFILE_TTL.as_secs());
        }
    }

    /// Makes every cached entry stale, after a committed change of a role's name or
    /// its deletion.
    #[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "redis"))]
    pub async fn forget_all(&self) {
        let incremented = redis::cmd("INCR").arg(self.generation_key()).query_async::<u64>(&mut self.redis.clone()).await;
        if let Err(e) = incremented {
            tracing::warn!(error = %e, "could not invalidate the cached profiles; they expire within {} s", PROFILE_TTL.as_secs());
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn user(id: Uuid) -> User {
        User {
            id,
            email: "ann@example.com".into(),
            login: Some("ann".into()),
            birth_date: None,
            country: Some("RU".into()),
            region: None,
            roles: vec!["user".into()],
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn entry(generation: u64, user: &User) -> Option<String> {
        Some(format!("{generation}:{}", serde_json::to_string(user).unwrap()))
    }

    #[test]
    fn an_entry_of_the_current_generation_is_a_hit() {
        let id = Uuid::now_v7();
        let Cached::Hit(found) = Profiles::parse(id, (entry(3, &user(id)), Some(3))) else { panic!("expected a hit") };
        assert_eq!(found.email, "ann@example.com");
        assert_eq!(found.roles, ["user"]);
    }

    #[test]
    fn before_any_role_change_the_generation_is_zero() {
        let id = Uuid::now_v7();
        assert!(matches!(Profiles::parse(id, (entry(0, &user(id)), None)), Cached::Hit(_)));
    }

    #[test]
    fn an_older_generation_a_tombstone_garbage_or_another_account_is_a_miss() {
        let id = Uuid::now_v7();
        for (found, generation) in [
            (entry(2, &user(id)), Some(3)),
            (None, Some(3)),
            (Some(TOMBSTONE.to_owned()), Some(3)),
            (Some("3:{not json".to_owned()), Some(3)),
            (entry(3, &user(Uuid::now_v7())), Some(3)),
        ] {
            assert!(matches!(Profiles::parse(id, (found, generation)), Cached::Miss { generation: 3 }));
        }
    }
}
