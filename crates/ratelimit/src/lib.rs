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
//! installs a recorder): `ratelimit_requests_total{policy, outcome}`,
//! `ratelimit_fallbacks_total`, `ratelimit_fallback_active` (1 while on the
//! in-process store).

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

/// The limiter's fallback series at zero, so that an alert can tell zero from missing.
/// Call once the metrics recorder is installed.
pub fn register_metrics() {
    metrics::counter!("ratelimit_fallbacks_total").increment(0);
    metrics::gauge!("ratelimit_fallback_active").increment(0.0);
}
pub use layer::{RateLimit, RateLimitLayer, too_many_requests};
pub use limiter::{Backend, Check, Limiter, LimiterConfig, Status, Verdict};
pub use policy::{Policy, Rate};
pub use redis_store::RedisTarget;
