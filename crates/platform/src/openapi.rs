//! What every service's OpenAPI document and docs pages share.

use axum::{Router, http::header, routing::get};
use utoipa::{
    Modify,
    openapi::{
        ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};
use utoipa_swagger_ui::{Config, SwaggerUi};

/// Declares the `bearer` security scheme: a JWT access token from Auth.
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()));
    }
}

/// Documents the 401 of every operation whose security names the `bearer` scheme,
/// with this description, unless the operation documents its own: one place for what
/// every signed-in operation answers to a missing, invalid or revoked token.
pub struct BearerUnauthorized(pub &'static str);

impl Modify for BearerUnauthorized {
    fn modify(&self, doc: &mut OpenApi) {
        for item in doc.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let names_bearer = operation.security.as_ref().is_some_and(|requirements| {
                    serde_json::to_value(requirements)
                        .ok()
                        .and_then(|v| v.as_array().cloned())
                        .is_some_and(|all| all.iter().any(|requirement| requirement.get("bearer").is_some()))
                });
                if !names_bearer || operation.responses.responses.contains_key("401") {
                    continue;
                }
                let response = ResponseBuilder::new()
                    .description(self.0)
                    .content(problem::PROBLEM_JSON, ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build())
                    .build();
                operation.responses.responses.insert("401".into(), RefOr::T(response));
            }
        }
    }
}

/// Documents the answers every operation with a request body can give before its
/// handler runs: 400 (the body does not parse), 408 (it did not arrive in time), 413
/// (over the body limit) and 415 (not a media type the operation reads), each a
/// problem document. Apply after the routers
/// are merged; responses an operation documents itself are kept.
pub struct BodyRejections;

impl Modify for BodyRejections {
    fn modify(&self, openapi: &mut OpenApi) {
        const ANSWERS: [(&str, &str, &str); 4] = [
            (
                "400",
                "MalformedBody",
                "Malformed request: the body does not parse (`bad_request`), or the query string is not UTF-8 once percent-decoded (`malformed_query`).",
            ),
            (
                "408",
                "RequestTimeout",
                "The request timeout ran out while the client was still to send the body (`request_timeout`); the connection is closed.",
            ),
            ("413", "PayloadTooLarge", "The body is over the size limit (`payload_too_large`)."),
            (
                "415",
                "UnsupportedMediaType",
                "The body is not of a media type the operation reads (`unsupported_media_type`), or comes in a content coding (`unsupported_content_encoding`).",
            ),
        ];
        document_answers(openapi, |_, operation| operation.request_body.is_some(), &ANSWERS);
    }
}

/// Adds each `(status, component name, description)` problem answer to every operation
/// `applies` to (keeping an answer the operation documents itself), and the answers to
/// the components when some operation uses them.
fn document_answers(openapi: &mut OpenApi, applies: impl Fn(&str, &utoipa::openapi::path::Operation) -> bool, answers: &[(&str, &str, &str)]) {
    let mut used = false;
    for (path, item) in openapi.paths.paths.iter_mut() {
        let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.patch, &mut item.delete];
        for operation in operations.into_iter().flatten().filter(|o| applies(path, o)) {
            used = true;
            for (status, name, _) in answers {
                operation.responses.responses.entry((*status).into()).or_insert_with(|| RefOr::Ref(Ref::from_response_name(*name)));
            }
        }
    }
    if used {
        let responses = &mut openapi.components.get_or_insert_with(Default::default).responses;
        for (_, name, description) in answers {
            let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
            responses
                .insert((*name).into(), RefOr::T(ResponseBuilder::new().description(*description).content(problem::PROBLEM_JSON, content).build()));
        }
    }
}

/// Documents the 400 that every operation can give before its handler runs, whether it
/// reads query parameters or not: a query string that is not UTF-8 once
/// percent-decoded (`malformed_query`, `crate::http::refuse_undecodable_query`). Apply
/// after [`BodyRejections`]. An operation without a 400 gets this one; one that
/// documents a 400 of its own keeps it, and its description says `malformed_query`
/// too (the body's `MalformedBody` does already).
pub struct QueryRejections;

impl QueryRejections {
    const SENTENCE: &str = "Or `malformed_query`: the query string is not UTF-8 once percent-decoded.";
}

