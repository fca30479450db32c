use std::time::Duration;

use secrecy::SecretString;

/// Settings of the Auth client. Defaults suit a service next to Auth on the same network.
/// `Debug` shows no secret.
#[derive(Debug, Clone)]
pub struct AuthClientConfig {
    /// Base URL of Auth, for example `http://127.0.0.1:8000`.
    pub auth_url: String,
    /// This service's id among Auth's introspection clients (`AUTH_INTROSPECTION_CLIENTS`).
    pub client_id: String,
    /// Its secret, sent with the id as HTTP Basic credentials on every introspection.
    pub client_secret: SecretString,
    /// The settings that hold `client_id` and `client_secret`, named in the error
    /// logged when Auth refuses them, for example
    /// `MOVIES_AUTH_CLIENT_ID and MOVIES_AUTH_CLIENT_SECRET`.
    pub credential_settings: String,
    /// Expected `iss` and `aud` of access tokens.
    pub issuer: String,
    pub audience: String,
    /// Longest wait for one introspection answer.
    pub introspection_timeout: Duration,
    /// How long an introspection answer is reused. Bounds how late a logout is noticed.
    pub introspection_cache_ttl: Duration,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_failure_threshold: u32,
    /// How long the breaker stays open before one probe request is let through.
    pub breaker_open_for: Duration,
    /// Introspection calls in flight at most (a bulkhead), so a burst of new tokens never
    /// opens more connections to Auth than this. A call waits for a place up to the
    /// introspection timeout; past it its token goes unconfirmed (served on its
    /// signature, degraded). Requests with one token share one call.
    pub max_concurrent_introspections: usize,
    /// How often the JWKS is refetched while keys are known.
    pub jwks_refresh_interval: Duration,
    /// How often the JWKS fetch is retried while no key is known (Auth down at start).
    pub jwks_retry_interval: Duration,
    /// Minimum time between refetches caused by an unknown `kid`.
    pub unknown_kid_refetch_interval: Duration,
    /// Longest wait for the JWKS.
    pub jwks_timeout: Duration,
}

impl AuthClientConfig {
    pub fn new(auth_url: impl Into<String>, client_id: impl Into<String>, client_secret: SecretString) -> Self {
        Self {
            auth_url: auth_url.into().trim_end_matches('/').to_owned(),
            client_id: client_id.into(),
            client_secret,
            credential_settings: "the client id and secret of this service's AuthClientConfig".into(),
            issuer: "cinema-auth".into(),
            audience: "cinema".into(),
            introspection_timeout: Duration::from_millis(100),
            introspection_cache_ttl: Duration::from_secs(2),
            breaker_failure_threshold: 5,
            breaker_open_for: Duration::from_secs(5),
            max_concurrent_introspections: 128,
            jwks_refresh_interval: Duration::from_secs(300),
            jwks_retry_interval: Duration::from_secs(2),
            unknown_kid_refetch_interval: Duration::from_secs(5),
            jwks_timeout: Duration::from_secs(2),
        }
    }
}

/// A setting [`AuthClient::new`](crate::AuthClient::new) cannot work with: which
/// field, and why (never its value, which may carry a password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfig {
    pub field: &'static str,
    pub reason: String,
}

impl std::fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for InvalidConfig {}

impl AuthClientConfig {
    /// What [`AuthClient::new`](crate::AuthClient::new) refuses.
    pub(crate) fn check(&self) -> Result<(), InvalidConfig> {
        let invalid = |field, reason: &str| Err(InvalidConfig { field, reason: reason.into() });
        let Ok(url) = reqwest::Url::parse(&self.auth_url) else { return invalid("auth_url", "not an absolute URL") };
        // reqwest would send them as an `Authorization: Basic` header of its own, ahead
        // of the client credentials, and Auth would refuse every introspection.
        if !url.username().is_empty() || url.password().is_some() {
            return invalid("auth_url", "must not carry a user name or password (the client credentials are sent instead)");
        }
        // The introspection cache refuses (panics on) a lifetime past 1000 years, and
        // no duration here is of use past a year.
        for (field, value) in [
            ("introspection_timeout", self.introspection_timeout),
            ("introspection_cache_ttl", self.introspection_cache_ttl),
            ("breaker_open_for", self.breaker_open_for),
            ("jwks_refresh_interval", self.jwks_refresh_interval),
            ("jwks_retry_interval", self.jwks_retry_interval),
            ("unknown_kid_refetch_interval", self.unknown_kid_refetch_interval),
            ("jwks_timeout", self.jwks_timeout),
        ] {
            if value > MAX_DURATION {
                return invalid(field, "must be at most a year");
            }
        }
        Ok(())
    }
}

/// The longest duration [`AuthClientConfig::check`] accepts: a year.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_secret_stays_out_of_debug_output() {
        let config = AuthClientConfig::new("http://auth:8000", "movies", "s3cret-s3cret-s3cret-s3cret-s3cret".into());
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains(r#"client_id: "movies""#), "{debug}");
    }

    #[test]
    fn a_url_with_a_user_or_password_is_refused_and_never_shown_with_them() {
        for bad in ["http://admin:s3cret@auth:8000", "http://admin@auth:8000", "http://:s3cret@auth:8000"] {
            let error = AuthClientConfig::new(bad, "movies", "x".into()).check().unwrap_err();
            assert_eq!(error.field, "auth_url");
            assert!(!error.to_string().contains("s3cret") && !error.to_string().contains("admin"), "{error}");
        }
        assert_eq!(AuthClientConfig::new("http://auth:8000", "movies", "x".into()).check(), Ok(()));
    }

    /// The introspection cache panicked on a lifetime past 1000 years: such a setting
    /// is an error from `AuthClient::new`, not a panic.
    #[test]
    fn a_duration_past_a_year_is_an_error_not_a_panic() {
        let mut config = AuthClientConfig::new("http://auth:8000", "movies", "x".into());
        config.introspection_cache_ttl = Duration::from_millis(40_000_000_000_000);
        let error = crate::AuthClient::new(config.clone()).err().expect("refused");
        assert_eq!(error.field, "introspection_cache_ttl");
        config.introspection_cache_ttl = MAX_DURATION;
        assert!(crate::AuthClient::new(config).is_ok());
    }
}
