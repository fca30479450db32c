//! Bad input gets a clear 4xx problem document; nothing leaks.

use reqwest::StatusCode;

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn malformed_json_is_400_saying_what_is_wrong() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/signup"))
        .header("content-type", "application/json")
        .body(r#"{"email": "a@example.com", "password": "#)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::BAD_REQUEST, "bad_request").await;
    assert!(problem["detail"].as_str().unwrap().contains("EOF"), "{problem}");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = spawn_app().await;
    let huge = format!(r#"{{"email": "a@example.com", "password": "{}"}}"#, "x".repeat(64 * 1024));
    let response = app.client.post(app.url("/api/v1/auth/signup")).header("content-type", "application/json").body(huge).send().await.unwrap();
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

#[tokio::test]
async fn an_introspection_form_over_the_limit_is_413_and_a_bad_one_names_the_field() {
    let app = spawn_app().await;
    let url = app.url("/api/v1/auth/introspect");
    let form = |body: String| app.client.post(&url).header("content-type", "application/x-www-form-urlencoded").body(body).send();
    let response = form(format!("token={}", "x".repeat(64 * 1024))).await.unwrap();
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let problem = assert_problem(form("nothing=here".into()).await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let message = problem["errors"][0]["message"].as_str().unwrap();
    assert_eq!(problem["errors"][0]["field"], "token", "{problem}");
    assert!(message.contains("missing field `token`") && !message.starts_with("Failed to deserialize"), "{problem}");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let app = spawn_app().await;
    let response = app.client.post(app.url("/api/v1/auth/login")).body("email=a").send().await.unwrap();
    assert_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_as_problems() {
    let app = spawn_app().await;
    assert_problem(app.client.get(app.url("/api/v1/nope")).send().await.unwrap(), StatusCode::NOT_FOUND, "not_found").await;
    assert_problem(app.client.get(app.url("/api/v1/auth/login")).send().await.unwrap(), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_given_one_is_echoed() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/health/live")).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    let response = app.client.get(app.url("/api/v1/nope")).send().await.unwrap();
    assert!(!response.headers()["x-request-id"].is_empty());
}

#[tokio::test]
async fn a_database_outage_is_a_503_problem_without_internals() {
    let app = spawn_app().await;
    app.state.db.close().await;
    let response = app.post_json("/api/v1/auth/login", &serde_json::json!({"email": "a@example.com", "password": "whatever1"})).await;
    let problem = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE, "service_unavailable").await;
    let text = problem.to_string().to_lowercase();
    assert!(!text.contains("sqlx") && !text.contains("pool") && !text.contains("select"), "{text}");
}
