//! The generic cell rate algorithm (GCRA), as pure arithmetic on microseconds.
//!
//! A limit of `burst` requests, refilled at one per `interval`, is kept as a single
//! number per key: the theoretical arrival time (TAT), the moment at which the key
//! would be back to a full burst had it been charged for every request it was allowed.
//! A request is allowed when charging it keeps the TAT within `burst × interval` of
//! now. Unlike fixed windows there is no double burst at a window boundary, and unlike
//! a sliding log it costs one number per key.
//!
//! `gcra.lua` runs the same arithmetic inside Redis; the in-process fallback
//! ([`crate::local`]) runs this one. Keep the two in step.

/// A policy's parameters, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Time to earn back one request.
    pub interval_us: u64,
    /// Requests that may arrive at once from a full bucket.
    pub burst: u64,
}

/// What a request costs against one key, and the key's state after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    /// Requests still allowed right now, after this one.
    pub remaining: u64,
    /// Microseconds until the whole burst is available again.
    pub reset_us: u64,
    /// Microseconds until this request would be allowed; 0 when it is.
    pub retry_after_us: u64,
    /// The TAT to store when the request is allowed (and all other keys allow it too).
    pub new_tat: u64,
}

impl Outcome {
    /// The state to report for a key that allowed a request which another key refused:
    /// nothing was charged (or the charge was given back), so the key still has the
    /// `cost` this outcome counted and its burst comes back that much sooner.
    pub fn uncharged(self, interval_us: u64, cost: u64) -> Self {
        if !self.allowed {
            return self;
        }
        Self { remaining: self.remaining + cost, reset_us: self.reset_us.saturating_sub(interval_us.saturating_mul(cost)), ..self }
    }
}

/// Decides a request of `cost` against a key whose stored TAT is `stored` (None when absent).
pub fn acquire(now: u64, stored: Option<u64>, params: Params, cost: u64) -> Outcome {
    let Params { interval_us, burst } = params;
    let interval_us = interval_us.max(1);
    let tat = stored.map_or(now, |tat| tat.max(now));
    // Saturating: parsed policies stay far from overflow (a full burst comes back within
    // a year), but a policy built in code is not checked.
    let new_tat = tat.saturating_add(interval_us.saturating_mul(cost));
    let window = interval_us.saturating_mul(burst);
    // `allow_at` may be "before zero" on a fresh key; compare without underflow.
    if now.saturating_add(window) >= new_tat {
        let slack = now.saturating_add(window) - new_tat;
        Outcome { allowed: true, remaining: slack / interval_us, reset_us: new_tat - now, retry_after_us: 0, new_tat }
    } else {
        Outcome {
            allowed: false,
            remaining: now.saturating_add(window).saturating_sub(tat) / interval_us,
            reset_us: tat - now,
            retry_after_us: new_tat.saturating_sub(window).saturating_sub(now),
            new_tat: tat,
        }
    }
}

/// The TAT after giving `cost` back; None when the key is then back to a full burst
/// (and can be deleted).
pub fn refund(now: u64, stored: u64, interval_us: u64, cost: u64) -> Option<u64> {
    let new_tat = stored.saturating_sub(interval_us.max(1) * cost);
    (new_tat > now).then_some(new_tat)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;
    /// 20 requests per second with a burst of 40.
    const API: Params = Params { interval_us: SECOND / 20, burst: 40 };

    /// Runs `n` requests at `now` against one key, as the stores do.
    fn run(now: u64, tat: &mut Option<u64>, n: u64) -> Vec<Outcome> {
        (0..n)
            .map(|_| {
                let outcome = acquire(now, *tat, API, 1);
                if outcome.allowed {
                    *tat = Some(outcome.new_tat);
                }
                outcome
            })
            .collect()
    }

    #[test]
    fn a_full_burst_is_allowed_at_once_then_requests_are_refused() {
        let now = 1_000 * SECOND;
        let mut tat = None;
        let outcomes = run(now, &mut tat, 41);
        assert!(outcomes[..40].iter().all(|o| o.allowed));
        assert_eq!(outcomes[0].remaining, 39);
        assert_eq!(outcomes[39].remaining, 0);
        assert_eq!(outcomes[39].reset_us, 2 * SECOND, "40 × 50 ms to refill");
        let refused = outcomes[40];
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.retry_after_us, SECOND / 20, "one interval");
        assert_eq!(refused.reset_us, 2 * SECOND);
    }

    #[test]
    fn requests_come_back_at_the_rate_without_a_double_burst() {
        let now = 1_000 * SECOND;
        let mut tat = None;
        run(now, &mut tat, 40);
        // One interval later exactly one more request is allowed, not a new burst.
        let later = run(now + SECOND / 20, &mut tat, 2);
        assert!(later[0].allowed && !later[1].allowed);
        // After the whole window, the full burst is back.
        let refilled = run(now + SECOND / 20 + 2 * SECOND, &mut tat, 41);
        assert_eq!(refilled.iter().filter(|o| o.allowed).count(), 40);
    }

    #[test]
    fn a_stale_tat_counts_as_a_full_bucket() {
        let now = 10_000 * SECOND;
        let outcome = acquire(now, Some(now - 3_600 * SECOND), API, 1);
        assert!(outcome.allowed);
        assert_eq!(outcome.remaining, 39);
        assert_eq!(outcome.new_tat, now + API.interval_us);
    }

    #[test]
    fn an_uncharged_outcome_is_the_state_before_the_charge() {
        let params = Params { interval_us: 1_000, burst: 5 };
        let mut tat = None;
        let first = acquire(10_000_000, tat, params, 1);
        tat = Some(first.new_tat);
        let second = acquire(10_000_000, tat, params, 1);
        // The second request's key, reported uncharged, shows what the first left.
        assert_eq!(second.uncharged(params.interval_us, 1), Outcome { new_tat: second.new_tat, ..first });
    }

    #[test]
    fn a_refund_gives_one_request_back_and_empties_the_key_at_full() {
        let now = 1_000 * SECOND;
        let mut tat = None;
        run(now, &mut tat, 2);
        let once = refund(now, tat.unwrap(), API.interval_us, 1);
        assert_eq!(once, Some(now + API.interval_us));
        assert_eq!(refund(now, once.unwrap(), API.interval_us, 1), None);
    }

    #[test]
    fn the_slow_sign_in_policy_allows_five_then_one_per_three_minutes() {
        // 5 per 15 minutes: interval 180 s, burst 5.
        let params = Params { interval_us: 180 * SECOND, burst: 5 };
        let now = 1_000_000 * SECOND;
        let mut tat = None;
        for i in 0..5 {
            let o = acquire(now, tat, params, 1);
            assert!(o.allowed, "attempt {i}");
            tat = Some(o.new_tat);
        }
        let refused = acquire(now + SECOND, tat, params, 1);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_us, 179 * SECOND);
        assert!(acquire(now + 180 * SECOND, tat, params, 1).allowed);
    }
}
