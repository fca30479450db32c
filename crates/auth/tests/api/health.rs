use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Options, assert_problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn live_and_ready_answer_200_when_dependencies_are_up() {
    let app = spawn_app().await;
    for path in ["/health/live", "/health/ready"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "ok");
    }
    let ready: Value = app.client.get(app.url("/health/ready")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["redis"], "ok");
}

#[tokio::test]
async fn ready_stays_200_and_reports_redis_degraded_when_redis_is_unreachable() {
    // A Redis URL nothing listens on: the service still starts (the cache is optional).
    let app = spawn_app_with(Options { extra_vars: vec![("REDIS_URL", "redis://127.0.0.1:1".into())], ..Default::default() }).await;
    assert_eq!(app.client.get(app.url("/health/live")).send().await.unwrap().status(), StatusCode::OK);
    let response = app.client.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!((body["status"].as_str(), body["redis"].as_str()), (Some("ok"), Some("degraded")));
}

#[tokio::test]
async fn with_redis_unreachable_sign_in_and_revocation_still_work_from_the_database() {
    let app = spawn_app_with(Options { extra_vars: vec![("REDIS_URL", "redis://127.0.0.1:1".into())], ..Default::default() }).await;
    let (_, tokens) = app.signed_in_user().await;
    assert_eq!(app.get_with("/api/v1/users/me", &tokens.access).await.status(), StatusCode::OK);
    assert_eq!(app.post_with("/api/v1/auth/logout", &tokens.access).await.status(), StatusCode::NO_CONTENT);
    assert_problem(app.get_with("/api/v1/users/me", &tokens.access).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
}
