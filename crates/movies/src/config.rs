//! Typed settings of the movies API, read once at start-up from the environment.

use std::{net::SocketAddr, time::Duration};

use auth_client::AuthClientConfig;
use platform::{
    credentials::{ClientId, parse_client_secret},
    env::{ConfigError, Env},
};
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
        let (client_id, client_secret) = auth_client_credentials(&env)?;
        let mut auth = AuthClientConfig::new(auth_url(&env)?, client_id.as_str(), client_secret);
        auth.credential_settings = format!("{CLIENT_ID} and {CLIENT_SECRET}");
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
                CLIENT_ID,
                CLIENT_SECRET,
            ]
            .into_iter()
            .chain(crate::limits::RateLimitSettings::VARIABLES)
            .collect::<Vec<_>>()
            .as_slice(),
        )
    }
}

const CLIENT_ID: &str = "MOVIES_AUTH_CLIENT_ID";
const CLIENT_SECRET: &str = "MOVIES_AUTH_CLIENT_SECRET";

/// This service's credentials for Auth's token introspection. The secret has no
/// default: Auth refuses introspection without it, and a service that started without
/// it would serve every signed-in viewer degraded. Neither value is echoed.
fn auth_client_credentials(env: &Env) -> Result<(ClientId, SecretString), ConfigError> {
    let invalid = |name: &str, reason: &str| ConfigError { name: name.into(), reason: reason.into() };
    let id = ClientId::parse(env.string(CLIENT_ID, "movies").trim()).map_err(|reason| invalid(CLIENT_ID, reason))?;
    let Some(secret) = env.optional(CLIENT_SECRET).map(SecretString::from) else {
        return Err(invalid(CLIENT_SECRET, "must be set: the secret Auth lists for this client in AUTH_INTROSPECTION_CLIENTS"));
    };
    let secret = parse_client_secret(secrecy::ExposeSecret::expose_secret(&secret).trim()).map_err(|reason| invalid(CLIENT_SECRET, reason))?;
    Ok((id, secret))
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

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    /// With a valid client secret unless `vars` sets one (the first entry of a name wins).
    fn with(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let vars: Vec<(&str, &str)> = vars.iter().copied().chain([(CLIENT_SECRET, SECRET)]).collect();
        Settings::from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn the_auth_client_credentials_default_to_movies_and_need_a_secret() {
        let settings = with(&[]).unwrap();
        assert_eq!(settings.auth.client_id, "movies");
        assert_eq!(secrecy::ExposeSecret::expose_secret(&settings.auth.client_secret), SECRET);
        assert_eq!(with(&[(CLIENT_ID, "movies-eu")]).unwrap().auth.client_id, "movies-eu");
        let missing = Settings::from_lookup(|_| None).unwrap_err();
        assert_eq!(missing.name, CLIENT_SECRET);
        assert!(missing.to_string().starts_with("MOVIES_AUTH_CLIENT_SECRET: must be set"), "{missing}");
        assert_eq!(with(&[(CLIENT_SECRET, "  ")]).unwrap_err().name, CLIENT_SECRET);
        assert_eq!(with(&[(CLIENT_ID, "Movies EU")]).unwrap_err().name, CLIENT_ID);
    }

    /// A bad secret stops start-up with one line naming the variable, never its value;
    /// Debug output hides the good one.
    #[test]
    fn the_auth_client_secret_is_never_shown() {
        for bad in ["short-hunter2", "hunter2-hunter2-hunter2-hunter2-hunter2!", "change-me-hunter2-hunter2-hunter2-hunter2"] {
            let error = with(&[(CLIENT_SECRET, bad)]).unwrap_err();
            assert_eq!(error.name, CLIENT_SECRET);
            let line = error.to_string();
            assert!(line.starts_with("MOVIES_AUTH_CLIENT_SECRET: ") && !line.contains("hunter2") && !line.contains('\n'), "{line}");
        }
        let debug = format!("{:?}", with(&[(CLIENT_SECRET, "hunter2-hunter2-hunter2-hunter2-hunter2")]).unwrap());
        assert!(!debug.contains("hunter2"), "{debug}");
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
    fn a_rejected_auth_url_does_not_echo_its_password() {
        let error = with(&[("AUTH_URL", "ftp://admin:s3cret@auth:8000")]).unwrap_err().to_string();
        assert!(error.starts_with("AUTH_URL: ") && !error.contains("s3cret") && !error.contains("admin"), "{error}");
    }
}
