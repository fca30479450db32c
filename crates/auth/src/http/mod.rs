//! The HTTP API: one router per feature, merged here with the OpenAPI document and
//! the middleware every request goes through.

pub mod auth;
pub mod cors;
pub mod extract;
pub mod health;
pub mod oauth;
pub mod roles;
pub mod sessions;
pub mod social;
pub mod users;
pub mod wellknown;

use axum::{Router, extract::DefaultBodyLimit};
use platform::openapi::BearerAuth;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::{error::ApiError, state::AppState};

#[derive(OpenApi)]
#[openapi(
    info(title = "Cinema Auth API", description = "Accounts, sessions and tokens of the online cinema. Errors are RFC 9457 problem documents.", version = "1.0.0"),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Sign-up, sign-in, refresh, sign-out, introspection"),
        (name = "sessions", description = "Signed-in devices"),
        (name = "users", description = "The caller's account, permissions, linked social accounts and sign-in history"),
        (name = "oauth", description = "Sign-in through Yandex ID, VK ID, Google and Mail.ru"),
        (name = "roles", description = "Roles, permissions and grants (admins)"),
        (name = "keys", description = "Token verification keys"),
        (name = "health", description = "Probes"),
    )
)]
struct ApiDoc;

/// The API routes and their OpenAPI document, without middleware or state.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::router())
        .merge(sessions::router())
        .merge(users::router())
        .merge(social::router())
        .merge(oauth::router())
        .merge(roles::router())
        .merge(wellknown::router())
        .merge(health::router())
        .split_for_parts();
    // After the merge: it documents the 429 of every operation the layer limits.
    crate::limits::requests::TOO_MANY_REQUESTS_DOC.modify(&mut openapi);
    IntrospectionClientAuth.modify(&mut openapi);
    // The 400/413/415 of every operation that reads a body (found by schema fuzzing).
    platform::openapi::BodyRejections.modify(&mut openapi);
    platform::openapi::QueryRejections.modify(&mut openapi);
    platform::openapi::ServiceUnavailable.modify(&mut openapi);
    platform::openapi::BearerUnauthorized("No valid access token").modify(&mut openapi);
    (router, openapi)
}

/// Declares the `introspection_client` security scheme (HTTP Basic with a registered
/// client's id and secret), and says on introspection's 429 which quotas apply there.
struct IntrospectionClientAuth;

impl Modify for IntrospectionClientAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{
            Ref, RefOr,
            security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
        };
        let basic = HttpBuilder::new().scheme(HttpAuthScheme::Basic).description(Some(
            "A service registered in Auth's `AUTH_INTROSPECTION_CLIENTS`: `Basic base64(urlencode(client_id) \":\" urlencode(secret))` (RFC 6749 §2.3.1).",
        ));
        openapi.components.get_or_insert_with(Default::default).add_security_scheme("introspection_client", SecurityScheme::Http(basic.build()));
        let route = crate::limits::requests::INTROSPECTION_ROUTE;
        if let Some(operation) = openapi.paths.paths.get_mut(route).and_then(|item| item.post.as_mut()) {
            let mut too_many = Ref::from_response_name("TooManyRequests");
            too_many.description = "Too many requests (`rate_limited`): the calling client's `introspect-client` quota, shared by all its instances (`AUTH_RATE_LIMIT_INTROSPECT`), or, for a call without valid client credentials, the caller's address's `api-ip` quota. See docs/rate-limiting.md.".into();
            operation.responses.responses.insert("429".into(), RefOr::Ref(too_many));
        }
    }
}

/// The OpenAPI document as committed in `contracts/auth.openapi.json`.
pub fn openapi_json() -> String {
    platform::openapi::to_json(&api().1)
}

/// The API's router and, when Auth has an operations listener (`ops_listener`), that
/// listener's: the probes and `/metrics`, which then leaves the API's (`platform::ops`).
pub fn router(state: AppState, http: platform::http::HttpSettings, body_limit: usize, ops_listener: bool) -> platform::ops::Routers {
    let (api, openapi) = api();
    // Inside the request span, after routing (the route template picks the policy).
    let rate_limits = crate::limits::requests::layer(state.clone());
    let client_ip = ratelimit::ClientIpLayer::new(state.limits.trusted_proxies.clone());
    // Prometheus scrapes it directly, never through nginx; not rate limited, not in the contract.
    let db = state.db.clone();
    let metrics = platform::metrics::endpoint(move || platform::metrics::record_pool("auth", &db));
    // Counters exist from the start, at zero with every label they can take, so an
    // alert can tell zero from missing. (The recorder is installed first thing at
    // start-up, `startup::Application::build`; this call only gets its handle.)
    if platform::metrics::install().is_some() {
        crate::store::history::register_metrics();
        ratelimit::register_metrics(state.limits.policies.all());
        crate::store::CacheFailures::register_metrics();
    }
    let (api, ops) = platform::ops::place(api, health::router().split_for_parts().0, metrics, ops_listener);
    let frontend_origins = state.oauth.frontend_origins();
    let router = api
        .merge(platform::openapi::docs_routes(openapi))
        .fallback(|| async { ApiError::NotFound("No such resource.") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state.clone())
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(move |req, next| refuse_unreadable_body(req, next, body_limit)))
        // Inside the rate limits: a malformed query string counts like any request.
        .layer(axum::middleware::from_fn(platform::http::refuse_undecodable_query))
        .layer(rate_limits)
        .layer(client_ip);
    platform::ops::Routers {
        api: platform::http::standard_layers_with_gate(router, http, |router| cors::allow_frontends(router, &frontend_origins)),
        ops: ops.map(|ops| platform::ops::router(ops.with_state(state), http)),
    }
}

/// Bodies Auth will not read, refused before a handler waits for them:
/// - one declared (`Content-Length`) over the limit: 413 at once, rather than once the
///   limit is read, or, from a client that never sends it, at the request timeout (a
///   503 that blamed the server);
/// - one in a content coding: Auth decodes none, so a gzipped body failed as malformed
///   JSON and a plain one labelled gzip was read as if unlabelled. 415 says so (a
///   request without a body may carry the header; nothing is decoded).
async fn refuse_unreadable_body(req: axum::extract::Request, next: axum::middleware::Next, limit: usize) -> axum::response::Response {
    use axum::{http::header, response::IntoResponse};
    let headers = req.headers();
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let has_body = declared.is_some_and(|length| length > 0) || headers.contains_key(header::TRANSFER_ENCODING);
    let coded = has_body
        && headers
            .get_all(header::CONTENT_ENCODING)
            .iter()
            .flat_map(|value| value.as_bytes().split(|&b| b == b','))
            .any(|coding| !coding.trim_ascii().is_empty() && !coding.trim_ascii().eq_ignore_ascii_case(b"identity"));
    if coded {
        return ApiError::UnsupportedContentEncoding.into_response();
    }
    if declared.is_some_and(|length| length > limit as u64) {
        return ApiError::PayloadTooLarge.into_response();
    }
    next.run(req).await
}
