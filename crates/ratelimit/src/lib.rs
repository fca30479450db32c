//! Request rate limits shared by the cinema's services.
//!
//! - [`gcra`]: the algorithm, as pure arithmetic; `gcra.lua` runs it inside Redis
//!   atomically, in one round trip, so every instance of a service shares one limit.
//! - [`Limiter`]: sends checks to Redis (or Redis Cluster: keys carry a hash tag per
//!   subject) within a few milliseconds, else to an in-process store with the same
//!   policies, and goes back to Redis once it answers.
//! - [`RateLimitLayer`]: the tower layer; each service supplies the function that
//!   says what a request counts against.
//! - [`TrustedProxies`], [`ClientIpLayer`]: the client address, believing forwarding
//!   headers only from configured proxies.
//! - [`headers`]: `RateLimit-Policy`, `RateLimit` and `Retry-After`.
//!
//! Metrics (through the `metrics` facade; nothing is recorded until a service
//! installs a recorder, so a service installs it before building a [`Limiter`]):
//! `ratelimit_requests_total{policy, outcome}`, `ratelimit_fallbacks_total`,
//! `ratelimit_fallback_active` (1 while on the in-process store); [`register_metrics`]
//! lists them at zero.

mod client_ip;
pub mod gcra;
pub mod headers;
mod layer;
mod limiter;
mod local;
mod policy;
mod redis_store;
#[cfg(feature = "test-support")]
pub mod testing;

pub use client_ip::{ClientIp, ClientIpLayer, ClientIpService, TrustedProxies, ip_subject};

/// The limiter's series, listed from the start so that an alert can tell zero from
/// missing: `ratelimit_requests_total` for each of `policies` with each outcome
/// (`allowed`, `limited`), and the fallback series. Nothing is reset: a fallback
/// already counted (a limiter that found Redis down at start) keeps its count and its
/// gauge. Call once the metrics recorder is installed; install it before building the
/// limiter, or what the limiter records before then is lost.
pub fn register_metrics<'a>(policies: impl IntoIterator<Item = &'a std::sync::Arc<Policy>>) {
    for policy in policies {
        for outcome in limiter::OUTCOMES {
            metrics::counter!("ratelimit_requests_total", "policy" => policy.name().to_owned(), "outcome" => outcome).increment(0);
        }
    }
    metrics::counter!("ratelimit_fallbacks_total").increment(0);
    metrics::gauge!("ratelimit_fallback_active").increment(0.0);
}
pub use layer::{RateLimit, RateLimitLayer, too_many_requests};
pub use limiter::{Backend, Check, Limiter, LimiterConfig, Status, Verdict};
pub use policy::{Policy, Rate};
pub use redis_store::RedisTarget;
