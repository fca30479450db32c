//! Provider errors: declined consent, a refused exchange, errors with status 200, a
//! provider down or too slow. Each is a clear problem within a bounded time, and
//! nothing is created.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use wiremock::{Mock, ResponseTemplate, matchers::method};

use super::support::*;
use crate::helpers::assert_problem;

#[tokio::test]
async fn declined_consent_is_403_and_consumes_the_state() {
    let stub = Stub::start(Kind::Yandex).await;
    stub.expect_no_exchange().await;
    let app = app_with(&[&stub], vec![]).await;
    let flow = authorize(&app, "yandex", None).await;
    let query = [("error", "access_denied".to_owned()), ("error_description", "The user denied".to_owned()), ("state", flow.state())];
    assert_problem(callback_with(&app, "yandex", &query, Some(&flow.cookie)).await, StatusCode::FORBIDDEN, "provider_denied").await;
    assert_problem(callback(&app, &flow, "late-code").await, StatusCode::BAD_REQUEST, "invalid_state").await;

    let flow = authorize(&app, "yandex", None).await;
    let query = [("error", "server_error".to_owned()), ("state", flow.state())];
    assert_problem(callback_with(&app, "yandex", &query, Some(&flow.cookie)).await, StatusCode::BAD_GATEWAY, "provider_error").await;
    assert_eq!(user_count(&app).await, 0);
}

#[tokio::test]
async fn a_refused_code_exchange_is_502() {
    for kind in [Kind::Yandex, Kind::Google, Kind::Mailru, Kind::Vk] {
        let stub = Stub::start(kind).await;
        let app = app_with(&[&stub], vec![]).await;
        let flow = authorize(&app, kind.name(), None).await;
        let error = json!({"error": "invalid_grant", "error_description": "Code has expired"});
        stub.token_answers(&flow, "stale", ResponseTemplate::new(400).set_body_json(error)).await;
        let problem = assert_problem(callback(&app, &flow, "stale").await, StatusCode::BAD_GATEWAY, "provider_error").await;
        assert!(!problem.to_string().contains("Code has expired"), "provider text stays in the log: {problem}");
        assert_eq!(user_count(&app).await, 0, "{kind:?}");
    }
}

#[tokio::test]
async fn errors_reported_with_status_200_are_errors() {
    // VK ID reports some errors with 200; Mail.ru's shape carries a numeric code too.
    for (kind, body) in [
        (Kind::Vk, json!({"error": "invalid_request", "error_description": "device_id is invalid", "state": "x"})),
        (Kind::Mailru, json!({"error": "invalid_grant", "error_code": 6, "error_description": "token not found"})),
    ] {
        let stub = Stub::start(kind).await;
        let app = app_with(&[&stub], vec![]).await;
        let flow = authorize(&app, kind.name(), None).await;
        stub.token_answers(&flow, "c", ResponseTemplate::new(200).set_body_json(body)).await;
        assert_problem(callback(&app, &flow, "c").await, StatusCode::BAD_GATEWAY, "provider_error").await;
        assert_eq!(user_count(&app).await, 0);
    }
}

#[tokio::test]
async fn a_user_info_error_creates_nothing() {
    let stub = Stub::start(Kind::Mailru).await;
    let app = app_with(&[&stub], vec![]).await;
    let flow = authorize(&app, "mailru", None).await;
    stub.token_answers(&flow, "c", ResponseTemplate::new(200).set_body_json(json!({"access_token": "at", "expires_in": 3600}))).await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"error": "invalid_token", "error_code": 6, "error_description": "token not found"})),
        )
        .expect(1)
        .mount(&stub.server)
        .await;
    assert_problem(callback(&app, &flow, "c").await, StatusCode::BAD_GATEWAY, "provider_error").await;
    assert_eq!(user_count(&app).await, 0);
}

#[tokio::test]
async fn a_provider_that_is_down_is_502() {
    // An address where nothing listens: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let stub = Stub::start(Kind::Yandex).await;
    let app = app_with(&[&stub], vec![("OAUTH_YANDEX_TOKEN_URL", format!("http://{closed}/token"))]).await;
    let flow = authorize(&app, "yandex", None).await;
    assert_problem(callback(&app, &flow, "c").await, StatusCode::BAD_GATEWAY, "provider_error").await;

    // Google's discovery is needed to even start.
    let app = app_with(
        &[],
        vec![
            ("OAUTH_GOOGLE_CLIENT_ID", CLIENT_ID.into()),
            ("OAUTH_GOOGLE_CLIENT_SECRET", CLIENT_SECRET.into()),
            ("OAUTH_GOOGLE_ISSUER", format!("http://{closed}")),
        ],
    )
    .await;
    let response = browser().get(app.url("/api/v1/oauth/google/authorize")).send().await.unwrap();
    assert_problem(response, StatusCode::BAD_GATEWAY, "provider_error").await;
    assert_eq!(user_count(&app).await, 0);
}

#[tokio::test]
async fn a_provider_slower_than_the_timeout_is_504() {
    let stub = Stub::start(Kind::Yandex).await;
    // Far longer than the timeout below; the test does not wait for it.
    let slow = ResponseTemplate::new(200).set_body_json(json!({"access_token": "at"})).set_delay(Duration::from_secs(300));
    let app = app_with(&[&stub], vec![("OAUTH_HTTP_TIMEOUT_SECONDS", "1".into())]).await;
    let flow = authorize(&app, "yandex", None).await;
    stub.token_answers(&flow, "c", slow).await;
    assert_problem(callback(&app, &flow, "c").await, StatusCode::GATEWAY_TIMEOUT, "provider_timeout").await;
    assert_eq!(user_count(&app).await, 0);
}

#[tokio::test]
async fn no_email_from_the_provider_means_no_new_account() {
    let stub = Stub::start(Kind::Vk).await;
    let app = app_with(&[&stub], vec![]).await;
    let flow = authorize(&app, "vk", None).await;
    let person = Person { id: "777".into(), email: None, email_verified: false };
    stub.expect_sign_in(&flow, "c", &person).await;
    assert_problem(callback(&app, &flow, "c").await, StatusCode::UNPROCESSABLE_ENTITY, "provider_email_required").await;
    assert_eq!(user_count(&app).await, 0);
}

#[tokio::test]
async fn a_vk_callback_without_a_device_id_is_refused() {
    let stub = Stub::start(Kind::Vk).await;
    stub.expect_no_exchange().await;
    let app = app_with(&[&stub], vec![]).await;
    let flow = authorize(&app, "vk", None).await;
    let query = [("code", "c".to_owned()), ("state", flow.state())];
    assert_problem(callback_with(&app, "vk", &query, Some(&flow.cookie)).await, StatusCode::BAD_GATEWAY, "provider_error").await;
}
