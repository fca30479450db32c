//! An outage, told when it starts and when it ends.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// One thing that fails and works again (a kind of Redis call, the trace export): its
/// callers report each failure and each success, and log what this says to.
///
/// The rules: an outage's start is told at most once per interval (a minute by
/// default), so a dependency failing now and then (answers past a timeout) does not
/// log a start and an end at every failure; its end only when its start was told. An
/// outage that starts within the interval of a told one is not told then, but at one
/// of its later failures once the interval has passed, so a real outage right after a
/// brief one is never kept out of the log for good.
///
/// Built for the request path: a success while all works reads one flag, and a failure
/// within an outage already told takes no lock.
#[derive(Debug)]
pub struct Outage {
    interval: Duration,
    /// Whether the last report was a failure.
    failing: AtomicBool,
    /// The outage under way was not told (its start fell within the interval of the
    /// last told one): its later failures ask again.
    untold: AtomicBool,
    /// Failures since the last success.
    failures: AtomicU64,
    told: Mutex<Told>,
}

#[derive(Debug, Default)]
struct Told {
    /// When a start was last told.
    start_at: Option<Instant>,
    /// Whether the start of the outage under way was told, so its end is.
    start: bool,
}

impl Default for Outage {
    fn default() -> Self {
        Self::new(crate::ONCE_A_MINUTE)
    }
}

impl Outage {
    /// Starts told at most once per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self { interval, failing: AtomicBool::new(false), untold: AtomicBool::new(false), failures: AtomicU64::new(0), told: Mutex::default() }
    }

    /// A failure: true when it is the one to log as the outage's start.
    pub fn failed(&self) -> bool {
        self.failed_at(Instant::now())
    }

    /// [`failed`](Self::failed), at `now`.
    pub fn failed_at(&self, now: Instant) -> bool {
        self.failures.fetch_add(1, Ordering::Relaxed);
        // Past the first failure of an outage, only one not yet told takes the lock.
        if self.failing.swap(true, Ordering::Relaxed) && !self.untold.load(Ordering::Relaxed) {
            return false;
        }
        let mut told = self.told.lock().unwrap_or_else(|e| e.into_inner());
        if told.start {
            return false;
        }
        if told.start_at.is_some_and(|at| now.saturating_duration_since(at) < self.interval) {
            self.untold.store(true, Ordering::Relaxed);
            return false;
        }
        *told = Told { start_at: Some(now), start: true };
        self.untold.store(false, Ordering::Relaxed);
        true
    }

    /// A success: when it ends an outage whose start was told, `Some` with the failures
    /// it saw (to log its end).
    pub fn succeeded(&self) -> Option<u64> {
        // A load first: a swap on every request would write the flag's cache line,
        // shared by every core serving requests.
        if !self.failing.load(Ordering::Relaxed) || !self.failing.swap(false, Ordering::Relaxed) {
            return None;
        }
        let mut told = self.told.lock().unwrap_or_else(|e| e.into_inner());
        self.untold.store(false, Ordering::Relaxed);
        let failures = self.failures.swap(0, Ordering::Relaxed);
        std::mem::take(&mut told.start).then_some(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Failing now and then: the start of an outage is told at most once a minute, and
    /// its end only when its start was.
    #[test]
    fn an_outage_is_told_when_it_starts_and_ends_at_most_once_a_minute() {
        let outage = Outage::default();
        let start = Instant::now();
        assert_eq!(outage.succeeded(), None, "working: nothing to say");
        assert!(outage.failed_at(start), "the first failure starts an outage");
        for _ in 0..100 {
            assert!(!outage.failed_at(start + Duration::from_secs(1)), "not per failure");
        }
        assert_eq!(outage.succeeded(), Some(101), "the end, with the failures it saw");
        assert_eq!(outage.succeeded(), None);
        // A flap within the minute: neither its start nor its end is told.
        assert!(!outage.failed_at(start + Duration::from_secs(30)));
        assert_eq!(outage.succeeded(), None);
        // A minute after the last told start, an outage is told again.
        assert!(outage.failed_at(start + Duration::from_secs(61)));
        assert_eq!(outage.succeeded(), Some(1));
        // An outage starting within the minute is told once the minute has passed, at
        // one of its later failures, and then its end.
        assert!(!outage.failed_at(start + Duration::from_secs(70)));
        assert!(!outage.failed_at(start + Duration::from_secs(100)));
        assert!(outage.failed_at(start + Duration::from_secs(122)));
        assert!(!outage.failed_at(start + Duration::from_secs(123)));
        assert_eq!(outage.succeeded(), Some(4));
    }

    /// A real outage starting within a minute of a brief failure is told once that
    /// minute has passed, at one of its later failures, and then its end.
    #[test]
    fn an_outage_starting_soon_after_a_told_one_is_told_once_the_minute_has_passed() {
        let outage = Outage::default();
        let start = Instant::now();
        assert!(outage.failed_at(start));
        assert_eq!(outage.succeeded(), Some(1));
        assert!(!outage.failed_at(start + Duration::from_secs(10)));
        assert!(!outage.failed_at(start + Duration::from_secs(40)));
        assert!(outage.failed_at(start + Duration::from_secs(61)), "told once the minute has passed");
        assert!(!outage.failed_at(start + Duration::from_secs(62)), "once");
        assert!(!outage.failed_at(start + Duration::from_secs(200)), "once per outage, however long");
        assert_eq!(outage.succeeded(), Some(5));
    }

    #[test]
    fn the_interval_is_the_callers() {
        let outage = Outage::new(Duration::from_secs(5));
        let start = Instant::now();
        assert!(outage.failed_at(start));
        assert_eq!(outage.succeeded(), Some(1));
        assert!(!outage.failed_at(start + Duration::from_secs(4)));
        assert!(outage.failed_at(start + Duration::from_secs(5)));
    }

    /// Many threads failing at once: one start told, one end.
    #[test]
    fn concurrent_failures_tell_one_start() {
        let outage = Outage::default();
        let told = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        if outage.failed() {
                            told.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(told.load(Ordering::Relaxed), 1);
        assert_eq!(outage.succeeded(), Some(4000));
    }
}
