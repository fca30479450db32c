//! The HTTP client for provider calls: no redirects, bounded time and body, TLS through
//! rustls with ring and the Mozilla root store; and reading providers' JSON tolerantly.

use std::{sync::Arc, time::Duration};

use reqwest::{RequestBuilder, StatusCode, redirect::Policy};
use serde_json::Value;

use super::provider_error;
use crate::error::{ApiError, Result};

/// Provider answers are small; anything larger is refused rather than buffered.
const MAX_BODY_BYTES: usize = 256 * 1024;

pub struct ProviderHttp {
    client: reqwest::Client,
}

impl ProviderHttp {
    pub fn new(timeout: Duration) -> anyhow::Result<Self> {
        // ring is the crypto provider sqlx already brings in; naming it here (instead of
        // relying on a process default) keeps this working whichever providers the
        // workspace compiles into rustls.
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() })
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let client = reqwest::Client::builder()
            // A token endpoint that redirects is misconfigured or hostile; never follow it
            // with a code or a secret in the body.
            .redirect(Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .user_agent(concat!("cinema-auth/", env!("CARGO_PKG_VERSION")))
            .tls_backend_preconfigured(tls)
            .build()?;
        Ok(Self { client })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends a request and reads a JSON answer of any status.
    pub async fn json(&self, request: RequestBuilder, what: &'static str) -> Result<Reply> {
        let mut response = request.send().await.map_err(|e| transport_error(e, what))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| transport_error(e, what))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(provider_error(format!("{what}: answer larger than {MAX_BODY_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        let body = serde_json::from_slice(&body).map_err(|_| provider_error(format!("{what}: answered {status} with a body that is not JSON")))?;
        Ok(Reply { status, body, what })
    }
}

/// A provider's JSON answer.
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    what: &'static str,
}

impl Reply {
    /// The body of a successful answer. An `error` member is a failure whatever the
    /// status: VK ID reports some errors with 200.
    pub fn success(self) -> Result<Value> {
        if let Some(error) = error_of(&self.body) {
            return Err(provider_error(format!("{}: {} answered error {error}", self.what, self.status)));
        }
        if !self.status.is_success() {
            return Err(provider_error(format!("{}: answered {}", self.what, self.status)));
        }
        Ok(self.body)
    }
}

fn transport_error(e: reqwest::Error, what: &'static str) -> ApiError {
    if e.is_timeout() {
        return ApiError::GatewayTimeout;
    }
    // Without the URL: Mail.ru's user-info address carries the access token.
    provider_error(format!("{what}: {}", e.without_url()))
}

/// The error a provider reported: OAuth's `{"error": "...", "error_description": ...}`,
/// or the VK API's `{"error": {"error_code": ..., "error_msg": ...}}`.
fn error_of(body: &Value) -> Option<String> {
    let error = body.get("error")?;
    let text = match error {
        Value::Null => return None,
        Value::Object(inner) => format!(
            "{} {}",
            inner.get("error_code").map(Value::to_string).unwrap_or_default(),
            inner.get("error_msg").and_then(Value::as_str).unwrap_or_default()
        ),
        Value::String(code) => {
            format!("{code} {}", body.get("error_description").and_then(Value::as_str).unwrap_or_default())
        }
        other => other.to_string(),
    };
    Some(text.trim().chars().filter(|c| !c.is_control()).take(200).collect())
}

/// A member that providers send as a string or a number (ids), as a string.
pub fn string(body: &Value, key: &str) -> Option<String> {
    match body.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A string member, when present and not empty.
pub fn str<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// A subject must be short and printable: it is a primary-key column.
pub fn subject(raw: Option<String>, what: &str) -> Result<String> {
    match raw {
        Some(s) if s.len() <= 255 && !s.chars().any(char::is_control) => Ok(s),
        Some(_) => Err(provider_error(format!("{what}: the user id is not a short printable string"))),
        None => Err(provider_error(format!("{what}: no user id in the answer"))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn errors_are_found_in_both_shapes() {
        assert_eq!(error_of(&json!({"error": "invalid_grant", "error_description": "Code expired"})).as_deref(), Some("invalid_grant Code expired"));
        assert_eq!(
            error_of(&json!({"error": {"error_code": 5, "error_msg": "User authorization failed"}})).as_deref(),
            Some("5 User authorization failed")
        );
        assert_eq!(error_of(&json!({"error": null, "access_token": "x"})), None);
        assert_eq!(error_of(&json!({"access_token": "x"})), None);
    }

    #[test]
    fn ids_are_read_from_strings_and_numbers() {
        let body = json!({"a": "123", "b": 456, "c": "", "d": true});
        assert_eq!(string(&body, "a").as_deref(), Some("123"));
        assert_eq!(string(&body, "b").as_deref(), Some("456"));
        assert_eq!(string(&body, "c"), None);
        assert_eq!(string(&body, "d"), None);
    }

    #[test]
    fn the_client_builds_with_its_own_tls_configuration() {
        ProviderHttp::new(Duration::from_secs(5)).unwrap();
    }
}
