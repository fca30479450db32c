use platform::testing::{held_connection, whole_response};
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

/// `auth healthcheck` run as the container runs it, with only these variables: whether
/// it passed, and what it said.
async fn healthcheck(vars: &[(&str, String)]) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_auth"))
        .arg("healthcheck")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// With every place of the API listener held (its cap at 2, two idle kept-alive
/// connections), the operations listener answers the probes and `/metrics` at once,
/// and `auth healthcheck` passes by asking it, while the API listener accepts nothing
/// more until a place frees. Without the operations listener the same healthcheck
/// fails: what restarted a service that was only busy.
#[tokio::test]
async fn the_ops_listener_answers_probes_and_metrics_while_the_connection_cap_is_held() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(Options {
        extra_vars: vec![("AUTH_MAX_CONNECTIONS", "2".into()), ("AUTH_OPS_LISTEN", "127.0.0.1:0".into())],
        ..Default::default()
    })
    .await;
    let ops = app.ops_addr.expect("the operations listener is bound");
    let mut held = vec![held_connection(app.addr).await, held_connection(app.addr).await];
    let mut waiting = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    waiting.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    // A bounded wait, as what it shows is that something does not happen; the end of
    // the test shows the request was waiting for a place, not lost.
    let mut byte = [0u8; 1];
    let answered = tokio::time::timeout(std::time::Duration::from_millis(500), waiting.peek(&mut byte)).await;
    assert!(answered.is_err(), "the API listener served a connection over its cap");

    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build().unwrap();
    for path in ["/health/live", "/health/ready", "/metrics"] {
        let response = client.get(format!("http://{ops}{path}")).send().await.unwrap_or_else(|e| panic!("{path} on the operations listener: {e}"));
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let listen = ("AUTH_LISTEN", app.addr.to_string());
    let (passed, said) = healthcheck(&[listen.clone(), ("AUTH_OPS_LISTEN", ops.to_string())]).await;
    assert!(passed, "the healthcheck asks the operations listener: {said}");
    let (passed, said) = healthcheck(std::slice::from_ref(&listen)).await;
    assert!(!passed && said.contains("did not answer"), "without it, the healthcheck waits behind the cap: {said}");

    drop(held.pop());
    let answer = whole_response(&mut waiting, std::time::Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "served once a place freed: {answer}");
}

/// Once the operations listener is set, `/metrics` is off the API's port (published on
/// the host) and a 404 problem there like any unknown path, while the probes stay; the
/// operations listener serves the probes and `/metrics` and nothing else.
#[tokio::test]
async fn with_the_ops_listener_metrics_leave_the_api_port_and_the_ops_port_serves_nothing_else() {
    let plain = spawn_app().await;
    assert_eq!(plain.client.get(plain.url("/metrics")).send().await.unwrap().status(), StatusCode::OK, "unset, nothing changes");
    assert_eq!(plain.ops_addr, None);
    drop(plain);

    let app = spawn_app_with(Options { extra_vars: vec![("AUTH_OPS_LISTEN", "127.0.0.1:0".into())], ..Default::default() }).await;
    let ops = app.ops_addr.expect("the operations listener is bound");
    assert_problem(app.client.get(app.url("/metrics")).send().await.unwrap(), StatusCode::NOT_FOUND, "not_found").await;
    for path in ["/health/live", "/health/ready"] {
        assert_eq!(app.client.get(app.url(path)).send().await.unwrap().status(), StatusCode::OK, "{path} on the API listener");
        assert_eq!(app.client.get(format!("http://{ops}{path}")).send().await.unwrap().status(), StatusCode::OK, "{path} on the operations listener");
    }
    let metrics = app.client.get(format!("http://{ops}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    assert!(metrics.text().await.unwrap().contains("auth_sign_ins_total"), "Auth's own series");
    for path in ["/api/v1/auth/signup", "/api/v1/users/me", "/.well-known/jwks.json", "/api/openapi.json", "/api/docs/", "/", "/health", "/metrics/x"]
    {
        let response = app.client.get(format!("http://{ops}{path}")).send().await.unwrap();
        assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    let response = app.client.post(format!("http://{ops}/metrics")).send().await.unwrap();
    assert_problem(response, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}
