//! A circuit breaker in front of Auth's introspection endpoint.
//!
//! Closed: calls go through; `threshold` consecutive failures open it. Open: no call
//! is made until `open_for` has passed. Then one probe is let through (half-open): its
//! success closes the breaker, its failure opens it again. A probe abandoned before it
//! reports (its caller's future dropped: the viewer hung up) lets the next caller
//! probe; otherwise the breaker would stay half-open, refusing every call, for good.

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

    /// A call, if one may be made now. In half-open state only the first caller may.
    /// Report its outcome on the returned [`Call`].
    pub fn try_acquire(&self) -> Option<Call<'_>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let probe = match *state {
            State::Closed { .. } => false,
            State::Open { until } if Instant::now() >= until => {
                *state = State::HalfOpen;
                true
            }
            State::Open { .. } | State::HalfOpen => return None,
        };
        Some(Call { breaker: self, probe, reported: false })
    }

    fn on_success(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(*state, State::Closed { .. }) {
            tracing::info!("auth circuit breaker closed");
            metrics::gauge!("auth_client_breaker_open").set(0.0);
        }
        *state = State::Closed { failures: 0 };
    }

    fn on_failure(&self) {
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

    /// A probe ended without an outcome: the next caller probes.
    fn on_abandoned_probe(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*state, State::HalfOpen) {
            *state = State::Open { until: Instant::now() };
        }
    }

    /// Open and still within its open window: calls failed just now. Past the window
    /// the state stays `Open` until the next call probes, which without signed-in
    /// traffic may be long after Auth is back, so this is what says "failing now".
    pub fn refusing(&self) -> bool {
        matches!(*self.state.lock().unwrap_or_else(|e| e.into_inner()), State::Open { until } if Instant::now() < until)
    }

    pub fn state(&self) -> BreakerState {
        match *self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen => BreakerState::HalfOpen,
        }
    }
}

/// A call the breaker let through.
#[must_use = "report the call's outcome"]
pub struct Call<'a> {
    breaker: &'a Breaker,
    /// The half-open state's one call.
    probe: bool,
    reported: bool,
}

impl Call<'_> {
    pub fn succeeded(mut self) {
        self.reported = true;
        self.breaker.on_success();
    }

    pub fn failed(mut self) {
        self.reported = true;
        self.breaker.on_failure();
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if self.probe && !self.reported {
            self.breaker.on_abandoned_probe();
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
            breaker.try_acquire().unwrap().failed();
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.try_acquire().unwrap().failed();
        assert_eq!(breaker.state(), BreakerState::Open);
        // open_for is zero: the next caller probes, the one after waits.
        let probe = breaker.try_acquire().unwrap();
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(breaker.try_acquire().is_none());
        probe.failed();
        assert_eq!(breaker.state(), BreakerState::Open);
        breaker.try_acquire().unwrap().succeeded();
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_caller_probe() {
        let breaker = Breaker::new(1, Duration::from_millis(0));
        breaker.try_acquire().unwrap().failed();
        let probe = breaker.try_acquire().unwrap();
        assert!(breaker.try_acquire().is_none());
        // The probe's future is dropped mid-call (its viewer hung up): no outcome.
        drop(probe);
        assert_eq!(breaker.state(), BreakerState::Open);
        let probe = breaker.try_acquire().expect("the next caller probes");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        probe.succeeded();
        assert_eq!(breaker.state(), BreakerState::Closed);
        // Calls dropped while closed change nothing.
        drop(breaker.try_acquire().unwrap());
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn stays_open_until_the_interval_passes() {
        let breaker = Breaker::new(1, Duration::from_secs(3600));
        breaker.try_acquire().unwrap().failed();
        assert!(breaker.try_acquire().is_none());
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let breaker = Breaker::new(2, Duration::from_secs(3600));
        breaker.try_acquire().unwrap().failed();
        breaker.try_acquire().unwrap().succeeded();
        breaker.try_acquire().unwrap().failed();
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
}
