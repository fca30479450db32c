//! The one error type of the HTTP API, rendered as RFC 9457 `application/problem+json`.
//!
//! Every failure a handler can meet converts into [`ApiError`]; internal causes are
//! logged inside the request's span and never sent to the client.

use axum::{
    extract::rejection::{FormRejection, JsonRejection, PathRejection, QueryRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

use platform::db::DatabaseFailure;
pub use problem::{FieldError, PROBLEM_JSON, Problem, problem_response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("unauthorized: {code}")]
    Unauthorized { code: &'static str, detail: &'static str },
    /// A service calling introspection sent no, malformed or wrong client credentials:
    /// 401 `invalid_client` (RFC 6749 §5.2) with a `Basic` challenge. One answer for
    /// every reason, so it tells a guesser nothing.
    #[error("unauthorized: invalid_client")]
    InvalidClient,
    #[error("forbidden")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound(&'static str),
    #[error("conflict: {code}")]
    Conflict { code: &'static str, detail: &'static str },
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("unsupported content coding")]
    UnsupportedContentEncoding,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("service unavailable: {0}")]
    Unavailable(&'static str),
    #[error("request timed out")]
    Timeout,
    /// A social sign-in step was refused (bad or replayed state, the person declined,
    /// no email to create an account with): 400, 403 or 422 with its own code.
    #[error("refused: {code}")]
    Refused { status: StatusCode, code: &'static str, detail: &'static str },
    /// A social provider failed or answered outside its protocol, or its ID token did
    /// not verify: 502. `cause` goes to the log only.
    #[error("provider failed: {code}: {cause}")]
    BadGateway { code: &'static str, detail: &'static str, cause: String },
    /// A social provider did not answer within the configured time: 504.
    #[error("provider timed out")]
    GatewayTimeout,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    /// The token was missing, malformed, expired or revoked.
    pub fn invalid_token() -> Self {
        Self::Unauthorized { code: "invalid_token", detail: "The access token is missing, invalid, expired or revoked." }
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str, Option<String>) {
        use ApiError::*;
        match self {
            BadRequest(detail) => (StatusCode::BAD_REQUEST, "bad_request", "Malformed request", Some(detail.clone())),
            Validation(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "Validation failed",
                Some("One or more fields are invalid; see `errors`.".into()),
            ),
            Unauthorized { code, detail } => (StatusCode::UNAUTHORIZED, code, "Unauthorized", Some((*detail).into())),
            InvalidClient => (
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Unauthorized",
                Some("Introspection is for registered services: send their client id and secret as HTTP Basic credentials.".into()),
            ),
            Forbidden(detail) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden", Some((*detail).into())),
            NotFound(detail) => (StatusCode::NOT_FOUND, "not_found", "Not found", Some((*detail).into())),
            Conflict { code, detail } => (StatusCode::CONFLICT, code, "Conflict", Some((*detail).into())),
            PayloadTooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "Payload too large", Some("The request body exceeds the size limit.".into()))
            }
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
                Some("Send the body as `Content-Type: application/json`.".into()),
            ),
            UnsupportedContentEncoding => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_content_encoding",
                "Unsupported content coding",
                Some("Send the body uncompressed, without `Content-Encoding`.".into()),
            ),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "Method not allowed", None),
            Unavailable(detail) => (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", "Service unavailable", Some((*detail).into())),
            Timeout => (StatusCode::SERVICE_UNAVAILABLE, "timeout", "Request timed out", None),
            Refused { status, code, detail } => (*status, code, status.canonical_reason().unwrap_or("Refused"), Some((*detail).into())),
            BadGateway { code, detail, .. } => (StatusCode::BAD_GATEWAY, code, "Bad gateway", Some((*detail).into())),
            GatewayTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "provider_timeout",
                "Gateway timeout",
                Some("The sign-in provider did not answer in time; try again.".into()),
            ),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Internal server error", None),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, title, detail) = self.parts();
        match &self {
            // The cause's chain of messages, without the backtrace anyhow may have captured.
            ApiError::Internal(cause) => tracing::error!(error = %format_args!("{cause:#}"), "request failed"),
            ApiError::Unavailable(_) | ApiError::Timeout | ApiError::BadGateway { .. } | ApiError::GatewayTimeout => {
                tracing::warn!(error = %self, "request not served")
            }
            _ => tracing::debug!(error = %self, "request refused"),
        }
        let errors = match self {
            ApiError::Validation(errors) => errors,
            _ => Vec::new(),
        };
        let mut response = problem_response(status, code, title, detail, errors);
        if status == StatusCode::UNAUTHORIZED {
            let challenge = match code {
                "invalid_token" => r#"Bearer error="invalid_token""#,
                "invalid_client" => INTROSPECTION_CHALLENGE,
                _ => "Bearer",
            };
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

/// The `WWW-Authenticate` of a refused introspection client (RFC 7617).
const INTROSPECTION_CHALLENGE: &str = r#"Basic realm="introspection""#;

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match DatabaseFailure::of(&e) {
            Some(DatabaseFailure::Unavailable) => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::Unavailable("The account database is unavailable; try again shortly.")
            }
            Some(DatabaseFailure::TooSlow) => {
                tracing::warn!(error = %e, "database statement cancelled (AUTH_DATABASE_STATEMENT_TIMEOUT_MS)");
                ApiError::Timeout
            }
            Some(DatabaseFailure::Contended) => {
                tracing::warn!(error = %e, "transaction aborted by a concurrent one");
                ApiError::Conflict { code: "concurrent_change", detail: "A concurrent change to the same data got in the way; try again." }
            }
            None => ApiError::Internal(e.into()),
        }
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        tracing::warn!(error = %e, "redis unavailable");
        ApiError::Unavailable("The session store is unavailable; try again shortly.")
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => ApiError::Validation(vec![json_data_error(&e.body_text())]),
            JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest(strip_prefix(&e.body_text())),
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            other => ApiError::BadRequest(format!("cannot read the request body ({})", other.status())),
        }
    }
}

