//! The HTTP API: one router per feature, merged here with the OpenAPI document and
//! the middleware every request goes through.

pub mod auth;
pub mod extract;
pub mod health;
pub mod roles;
pub mod sessions;
pub mod users;
pub mod wellknown;

use std::time::Duration;

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request},
    http::{HeaderName, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    sensitive_headers::SetSensitiveRequestHeadersLayer,
    trace::TraceLayer,
};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    error::{ApiError, problem_response},
    state::AppState,
};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(OpenApi)]
#[openapi(
    info(title = "Cinema Auth API", description = "Accounts, sessions and tokens of the online cinema. Errors are RFC 9457 problem documents.", version = "1.0.0"),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Sign-up, sign-in, refresh, sign-out, introspection"),
        (name = "sessions", description = "Signed-in devices"),
        (name = "users", description = "The caller's account, permissions and sign-in history"),
        (name = "roles", description = "Roles, permissions and grants (admins)"),
        (name = "keys", description = "Token verification keys"),
        (name = "health", description = "Probes"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// The API routes and their OpenAPI document, without middleware or state.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::router())
        .merge(sessions::router())
        .merge(users::router())
        .merge(roles::router())
        .merge(wellknown::router())
        .merge(health::router())
        .split_for_parts()
}

/// The OpenAPI document as committed in `contracts/auth.openapi.json`.
pub fn openapi_json() -> String {
    let mut json = api().1.to_pretty_json().expect("the OpenAPI document serialises");
    json.push('\n');
    json
}

pub fn router(state: AppState, request_timeout: Duration, body_limit: usize) -> Router {
    let (api, openapi) = api();
    let spec = openapi_json();
    api.route("/api/openapi.json", get(move || async move { ([(header::CONTENT_TYPE, "application/json")], spec) }))
        .merge(SwaggerUi::new("/api/docs").url("/api/docs/openapi.json", openapi))
        .fallback(|| async { ApiError::NotFound("No such resource.") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
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
fn request_span(req: &Request) -> tracing::Span {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
    let request_id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default();
    tracing::info_span!("request", method = %req.method(), route, request_id)
}

async fn with_timeout(req: Request, next: Next, limit: Duration) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}
