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

/// While Redis is down every signed-in request asks PostgreSQL instead: that is
/// logged once, when it starts, and counted, not written as a warning per request.
#[tokio::test]
async fn with_redis_unreachable_signed_in_requests_warn_once_and_are_counted() {
    // The server's tasks run on this test's thread: their logs are captured.
    let (logs, _logging) = platform::testing::CapturedLogs::capture(tracing::Level::WARN);
    let app = spawn_app_with(Options { extra_vars: vec![("REDIS_URL", "redis://127.0.0.1:1".into())], ..Default::default() }).await;
    let (_, tokens) = app.signed_in_user().await;
    // Auth's own and its cache's (logged by platform::cache_failures): sqlx warns of a
    // slow statement when the machine is busy.
    let warnings = || {
        let ours = |line: &&str| line.contains(" WARN auth::") || line.contains(" WARN platform::cache_failures:");
        logs.text().lines().filter(ours).map(str::to_owned).collect::<Vec<_>>()
    };
    assert_eq!(app.get_with("/api/v1/users/me", &tokens.access).await.status(), StatusCode::OK);
    let after_one = warnings();
    for _ in 0..10 {
        assert_eq!(app.get_with("/api/v1/users/me", &tokens.access).await.status(), StatusCode::OK);
        assert_eq!(app.get_with("/api/v1/auth/sessions", &tokens.access).await.status(), StatusCode::OK);
    }
    let after_many = warnings();
    assert_eq!(after_many, after_one, "twenty more requests, no more warnings");
    let revocation: Vec<_> = after_many.iter().filter(|line| line.contains("revocation cache unavailable")).collect();
    assert_eq!(revocation.len(), 1, "{after_many:#?}");
    // Sign-outs: PostgreSQL holds their revocations; the cache's refusal is told once.
    for _ in 0..3 {
        let (_, tokens) = app.signed_in_user().await;
        assert_eq!(app.post_with("/api/v1/auth/logout", &tokens.access).await.status(), StatusCode::NO_CONTENT);
    }
    let uncached = warnings().into_iter().filter(|line| line.contains("could not cache a revocation")).count();
    assert_eq!(uncached, 1, "{:#?}", warnings());
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let counted = metrics
        .lines()
        .find_map(|line| line.strip_prefix(r#"auth_cache_failures_total{call="revocation_read"} "#))
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no count of failed revocation reads: {metrics}"));
    // The recorder is the process's: other tests' outages may add to it.
    assert!(counted >= 21, "{counted} failures counted");
}
