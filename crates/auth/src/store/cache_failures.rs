//! Failures of the Redis caches in front of PostgreSQL: Auth's kinds of call, logged
//! and counted (`auth_cache_failures_total`) by `platform::cache_failures`, which the
//! movies API shares.

/// Counter of failed cache calls, by `call`.
pub const FAILURES: &str = "auth_cache_failures_total";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheCall {
    /// The revocation state (and profile) of a signed-in request.
    RevocationRead,
    /// Remembering a session's state read from PostgreSQL.
    SessionStateWrite,
    /// Filling a profile read from PostgreSQL.
    ProfileWrite,
    /// A sign-out's (or a session end's) revocation: PostgreSQL holds it, and Auth's
    /// own checks see it once the live mark of the cache expires (30 s).
    RevocationWrite,
}

impl platform::cache_failures::CacheCall for CacheCall {
    const METRIC: &'static str = FAILURES;
    const ALL: &'static [Self] = &[Self::RevocationRead, Self::SessionStateWrite, Self::ProfileWrite, Self::RevocationWrite];

    fn index(self) -> usize {
        self as usize
    }

    fn label(self) -> &'static str {
        match self {
            Self::RevocationRead => "revocation_read",
            Self::SessionStateWrite => "session_state_write",
            Self::ProfileWrite => "profile_write",
            Self::RevocationWrite => "revocation_write",
        }
    }

    fn warning(self) -> &'static str {
        match self {
            Self::RevocationRead => "revocation cache unavailable; asking the database until it answers again",
            Self::RevocationWrite => {
                "could not cache a revocation; the database holds it, and Auth's own checks see it within 30 s; counted, not logged, until a write works again"
            }
            Self::SessionStateWrite | Self::ProfileWrite => "could not write to the Redis cache; counted, not logged, until a write works again",
        }
    }
}

/// Auth's cache failures, logged when they start and end, counted in between.
pub type CacheFailures = platform::cache_failures::CacheFailures<CacheCall>;

#[cfg(test)]
mod tests {
    use platform::cache_failures::CacheCall as _;

    use super::*;

    /// The rules (once per outage, once a minute) are platform's, tested there; this
    /// is Auth's wording, which its docs and alerts quote.
    #[test]
    fn each_call_has_its_own_label_and_warning() {
        let (logs, _guard) = platform::testing::CapturedLogs::capture(tracing::Level::INFO);
        let failures = CacheFailures::default();
        for (index, call) in CacheCall::ALL.iter().enumerate() {
            assert_eq!(call.index(), index);
            failures.failed(*call, &"refused");
        }
        let text = logs.text();
        assert!(text.contains("revocation cache unavailable"), "{text}");
        assert!(text.contains("could not cache a revocation"), "{text}");
        assert_eq!(text.lines().filter(|line| line.contains("could not write to the Redis cache")).count(), 2, "{text}");
    }
}
