//! Request rate limits of the movies API, with the layer Auth uses (crate `ratelimit`):
//! GCRA in Redis shared by every instance, the in-process fallback, the standard
//! headers. A request with a well-signed access token counts against its user, any
//! other against its client address (from `X-Forwarded-For`/`X-Real-IP` only when the
//! peer is a trusted proxy). Probes and metrics are never limited.

use std::{sync::Arc, time::Duration};

use auth_client::{AuthClient, SignedToken};
use axum::{
    extract::MatchedPath,
    http::{header, request::Parts},
};
use platform::env::{ConfigError, Env};
use ratelimit::{Check, ClientIp, Limiter, LimiterConfig, Policy, Rate, RateLimitLayer, RedisTarget, TrustedProxies, ip_subject};
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    pub enabled: bool,
    pub trusted_proxies: TrustedProxies,
    /// A Redis of their own for the limits (`MOVIES_RATE_LIMIT_REDIS_URL`); None: the
    /// Redis of `REDIS_URL`, which also holds the answer cache. One that never evicts:
    /// a full cache Redis that evicts would reset the counts.
    pub redis_url: Option<SecretString>,
    pub redis_timeout: Duration,
    pub redis_probe_interval: Duration,
    pub api_anonymous: Rate,
    pub api_user: Rate,
}

impl RateLimitSettings {
    pub const VARIABLES: [&str; 7] = [
        "MOVIES_RATE_LIMIT_ENABLED",
        "MOVIES_TRUSTED_PROXIES",
        "MOVIES_RATE_LIMIT_REDIS_URL",
        "MOVIES_RATE_LIMIT_REDIS_TIMEOUT_MS",
        "MOVIES_RATE_LIMIT_REDIS_PROBE_INTERVAL_MS",
        "MOVIES_RATE_LIMIT_API_ANONYMOUS",
        "MOVIES_RATE_LIMIT_API_USER",
    ];

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            enabled: env.flag("MOVIES_RATE_LIMIT_ENABLED", true)?,
            trusted_proxies: env.parse("MOVIES_TRUSTED_PROXIES", "")?,
            redis_url: env.optional("MOVIES_RATE_LIMIT_REDIS_URL").map(Into::into),
            redis_timeout: env.millis("MOVIES_RATE_LIMIT_REDIS_TIMEOUT_MS", 25)?,
            redis_probe_interval: env.millis("MOVIES_RATE_LIMIT_REDIS_PROBE_INTERVAL_MS", 1000)?,
            api_anonymous: env.parse("MOVIES_RATE_LIMIT_API_ANONYMOUS", "20/s burst 40")?,
            api_user: env.parse("MOVIES_RATE_LIMIT_API_USER", "50/s burst 100")?,
        })
    }
}

pub struct RateLimits {
    pub enabled: bool,
    pub limiter: Limiter,
    pub trusted_proxies: TrustedProxies,
    api_anonymous: Arc<Policy>,
    api_user: Arc<Policy>,
}

impl RateLimits {
    /// Connects lazily: the service starts, and limits on its own, while Redis is down.
    /// The limits' Redis is that of `MOVIES_RATE_LIMIT_REDIS_URL`, else `redis_url`
    /// (`REDIS_URL`).
    pub fn new(settings: &RateLimitSettings, redis_url: &SecretString, key_prefix: &str) -> anyhow::Result<Self> {
        let (url, name) = match &settings.redis_url {
            Some(own) => (own, "MOVIES_RATE_LIMIT_REDIS_URL"),
            None => (redis_url, "REDIS_URL"),
        };
        let mut config = LimiterConfig::new(key_prefix, Some(RedisTarget::Single(url.expose_secret().to_owned())));
        config.redis_timeout = settings.redis_timeout;
        config.probe_interval = settings.redis_probe_interval;
        let limiter = Limiter::new(config).map_err(|_| anyhow::anyhow!("{name}: not a valid Redis URL"))?;
        Ok(Self {
            enabled: settings.enabled,
            limiter,
            trusted_proxies: settings.trusted_proxies.clone(),
            api_anonymous: Policy::new("api-ip", settings.api_anonymous),
            api_user: Policy::new("api-user", settings.api_user),
        })
    }
}

impl RateLimits {
    /// Every policy, for the metrics listed from the start.
    pub fn policies(&self) -> [&Arc<Policy>; 2] {
        [&self.api_anonymous, &self.api_user]
    }
}

/// What a request counts against. Needs the [`ClientIp`] extension (`ratelimit::ClientIpLayer`).
/// A token whose signature checks out is left in the extensions for the `Viewer`
/// extractor, which then does not check it again.
pub fn checks(limits: &RateLimits, auth: &AuthClient, parts: &mut Parts) -> Vec<Check> {
    if !limits.enabled {
        return Vec::new();
    }
    // Unmatched paths (404s) count like any other request.
    if parts.extensions.get::<MatchedPath>().is_some_and(|m| platform::http::is_operational(m.as_str())) {
        return Vec::new();
    }
    let signed: Option<SignedToken> =
        parts.headers.get(header::AUTHORIZATION).and_then(auth_client::bearer_token).and_then(|token| auth.check_signature(token));
    match signed {
        // A token Auth already said was revoked counts by address (`found_revoked`).
        Some(signed) if !auth.found_revoked(&signed) => {
            let check = Check::new(&limits.api_user, format_args!("user:{}", signed.user_id().simple()));
            parts.extensions.insert(signed);
            vec![check]
        }
        // No token, or one that fails: by address (the handler answers 401 to a bad one).
        _ => vec![Check::new(&limits.api_anonymous, ip_subject(ClientIp::of(&parts.extensions)))],
    }
}

/// The rate-limit layer of the router; `ratelimit::ClientIpLayer` goes outside it.
pub fn layer(limits: Arc<RateLimits>, auth: AuthClient) -> RateLimitLayer<impl Fn(&mut Parts) -> Vec<Check> + Clone + Send + Sync + 'static> {
    let limiter = limits.limiter.clone();
    RateLimitLayer::new(limiter, move |parts: &mut Parts| checks(&limits, &auth, parts))
}

/// Documents the 429 answer on every limited operation of the OpenAPI document.
pub const TOO_MANY_REQUESTS_DOC: platform::openapi::TooManyRequests = platform::openapi::TooManyRequests {
    description: "Too many requests: a rate limit refused it (`rate_limited`). See docs/rate-limiting.md.",
    unlimited: platform::http::is_operational,
};
