//! What every service's OpenAPI document and docs pages share.

use axum::{Router, http::header, routing::get};
use utoipa::{
    Modify,
    openapi::{
        OpenApi,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};
use utoipa_swagger_ui::SwaggerUi;

/// Declares the `bearer` security scheme: a JWT access token from Auth.
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()));
    }
}

/// The document as committed in `contracts/`: pretty JSON with a final newline.
pub fn to_json(openapi: &OpenApi) -> String {
    let mut json = openapi.to_pretty_json().expect("the OpenAPI document serialises");
    json.push('\n');
    json
}

/// `GET /api/openapi.json` and the Swagger UI at `/api/docs/`, served from files
/// compiled into the binary: the page works on a machine with no internet.
pub fn docs_routes<S: Clone + Send + Sync + 'static>(openapi: OpenApi) -> Router<S> {
    let spec = to_json(&openapi);
    Router::new()
        .route("/api/openapi.json", get(move || async move { ([(header::CONTENT_TYPE, "application/json")], spec) }))
        .merge(SwaggerUi::new("/api/docs").url("/api/docs/openapi.json", openapi))
}
