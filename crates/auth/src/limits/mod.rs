//! Auth's request rate limits (docs/rate-limiting.md): the policies and their
//! settings, which requests count against which policy (`requests`), and the sign-in
//! rules against password guessing (`sign_in`). The algorithm, the Redis state and
//! the fallback are the shared `ratelimit` crate's.

pub mod requests;
pub mod sign_in;

use std::{sync::Arc, time::Duration};

use platform::env::{ConfigError, Env};
use ratelimit::{Limiter, LimiterConfig, Policy, Rate, RedisTarget, TrustedProxies};
use secrecy::{ExposeSecret, SecretString};

/// The variable of every rate-limit policy (rate and burst), as `RateLimitSettings` reads them.
pub const POLICY_VARIABLES: [&str; 11] = [
    "AUTH_RATE_LIMIT_API_ANONYMOUS",
    "AUTH_RATE_LIMIT_API_USER",
    "AUTH_RATE_LIMIT_SIGNUP",
    "AUTH_RATE_LIMIT_REFRESH",
    "AUTH_RATE_LIMIT_PASSWORD_CHANGE",
    "AUTH_RATE_LIMIT_LOGIN_IP",
    "AUTH_RATE_LIMIT_LOGIN_ACCOUNT_IP",
    "AUTH_RATE_LIMIT_LOGIN_ACCOUNT",
    "AUTH_RATE_LIMIT_INTROSPECT",
    "AUTH_RATE_LIMIT_OAUTH_AUTHORIZE",
    "AUTH_RATE_LIMIT_OAUTH_EXCHANGE",
];

/// Rates are written `20/s burst 40` (see `ratelimit::Rate`).
#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// Proxies whose `X-Forwarded-For`/`X-Real-IP` are believed; also used for the
    /// addresses in sessions and the login history, whether limits are on or not.
    pub trusted_proxies: TrustedProxies,
    /// Seed nodes of a Redis Cluster holding the limits; None: `redis_url`.
    pub redis_cluster_nodes: Option<SecretString>,
    /// A Redis of their own for the limits (`AUTH_RATE_LIMIT_REDIS_URL`); None: the
    /// Redis of `REDIS_URL`. One that never evicts: Auth's other keys (OAuth flows,
    /// caches) can fill the shared one, and an evicting Redis then drops counters.
    pub redis_url: Option<SecretString>,
    pub redis_timeout: Duration,
    pub redis_probe_interval: Duration,
    pub api_anonymous: Rate,
    pub api_user: Rate,
    pub signup: Rate,
    pub refresh: Rate,
    pub password_change: Rate,
    pub login_ip: Rate,
    pub login_account_ip: Rate,
    pub login_account: Rate,
    /// Token introspection, per client id: every instance of one calling service together.
    pub introspect_client: Rate,
    /// Social sign-in starts, per address: each stores a flow in Redis for
    /// `OAUTH_STATE_TTL_SECONDS`, and needs no login.
    pub oauth_authorize: Rate,
    /// Exchanges of a social sign-in's one-time login code, per address.
    pub oauth_exchange: Rate,
}

