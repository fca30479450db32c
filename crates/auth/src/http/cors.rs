//! CORS for the front ends on other origins of the site: exactly the origins of the
//! front-end return addresses (`OAUTH_FRONTEND_REDIRECT_URIS`), with credentials, on the
//! whole API (docs/oauth.md, "Front ends on another origin", says why).
//!
//! A request from any other origin, or without one, passes untouched and gets no CORS
//! header at all, so a browser on that origin can neither send a preflighted request
//! nor read an answer. tower-http's `CorsLayer` alone would answer every `OPTIONS` as a
//! preflight and add its allow-methods, -headers and -credentials to it whatever the
//! origin; here only a listed origin's requests reach it.

use std::sync::Arc;

use axum::{
    Router,
    extract::Request,
    http::{HeaderName, HeaderValue, Method, header},
    middleware::Next,
    response::Response,
};
use tower::{Layer, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Browsers cache a preflight this long (Chromium caps it at 7200 s).
const PREFLIGHT_MAX_AGE_SECONDS: u64 = 600;

/// What a front end may read besides the CORS-safelisted headers: the rate limits it is
/// under and when to retry, the request id to quote in a report, and why a token failed.
const EXPOSED: [&str; 5] = ["ratelimit", "ratelimit-policy", "retry-after", "x-request-id", "www-authenticate"];

/// Applied as the standard layers' gate (`platform::http::standard_layers_with_gate`):
/// inside the request id, the span and the metrics, so a preflight has an
/// `X-Request-Id`, a span and a count like any request; outside the request-id
/// requirement, the rate limits and the problem layers, since a preflight carries no
/// `Authorization` and no `X-Request-Id` (browsers add neither): it is answered before
/// `REQUIRE_REQUEST_ID` or a quota could refuse it, and every answer to a listed
/// origin, errors and 429s included, is readable by its front end.
pub fn allow_frontends(router: Router, origins: &[String]) -> Router {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    if origins.is_empty() {
        return router;
    }
    let layer = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.clone()))
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, HeaderName::from_static("x-request-id")])
        .expose_headers(EXPOSED.map(HeaderName::from_static))
        .max_age(std::time::Duration::from_secs(PREFLIGHT_MAX_AGE_SECONDS));
    let cors = Arc::new(Frontends { origins, layer });
    router.layer(axum::middleware::from_fn(move |req, next| gate(cors.clone(), req, next)))
}

struct Frontends {
    origins: Vec<HeaderValue>,
    layer: CorsLayer,
}

async fn gate(cors: Arc<Frontends>, req: Request, next: Next) -> Response {
    let listed = req.headers().get(header::ORIGIN).is_some_and(|origin| cors.origins.contains(origin));
    if listed {
        return match cors.layer.layer(next).oneshot(req).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
    }
    let mut response = next.run(req).await;
    // The answer depends on the origin: a cache must not hand this one to a listed origin.
    response.headers_mut().append(header::VARY, HeaderValue::from_static("origin"));
    response
}
