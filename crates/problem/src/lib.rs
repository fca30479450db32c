//! RFC 9457 `application/problem+json` documents, the error format of every service
//! of the cinema: one shape, a stable machine-readable `code`, field-level errors.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document. `code` is stable and machine-readable; `title`
/// and `detail` are for people.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// URI reference naming the problem type.
    #[serde(rename = "type")]
    #[schema(example = "https://errors.cinema.example/validation_failed")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Stable machine-readable error code.
    #[schema(example = "validation_failed")]
    pub code: String,
    /// Field-level errors of a validation failure.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the offending field, for example `password`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Builds a problem response.
pub fn problem_response(status: StatusCode, code: &str, title: &str, detail: Option<String>, errors: Vec<FieldError>) -> Response {
    let body = Problem {
        problem_type: format!("https://errors.cinema.example/{code}"),
        title: title.to_owned(),
        status: status.as_u16(),
        detail,
        code: code.to_owned(),
        errors,
    };
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

/// The 401 for a bad bearer token (RFC 6750 §3.1): `WWW-Authenticate: Bearer error="invalid_token"`.
pub fn invalid_token_response() -> Response {
    let mut response = problem_response(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        "Unauthorized",
        Some("The access token is missing, invalid, expired or revoked.".into()),
        Vec::new(),
    );
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer error="invalid_token""#));
    response
}
