//! Traces exported over OTLP/gRPC to a real receiver started by the test: the movies
//! API in this process, Auth as a child process, one trace across both.
//!
//! One test function: the tracer provider is global to the process.

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[allow(dead_code)]
mod otlp;

use helpers::{Auth, Movies};
use platform::telemetry::{ExportProtocol, TraceExport};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_services_export_one_trace_per_request_with_request_ids() {
    let receiver = otlp::Receiver::grpc();
    let telemetry = platform::telemetry::init_with(Some(TraceExport {
        endpoint: receiver.endpoint.clone(),
        protocol: ExportProtocol::Grpc,
        service_name: "movies".into(),
        sampling: Default::default(),
    }))
    .unwrap();
    let log_file = std::env::temp_dir().join(format!("auth-log-{}.jsonl", uuid::Uuid::new_v4().simple()));
    let auth = Auth::process_with(vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.endpoint.clone()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "grpc".into()),
        ("OTEL_SERVICE_NAME".into(), "auth".into()),
        ("RUST_LOG".into(), "info".into()),
        ("AUTH_TEST_LOG_FILE".into(), log_file.display().to_string()),
    ])
    .await;
    let movies = Movies::start(&auth.url).await;
    movies.wait_for_keys().await;

    // A given X-Request-Id is echoed and recorded on the server span, named by route.
    let response = movies.client.get(movies.url("/api/v1/films")).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    let traceparent = response.headers()["traceparent"].to_str().unwrap().to_owned();
    let span = receiver.wait_for("the films list server span", |s| s.attr("http.request_id") == Some("abc-123")).await;
    assert_eq!((span.service.as_str(), span.name.as_str(), span.kind), ("movies", "GET /api/v1/films", 2));
    assert_eq!(span.attr("http.route"), Some("/api/v1/films"));
    assert_eq!(span.attr("http.request.method"), Some("GET"));
    assert_eq!(span.attr("http.response.status_code"), Some("200"));
    assert!(traceparent.contains(&span.trace_id), "the response's traceparent names the trace: {traceparent}");
    // Its database and Redis work are child spans of the same trace.
    for system in ["postgresql", "redis"] {
        receiver.wait_for(&format!("a {system} span"), |s| s.trace_id == span.trace_id && s.attr("db.system.name") == Some(system)).await;
    }

    // Without one, a generated id is returned and is the span's.
    let response = movies.get("/api/v1/genres", None).await;
    let generated = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 36);
    receiver
        .wait_for("the generated id on the span", |s| s.attr("http.request_id") == Some(generated.as_str()) && s.name == "GET /api/v1/genres")
        .await;

    // A malformed one is replaced, never echoed.
    let response = movies.client.get(movies.url("/api/v1/genres")).header("x-request-id", "bad id <script>").send().await.unwrap();
    assert_ne!(response.headers()["x-request-id"], "bad id <script>");

    // A movies request that calls Auth: one trace, Auth's server span a child of the
    // movies client span, the request id forwarded.
    let viewer = auth.viewer(&[], None).await;
    let film = movies.film_id("Family Picnic").await;
    let response = movies
        .client
        .get(movies.url(&format!("/api/v1/films/{film}")))
        .bearer_auth(&viewer.access)
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let server = receiver.wait_for("movies server span", |s| s.service == "movies" && s.attr("http.request_id") == Some("trace-me-42")).await;
    let client = receiver
        .wait_for("introspection client span", |s| s.trace_id == server.trace_id && s.kind == 3 && s.name == "POST /api/v1/auth/introspect")
        .await;
    let auth_server = receiver.wait_for("auth server span", |s| s.service == "auth" && s.kind == 2 && s.trace_id == server.trace_id).await;
    assert_eq!(auth_server.name, "POST /api/v1/auth/introspect");
    assert_eq!(auth_server.parent_span_id, client.span_id, "Auth's span is the child of the movies client span");
    // Integers, as the HTTP conventions have them, so that `>= 500` queries match.
    assert_eq!(client.int_attr("http.response.status_code"), Some(200), "{:?}", client.attributes);
    assert_eq!(server.int_attr("http.response.status_code"), Some(200), "{:?}", server.attributes);
    assert_eq!(auth_server.attr("http.request_id"), Some("trace-me-42"), "X-Request-Id forwarded to Auth");
    receiver
        .wait_for("an Auth database span in the trace", |s| {
            s.service == "auth" && s.trace_id == server.trace_id && s.attr("db.system.name") == Some("postgresql")
        })
        .await;

    // Auth's own spans: password hashing and Redis, and no secret in any attribute.
    let login = auth
        .client
        .post(format!("{}/api/v1/auth/login", auth.url))
        .header("x-request-id", "login-7")
        .json(&serde_json::json!({"email": viewer.email, "password": helpers::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let login_span = receiver.wait_for("login server span", |s| s.attr("http.request_id") == Some("login-7")).await;
    receiver.wait_for("password hashing span", |s| s.trace_id == login_span.trace_id && s.name == "password_hash").await;
    let me =
        auth.client.get(format!("{}/api/v1/users/me", auth.url)).bearer_auth(&viewer.access).header("x-request-id", "me-8").send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let me_span = receiver.wait_for("users/me server span", |s| s.attr("http.request_id") == Some("me-8")).await;
    receiver.wait_for("a Redis span in Auth", |s| s.trace_id == me_span.trace_id && s.attr("db.system.name") == Some("redis")).await;
    for span in receiver.spans() {
        for value in span.attributes.values() {
            assert!(!value.contains(helpers::PASSWORD) && !value.contains(&viewer.access) && !value.contains(&viewer.email), "{span:?}");
        }
    }

    // Auth's log lines of that request carry the request id and the trace id.
    let logs = std::fs::read_to_string(&log_file).unwrap();
    let line =
        logs.lines().find(|l| l.contains("\"login-7\"") && l.contains("signed in")).unwrap_or_else(|| panic!("no log line of the login: {logs}"));
    let line: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["request_id"], "login-7");
    assert_eq!(line["trace_id"], login_span.trace_id.as_str());

    // A 5xx marks its span as an error.
    movies.state.db.close().await;
    let failed = movies.client.get(movies.url("/api/v1/films?sort=title")).header("x-request-id", "doomed-1").send().await.unwrap();
    assert!(failed.status().is_server_error());
    let error_span = receiver.wait_for("the failed request's span", |s| s.attr("http.request_id") == Some("doomed-1")).await;
    assert_eq!(error_span.status_code, 2, "status ERROR");
    assert_eq!(failed.headers()["x-request-id"], "doomed-1", "errors carry the request id too");

    telemetry.shutdown().await;
    let _ = std::fs::remove_file(log_file);
}
