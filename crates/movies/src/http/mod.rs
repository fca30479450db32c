//! The HTTP API: one router per feature, merged with the OpenAPI document and the
//! middleware every request goes through.

pub mod extract;
pub mod films;
pub mod genres;
pub mod health;
pub mod paging;
pub mod persons;

use axum::{Router, http::header, middleware, routing::get};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

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

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()));
    }
}

pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(films::router())
        .merge(genres::router())
        .merge(persons::router())
        .merge(health::router())
        .split_for_parts()
}

/// The OpenAPI document as committed in `contracts/movies.openapi.json`.
pub fn openapi_json() -> String {
    let mut json = api().1.to_pretty_json().expect("the OpenAPI document serialises");
    json.push('\n');
    json
}

pub fn router(state: AppState, http: platform::http::HttpSettings) -> Router {
    let (api, openapi) = api();
    let spec = openapi_json();
    let router = api
        .route("/api/openapi.json", get(move || async move { ([(header::CONTENT_TYPE, "application/json")], spec) }))
        .merge(SwaggerUi::new("/api/docs").url("/api/docs/openapi.json", openapi))
        .fallback(|| async { ApiError::NotFound("No such resource.") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .layer(middleware::from_fn(auth_client::degraded_layer));
    platform::http::standard_layers(router, http)
}
