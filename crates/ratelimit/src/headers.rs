//! The rate-limit response headers of draft-ietf-httpapi-ratelimit-headers (-08 and
//! later): `RateLimit-Policy` and `RateLimit`, one list item per policy, and
//! `Retry-After` (RFC 9110) on a refusal.
//!
//! ```text
//! RateLimit-Policy: "api-ip";q=40;w=2, "login-ip";q=30;w=60
//! RateLimit: "api-ip";r=39;t=1, "login-ip";r=29;t=2
//! ```
//!
//! `q` is the policy's burst and `w` the seconds that burst takes to refill, so `q/w`
//! is the sustained rate. `r` is how many requests are allowed right now and `t` the
//! seconds until the whole burst is back (rounded up); for a policy that refused the
//! request, the seconds until it would allow one, the point `Retry-After` names, as
//! the draft asks of a response carrying both (a client that waited for the whole
//! burst would wait a `5/15m` policy's 900 s instead of 180). The older
//! `RateLimit-Limit`/`-Remaining`/`-Reset` triple cannot describe two policies at once.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::limiter::Verdict;

pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Adds the state of every policy of `verdict`, after any items already present (a
/// handler may report its own policies), and `Retry-After` when it refuses.
pub fn apply(headers: &mut HeaderMap, verdict: &Verdict) {
    if verdict.statuses.is_empty() {
        return;
    }
    let mut policies = String::new();
    let mut states = String::new();
    for (i, s) in verdict.statuses.iter().enumerate() {
        let separator = if i == 0 { "" } else { ", " };
        let (quota, window) = s.policy.quota();
        policies.push_str(&format!("{separator}\"{}\";q={quota};w={window}", s.policy.name()));
        let reset = if s.allowed { s.reset } else { s.retry_after };
        states.push_str(&format!("{separator}\"{}\";r={};t={}", s.policy.name(), s.remaining, whole_seconds(reset)));
    }
    extend(headers, &RATELIMIT_POLICY, policies);
    extend(headers, &RATELIMIT, states);
    if let Some(wait) = verdict.retry_after() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(whole_seconds(wait).max(1)));
    }
}

/// Seconds, rounded up: a client that waits this long is never early.
pub fn whole_seconds(d: Duration) -> u64 {
    d.as_micros().div_ceil(1_000_000) as u64
}

fn extend(headers: &mut HeaderMap, name: &HeaderName, items: String) {
    let value = match headers.get(name).and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.is_empty() => format!("{existing}, {items}"),
        _ => items,
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Policy, Status};

    #[test]
    fn every_policy_is_one_item_and_a_refusal_says_when_to_retry() {
        let api = Policy::new("api-ip", "20/s burst 40".parse().unwrap());
        let login = Policy::new("login-ip", "30/m".parse().unwrap());
        let verdict = Verdict {
            statuses: vec![
                Status { policy: api, allowed: true, remaining: 39, reset: Duration::from_millis(50), retry_after: Duration::ZERO },
                Status { policy: login, allowed: false, remaining: 0, reset: Duration::from_secs(60), retry_after: Duration::from_millis(1_500) },
            ],
        };
        let mut headers = HeaderMap::new();
        headers.insert(&RATELIMIT, HeaderValue::from_static("\"login-account-ip\";r=4;t=180"));
        apply(&mut headers, &verdict);
        assert_eq!(headers[&RATELIMIT_POLICY], "\"api-ip\";q=40;w=2, \"login-ip\";q=30;w=60");
        // The refusing policy's `t` is its retry time, which `Retry-After` names too.
        assert_eq!(headers[&RATELIMIT], "\"login-account-ip\";r=4;t=180, \"api-ip\";r=39;t=1, \"login-ip\";r=0;t=2");
        assert_eq!(headers[header::RETRY_AFTER], "2");
    }
}
