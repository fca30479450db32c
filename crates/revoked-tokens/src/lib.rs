//! Access tokens this process found revoked, by `jti`, until they expire: Auth's
//! rate-limit layer and auth-client's (Movies') both keep one.
//!
//! A rate limit keyed on a token's user, checked before anything asks whether the token
//! was revoked, would let whoever holds a leaked token keep its owner at 429 for the
//! token's remaining life, sign-out or not. So each token found revoked is remembered
//! here, and the limit counts it by address from then on: its first request costs the
//! owner one request of quota, no more. Bounded (10,000 tokens, the least used
//! forgotten first), since only Auth's own key makes tokens and only their owners'
//! sign-ins make sessions to revoke.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

pub struct RevokedTokens(moka::sync::Cache<Uuid, Duration>);

/// Each entry lives for its token's remaining life (its value).
struct UntilTheTokenExpires;

impl moka::Expiry<Uuid, Duration> for UntilTheTokenExpires {
    fn expire_after_create(&self, _: &Uuid, remaining: &Duration, _: std::time::Instant) -> Option<Duration> {
        Some(*remaining)
    }
}

impl RevokedTokens {
    /// Tokens remembered at most.
    pub const CAPACITY: u64 = 10_000;

    pub fn new() -> Self {
        Self(moka::sync::Cache::builder().max_capacity(Self::CAPACITY).expire_after(UntilTheTokenExpires).build())
    }

    /// Records the token `jti`, found revoked, until its `exp` (seconds since the Unix
    /// epoch); one past its expiry is left out (it verifies no more).
    pub fn remember(&self, jti: Uuid, exp: u64) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let remaining = exp.saturating_sub(now);
        if remaining > 0 {
            self.0.insert(jti, Duration::from_secs(remaining));
        }
    }

    /// Whether the token `jti` was found revoked (and has not expired since).
    pub fn contains(&self, jti: &Uuid) -> bool {
        self.0.contains_key(jti)
    }
}

impl Default for RevokedTokens {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn a_revoked_token_is_remembered_until_it_expires_and_an_expired_one_not_at_all() {
        let revoked = RevokedTokens::new();
        let (live, expired, expiring) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        revoked.remember(live, now() + 3600);
        revoked.remember(expired, now());
        revoked.remember(Uuid::new_v4(), 0);
        revoked.remember(expiring, now() + 2);
        assert!(revoked.contains(&live));
        assert!(!revoked.contains(&expired), "expired: it verifies no more");
        assert!(!revoked.contains(&Uuid::new_v4()));
        assert!(revoked.contains(&expiring));
        let deadline = Instant::now() + Duration::from_secs(5);
        while revoked.contains(&expiring) {
            assert!(Instant::now() < deadline, "still remembered past its expiry");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(revoked.contains(&live));
    }

    #[test]
    fn at_most_ten_thousand_tokens_are_remembered() {
        let revoked = RevokedTokens::new();
        for _ in 0..RevokedTokens::CAPACITY + 500 {
            revoked.remember(Uuid::new_v4(), now() + 3600);
        }
        revoked.0.run_pending_tasks();
        assert!(revoked.0.entry_count() <= RevokedTokens::CAPACITY, "{}", revoked.0.entry_count());
    }
}