impl RateLimitSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            enabled: env.flag("AUTH_RATE_LIMIT_ENABLED", true)?,
            trusted_proxies: env.parse("AUTH_TRUSTED_PROXIES", "")?,
            redis_cluster_nodes: env.optional("AUTH_RATE_LIMIT_REDIS_CLUSTER_NODES").map(Into::into),
            redis_url: env.optional("AUTH_RATE_LIMIT_REDIS_URL").map(Into::into),
            redis_timeout: env.millis("AUTH_RATE_LIMIT_REDIS_TIMEOUT_MS", 25)?,
            redis_probe_interval: env.millis("AUTH_RATE_LIMIT_REDIS_PROBE_INTERVAL_MS", 1000)?,
            api_anonymous: env.parse("AUTH_RATE_LIMIT_API_ANONYMOUS", "20/s burst 40")?,
            api_user: env.parse("AUTH_RATE_LIMIT_API_USER", "50/s burst 100")?,
            signup: env.parse("AUTH_RATE_LIMIT_SIGNUP", "5/m burst 10")?,
            refresh: env.parse("AUTH_RATE_LIMIT_REFRESH", "30/m burst 60")?,
            password_change: env.parse("AUTH_RATE_LIMIT_PASSWORD_CHANGE", "5/15m")?,
            login_ip: env.parse("AUTH_RATE_LIMIT_LOGIN_IP", "30/m")?,
            login_account_ip: env.parse("AUTH_RATE_LIMIT_LOGIN_ACCOUNT_IP", "5/15m")?,
            login_account: env.parse("AUTH_RATE_LIMIT_LOGIN_ACCOUNT", "50/h")?,
            // Twice the former per-address default, which each instance of a caller had to
            // itself: this one quota now covers all of them. docs/rate-limiting.md.
            introspect_client: env.parse("AUTH_RATE_LIMIT_INTROSPECT", "1000/s burst 2000")?,
            // A viewer starts a social sign-in once, or a few times; what an address can
            // keep stored is bounded by it (docs/rate-limiting.md).
            oauth_authorize: env.parse("AUTH_RATE_LIMIT_OAUTH_AUTHORIZE", "10/m burst 20")?,
            oauth_exchange: env.parse("AUTH_RATE_LIMIT_OAUTH_EXCHANGE", "10/m burst 20")?,
        })
    }
}

/// The policies, by the names they carry in Redis keys, headers and metrics.
pub struct Policies {
    pub api_anonymous: Arc<Policy>,
    pub api_user: Arc<Policy>,
    pub signup: Arc<Policy>,
    pub refresh: Arc<Policy>,
    pub password_change: Arc<Policy>,
    pub login_ip: Arc<Policy>,
    pub login_account_ip: Arc<Policy>,
    pub login_account: Arc<Policy>,
    pub introspect_client: Arc<Policy>,
    pub oauth_authorize: Arc<Policy>,
    pub oauth_exchange: Arc<Policy>,
}

impl Policies {
    /// Every policy, for the metrics listed from the start.
    pub fn all(&self) -> [&Arc<Policy>; 11] {
        [
            &self.api_anonymous,
            &self.api_user,
            &self.signup,
            &self.refresh,
            &self.password_change,
            &self.login_ip,
            &self.login_account_ip,
            &self.login_account,
            &self.introspect_client,
            &self.oauth_authorize,
            &self.oauth_exchange,
        ]
    }
}

/// Everything the layer and the sign-in handler need, shared through `AppState`.
pub struct RateLimits {
    pub enabled: bool,
    pub limiter: Limiter,
    pub policies: Policies,
    pub trusted_proxies: TrustedProxies,
    /// Keys the sign-in counts of identifiers that match no account.
    pub identifier_secret: sign_in::IdentifierSecret,
    /// Tokens found revoked, counted by address rather than against their user.
    pub revoked_tokens: revoked_tokens::RevokedTokens,
}

