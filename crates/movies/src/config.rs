//! Typed settings of the movies API, read once at start-up from the environment.

use std::{net::SocketAddr, time::Duration};

use auth_client::AuthClientConfig;
use platform::env::{ConfigError, Env};
use secrecy::SecretString;

const PREFIX: &str = "MOVIES_";

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database_url: SecretString,
    pub database_max_connections: u32,
    pub redis_url: SecretString,
    pub redis_key_prefix: String,
    /// Lifetime of cached answers that are the same for everyone; zero disables the cache.
    pub cache_ttl: Duration,
    /// Longest wait for Redis before answering from the database.
    pub cache_timeout: Duration,
    /// Signed playback URLs.
    pub stream: crate::playback::StreamSettings,
    pub request_timeout: Duration,
    /// On SIGTERM/SIGINT, how long the requests in flight may take to finish.
    pub shutdown_timeout: Duration,
    /// Refuse requests without `X-Request-Id` (deployments behind nginx).
    pub require_request_id: bool,
    pub auth: AuthClientConfig,
    pub rate_limits: crate::limits::RateLimitSettings,
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(&lookup);
        let mut auth = AuthClientConfig::new(auth_url(&env)?);
        auth.issuer = env.string("AUTH_JWT_ISSUER", "cinema-auth");
        auth.audience = env.string("AUTH_JWT_AUDIENCE", "cinema");
        auth.introspection_timeout = env.millis("MOVIES_AUTH_INTROSPECTION_TIMEOUT_MS", 100)?;
        auth.introspection_cache_ttl = env.millis("MOVIES_AUTH_INTROSPECTION_CACHE_MS", 2000)?;
        auth.breaker_failure_threshold = env.parse_positive("MOVIES_AUTH_BREAKER_FAILURES", 5)?;
        auth.breaker_open_for = env.millis("MOVIES_AUTH_BREAKER_OPEN_MS", 5000)?;
        auth.jwks_refresh_interval = env.seconds("MOVIES_AUTH_JWKS_REFRESH_SECONDS", 300)?;
        auth.jwks_retry_interval = env.millis("MOVIES_AUTH_JWKS_RETRY_MS", 2000)?;
        Ok(Self {
            listen: env.parse("MOVIES_LISTEN", "127.0.0.1:8001")?,
            database_url: env.string("MOVIES_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/movies").into(),
            database_max_connections: env.parse_positive("MOVIES_DATABASE_MAX_CONNECTIONS", 16)?,
            redis_url: env.string("REDIS_URL", "redis://127.0.0.1:6379").into(),
            redis_key_prefix: env.string("MOVIES_REDIS_KEY_PREFIX", "movies"),
            cache_ttl: Duration::from_secs(cache_ttl_seconds(&env)?),
            cache_timeout: env.millis("MOVIES_CACHE_TIMEOUT_MS", 50)?,
            stream: crate::playback::StreamSettings::from_env(&env)?,
            request_timeout: env.seconds("MOVIES_REQUEST_TIMEOUT_SECONDS", 10)?,
            shutdown_timeout: env.seconds("MOVIES_SHUTDOWN_TIMEOUT_SECONDS", 15)?,
            require_request_id: env.flag("REQUIRE_REQUEST_ID", false)?,
            auth,
            rate_limits: crate::limits::RateLimitSettings::from_env(&env)?,
        })
    }

    pub fn http(&self) -> platform::http::HttpSettings {
        platform::http::HttpSettings { request_timeout: self.request_timeout, require_request_id: self.require_request_id }
    }

    pub fn unknown_variables() -> Vec<String> {
        platform::env::unknown_variables(
            PREFIX,
            [
                "MOVIES_LISTEN",
                "MOVIES_DATABASE_URL",
                "MOVIES_DATABASE_MAX_CONNECTIONS",
                "MOVIES_REDIS_KEY_PREFIX",
                "MOVIES_CACHE_TTL_SECONDS",
                "MOVIES_CACHE_TIMEOUT_MS",
                "MOVIES_REQUEST_TIMEOUT_SECONDS",
                "MOVIES_SHUTDOWN_TIMEOUT_SECONDS",
                "MOVIES_AUTH_INTROSPECTION_TIMEOUT_MS",
                "MOVIES_AUTH_INTROSPECTION_CACHE_MS",
                "MOVIES_AUTH_BREAKER_FAILURES",
                "MOVIES_AUTH_BREAKER_OPEN_MS",
                "MOVIES_AUTH_JWKS_REFRESH_SECONDS",
                "MOVIES_AUTH_JWKS_RETRY_MS",
            ]
            .into_iter()
            .chain(crate::limits::RateLimitSettings::VARIABLES)
            .chain(crate::playback::StreamSettings::VARIABLES)
            .collect::<Vec<_>>()
            .as_slice(),
        )
    }
}

