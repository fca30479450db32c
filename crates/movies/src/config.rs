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
    /// The operations listener (`MOVIES_OPS_LISTEN`): the probes and `/metrics` on a
    /// port of their own, outside the connection cap; `/metrics` is then off `listen`.
    /// `None` (the default): both on `listen` (`platform::ops`).
    pub ops_listen: Option<SocketAddr>,
    pub database_url: SecretString,
    pub database_max_connections: u32,
    /// Client connections served at once (`MOVIES_MAX_CONNECTIONS`), within the
    /// open-file limit; more wait in the listen backlog.
    pub max_connections: platform::connections::ConnectionCap,
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
    /// How this service reaches Auth, with its introspection credentials. `None` when
    /// `MOVIES_AUTH_CLIENT_SECRET` is unset: the commands that never call Auth (migrate,
    /// load-demo, healthcheck) run without the secret; `serve` does not
    /// ([`Settings::auth_client`]).
    pub auth: Option<AuthClientConfig>,
    pub rate_limits: crate::limits::RateLimitSettings,
}

impl Settings {
    /// Reads the settings from the process environment, after raising the process's
    /// open-file limit, which bounds `MOVIES_MAX_CONNECTIONS`.
    pub fn from_env() -> Result<Self, ConfigError> {
        platform::connections::raise_open_files_limit();
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(&lookup);
        let auth = auth_client(&env)?;
        let database_max_connections = env.parse_positive("MOVIES_DATABASE_MAX_CONNECTIONS", 16)?;
        let listen = env.parse("MOVIES_LISTEN", "127.0.0.1:8001")?;
        let ops_listen = platform::ops::listen_setting(&env, "MOVIES_OPS_LISTEN", "MOVIES_LISTEN", listen)?;
        Ok(Self {
            listen,
            ops_listen,
            database_url: env.string("MOVIES_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/movies").into(),
            database_max_connections,
            max_connections: platform::connections::max_connections(&env, "MOVIES_MAX_CONNECTIONS", database_max_connections, ops_listen.is_some())?,
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

    /// The Auth client's settings, which `serve` needs: without the client secret Auth
    /// refuses every introspection, and every signed-in viewer would be served degraded.
    pub fn auth_client(&self) -> Result<&AuthClientConfig, ConfigError> {
        self.auth.as_ref().ok_or_else(|| ConfigError {
            name: CLIENT_SECRET.into(),
            reason: "must be set: the secret Auth lists for this client in AUTH_INTROSPECTION_CLIENTS".into(),
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
                "MOVIES_OPS_LISTEN",
                "MOVIES_DATABASE_URL",
                "MOVIES_DATABASE_MAX_CONNECTIONS",
                "MOVIES_MAX_CONNECTIONS",
                "MOVIES_REDIS_KEY_PREFIX",
                "MOVIES_CACHE_TTL_SECONDS",
                "MOVIES_CACHE_TIMEOUT_MS",
                "MOVIES_REQUEST_TIMEOUT_SECONDS",
                "MOVIES_SHUTDOWN_TIMEOUT_SECONDS",
                "MOVIES_AUTH_INTROSPECTION_TIMEOUT_MS",
                "MOVIES_AUTH_INTROSPECTION_CACHE_MS",
                "MOVIES_AUTH_BREAKER_FAILURES",
                "MOVIES_AUTH_MAX_CONCURRENT_INTROSPECTIONS",
                "MOVIES_AUTH_BREAKER_OPEN_MS",
                "MOVIES_AUTH_JWKS_REFRESH_SECONDS",
                "MOVIES_AUTH_JWKS_RETRY_MS",
                "MOVIES_AUTH_JWKS_TIMEOUT_MS",
                "MOVIES_AUTH_UNKNOWN_KID_REFETCH_MS",
                CLIENT_ID,
                CLIENT_SECRET,
            ]
            .into_iter()
            .chain(crate::limits::RateLimitSettings::VARIABLES)
            .chain(crate::playback::StreamSettings::VARIABLES)
            .collect::<Vec<_>>()
            .as_slice(),
        )
    }
}

const CLIENT_ID: &str = "MOVIES_AUTH_CLIENT_ID";
const CLIENT_SECRET: &str = "MOVIES_AUTH_CLIENT_SECRET";

/// How this service reaches Auth. Every value is checked, whatever the command; `None`
/// when the client secret is unset.
fn auth_client(env: &Env) -> Result<Option<AuthClientConfig>, ConfigError> {
    let url = auth_url(env)?;
    let (client_id, client_secret) = auth_client_credentials(env)?;
    let issuer = env.string("AUTH_JWT_ISSUER", "cinema-auth");
    let audience = env.string("AUTH_JWT_AUDIENCE", "cinema");
    let millis = |name, default| env.positive_at_most(name, default, A_DAY_MS).map(Duration::from_millis);
    let introspection_timeout = millis("MOVIES_AUTH_INTROSPECTION_TIMEOUT_MS", 100)?;
    let introspection_cache_ttl = introspection_cache_ttl(env)?;
    let breaker_failure_threshold = env.parse_positive("MOVIES_AUTH_BREAKER_FAILURES", 5)?;
    let breaker_open_for = millis("MOVIES_AUTH_BREAKER_OPEN_MS", 5000)?;
    let max_concurrent_introspections = max_concurrent_introspections(env)?;
    let jwks_refresh_interval = Duration::from_secs(env.positive_at_most("MOVIES_AUTH_JWKS_REFRESH_SECONDS", 300, A_DAY_MS / 1000)?);
    let jwks_retry_interval = millis("MOVIES_AUTH_JWKS_RETRY_MS", 2000)?;
    let jwks_timeout = millis("MOVIES_AUTH_JWKS_TIMEOUT_MS", 2000)?;
    let unknown_kid_refetch_interval = millis("MOVIES_AUTH_UNKNOWN_KID_REFETCH_MS", 5000)?;
    let Some(client_secret) = client_secret else { return Ok(None) };
    let mut auth = AuthClientConfig::new(url, client_id.as_str(), client_secret);
    auth.credential_settings = format!("{CLIENT_ID} and {CLIENT_SECRET}");
    auth.issuer = issuer;
    auth.audience = audience;
    auth.introspection_timeout = introspection_timeout;
    auth.introspection_cache_ttl = introspection_cache_ttl;
    auth.breaker_failure_threshold = breaker_failure_threshold;
    auth.breaker_open_for = breaker_open_for;
    auth.max_concurrent_introspections = max_concurrent_introspections;
    auth.jwks_refresh_interval = jwks_refresh_interval;
    auth.jwks_retry_interval = jwks_retry_interval;
    auth.jwks_timeout = jwks_timeout;
    auth.unknown_kid_refetch_interval = unknown_kid_refetch_interval;
    Ok(Some(auth))
}

/// The longest of the other `MOVIES_AUTH_*` durations, a day: past any use, and a
/// mistyped value stops the start rather than failing later.
const A_DAY_MS: u64 = 86_400_000;

/// The longest `MOVIES_AUTH_INTROSPECTION_CACHE_MS`: an introspection answer is reused
/// this long, so it bounds how late a sign-out is noticed, which docs/degradation.md
/// promises within 5 s.
const MAX_INTROSPECTION_CACHE_MS: u64 = 5000;

/// `MOVIES_AUTH_INTROSPECTION_CACHE_MS`, 2000 by default, at most 5000.
fn introspection_cache_ttl(env: &Env) -> Result<Duration, ConfigError> {
    let name = "MOVIES_AUTH_INTROSPECTION_CACHE_MS";
    let value = env.parse_positive(name, 2000)?;
    if value > MAX_INTROSPECTION_CACHE_MS {
        return Err(ConfigError {
            name: name.into(),
            reason: format!("must be at most {MAX_INTROSPECTION_CACHE_MS}: it bounds how late a sign-out is noticed"),
        });
    }
    Ok(Duration::from_millis(value))
}

/// `MOVIES_AUTH_MAX_CONCURRENT_INTROSPECTIONS`, 128 by default: each call in flight
/// holds a connection to Auth, so it stays within the files kept for outgoing HTTP.
fn max_concurrent_introspections(env: &Env) -> Result<usize, ConfigError> {
    let name = "MOVIES_AUTH_MAX_CONCURRENT_INTROSPECTIONS";
    let max = platform::connections::OUTGOING_HTTP_FILES;
    let value = env.parse_positive(name, 128)?;
    if value > max {
        return Err(ConfigError {
            name: name.into(),
            reason: format!("must be at most {max}: each call holds a connection, within the files kept for outgoing HTTP"),
        });
    }
    Ok(value)
}

/// This service's credentials for Auth's token introspection: the id (default
/// `movies`) and the secret, which has no default. Neither value is echoed.
fn auth_client_credentials(env: &Env) -> Result<(ClientId, Option<SecretString>), ConfigError> {
    let invalid = |name: &str, reason: &str| ConfigError { name: name.into(), reason: reason.into() };
    let id = ClientId::parse(env.string(CLIENT_ID, "movies").trim()).map_err(|reason| invalid(CLIENT_ID, reason))?;
    let secret = env
        .optional(CLIENT_SECRET)
        .map(SecretString::from)
        .map(|raw| parse_client_secret(secrecy::ExposeSecret::expose_secret(&raw).trim()).map_err(|reason| invalid(CLIENT_SECRET, reason)))
        .transpose()?;
    Ok((id, secret))
}

/// Auth's base URL. Checked here because a value reqwest cannot call (`auth:8000`, a
/// typo) would otherwise leave the service degraded for good, with every token check
/// failing. A URL with a user name or password is refused: reqwest would send it as an
/// `Authorization: Basic` header of its own, ahead of this service's client
/// credentials, and Auth would refuse every introspection. The value is never echoed.
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
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(format!(
            "must not carry a user name or password; Auth is called with {CLIENT_ID} and {CLIENT_SECRET}, expected e.g. http://auth:8000"
        )));
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

    /// A huge value made `serve` panic in the introspection cache (moka refuses a
    /// lifetime past 1000 years); now every duration has a bound, and a value past it
    /// stops the start with one line naming the variable.
    #[test]
    fn the_auth_client_durations_are_bounded() {
        let name = "MOVIES_AUTH_INTROSPECTION_CACHE_MS";
        assert_eq!(with(&[]).unwrap().auth_client().unwrap().introspection_cache_ttl, Duration::from_secs(2));
        assert_eq!(with(&[(name, "5000")]).unwrap().auth_client().unwrap().introspection_cache_ttl, Duration::from_secs(5));
        for bad in ["5001", "40000000000000", "0"] {
            let error = with(&[(name, bad)]).unwrap_err();
            assert_eq!(error.name, name, "{bad}");
        }
        for name in [
            "MOVIES_AUTH_INTROSPECTION_TIMEOUT_MS",
            "MOVIES_AUTH_BREAKER_OPEN_MS",
            "MOVIES_AUTH_JWKS_RETRY_MS",
            "MOVIES_AUTH_JWKS_TIMEOUT_MS",
            "MOVIES_AUTH_UNKNOWN_KID_REFETCH_MS",
            "MOVIES_AUTH_JWKS_REFRESH_SECONDS",
        ] {
            assert!(with(&[(name, "86400")]).is_ok(), "{name}");
            let error = with(&[(name, "40000000000000")]).unwrap_err().to_string();
            assert!(error.starts_with(&format!("{name}: must be at most")), "{error}");
        }
    }

    #[test]
    fn introspections_in_flight_are_128_by_default_and_at_most_200() {
        let name = "MOVIES_AUTH_MAX_CONCURRENT_INTROSPECTIONS";
        assert_eq!(with(&[]).unwrap().auth_client().unwrap().max_concurrent_introspections, 128);
        assert_eq!(with(&[(name, "200")]).unwrap().auth_client().unwrap().max_concurrent_introspections, 200);
        for bad in ["0", "201", "many"] {
            assert_eq!(with(&[(name, bad)]).unwrap_err().name, name, "{bad}");
        }
    }

    /// The cap's rules (default, lowering, bounds) are `platform::connections`'s, tested
    /// there; this is the wiring of the variable.
    #[test]
    fn the_connection_cap_is_read_from_its_variable() {
        assert_eq!(with(&[("MOVIES_MAX_CONNECTIONS", "200")]).unwrap().max_connections.max, 200);
        assert_eq!(with(&[("MOVIES_MAX_CONNECTIONS", "0")]).unwrap_err().name, "MOVIES_MAX_CONNECTIONS");
    }

    /// The rules are `platform::ops::listen_setting`'s, tested there; this is the wiring
    /// of the variable, against the API's own address.
    #[test]
    fn the_operations_listener_is_read_from_its_variable() {
        assert_eq!(with(&[]).unwrap().ops_listen, None);
        assert_eq!(with(&[("MOVIES_OPS_LISTEN", "0.0.0.0:9000")]).unwrap().ops_listen, Some("0.0.0.0:9000".parse().unwrap()));
        let err = with(&[("MOVIES_OPS_LISTEN", "nowhere")]).unwrap_err();
        assert_eq!(err.name, "MOVIES_OPS_LISTEN");
        assert!(err.to_string().starts_with("MOVIES_OPS_LISTEN: cannot parse \"nowhere\""), "{err}");
        let err = with(&[("MOVIES_OPS_LISTEN", "127.0.0.1:8001")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "MOVIES_OPS_LISTEN: must differ from MOVIES_LISTEN (127.0.0.1:8001): the operations listener needs a port of its own"
        );
    }

    #[test]
    fn the_auth_client_credentials_default_to_movies_and_serving_needs_a_secret() {
        let settings = with(&[]).unwrap();
        let auth = settings.auth_client().unwrap();
        assert_eq!(auth.client_id, "movies");
        assert_eq!(secrecy::ExposeSecret::expose_secret(&auth.client_secret), SECRET);
        assert_eq!(with(&[(CLIENT_ID, "movies-eu")]).unwrap().auth_client().unwrap().client_id, "movies-eu");
        assert_eq!(with(&[(CLIENT_ID, "Movies EU")]).unwrap_err().name, CLIENT_ID);
        // Unset (or blank): the settings read, for the commands that never call Auth;
        // serving is refused with one line naming the variable.
        for unset in [Settings::from_lookup(|_| None).unwrap(), with(&[(CLIENT_SECRET, "  ")]).unwrap()] {
            assert!(unset.auth.is_none());
            let missing = unset.auth_client().unwrap_err();
            assert_eq!(missing.name, CLIENT_SECRET);
            assert!(missing.to_string().starts_with("MOVIES_AUTH_CLIENT_SECRET: must be set"), "{missing}");
        }
        // A bad AUTH_URL is refused whether the secret is set or not.
        assert_eq!(Settings::from_lookup(|name| (name == "AUTH_URL").then(|| "auth:8000".into())).unwrap_err().name, "AUTH_URL");
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
        assert_eq!(with(&[]).unwrap().auth_client().unwrap().auth_url, "http://127.0.0.1:8000");
        assert_eq!(with(&[("AUTH_URL", "https://auth.internal:8443/")]).unwrap().auth_client().unwrap().auth_url, "https://auth.internal:8443");
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

    /// Userinfo would reach Auth as a second `Authorization` header, ahead of the
    /// client credentials: refused at start, with one line that echoes neither part.
    #[test]
    fn an_auth_url_with_a_user_or_password_is_refused() {
        for bad in ["http://admin:s3cret@auth:8000", "http://admin@auth:8000", "https://:s3cret@auth:8443/"] {
            let error = with(&[("AUTH_URL", bad)]).unwrap_err();
            assert_eq!(error.name, "AUTH_URL", "{bad}");
            let line = error.to_string();
            assert!(line.contains("user name or password") && !line.contains("s3cret") && !line.contains("admin") && !line.contains('\n'), "{line}");
        }
    }
}
