//! The error type of the movies API, rendered as RFC 9457 problem documents.

use axum::{
    extract::rejection::{PathRejection, QueryRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use platform::db::DatabaseFailure;
use problem::{FieldError, problem_response};

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// Signing in would allow it: 401 with a `Bearer` challenge.
    #[error("sign-in required")]
    SignInRequired(&'static str),
    #[error("forbidden: {code}")]
    Forbidden { code: &'static str, detail: &'static str },
    #[error("not found")]
    NotFound(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("service unavailable")]
    Unavailable,
    #[error("request timed out")]
    Timeout,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, title, detail): (StatusCode, &str, &str, Option<String>) = match &self {
            ApiError::Validation(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "Validation failed",
                Some("One or more parameters are invalid; see `errors`.".into()),
            ),
            ApiError::SignInRequired(detail) => (StatusCode::UNAUTHORIZED, "sign_in_required", "Unauthorized", Some((*detail).into())),
            ApiError::Forbidden { code, detail } => (StatusCode::FORBIDDEN, code, "Forbidden", Some((*detail).into())),
            ApiError::NotFound(detail) => (StatusCode::NOT_FOUND, "not_found", "Not found", Some((*detail).into())),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "Method not allowed", None),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "Service unavailable",
                Some("The catalogue database is unavailable; try again shortly.".into()),
            ),
            ApiError::Timeout => (StatusCode::SERVICE_UNAVAILABLE, "timeout", "Request timed out", None),
            ApiError::Internal(cause) => {
                // The cause's chain of messages, without the backtrace anyhow captures
                // when RUST_BACKTRACE is set (as Auth does).
                tracing::error!(error = %format_args!("{cause:#}"), "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Internal server error", None)
            }
        };
        let errors = match self {
            ApiError::Validation(errors) => errors,
            _ => Vec::new(),
        };
        let mut response = problem_response(status, code, title, detail, errors);
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match DatabaseFailure::of(&e) {
            // Movies only reads: a deadlock or serialization failure is as retryable
            // as a lost connection.
            Some(DatabaseFailure::Unavailable | DatabaseFailure::Contended) => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::Unavailable
            }
            // Movies sets no statement timeout; this is an operator's cancel, a
            // `statement_timeout` set on the database or role, or `lock_timeout`.
            Some(DatabaseFailure::TooSlow) => {
                tracing::warn!(error = %e, "database statement cancelled");
                ApiError::Timeout
            }
            None => ApiError::Internal(e.into()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::Validation(vec![platform::http::query_field_error(&rejection.body_text())])
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        ApiError::field("id", "must be a UUID")
    }
}