impl RateLimits {
    /// Connects lazily: Auth starts, and limits on its own, while Redis is down. The
    /// limits' Redis is, in order, the cluster of `AUTH_RATE_LIMIT_REDIS_CLUSTER_NODES`,
    /// the Redis of `AUTH_RATE_LIMIT_REDIS_URL`, or `redis_url` (`REDIS_URL`).
    pub fn new(
        settings: &RateLimitSettings,
        redis_url: &SecretString,
        key_prefix: &str,
        identifier_secret: sign_in::IdentifierSecret,
    ) -> anyhow::Result<Self> {
        let target = match &settings.redis_cluster_nodes {
            Some(nodes) => {
                RedisTarget::Cluster(nodes.expose_secret().split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
            }
            None => RedisTarget::Single(settings.redis_url.as_ref().unwrap_or(redis_url).expose_secret().to_owned()),
        };
        let mut config = LimiterConfig::new(key_prefix, Some(target));
        config.redis_timeout = settings.redis_timeout;
        config.probe_interval = settings.redis_probe_interval;
        let limiter = Limiter::new(config).map_err(|_| {
            let name = match (&settings.redis_cluster_nodes, &settings.redis_url) {
                (Some(_), _) => "AUTH_RATE_LIMIT_REDIS_CLUSTER_NODES",
                (None, Some(_)) => "AUTH_RATE_LIMIT_REDIS_URL",
                (None, None) => "REDIS_URL",
            };
            anyhow::anyhow!("{name}: not a valid Redis URL")
        })?;
        let s = settings;
        Ok(Self {
            enabled: s.enabled,
            limiter,
            trusted_proxies: s.trusted_proxies.clone(),
            identifier_secret,
            revoked_tokens: revoked_tokens::RevokedTokens::new(),
            policies: Policies {
                api_anonymous: Policy::new("api-ip", s.api_anonymous),
                api_user: Policy::new("api-user", s.api_user),
                signup: Policy::new("signup-ip", s.signup),
                refresh: Policy::new("refresh-ip", s.refresh),
                password_change: Policy::new("password-change-ip", s.password_change),
                login_ip: Policy::new("login-ip", s.login_ip),
                login_account_ip: Policy::new("login-account-ip", s.login_account_ip),
                login_account: Policy::new("login-account", s.login_account),
                introspect_client: Policy::new("introspect-client", s.introspect_client),
                oauth_authorize: Policy::new("oauth-authorize-ip", s.oauth_authorize),
                oauth_exchange: Policy::new("oauth-exchange-ip", s.oauth_exchange),
            },
        })
    }
}

pub use ratelimit::ip_subject;

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<RateLimitSettings, ConfigError> {
        let lookup = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
        RateLimitSettings::from_env(&Env::new(&lookup))
    }

    #[test]
    fn defaults_are_the_documented_policies_and_bad_values_are_named() {
        let s = with(&[]).unwrap();
        assert!(s.enabled);
        let rates = [
            s.api_anonymous,
            s.api_user,
            s.signup,
            s.refresh,
            s.password_change,
            s.login_ip,
            s.login_account_ip,
            s.login_account,
            s.introspect_client,
            s.oauth_authorize,
            s.oauth_exchange,
        ];
        assert_eq!(
            rates.map(|r| r.to_string()),
            [
                "20/s burst 40",
                "50/s burst 100",
                "5/m burst 10",
                "30/m burst 60",
                "5/15m",
                "30/m",
                "5/15m",
                "50/h",
                "1000/s burst 2000",
                "10/m burst 20",
                "10/m burst 20"
            ]
        );
        assert_eq!(s.redis_timeout, Duration::from_millis(25));
        assert_eq!(s.trusted_proxies, TrustedProxies::default());
        let err = with(&[("AUTH_RATE_LIMIT_LOGIN_IP", "thirty a minute")]).unwrap_err();
        assert!(err.to_string().starts_with("AUTH_RATE_LIMIT_LOGIN_IP: cannot parse \"thirty a minute\""), "{err}");
        let err = with(&[("AUTH_TRUSTED_PROXIES", "10.0.0.0/8, nginx")]).unwrap_err();
        assert_eq!(err.to_string(), "AUTH_TRUSTED_PROXIES: cannot parse \"10.0.0.0/8, nginx\": \"nginx\" is not an IP address or CIDR block");
        assert_eq!(with(&[("AUTH_RATE_LIMIT_ENABLED", "maybe")]).unwrap_err().name, "AUTH_RATE_LIMIT_ENABLED");
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        assert_eq!(ip_subject(Some("203.0.113.7".parse().unwrap())), "ip:203.0.113.7");
        assert_eq!(ip_subject(Some("2001:db8:a:b:1:2:3:4".parse().unwrap())), "ip:2001:db8:a:b::/64");
        assert_eq!(ip_subject(Some("2001:db8:a:b:ffff::9".parse().unwrap())), "ip:2001:db8:a:b::/64");
    }
}
