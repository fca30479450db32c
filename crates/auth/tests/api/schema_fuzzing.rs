//! The cases schema fuzzing found (scripts/schemathesis.sh, docs/fuzzing.md), each
//! replayed as it was found: the answer, and that the contract now documents it.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_problem, spawn_app};

async fn served_spec(app: &TestApp) -> Value {
    app.client.get(app.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap()
}

/// The operation's documented response for `status`, with `$ref`s to shared responses followed.
fn documented<'a>(spec: &'a Value, method: &str, path: &str, status: u16) -> Option<&'a Value> {
    let response = spec["paths"][path][method]["responses"].get(status.to_string())?;
    match response["$ref"].as_str() {
        Some(reference) => spec.pointer(&reference.replace("#/", "/")),
        None => Some(response),
    }
}

fn assert_documented_problem(spec: &Value, method: &str, path: &str, status: u16) {
    let response = documented(spec, method, path, status).unwrap_or_else(|| panic!("{method} {path} does not document {status}"));
    assert!(response["content"].get("application/problem+json").is_some(), "{method} {path} {status}: {response}");
}

#[tokio::test]
async fn every_operation_with_a_body_documents_400_413_and_415() {
    let app = spawn_app().await;
    let spec = served_spec(&app).await;
    let mut with_body = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if operation.get("requestBody").is_some() {
                with_body += 1;
                for status in [400, 413, 415] {
                    assert_documented_problem(&spec, method, path, status);
                }
            }
        }
    }
    assert!(with_body >= 10, "{with_body}");
}

#[tokio::test]
async fn refresh_with_a_body_that_is_not_json_is_400_and_exchange_without_a_content_type_415() {
    let app = spawn_app().await;
    // Found: `curl -X POST -H 'Content-Type: application/json' -d $'\x00' .../refresh` answered an undocumented 400.
    let response = app.client.post(app.url("/api/v1/auth/refresh")).header("content-type", "application/json").body("\0").send().await.unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "bad_request").await;
    // Found: `curl -X POST .../oauth/exchange` (no body, no content type) answered an undocumented 415.
    let response = app.client.post(app.url("/api/v1/oauth/exchange")).send().await.unwrap();
    assert_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
    let spec = served_spec(&app).await;
    assert_documented_problem(&spec, "post", "/api/v1/auth/refresh", 400);
    assert_documented_problem(&spec, "post", "/api/v1/oauth/exchange", 415);
}

#[tokio::test]
async fn role_routes_document_the_422_of_an_id_that_is_not_a_uuid() {
    let app = spawn_app().await;
    let (_, admin) = app.signed_in_with_role("admin").await;
    // Found: `null,null` as the id, answered 422 where the contract listed no 422.
    for (method, path, template) in [
        (Method::DELETE, "/api/v1/roles/null,null", "/api/v1/roles/{id}"),
        (Method::GET, "/api/v1/users/null,null/roles", "/api/v1/users/{id}/roles"),
        (Method::DELETE, "/api/v1/users/null,null/roles/subscriber", "/api/v1/users/{id}/roles/{name}"),
    ] {
        let response = app.send(method.clone(), path, Some(&admin.access), None).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        let spec = served_spec(&app).await;
        assert_documented_problem(&spec, &method.as_str().to_lowercase(), template, 422);
    }
}

