//! The served OpenAPI document is the committed contract other services code against.

use reqwest::StatusCode;

use crate::helpers::spawn_app;

const CONTRACT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contracts/auth.openapi.json");

#[tokio::test]
async fn the_served_spec_equals_the_committed_contract() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/api/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let served = response.text().await.unwrap();
    if std::env::var_os("UPDATE_CONTRACTS").is_some() {
        std::fs::write(CONTRACT, &served).unwrap();
    }
    let committed = std::fs::read_to_string(CONTRACT).expect("contracts/auth.openapi.json exists; run `make contracts`");
    let served_json: serde_json::Value = serde_json::from_str(&served).unwrap();
    let committed_json: serde_json::Value = serde_json::from_str(&committed).unwrap();
    assert!(served_json == committed_json, "the API changed but contracts/auth.openapi.json did not: review the change, then run `make contracts`");
    assert_eq!(served_json["openapi"], "3.1.0");
}

#[tokio::test]
async fn the_spec_documents_every_route_and_the_docs_page_works_offline() {
    let app = spawn_app().await;
    let spec: serde_json::Value = app.client.get(app.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    #[rustfmt::skip]
    let paths = [
        "/api/v1/auth/signup", "/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/logout", "/api/v1/auth/logout-all",
        "/api/v1/auth/sessions", "/api/v1/auth/sessions/{id}", "/api/v1/auth/introspect", "/api/v1/users/me",
        "/api/v1/users/me/password", "/api/v1/users/me/permissions", "/api/v1/users/me/login-history", "/api/v1/roles",
        "/api/v1/roles/{id}", "/api/v1/users/{id}/roles", "/api/v1/users/{id}/roles/{name}", "/api/v1/users/search", "/.well-known/jwks.json", "/health/live", "/health/ready",
        "/api/v1/oauth/providers", "/api/v1/oauth/{provider}/authorize", "/api/v1/oauth/{provider}/callback", "/api/v1/oauth/exchange",
        "/api/v1/users/me/social", "/api/v1/users/me/social/{provider}",
    ];
    for path in paths {
        assert!(spec["paths"].get(path).is_some(), "{path} missing from the spec");
    }
    let page = app.client.get(app.url("/api/docs/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(!html.contains("https://"), "the docs page must not load anything from the internet");
    let bundle = app.client.get(app.url("/api/docs/swagger-ui-bundle.js")).send().await.unwrap();
    assert_eq!(bundle.status(), StatusCode::OK);
    // Else, on any host but localhost, the page loads an image from swagger.io's validator.
    let initializer = app.client.get(app.url("/api/docs/swagger-initializer.js")).send().await.unwrap().text().await.unwrap();
    assert!(initializer.contains(r#""validatorUrl": "none""#), "{initializer}");
}

/// Any operation can answer 503 (a dependency down, the request timeout): the contract
/// says so on each, but the liveness probe, which touches nothing that fails.
#[tokio::test]
async fn every_operation_but_liveness_documents_its_503() {
    let app = spawn_app().await;
    let spec: serde_json::Value = app.client.get(app.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let documented = operation["responses"].get("503").is_some();
            assert_eq!(documented, path != "/health/live", "{method} {path}");
        }
    }
    assert_eq!(
        spec["components"]["responses"]["ServiceUnavailable"]["content"]["application/problem+json"]["schema"]["$ref"],
        "#/components/schemas/Problem"
    );
}