/// Auth's base URL. Checked here because a value reqwest cannot call (`auth:8000`, a
/// typo) would otherwise leave the service degraded for good, with every token check
/// failing. The value is never echoed: it may carry a password.
fn auth_url(env: &Env) -> Result<String, ConfigError> {
    let raw = env.string("AUTH_URL", "http://127.0.0.1:8000").trim().to_owned();
    let invalid = |reason: String| ConfigError { name: "AUTH_URL".into(), reason };
    let url = url::Url::parse(&raw).map_err(|e| invalid(format!("not an absolute URL ({e}); expected e.g. http://auth:8000")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!("scheme {:?} is not supported; use http or https", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("the URL has no host".into()));
    }
    Ok(raw)
}

/// A year: Redis refuses an expiry past its limits, and the cache ignores a failed write
/// (it is only a cache), so a huge value silently turned caching off.
const MAX_CACHE_TTL_SECONDS: u64 = 31_536_000;

/// `MOVIES_CACHE_TTL_SECONDS`: 0 turns the cache off; at most a year.
fn cache_ttl_seconds(env: &Env) -> Result<u64, ConfigError> {
    let name = "MOVIES_CACHE_TTL_SECONDS";
    let seconds: u64 = env.parse(name, "60")?;
    if seconds > MAX_CACHE_TTL_SECONDS {
        return Err(ConfigError { name: name.into(), reason: format!("must be at most {MAX_CACHE_TTL_SECONDS} (a year); 0 turns the cache off") });
    }
    Ok(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_ttl_is_at_most_a_year() {
        assert_eq!(with(&[("MOVIES_CACHE_TTL_SECONDS", "0")]).unwrap().cache_ttl, Duration::ZERO);
        assert_eq!(with(&[("MOVIES_CACHE_TTL_SECONDS", "31536000")]).unwrap().cache_ttl, Duration::from_secs(31_536_000));
        let error = with(&[("MOVIES_CACHE_TTL_SECONDS", "100000000000000000")]).unwrap_err().to_string();
        assert!(error.starts_with("MOVIES_CACHE_TTL_SECONDS: must be at most 31536000"), "{error}");
    }

    fn with(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn auth_url_must_be_an_http_url_with_a_host() {
        assert_eq!(with(&[]).unwrap().auth.auth_url, "http://127.0.0.1:8000");
        assert_eq!(with(&[("AUTH_URL", "https://auth.internal:8443/")]).unwrap().auth.auth_url, "https://auth.internal:8443");
        for bad in ["auth:8000", "not a url", "ftp://x", "http://", "file:///etc/passwd", "127.0.0.1:8000"] {
            let error = with(&[("AUTH_URL", bad)]).unwrap_err().to_string();
            assert!(error.starts_with("AUTH_URL: "), "{bad:?}: {error}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let settings = with(&[
            ("MOVIES_STREAM_SIGNING_SECRET", "stream-secret-0123456789abcdef0123"),
            ("MOVIES_DATABASE_URL", "postgres://u:hunter2@db/movies"),
            ("REDIS_URL", "redis://:pw-s3cret@r"),
        ])
        .unwrap();
        let debug = format!("{settings:?}");
        assert!(!debug.contains("stream-secret") && !debug.contains("hunter2") && !debug.contains("pw-s3cret"), "{debug}");
    }

    #[test]
    fn a_rejected_auth_url_does_not_echo_its_password() {
        let error = with(&[("AUTH_URL", "ftp://admin:s3cret@auth:8000")]).unwrap_err().to_string();
        assert!(error.starts_with("AUTH_URL: ") && !error.contains("s3cret") && !error.contains("admin"), "{error}");
    }
}