impl Modify for QueryRejections {
    fn modify(&self, openapi: &mut OpenApi) {
        const ANSWER: (&str, &str, &str) =
            ("400", "MalformedQuery", "Malformed request: the query string is not UTF-8 once percent-decoded (`malformed_query`).");
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.patch, &mut item.delete];
            for operation in operations.into_iter().flatten() {
                if let Some(RefOr::T(own)) = operation.responses.responses.get_mut("400")
                    && !own.description.contains("malformed_query")
                {
                    own.description = format!("{}. {}", own.description.trim_end().trim_end_matches('.'), Self::SENTENCE);
                }
            }
        }
        document_answers(openapi, |_, _| true, &[ANSWER]);
    }
}

/// Documents the 503 any operation can answer when the service cannot serve it now: a
/// dependency it needs failed (`service_unavailable`: the database unreachable or
/// restarting) or the request ran out of time (`timeout`: the request timeout of
/// `crate::http`, or a statement cancelled by the database's). The liveness probe
/// (`/health/live`) touches nothing that fails and is left out; a 503 an operation
/// documents itself (readiness) is kept.
pub struct ServiceUnavailable;

impl Modify for ServiceUnavailable {
    fn modify(&self, openapi: &mut OpenApi) {
        const ANSWER: (&str, &str, &str) = (
            "503",
            "ServiceUnavailable",
            "The service cannot answer now: a dependency failed (`service_unavailable`) or the request ran out of time (`timeout`). Nothing was changed half-way; retry later.",
        );
        document_answers(openapi, |path, _| path != "/health/live", &[ANSWER]);
    }
}

/// Documents the 429 answer of the rate limits (`ratelimit`) on every operation whose
/// path `unlimited` does not exempt, with its `Retry-After`, `RateLimit-Policy` and
/// `RateLimit` headers.
pub struct TooManyRequests {
    /// The response's description: which codes the service answers with.
    pub description: &'static str,
    /// Paths never limited (probes, metrics).
    pub unlimited: fn(&str) -> bool,
}

impl Modify for TooManyRequests {
    fn modify(&self, doc: &mut OpenApi) {
        use utoipa::openapi::{
            HeaderBuilder,
            schema::{ObjectBuilder, Schema, Type},
        };
        let integer = || RefOr::T(Schema::Object(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)).build()));
        let string = || RefOr::T(Schema::Object(ObjectBuilder::new().schema_type(Type::String).build()));
        let response = ResponseBuilder::new()
            .description(self.description)
            .content(problem::PROBLEM_JSON, ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build())
            .header("Retry-After", HeaderBuilder::new().schema(Some(integer())).description(Some("Seconds to wait before retrying.")).build())
            .header(
                "RateLimit-Policy",
                HeaderBuilder::new().schema(Some(string())).description(Some(r#"The policies that apply, e.g. `"api-ip";q=40;w=2` (draft-ietf-httpapi-ratelimit-headers). Also on every limited 2xx/4xx answer."#)).build(),
            )
            .header(
                "RateLimit",
                HeaderBuilder::new().schema(Some(string())).description(Some(r#"Their state, e.g. `"api-ip";r=0;t=2`: requests remaining and seconds until the full quota is back (for a policy that refused the request: until it allows one, as `Retry-After`)."#)).build(),
            )
            .build();
        doc.components.get_or_insert_with(Default::default).responses.insert("TooManyRequests".into(), RefOr::T(response));
        for (path, item) in doc.paths.paths.iter_mut() {
            if (self.unlimited)(path) {
                continue;
            }
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                operation.responses.responses.insert("429".into(), RefOr::Ref(Ref::from_response_name("TooManyRequests")));
            }
        }
    }
}

/// The document as committed in `contracts/`: pretty JSON with a final newline.
pub fn to_json(openapi: &OpenApi) -> String {
    let mut json = openapi.to_pretty_json().expect("the OpenAPI document serialises");
    json.push('\n');
    json
}

/// `GET /api/openapi.json` and the Swagger UI at `/api/docs/`, served from files
/// compiled into the binary: the page works on a machine with no internet. Its
/// validator badge is off: by default Swagger UI loads an image from swagger.io's
/// online validator, with the document's address in the query, on any host but
/// localhost.
pub fn docs_routes<S: Clone + Send + Sync + 'static>(openapi: OpenApi) -> Router<S> {
    let spec = to_json(&openapi);
    Router::new()
        .route("/api/openapi.json", get(move || async move { ([(header::CONTENT_TYPE, "application/json")], spec) }))
        .merge(SwaggerUi::new("/api/docs").url("/api/docs/openapi.json", openapi).config(Config::default().validator_url("none")))
}
