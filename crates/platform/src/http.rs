//! The middleware every HTTP service of the cinema runs: request ids, a request span
//! named by the route template, a request timeout, panics turned into problem
//! documents, sensitive headers kept out of logs.

use std::time::Duration;

use axum::{
    Router,
    extract::{MatchedPath, Request},
    http::{HeaderName, StatusCode, header},
    middleware::{self, Next},
    response::Response,
};
use problem::problem_response;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    sensitive_headers::SetSensitiveRequestHeadersLayer,
    trace::TraceLayer,
};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps a finished router (state applied) in the standard middleware.
pub fn standard_layers(router: Router, request_timeout: Duration) -> Router {
    router
        .layer(middleware::from_fn(move |req, next| with_timeout(req, next, request_timeout)))
        .layer(CatchPanicLayer::custom(|_| {
            problem_response(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Internal server error", None, Vec::new())
        }))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// The request's span, named by the matched route template, never the raw path.
pub fn request_span(req: &Request) -> tracing::Span {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
    let request_id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default();
    tracing::info_span!("request", method = %req.method(), route, request_id)
}

async fn with_timeout(req: Request, next: Next, limit: Duration) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => problem_response(StatusCode::SERVICE_UNAVAILABLE, "timeout", "Request timed out", None, Vec::new()),
    }
}
