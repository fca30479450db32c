//! A condition told at most once per interval.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// A condition that recurs (Auth's refusal of our credentials, a connection cap
/// reached), told at most once per interval (a minute by default), with how often it
/// happened since it was last told.
#[derive(Debug)]
pub struct AtMostEvery {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When it was last told.
    told_at: Option<Instant>,
    /// Times it happened since (this one included).
    untold: u64,
}

impl Default for AtMostEvery {
    fn default() -> Self {
        Self::new(crate::ONCE_A_MINUTE)
    }
}

impl AtMostEvery {
    pub fn new(interval: Duration) -> Self {
        Self { interval, state: Mutex::default() }
    }

    /// It happened: `Some` with the times it happened since it was last told (this one
    /// included) when it is to be told now.
    pub fn happened(&self) -> Option<u64> {
        self.happened_at(Instant::now())
    }

    /// [`happened`](Self::happened), at `now`.
    pub fn happened_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.untold += 1;
        if state.told_at.is_some_and(|at| now.saturating_duration_since(at) < self.interval) {
            return None;
        }
        state.told_at = Some(now);
        Some(std::mem::take(&mut state.untold))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_is_told_at_most_once_a_minute_with_the_times_it_happened() {
        let repeated = AtMostEvery::default();
        let start = Instant::now();
        assert_eq!(repeated.happened_at(start), Some(1), "the first time");
        for s in 1..60 {
            assert_eq!(repeated.happened_at(start + Duration::from_secs(s)), None, "within the minute");
        }
        assert_eq!(repeated.happened_at(start + Duration::from_secs(60)), Some(60), "a minute on, with the times since");
        assert_eq!(repeated.happened_at(start + Duration::from_secs(61)), None);
        assert_eq!(repeated.happened_at(start + Duration::from_secs(500)), Some(2));
    }

    #[test]
    fn the_interval_is_the_callers() {
        let repeated = AtMostEvery::new(Duration::from_millis(10));
        let start = Instant::now();
        assert_eq!(repeated.happened_at(start), Some(1));
        assert_eq!(repeated.happened_at(start + Duration::from_millis(9)), None);
        assert_eq!(repeated.happened_at(start + Duration::from_millis(10)), Some(2));
    }
}
