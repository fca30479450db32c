//! Failures of the Redis caches in front of PostgreSQL, logged when they start and when
//! they end, and counted in between.
//!
//! A cache that fails costs a database query, never an answer, so the failure itself
//! is all there is to report; while Redis was down, Auth wrote one warning per
//! signed-in request. Each kind of call has its own state: Redis refusing writes
//! (full, with `noeviction`) while it answers reads would otherwise log "failing" and
//! "working" in turn on every request.

use std::sync::atomic::{AtomicBool, Ordering};

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
}

impl CacheCall {
    pub const ALL: [Self; 3] = [Self::RevocationRead, Self::SessionStateWrite, Self::ProfileWrite];

    pub fn label(self) -> &'static str {
        match self {
            Self::RevocationRead => "revocation_read",
            Self::SessionStateWrite => "session_state_write",
            Self::ProfileWrite => "profile_write",
        }
    }
}

#[derive(Debug, Default)]
pub struct CacheFailures {
    failing: [AtomicBool; CacheCall::ALL.len()],
}

impl CacheFailures {
    /// The counter at zero for every call, so an alert can tell zero from missing.
    pub fn register_metrics() {
        metrics::describe_counter!(
            FAILURES,
            "Redis cache calls that failed and were answered from PostgreSQL, by call; logged once when failures start and once when they stop."
        );
        for call in CacheCall::ALL {
            metrics::counter!(FAILURES, "call" => call.label()).increment(0);
        }
    }

    pub fn failed(&self, call: CacheCall, error: &redis::RedisError) {
        metrics::counter!(FAILURES, "call" => call.label()).increment(1);
        if self.failing[call as usize].swap(true, Ordering::Relaxed) {
            return;
        }
        let call = call.label();
        match call {
            "revocation_read" => {
                tracing::warn!(error = %error, call, "revocation cache unavailable; asking the database until it answers again")
            }
            _ => tracing::warn!(error = %error, call, "could not write to the Redis cache; counted, not logged, until a write works again"),
        }
    }

    pub fn succeeded(&self, call: CacheCall) {
        if self.failing[call as usize].swap(false, Ordering::Relaxed) {
            tracing::info!(call = call.label(), "Redis cache working again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error() -> redis::RedisError {
        redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"))
    }

    #[test]
    fn failures_are_logged_when_they_start_and_when_they_stop_not_each_time() {
        let (logs, _guard) = platform::testing::CapturedLogs::capture(tracing::Level::INFO);
        let failures = CacheFailures::default();
        for _ in 0..5 {
            failures.failed(CacheCall::RevocationRead, &error());
        }
        // Another call's state is its own: reads working again do not end a write outage.
        failures.failed(CacheCall::ProfileWrite, &error());
        failures.succeeded(CacheCall::RevocationRead);
        failures.succeeded(CacheCall::RevocationRead);
        failures.failed(CacheCall::ProfileWrite, &error());
        failures.failed(CacheCall::RevocationRead, &error());
        let text = logs.text();
        let count = |needle: &str| text.lines().filter(|line| line.contains(needle)).count();
        assert_eq!(count("revocation cache unavailable"), 2, "{text}");
        assert_eq!(count("could not write to the Redis cache"), 1, "{text}");
        assert_eq!(count("working again"), 1, "{text}");
    }
}