#[tokio::test]
async fn the_login_contract_allows_exactly_one_of_email_and_login() {
    let app = spawn_app().await;
    // Found: the contract's own example, `email` and `login` together, is refused.
    let response = app.post_json("/api/v1/auth/login", &json!({"email": "viewer@example.com", "login": "viewer_42", "password": PASSWORD})).await;
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "login", "{problem}");
    // The contract now says so: one variant per identifier, the other absent or null.
    let spec = served_spec(&app).await;
    let variants = spec["components"]["schemas"]["LoginRequest"]["oneOf"].as_array().unwrap();
    assert_eq!(variants.len(), 2);
    for (variant, (given, other)) in variants.iter().zip([("email", "login"), ("login", "email")]) {
        assert_eq!(variant["required"], json!([given, "password"]), "{variant}");
        assert_eq!(variant["properties"][other], json!({"type": "null"}), "{variant}");
        assert_eq!(variant["additionalProperties"], false, "{variant}");
    }
    // And what it allows is accepted: the identifier given, the other null.
    let email = format!("one-of-{}@example.com", uuid::Uuid::new_v4().simple());
    app.signup(&email).await;
    let response = app.post_json("/api/v1/auth/login", &json!({"email": email, "login": null, "password": PASSWORD})).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn role_names_and_permissions_are_documented_with_their_rules() {
    let app = spawn_app().await;
    let (_, admin) = app.signed_in_with_role("admin").await;
    let roles: Value = app.get_with("/api/v1/roles", &admin.access).await.json().await.unwrap();
    let user_role = roles.as_array().unwrap().iter().find(|r| r["name"] == "user").unwrap()["id"].as_str().unwrap().to_owned();
    // Found: a body the contract allowed (any strings) refused for its permission and name.
    let body = json!({"description": "x", "permissions": ["", "D\u{98}\u{7}", "1e100"], "name": "Yandex ID"});
    let response = app.send(Method::PATCH, &format!("/api/v1/roles/{user_role}"), Some(&admin.access), Some(body)).await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let spec = served_spec(&app).await;
    let schemas = &spec["components"]["schemas"];
    assert_eq!(schemas["RoleName"]["pattern"], auth::domain::role::ROLE_NAME_PATTERN);
    assert_eq!(schemas["Permission"]["pattern"], auth::domain::role::PERMISSION_PATTERN);
    assert_eq!(schemas["Permission"]["maxLength"], 100);
    assert_eq!(schemas["RolePatch"]["properties"]["permissions"]["items"]["$ref"], "#/components/schemas/Permission");
    assert_eq!(schemas["NewRole"]["properties"]["name"]["$ref"], "#/components/schemas/RoleName");
    // The examples the contract gives are accepted.
    let example = schemas["Permission"]["examples"][0].as_str().unwrap();
    let body = json!({"permissions": [example]});
    let response = app.send(Method::PATCH, &format!("/api/v1/roles/{user_role}"), Some(&admin.access), Some(body)).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_role_is_revoked_by_the_name_the_path_parameter_is_named_for() {
    let app = spawn_app().await;
    let (_, admin) = app.signed_in_with_role("admin").await;
    let (viewer, _) = app.signed_in_with_role("subscriber").await;
    // Found (stateful): the parameter was called `role`, and the role's id went into it
    // after a grant, answered 404 "No role has this name". It is the role's name.
    let spec = served_spec(&app).await;
    let parameters = spec["paths"]["/api/v1/users/{id}/roles/{name}"]["delete"]["parameters"].as_array().unwrap();
    let name = parameters.iter().find(|p| p["in"] == "path" && p["name"] == "name").expect("a `name` path parameter");
    assert_eq!(name["schema"]["$ref"], "#/components/schemas/RoleName");
    let response = app.send(Method::DELETE, &format!("/api/v1/users/{viewer}/roles/subscriber"), Some(&admin.access), None).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_user_search_documents_that_email_is_an_email() {
    let app = spawn_app().await;
    let (_, admin) = app.signed_in_with_role("admin").await;
    // Found: an email of arbitrary text, allowed by the contract, refused 422.
    let response = app.send(Method::POST, "/api/v1/users/search", Some(&admin.access), Some(json!({"email": "\u{4fabe}\u{e};"}))).await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let spec = served_spec(&app).await;
    let email = &spec["components"]["schemas"]["UserSearch"]["properties"]["email"];
    assert_eq!(email["format"], "email", "{email}");
    assert_eq!(email["maxLength"], 254, "{email}");
}

#[tokio::test]
async fn a_nul_in_a_role_description_or_name_is_refused_not_a_500() {
    let app = spawn_app().await;
    let (me, admin) = app.signed_in_with_role("admin").await;
    // Found by hand after the fuzzer's NUL in Movies: PostgreSQL refuses NUL in text,
    // and each of these answered 500.
    let response = app.send(Method::POST, "/api/v1/roles", Some(&admin.access), Some(json!({"name": "nul-role", "description": "a\u{0}b"}))).await;
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "description", "{problem}");
    let response = app.send(Method::POST, &format!("/api/v1/users/{me}/roles"), Some(&admin.access), Some(json!({"role": "a\u{0}b"}))).await;
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "role", "{problem}");
    let response = app.send(Method::DELETE, &format!("/api/v1/users/{me}/roles/a%00b"), Some(&admin.access), None).await;
    assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    let spec = served_spec(&app).await;
    assert_eq!(spec["components"]["schemas"]["NewRole"]["properties"]["description"]["pattern"], r"^[^\x00]*$");
    // A name with spaces around it names no role, as before.
    let response = app.send(Method::POST, &format!("/api/v1/users/{me}/roles"), Some(&admin.access), Some(json!({"role": " subscriber"}))).await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test]
async fn a_body_that_is_a_json_array_is_refused() {
    let app = spawn_app().await;
    let (_, admin) = app.signed_in_with_role("admin").await;
    // Found: `curl -X PATCH -d '[]' .../users/me` answered 200; serde reads an array
    // into a struct's fields in order, so `["arrayrole"]` also created a role.
    for (method, path) in [(Method::PATCH, "/api/v1/users/me"), (Method::POST, "/api/v1/roles")] {
        let body = if method == Method::PATCH { json!([]) } else { json!(["arrayrole"]) };
        let response = app.send(method, path, Some(&admin.access), Some(body)).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{path}");
    }
}
