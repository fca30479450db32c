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
//! when its start was.
//!
//! Each service names its calls and its counter through [`CacheCall`].

use std::{
    fmt::Display,
    marker::PhantomData,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// At most one "failing" line per call this often.
const WARN_INTERVAL: Duration = Duration::from_secs(60);

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

#[derive(Debug)]
pub struct CacheFailures<C> {
    /// Read on every successful call, so the path with no outage takes no lock.
    failing: Box<[AtomicBool]>,
    /// An outage under way whose start fell within a minute of the last warning, and
    /// was not logged: logged at a later failure once the minute has passed.
    untold: Box<[AtomicBool]>,
    logged: Box<[Mutex<Logged>]>,
    calls: PhantomData<C>,
}

#[derive(Debug, Default)]
struct Logged {
    /// When a start of failures was last logged.
    warned_at: Option<Instant>,
    /// Whether the outage under way was logged, so its end is.
    announced: bool,
}

impl<C: CacheCall> Default for CacheFailures<C> {
    fn default() -> Self {
        Self {
            failing: C::ALL.iter().map(|_| AtomicBool::new(false)).collect(),
            untold: C::ALL.iter().map(|_| AtomicBool::new(false)).collect(),
            logged: C::ALL.iter().map(|_| Mutex::default()).collect(),
            calls: PhantomData,
        }
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
        metrics::counter!(C::METRIC, "call" => call.label()).increment(1);
        let i = call.index();
        // Past the first failure of an outage, only one not yet told takes the lock.
        if self.failing[i].swap(true, Ordering::Relaxed) && !self.untold[i].load(Ordering::Relaxed) {
            return;
        }
        let mut logged = self.logged[i].lock().unwrap_or_else(|e| e.into_inner());
        if logged.warned_at.is_some_and(|at| at.elapsed() < WARN_INTERVAL) {
            self.untold[i].store(true, Ordering::Relaxed);
            return;
        }
        *logged = Logged { warned_at: Some(Instant::now()), announced: true };
        self.untold[i].store(false, Ordering::Relaxed);
        tracing::warn!(error = %error, call = call.label(), "{}", call.warning());
    }

    pub fn succeeded(&self, call: C) {
        // A load first: a swap on every request would make each write the flag's cache
        // line, shared by every core serving requests.
        let failing = &self.failing[call.index()];
        if !failing.load(Ordering::Relaxed) || !failing.swap(false, Ordering::Relaxed) {
            return;
        }
        let mut logged = self.logged[call.index()].lock().unwrap_or_else(|e| e.into_inner());
        self.untold[call.index()].store(false, Ordering::Relaxed);
        if std::mem::take(&mut logged.announced) {
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
        failures.logged[Call::Read as usize].lock().unwrap().warned_at = Instant::now().checked_sub(WARN_INTERVAL);
        failures.failed(Call::Read, &ERROR);
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
        failures.logged[Call::Read as usize].lock().unwrap().warned_at = Instant::now().checked_sub(WARN_INTERVAL);
        failures.failed(Call::Read, &ERROR);
        assert_eq!(count(), 2, "{}", logs.text());
        failures.failed(Call::Read, &ERROR);
        assert_eq!(count(), 2, "once");
        failures.succeeded(Call::Read);
        assert_eq!(logs.text().lines().filter(|line| line.contains("working again")).count(), 2);
    }
}
