//! The HTTP API: one router per feature, merged with the OpenAPI document and the
//! middleware every request goes through.

pub mod extract;
pub mod films;
pub mod genres;
pub mod health;
pub mod paging;
pub mod persons;

use axum::{Router, middleware};
use platform::openapi::BearerAuth;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::{error::ApiError, state::AppState};

#[derive(OpenApi)]
#[openapi(
    info(title = "Cinema Movies API", description = "The film catalogue. Anonymous viewers are welcome; a bearer token from Auth unlocks what the viewer is entitled to. Responses computed without confirming the token with Auth carry `X-Auth-Degraded: 1`. Errors are RFC 9457 problem documents.", version = "1.0.0"),
    modifiers(&BearerAuth),
    tags(
        (name = "films", description = "Films, search and streaming"),
        (name = "genres", description = "Genres"),
        (name = "persons", description = "People and their films"),
        (name = "health", description = "Probes"),
    )
)]
struct ApiDoc;

pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(films::router())
        .merge(genres::router())
        .merge(persons::router())
        .merge(health::router())
        .split_for_parts();
    utoipa::Modify::modify(&films::SearchQueryDoc, &mut openapi);
    utoipa::Modify::modify(&crate::limits::TOO_MANY_REQUESTS_DOC, &mut openapi);
    utoipa::Modify::modify(&platform::openapi::QueryRejections, &mut openapi);
    utoipa::Modify::modify(&platform::openapi::BearerUnauthorized("Invalid, expired or revoked token"), &mut openapi);
    utoipa::Modify::modify(&platform::openapi::ServiceUnavailable, &mut openapi);
    (router, openapi)
}

/// The OpenAPI document as committed in `contracts/movies.openapi.json`.
pub fn openapi_json() -> String {
    platform::openapi::to_json(&api().1)
}

/// The API's router and, when the service has an operations listener (`ops_listener`),
/// that listener's: the probes and `/metrics`, which then leaves the API's
/// (`platform::ops`).
pub fn router(state: AppState, http: platform::http::HttpSettings, ops_listener: bool) -> platform::ops::Routers {
    let (api, openapi) = api();
    // Inside the request span, after routing (the route template exempts the probes).
    let rate_limits = crate::limits::layer(state.limits.clone(), state.auth.clone());
    let client_ip = ratelimit::ClientIpLayer::new(state.limits.trusted_proxies.clone());
    let (api, ops) = platform::ops::place(
        api.layer(middleware::from_fn(viewer_cache_headers)),
        health::router().split_for_parts().0,
        metrics(&state),
        ops_listener,
    );
    let router = api
        .merge(platform::openapi::docs_routes(openapi))
        .fallback(|| async { ApiError::NotFound("No such resource.") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state.clone())
        .layer(middleware::from_fn(auth_client::degraded_layer))
        // Inside the rate limits: a malformed query string counts like any request.
        .layer(middleware::from_fn(platform::http::refuse_undecodable_query))
        .layer(rate_limits)
        .layer(client_ip);
    platform::ops::Routers {
        api: platform::http::standard_layers(router, http),
        ops: ops.map(|ops| platform::ops::router(ops.with_state(state), http)),
    }
}

/// How the answers of `/api/v1/` may be cached: every one depends on the viewer (their
/// age class, their token, their subscription), so none is for a shared cache, and all
/// vary with `Authorization`. The stream descriptor carries a signed manifest URL, a
/// bearer pass for the film until it expires, so it is stored by no cache at all, nor
/// are the stream's refusals. Runs after routing (a layer of the routes), where the
/// matched route is known.
async fn viewer_cache_headers(request: axum::extract::Request, next: middleware::Next) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let route = request.extensions().get::<axum::extract::MatchedPath>().map(|path| path.as_str().to_owned());
    let mut response = next.run(request).await;
    let Some(route) = route.filter(|route| route.starts_with("/api/v1/")) else { return response };
    let cache_control = if route.ends_with("/stream") { "no-store" } else { "private" };
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    response.headers_mut().append(header::VARY, HeaderValue::from_static("authorization"));
    response
}

/// `GET /metrics` (Prometheus scrapes it directly, never through nginx; not in the
/// contract). At each scrape: the pool's usage and the state of the breaker in front
/// of Auth, which the breaker itself only reports when it changes.
fn metrics(state: &AppState) -> axum::routing::MethodRouter<AppState> {
    // Installed first thing at start-up (`startup::Application::build`); this only
    // gets its handle.
    platform::metrics::install();
    auth_client::register_metrics();
    ratelimit::register_metrics(state.limits.policies());
    crate::cache::CacheFailures::register_metrics();
    let (db, auth) = (state.db.clone(), state.auth.clone());
    platform::metrics::endpoint(move || {
        platform::metrics::record_pool("movies", &db);
        let open = !matches!(auth.breaker_state(), auth_client::BreakerState::Closed);
        metrics::gauge!("auth_client_breaker_open").set(if open { 1.0 } else { 0.0 });
    })
}
