//! Failures of a service's Redis cache in front of PostgreSQL, logged when they start
//! and when they end, and counted in between.
//!
//! A cache that fails costs a database query, never an answer, so the failure itself
//! is all there is to report; logged per request, a Redis outage would write one
//! warning per request. Each kind of call has its own state: Redis refusing writes
//! (full, with `noeviction`, or a read-only replica) while it answers reads would
//! otherwise log "failing" and "working" in turn on every request. A Redis that fails
//! now and then (slow answers past the cache's timeout) starts and ends an outage at
//! every failure: a start is logged at most once a minute per call, and an end only
//! when its start was (the rules of [`log_hygiene::Outage`]).
//!
//! Each service names its calls and its counter through [`CacheCall`].

use std::{fmt::Display, marker::PhantomData, time::Instant};

use log_hygiene::Outage;

/// The kinds of cache call of one service, and the counter that counts their failures
/// (`<service>_cache_failures_total`, labelled `call`).
pub trait CacheCall: Copy + 'static {
    /// The counter's name.
    const METRIC: &'static str;
    /// Every call, each at its [`index`](Self::index).
    const ALL: &'static [Self];
    /// Its position in [`ALL`](Self::ALL).
    fn index(self) -> usize;
    /// The counter's `call` label.
    fn label(self) -> &'static str;
    /// The warning logged when this call starts failing.
    fn warning(self) -> &'static str;
}

/// The outage of each call; the rules of what is logged are [`Outage`]'s.
#[derive(Debug)]
pub struct CacheFailures<C> {
    outages: Box<[Outage]>,
    calls: PhantomData<C>,
}

impl<C: CacheCall> Default for CacheFailures<C> {
    fn default() -> Self {
        Self { outages: C::ALL.iter().map(|_| Outage::default()).collect(), calls: PhantomData }
    }
}

impl<C: CacheCall> CacheFailures<C> {
    /// The counter at zero for every call, so an alert can tell zero from missing.
    pub fn register_metrics() {
        metrics::describe_counter!(
            C::METRIC,
            "Redis cache calls that failed and were answered from PostgreSQL, by call; logged once when failures start and once when they stop."
        );
        for call in C::ALL {
            metrics::counter!(C::METRIC, "call" => call.label()).increment(0);
        }
    }

    pub fn failed(&self, call: C, error: &dyn Display) {
        self.failed_at(call, error, Instant::now());
    }

    fn failed_at(&self, call: C, error: &dyn Display, now: Instant) {
        metrics::counter!(C::METRIC, "call" => call.label()).increment(1);
        if self.outages[call.index()].failed_at(now) {
            tracing::warn!(error = %error, call = call.label(), "{}", call.warning());
        }
    }

    pub fn succeeded(&self, call: C) {
        if self.outages[call.index()].succeeded().is_some() {
            tracing::info!(call = call.label(), "Redis cache working again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy)]
    enum Call {
        Read,
        Write,
    }

    impl CacheCall for Call {
        const METRIC: &'static str = "test_cache_failures_total";
        const ALL: &'static [Self] = &[Self::Read, Self::Write];

        fn index(self) -> usize {
            self as usize
        }

        fn label(self) -> &'static str {
            match self {
                Self::Read => "read",
                Self::Write => "write",
            }
        }

        fn warning(self) -> &'static str {
            match self {
                Self::Read => "cache unavailable",
                Self::Write => "could not write to the Redis cache",
            }
        }
    }

    const ERROR: &str = "refused";
    const A_MINUTE: std::time::Duration = std::time::Duration::from_secs(60);

    #[test]
    fn failures_are_logged_when_they_start_and_when_they_stop_not_each_time() {
        let (logs, _guard) = crate::testing::CapturedLogs::capture(tracing::Level::INFO);
        let failures = CacheFailures::<Call>::default();
        for _ in 0..5 {
            failures.failed(Call::Read, &ERROR);
        }
        // Another call's state is its own: reads working again do not end a write outage.
        failures.failed(Call::Write, &ERROR);
        failures.succeeded(Call::Read);
        failures.succeeded(Call::Read);
        failures.failed(Call::Write, &ERROR);
        let text = logs.text();
        let count = |needle: &str| text.lines().filter(|line| line.contains(needle)).count();
        assert_eq!(count("cache unavailable"), 1, "{text}");
        assert_eq!(count("could not write to the Redis cache"), 1, "{text}");
        assert_eq!(count("working again"), 1, "{text}");
        assert!(text.contains("call=\"write\"") || text.contains("call=write"), "{text}");
    }

    /// A Redis failing now and then (answers past the timeout) ends and starts an outage
    /// at every failure: logged once a minute, not twice per failure.
    #[test]
    fn an_intermittent_failure_is_logged_once_a_minute_not_at_every_flap() {
        let (logs, _guard) = crate::testing::CapturedLogs::capture(tracing::Level::INFO);
        let failures = CacheFailures::<Call>::default();
        for _ in 0..10 {
            failures.failed(Call::Read, &ERROR);
            failures.succeeded(Call::Read);
        }
        let text = logs.text();
        let count = |needle: &str| text.lines().filter(|line| line.contains(needle)).count();
        assert_eq!(count("cache unavailable"), 1, "{text}");
        assert_eq!(count("working again"), 1, "{text}");
        // A minute on, a new outage is logged again.
        failures.failed_at(Call::Read, &ERROR, Instant::now() + A_MINUTE);
        assert_eq!(logs.text().lines().filter(|line| line.contains("cache unavailable")).count(), 2);
    }

    /// A real outage starting within a minute of a brief failure was never logged: only
    /// its first failure was weighed. It is logged once that minute has passed.
    #[test]
    fn an_outage_starting_soon_after_a_logged_failure_is_logged_once_the_minute_has_passed() {
        let (logs, _guard) = crate::testing::CapturedLogs::capture(tracing::Level::INFO);
        let failures = CacheFailures::<Call>::default();
        failures.failed(Call::Read, &ERROR);
        failures.succeeded(Call::Read);
        // The outage: failing from now on, its start inside the minute.
        for _ in 0..3 {
            failures.failed(Call::Read, &ERROR);
        }
        let count = || logs.text().lines().filter(|line| line.contains("cache unavailable")).count();
        assert_eq!(count(), 1);
        failures.failed_at(Call::Read, &ERROR, Instant::now() + A_MINUTE);
        assert_eq!(count(), 2, "{}", logs.text());
        failures.failed_at(Call::Read, &ERROR, Instant::now() + A_MINUTE);
        assert_eq!(count(), 2, "once");
        failures.succeeded(Call::Read);
        assert_eq!(logs.text().lines().filter(|line| line.contains("working again")).count(), 2);
    }
}
