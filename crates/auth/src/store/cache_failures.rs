//! Failures of the Redis caches in front of PostgreSQL, logged when they start and when
//! they end, and counted in between.
//!
//! A cache that fails costs a database query, never an answer, so the failure itself
//! is all there is to report; while Redis was down, Auth wrote one warning per
//! signed-in request. Each kind of call has its own state: Redis refusing writes
//! (full, with `noeviction`) while it answers reads would otherwise log "failing" and
//! "working" in turn on every request. A Redis that fails now and then (slow answers
//! past the cache's timeout) starts and ends an outage at every failure: a start is
//! logged at most once a minute per call, and an end only when its start was.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// At most one "failing" line per call this often.
const WARN_INTERVAL: Duration = Duration::from_secs(60);

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

impl CacheCall {
    pub const ALL: [Self; 4] = [Self::RevocationRead, Self::SessionStateWrite, Self::ProfileWrite, Self::RevocationWrite];

    pub fn label(self) -> &'static str {
        match self {
            Self::RevocationRead => "revocation_read",
            Self::SessionStateWrite => "session_state_write",
            Self::ProfileWrite => "profile_write",
            Self::RevocationWrite => "revocation_write",
        }
    }
}

#[derive(Debug, Default)]
pub struct CacheFailures {
    /// Read on every successful call, so the path with no outage takes no lock.
    failing: [AtomicBool; CacheCall::ALL.len()],
    logged: [Mutex<Logged>; CacheCall::ALL.len()],
}

#[derive(Debug, Default)]
struct Logged {
    /// When a start of failures was last logged.
    warned_at: Option<Instant>,
    /// Whether the outage under way was logged, so its end is.
    announced: bool,
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
        let mut logged = self.logged[call as usize].lock().unwrap_or_else(|e| e.into_inner());
        if logged.warned_at.is_some_and(|at| at.elapsed() < WARN_INTERVAL) {
            return;
        }
        *logged = Logged { warned_at: Some(Instant::now()), announced: true };
        let call = call.label();
        match call {
            "revocation_read" => {
                tracing::warn!(error = %error, call, "revocation cache unavailable; asking the database until it answers again")
            }
            "revocation_write" => tracing::warn!(
                error = %error,
                call,
                "could not cache a revocation; the database holds it, and Auth's own checks see it within 30 s; counted, not logged, until a write works again"
            ),
            _ => tracing::warn!(error = %error, call, "could not write to the Redis cache; counted, not logged, until a write works again"),
        }
    }

    pub fn succeeded(&self, call: CacheCall) {
        // A load first: a swap on every request would make each write the flag's cache
        // line, shared by every core serving requests.
        let failing = &self.failing[call as usize];
        if !failing.load(Ordering::Relaxed) || !failing.swap(false, Ordering::Relaxed) {
            return;
        }
        let mut logged = self.logged[call as usize].lock().unwrap_or_else(|e| e.into_inner());
        if std::mem::take(&mut logged.announced) {
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
        let text = logs.text();
        let count = |needle: &str| text.lines().filter(|line| line.contains(needle)).count();
        assert_eq!(count("revocation cache unavailable"), 1, "{text}");
        assert_eq!(count("could not write to the Redis cache"), 1, "{text}");
        assert_eq!(count("working again"), 1, "{text}");
    }

    /// A Redis failing now and then (answers past the timeout) ends and starts an outage
    /// at every failure: logged once a minute, not twice per failure.
    #[test]
    fn an_intermittent_failure_is_logged_once_a_minute_not_at_every_flap() {
        let (logs, _guard) = platform::testing::CapturedLogs::capture(tracing::Level::INFO);
        let failures = CacheFailures::default();
        for _ in 0..10 {
            failures.failed(CacheCall::RevocationRead, &error());
            failures.succeeded(CacheCall::RevocationRead);
        }
        let text = logs.text();
        let count = |needle: &str| text.lines().filter(|line| line.contains(needle)).count();
        assert_eq!(count("revocation cache unavailable"), 1, "{text}");
        assert_eq!(count("working again"), 1, "{text}");
        // A minute on, a new outage is logged again.
        failures.logged[CacheCall::RevocationRead as usize].lock().unwrap().warned_at = Instant::now().checked_sub(WARN_INTERVAL);
        failures.failed(CacheCall::RevocationRead, &error());
        assert_eq!(logs.text().lines().filter(|line| line.contains("revocation cache unavailable")).count(), 2);
    }
}
