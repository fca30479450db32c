//! A circuit breaker in front of Auth's introspection endpoint.
//!
//! Closed: calls go through; `threshold` consecutive failures open it. Open: no call
//! is made until `open_for` has passed. Then one probe is let through (half-open): its
//! success closes the breaker, its failure opens it again.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    open_for: Duration,
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self { state: Mutex::new(State::Closed { failures: 0 }), threshold: threshold.max(1), open_for }
    }

    /// Whether a call may be made now. In half-open state only the first caller may.
    pub fn try_acquire(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match *state {
            State::Closed { .. } => true,
            State::Open { until } if Instant::now() >= until => {
                *state = State::HalfOpen;
                true
            }
            State::Open { .. } | State::HalfOpen => false,
        }
    }

    pub fn on_success(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(*state, State::Closed { .. }) {
            tracing::info!("auth circuit breaker closed");
            metrics::gauge!("auth_client_breaker_open").set(0.0);
        }
        *state = State::Closed { failures: 0 };
    }

    pub fn on_failure(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let open = match *state {
            State::Closed { failures } if failures + 1 < self.threshold => {
                *state = State::Closed { failures: failures + 1 };
                false
            }
            State::Closed { .. } | State::HalfOpen => true,
            State::Open { .. } => false,
        };
        if open {
            tracing::warn!(open_for_ms = self.open_for.as_millis() as u64, "auth circuit breaker opened");
            *state = State::Open { until: Instant::now() + self.open_for };
            metrics::gauge!("auth_client_breaker_open").set(1.0);
        }
    }

    pub fn state(&self) -> BreakerState {
        match *self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_probes_once_after_the_interval() {
        let breaker = Breaker::new(3, Duration::from_millis(0));
        for _ in 0..2 {
            assert!(breaker.try_acquire());
            breaker.on_failure();
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.on_failure();
        assert_eq!(breaker.state(), BreakerState::Open);
        // open_for is zero: the next caller probes, the one after waits.
        assert!(breaker.try_acquire());
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(!breaker.try_acquire());
        breaker.on_failure();
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.try_acquire());
        breaker.on_success();
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn stays_open_until_the_interval_passes() {
        let breaker = Breaker::new(1, Duration::from_secs(3600));
        breaker.on_failure();
        assert!(!breaker.try_acquire());
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let breaker = Breaker::new(2, Duration::from_secs(3600));
        breaker.on_failure();
        breaker.on_success();
        breaker.on_failure();
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
}
