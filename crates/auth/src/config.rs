//! Typed settings of the Auth service, read once at start-up from the environment.
//!
//! Every variable has a documented default (see `.env.example`); a bad value stops
//! start-up with one line naming the variable and the reason.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

pub use platform::env::ConfigError;
use platform::env::Env;
use secrecy::SecretString;

/// Prefix of every variable this service owns; unknown ones are reported as likely typos.
const PREFIX: &str = "AUTH_";
/// Access tokens live at most a day: they cannot be recalled except through the denylist.
const MAX_ACCESS_TTL_SECONDS: u64 = 24 * 3600;
/// Refresh tokens live at most a year.
const MAX_REFRESH_TTL_SECONDS: u64 = 366 * 24 * 3600;

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// The operations listener (`AUTH_OPS_LISTEN`): the probes and `/metrics` on a port
    /// of their own, outside the connection cap; `/metrics` is then off `listen`.
    /// `None` (the default): both on `listen` (`platform::ops`).
    pub ops_listen: Option<SocketAddr>,
    pub database_url: SecretString,
    pub database_max_connections: u32,
    /// Client connections served at once (`AUTH_MAX_CONNECTIONS`), within the
    /// open-file limit; more wait in the listen backlog.
    pub max_connections: platform::connections::ConnectionCap,
    /// PostgreSQL cancels a statement of the service's pool that runs longer (waiting
    /// for a lock included); the request is answered 503 `timeout`. Migrations and
    /// partition upkeep are not bound by it.
    pub database_statement_timeout: Duration,
    pub redis_url: SecretString,
    /// Prefix of every Redis key, so several deployments (or tests) can share one Redis.
    pub redis_key_prefix: String,
    pub tokens: TokenSettings,
    /// Maximum number of Argon2 hashes computed at once; defaults to the number of cores.
    pub password_hash_concurrency: usize,
    pub request_timeout: Duration,
    /// On SIGTERM/SIGINT, how long the requests in flight may take to finish.
    pub shutdown_timeout: Duration,
    /// Refuse requests without `X-Request-Id` (deployments behind nginx).
    pub require_request_id: bool,
    pub body_limit_bytes: usize,
    /// The services allowed to introspect tokens, and their secrets' digests
    /// (`AUTH_INTROSPECTION_CLIENTS`; docs/auth.md, "Introspection").
    pub introspection_clients: crate::introspection_clients::IntrospectionClients,
    /// Request rate limits and the trusted proxies (docs/rate-limiting.md).
    pub rate_limits: crate::limits::RateLimitSettings,
    /// Social sign-in: providers, public address, front-end redirects.
    pub oauth: crate::oauth::OAuthSettings,
    /// Login history retention and partition upkeep (docs/partitioning.md).
    pub partitions: crate::partitions::PartitionSettings,
}

#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    /// How long a session lasts unused: each refresh renews it by this much.
    pub refresh_ttl: Duration,
    /// How long a session lasts however much it is used: no refresh renews it past its
    /// sign-in plus this, and the viewer signs in again (ASVS V3.3.2).
    pub session_lifetime: Duration,
    /// PEM (PKCS#8) Ed25519 private key that signs access tokens. When unset, a
    /// development key is generated once into `dev_key_file` and reused.
    pub signing_key_file: Option<PathBuf>,
    pub dev_key_file: PathBuf,
    /// Public keys (PEM, SPKI) still published in the JWKS and accepted, for rotation.
    pub extra_public_key_files: Vec<PathBuf>,
}

impl Settings {
    pub fn http(&self) -> platform::http::HttpSettings {
        platform::http::HttpSettings { request_timeout: self.request_timeout, require_request_id: self.require_request_id }
    }