/// A form body (introspection's RFC 7662 form), whose one field is `field`.
pub fn form_rejection(rejection: FormRejection, field: &'static str) -> ApiError {
    match rejection {
        FormRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        FormRejection::FailedToDeserializeForm(_) | FormRejection::FailedToDeserializeFormBody(_) => {
            ApiError::field(field, strip_prefix(&rejection.body_text()))
        }
        other => ApiError::BadRequest(format!("cannot read the request body ({})", other.status())),
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::Validation(vec![platform::http::query_field_error(&rejection.body_text())])
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::Validation(vec![FieldError::new("path", strip_prefix(&rejection.body_text()))])
    }
}

/// axum's text is `Failed to deserialize the JSON body into the target type: password: invalid type: ...`;
/// the part after the prefix names the field (serde_path_to_error) and says what is wrong with the input.
fn json_data_error(text: &str) -> FieldError {
    let detail = strip_prefix(text);
    match detail.split_once(": ") {
        Some((path, message)) if !path.contains(' ') => FieldError::new(path, message),
        _ => FieldError::new("body", detail),
    }
}

fn strip_prefix(text: &str) -> String {
    const PREFIXES: &[&str] = &[
        "Failed to deserialize the JSON body into the target type: ",
        "Failed to parse the request body as JSON: ",
        "Failed to deserialize query string: ",
        "Failed to deserialize form body: ",
        "Failed to deserialize form: ",
        "Failed to deserialize path params: ",
        "Invalid URL: ",
    ];
    let stripped = PREFIXES.iter().find_map(|p| text.strip_prefix(p)).unwrap_or(text);
    // Bound what we echo: the input can be large.
    stripped.chars().take(300).collect()
}

/// Maps violations of named constraints (unique indexes, checks) to API errors;
/// other database errors pass through.
pub trait ResultExt<T> {
    fn on_constraints(self, map: ConstraintErrors) -> Result<T>;
}

/// Constraint names, each with the API error its violation means.
pub type ConstraintErrors<'a> = &'a [(&'a str, fn() -> ApiError)];

impl<T> ResultExt<T> for std::result::Result<T, sqlx::Error> {
    fn on_constraints(self, map: ConstraintErrors) -> Result<T> {
        self.map_err(|e| {
            if let sqlx::Error::Database(db) = &e
                && let Some((_, to_error)) = map.iter().find(|(name, _)| db.constraint() == Some(*name))
            {
                return to_error();
            }
            e.into()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_data_errors_name_the_field() {
        let e = json_data_error(
            "Failed to deserialize the JSON body into the target type: birth_date: invalid type: integer `5`, expected a string at line 1 column 20",
        );
        assert_eq!(e.field, "birth_date");
        assert!(e.message.starts_with("invalid type: integer"));
        let e = json_data_error("Failed to deserialize the JSON body into the target type: missing field `email` at line 1 column 2");
        assert_eq!(e.field, "body");
    }
}
