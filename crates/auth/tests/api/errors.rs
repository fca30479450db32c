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

/// A body declared larger than the limit is refused at once, from its headers: it used
/// to wait for a body that never came until the request timeout, then answer 503.
#[tokio::test]
async fn a_body_declared_over_the_limit_is_413_before_it_is_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = "POST /api/v1/auth/login HTTP/1.1\r\nHost: auth\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n{}";
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), socket.read(&mut answer)).await.expect("no answer within 5 s").unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large") && answer.contains("application/problem+json"), "{answer}");
}

/// A body that does not arrive within the request timeout is the client's doing: 408,
/// and the connection closed. It was a 503 `timeout`, a server error that pages.
/// A request whose body is in, and that then runs out of time, is still a 503 (the
/// slow-database fault tests).
#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let options = crate::helpers::Options { extra_vars: vec![("AUTH_REQUEST_TIMEOUT_SECONDS", "1".into())], ..Default::default() };
    let app = crate::helpers::spawn_app_with(options).await;
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = "POST /api/v1/auth/login HTTP/1.1\r\nHost: auth\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n{\"email\"";
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no answer, or the connection kept open, 10 s after a 1 s timeout");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout") && answer.contains("application/problem+json"), "{answer}");
}

/// Auth decodes no content coding: a gzipped body used to fail as malformed JSON, and a
/// plain one labelled gzip was read as if unlabelled.
#[tokio::test]
async fn a_body_in_a_content_coding_is_415_and_identity_is_read() {
    let app = spawn_app().await;
    let login = |coding: &'static str| {
        app.client
            .post(app.url("/api/v1/auth/login"))
            .header("content-type", "application/json")
            .header("content-encoding", coding)
            .body(r#"{"email": "nobody@example.com", "password": "not the password"}"#)
            .send()
    };
    for coding in ["gzip", "br", "identity, gzip"] {
        let problem = assert_problem(login(coding).await.unwrap(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_content_encoding").await;
        assert!(problem["detail"].as_str().unwrap().contains("uncompressed"), "{problem}");
    }
    assert_problem(login("identity").await.unwrap(), StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    // Without a body there is nothing to decode.
    let bodiless = app.client.get(app.url("/health/live")).header("content-encoding", "gzip").send().await.unwrap();
    assert_eq!(bodiless.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_introspection_form_over_the_limit_is_413_and_a_bad_one_names_the_field() {
    let app = spawn_app().await;
    let url = app.url("/api/v1/auth/introspect");
    let form = |body: String| {
        let request = app.client.post(&url).basic_auth(crate::helpers::CLIENT_ID, Some(crate::helpers::CLIENT_SECRET));
        request.header("content-type", "application/x-www-form-urlencoded").body(body).send()
    };
    let response = form(format!("token={}", "x".repeat(64 * 1024))).await.unwrap();
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let problem = assert_problem(form("nothing=here".into()).await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let message = problem["errors"][0]["message"].as_str().unwrap();
    assert_eq!(problem["errors"][0]["field"], "token", "{problem}");
    assert!(message.contains("missing field `token`") && !message.starts_with("Failed to deserialize"), "{problem}");
}

/// A query string that is not UTF-8 once percent-decoded is refused rather than read
/// with U+FFFD in place of its bytes.
#[tokio::test]
async fn a_query_string_that_is_not_utf8_once_decoded_is_400() {
    let app = spawn_app().await;
    let (_, tokens) = app.signed_in_user().await;
    let response = app.get_with("/api/v1/users/me/login-history?cursor=%FF%FE", &tokens.access).await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST, "malformed_query").await;
    assert!(problem["detail"].as_str().unwrap().contains("UTF-8"), "{problem}");
    let response = app.get_with("/api/v1/users/me/login-history?limit=%32", &tokens.access).await;
    assert_eq!(response.status(), StatusCode::OK, "percent-encoded UTF-8 is read as such");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let app = spawn_app().await;
    let response = app.client.post(app.url("/api/v1/auth/login")).body("email=a").send().await.unwrap();
    assert_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
    let json = r#"{"email":"a@example.com","password":"correct horse battery"}"#;
    for declared in ["text/plain", "application/x-www-form-urlencoded", "application/xml"] {
        let response = app.client.post(app.url("/api/v1/auth/login")).header("content-type", declared).body(json).send().await.unwrap();
        assert_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
    }
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
