//! The [`Viewer`] extractor and the layer that marks degraded answers.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{
    extract::{FromRef, FromRequestParts, Request},
    http::{HeaderName, HeaderValue, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use uuid::Uuid;

use crate::{AuthClient, Authentication};

/// Set to `1` on a response computed without confirming the viewer with Auth.
pub const DEGRADED_HEADER: HeaderName = HeaderName::from_static("x-auth-degraded");

/// A signed-in viewer.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: Uuid,
    pub session_id: Uuid,
    pub token_id: Uuid,
    /// Roles as Auth reports them now (from introspection), or as the token states
    /// them when Auth could not be asked.
    pub roles: Vec<String>,
    /// The highest age class the user may watch; `None` when the birth date is unknown.
    pub age_class: Option<u8>,
}

impl User {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq)]
pub enum Viewer {
    Anonymous,
    User(User),
}

impl Viewer {
    pub fn user(&self) -> Option<&User> {
        match self {
            Viewer::User(user) => Some(user),
            Viewer::Anonymous => None,
        }
    }
}

/// A flag the extractor raises when it served the request without Auth's word.
#[derive(Clone, Default)]
struct Degraded(Arc<AtomicBool>);

/// Middleware that adds `X-Auth-Degraded: 1` to responses whose viewer was not
/// confirmed with Auth. Use with `axum::middleware::from_fn(degraded_layer)`.
pub async fn degraded_layer(mut request: Request, next: Next) -> Response {
    let flag = Degraded::default();
    request.extensions_mut().insert(flag.clone());
    let mut response = next.run(request).await;
    if flag.0.load(Ordering::Relaxed) {
        response.headers_mut().insert(DEGRADED_HEADER, HeaderValue::from_static("1"));
    }
    response
}

/// 401 with `WWW-Authenticate: Bearer error="invalid_token"`.
#[derive(Debug)]
pub struct ViewerRejection;

impl IntoResponse for ViewerRejection {
    fn into_response(self) -> Response {
        problem::invalid_token_response()
    }
}

/// The token of an `Authorization` header value `Bearer <token>` (scheme in any case);
/// `None` when it is not one, which the extractor answers with 401.
pub fn bearer_token(value: &HeaderValue) -> Option<&str> {
    value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() && token.len() <= 4096)
        .map(|(_, token)| token.trim())
}

impl<S> FromRequestParts<S> for Viewer
where
    AuthClient: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ViewerRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else { return Ok(Viewer::Anonymous) };
        let token = bearer_token(value).ok_or(ViewerRejection)?;
        let client = AuthClient::from_ref(state);
        let flag_degraded = || {
            if let Some(flag) = parts.extensions.get::<Degraded>() {
                flag.0.store(true, Ordering::Relaxed);
            }
        };
        let mark_degraded = || {
            metrics::counter!("auth_client_degraded_total").increment(1);
            flag_degraded();
        };
        let request_id = parts.headers.get("x-request-id").and_then(|v| v.to_str().ok());
        // The rate-limit layer may have checked this token's signature already.
        let signed = parts.extensions.get::<crate::SignedToken>();
        match client.authenticate_signed(token, signed, request_id).await {
            Authentication::User { user, degraded } => {
                if degraded {
                    mark_degraded();
                }
                Ok(Viewer::User(user))
            }
            Authentication::Unverifiable => {
                mark_degraded();
                Ok(Viewer::Anonymous)
            }
            // The answer says so, for the viewer's app to retry; counted apart from
            // outages, since anyone can send such a token.
            Authentication::KeyNotYetFetched => {
                metrics::counter!("auth_client_unknown_key_total").increment(1);
                flag_degraded();
                Ok(Viewer::Anonymous)
            }
            Authentication::Invalid => Err(ViewerRejection),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_token_is_read_like_auth_reads_it() {
        let token = |v: &'static str| bearer_token(&HeaderValue::from_static(v)).map(str::to_owned);
        assert_eq!(token("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(token("bearer  abc ").as_deref(), Some("abc"));
        for refused in ["Bearer", "Bearer  ", "Basic abc", "Bearerabc"] {
            assert_eq!(token(refused), None, "{refused:?}");
        }
        let long = HeaderValue::from_str(&format!("Bearer {}", "a".repeat(4097))).unwrap();
        assert_eq!(bearer_token(&long), None);
        assert_eq!(bearer_token(&HeaderValue::from_bytes(b"Bearer \xff").unwrap()), None);
    }
}