    /// Reads the settings from the process environment, after raising the process's
    /// open-file limit, which bounds `AUTH_MAX_CONNECTIONS`.
    pub fn from_env() -> Result<Self, ConfigError> {
        platform::connections::raise_open_files_limit();
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup`, which maps a variable name to its value.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(&lookup);
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let database_max_connections = env.parse_positive("AUTH_DATABASE_MAX_CONNECTIONS", 16)?;
        let listen = env.parse("AUTH_LISTEN", "127.0.0.1:8000")?;
        let ops_listen = platform::ops::listen_setting(&env, "AUTH_OPS_LISTEN", "AUTH_LISTEN", listen)?;
        Ok(Self {
            listen,
            ops_listen,
            database_url: env.string("AUTH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/auth").into(),
            database_max_connections,
            max_connections: platform::connections::max_connections(&env, "AUTH_MAX_CONNECTIONS", database_max_connections, ops_listen.is_some())?,
            // PostgreSQL's statement_timeout is at most 2^31 - 1 ms.
            database_statement_timeout: Duration::from_millis(env.positive_at_most("AUTH_DATABASE_STATEMENT_TIMEOUT_MS", 5000, i32::MAX as u64)?),
            redis_url: env.string("REDIS_URL", "redis://127.0.0.1:6379").into(),
            redis_key_prefix: env.string("AUTH_REDIS_KEY_PREFIX", "auth"),
            tokens: TokenSettings {
                issuer: env.string("AUTH_JWT_ISSUER", "cinema-auth"),
                audience: env.string("AUTH_JWT_AUDIENCE", "cinema"),
                // Bounded: both are added to the clock, and larger values overflowed it.
                access_ttl: Duration::from_secs(env.positive_at_most("AUTH_ACCESS_TOKEN_TTL_SECONDS", 15 * 60, MAX_ACCESS_TTL_SECONDS)?),
                refresh_ttl: Duration::from_secs(env.positive_at_most("AUTH_REFRESH_TOKEN_TTL_SECONDS", 30 * 24 * 3600, MAX_REFRESH_TTL_SECONDS)?),
                session_lifetime: Duration::from_secs(env.positive_at_most(
                    "AUTH_SESSION_MAX_LIFETIME_SECONDS",
                    30 * 24 * 3600,
                    MAX_REFRESH_TTL_SECONDS,
                )?),
                signing_key_file: env.optional("AUTH_JWT_PRIVATE_KEY_FILE").map(PathBuf::from),
                dev_key_file: PathBuf::from(env.string("AUTH_JWT_DEV_KEY_FILE", ".dev-keys/auth-ed25519.pem")),
                extra_public_key_files: env
                    .optional("AUTH_JWT_EXTRA_PUBLIC_KEY_FILES")
                    .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(PathBuf::from).collect())
                    .unwrap_or_default(),
            },
            // Each hashing thread maps its own 19 MiB: 256 of them are 4.75 GiB.
            password_hash_concurrency: env.positive_at_most("AUTH_PASSWORD_HASH_CONCURRENCY", cores as u64, 256)? as usize,
            request_timeout: env.seconds("AUTH_REQUEST_TIMEOUT_SECONDS", 10)?,
            shutdown_timeout: env.seconds("AUTH_SHUTDOWN_TIMEOUT_SECONDS", 15)?,
            require_request_id: env.flag("REQUIRE_REQUEST_ID", false)?,
            body_limit_bytes: env.parse_positive("AUTH_BODY_LIMIT_BYTES", 16 * 1024)?,
            introspection_clients: crate::introspection_clients::IntrospectionClients::from_env(&env)?,
            rate_limits: crate::limits::RateLimitSettings::from_env(&env)?,
            oauth: crate::oauth::OAuthSettings::from_lookup(&lookup)?,
            partitions: crate::partitions::PartitionSettings::from_env(&env)?,
        })
    }

    /// Variables with our prefix that no setting reads: usually typos.
    pub fn unknown_variables() -> Vec<String> {
        const KNOWN: &[&str] = &[
            "AUTH_LISTEN",
            "AUTH_OPS_LISTEN",
            "AUTH_DATABASE_URL",
            "AUTH_DATABASE_MAX_CONNECTIONS",
            "AUTH_MAX_CONNECTIONS",
            "AUTH_DATABASE_STATEMENT_TIMEOUT_MS",
            "AUTH_REDIS_KEY_PREFIX",
            "AUTH_JWT_ISSUER",
            "AUTH_JWT_AUDIENCE",
            "AUTH_ACCESS_TOKEN_TTL_SECONDS",
            "AUTH_REFRESH_TOKEN_TTL_SECONDS",
            "AUTH_SESSION_MAX_LIFETIME_SECONDS",
            "AUTH_JWT_PRIVATE_KEY_FILE",
            "AUTH_JWT_DEV_KEY_FILE",
            "AUTH_JWT_EXTRA_PUBLIC_KEY_FILES",
            "AUTH_PASSWORD_HASH_CONCURRENCY",
            "AUTH_REQUEST_TIMEOUT_SECONDS",
            "AUTH_SHUTDOWN_TIMEOUT_SECONDS",
            "AUTH_BODY_LIMIT_BYTES",
            crate::introspection_clients::VARIABLE,
            "AUTH_URL",
            "AUTH_TRUSTED_PROXIES",
            "AUTH_RATE_LIMIT_ENABLED",
            "AUTH_RATE_LIMIT_REDIS_CLUSTER_NODES",
            "AUTH_RATE_LIMIT_REDIS_URL",
            "AUTH_RATE_LIMIT_REDIS_TIMEOUT_MS",
            "AUTH_RATE_LIMIT_REDIS_PROBE_INTERVAL_MS",
            "AUTH_PUBLIC_URL",
            "AUTH_LOGIN_HISTORY_RETENTION_MONTHS",
            "AUTH_PARTITION_MAINTENANCE_INTERVAL_SECONDS",
            "AUTH_ENDED_SESSION_RETENTION_DAYS",
        ];
        let known: Vec<&str> = KNOWN.iter().copied().chain(crate::limits::POLICY_VARIABLES).collect();
        let mut unknown = platform::env::unknown_variables(PREFIX, &known);
        unknown.extend(crate::oauth::config::unknown_variables(std::env::vars().map(|(k, _)| k)));
        unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn with(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let s = with(&[]).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8000");
        assert_eq!(s.database_url.expose_secret(), "postgres://postgres@127.0.0.1:5432/auth");
        assert_eq!(s.tokens.access_ttl, Duration::from_secs(900));
        assert_eq!(s.tokens.refresh_ttl, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(s.tokens.session_lifetime, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(s.database_statement_timeout, Duration::from_secs(5));
    }

    #[test]
    fn a_bad_value_names_the_variable() {
        let err = with(&[("AUTH_LISTEN", "not-an-address")]).unwrap_err();
        assert_eq!(err.name, "AUTH_LISTEN");
        assert!(err.to_string().starts_with("AUTH_LISTEN: cannot parse \"not-an-address\""), "{err}");
        let err = with(&[("AUTH_ACCESS_TOKEN_TTL_SECONDS", "0")]).unwrap_err();
        assert_eq!(err.to_string(), "AUTH_ACCESS_TOKEN_TTL_SECONDS: must be greater than zero");
    }

    /// Values the clock or PostgreSQL cannot take stop start-up, instead of failing
    /// every sign-in (a TTL added to now overflowed) or the first connection.
    #[test]
    fn lifetimes_and_timeouts_have_upper_bounds() {
        for (name, too_big, max) in [
            ("AUTH_ACCESS_TOKEN_TTL_SECONDS", "18446744073709551615", "86400"),
            ("AUTH_REFRESH_TOKEN_TTL_SECONDS", "10000000000000", "31622400"),
            ("AUTH_DATABASE_STATEMENT_TIMEOUT_MS", "3000000000", "2147483647"),
            ("OAUTH_STATE_TTL_SECONDS", "86401", "86400"),
            // Each hasher maps 19 MiB: a million failed at start with "Cannot allocate memory".
            ("AUTH_PASSWORD_HASH_CONCURRENCY", "1000000", "256"),
            ("AUTH_ENDED_SESSION_RETENTION_DAYS", "3661", "3660"),
        ] {
            let err = with(&[(name, too_big)]).unwrap_err();
            assert_eq!(err.to_string(), format!("{name}: must be at most {max}"));
            assert!(with(&[(name, max)]).is_ok(), "{name}={max}");
        }
    }

    /// The cap's rules (default, lowering, bounds) are `platform::connections`'s, tested
    /// there; this is the wiring of the variable.
    #[test]
    fn the_connection_cap_is_read_from_its_variable() {
        assert_eq!(with(&[("AUTH_MAX_CONNECTIONS", "200")]).unwrap().max_connections.max, 200);
        assert_eq!(with(&[("AUTH_MAX_CONNECTIONS", "0")]).unwrap_err().name, "AUTH_MAX_CONNECTIONS");
    }

    /// The rules are `platform::ops::listen_setting`'s, tested there; this is the wiring
    /// of the variable, against the API's own address.
    #[test]
    fn the_operations_listener_is_read_from_its_variable() {
        assert_eq!(with(&[]).unwrap().ops_listen, None);
        assert_eq!(with(&[("AUTH_OPS_LISTEN", "0.0.0.0:9000")]).unwrap().ops_listen, Some("0.0.0.0:9000".parse().unwrap()));
        let err = with(&[("AUTH_OPS_LISTEN", "9000")]).unwrap_err();
        assert_eq!(err.name, "AUTH_OPS_LISTEN");
        assert!(err.to_string().starts_with("AUTH_OPS_LISTEN: cannot parse \"9000\""), "{err}");
        let err = with(&[("AUTH_LISTEN", "0.0.0.0:8000"), ("AUTH_OPS_LISTEN", "127.0.0.1:8000")]).unwrap_err();
        assert_eq!(err.to_string(), "AUTH_OPS_LISTEN: must differ from AUTH_LISTEN (0.0.0.0:8000): the operations listener needs a port of its own");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let s = with(&[
            ("AUTH_DATABASE_URL", "postgres://u:hunter2@db/auth"),
            ("REDIS_URL", "redis://:pw-s3cret@r"),
            ("AUTH_INTROSPECTION_CLIENTS", "movies:introspection-s3cret-0123456789abcdef"),
        ])
        .unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2") && !debug.contains("pw-s3cret") && !debug.contains("introspection-s3cret"), "{debug}");
        assert!(debug.contains(r#"introspection_clients: ["movies"]"#), "{debug}");
    }
}
