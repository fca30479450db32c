//! CORS for front ends on another origin: the origins of `OAUTH_FRONTEND_REDIRECT_URIS`
//! (`http://127.0.0.1:3000` and `https://other.example` in every test app), with
//! credentials; any other origin gets no CORS header.

use reqwest::{Method, Response, StatusCode};
use serde_json::json;

use super::support::*;
use crate::helpers::{TestApp, assert_problem};

/// The origin of `FRONTEND`.
const ORIGIN: &str = "http://127.0.0.1:3000";

const CORS_HEADERS: [&str; 6] = [
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-max-age",
    "access-control-expose-headers",
];

fn header(response: &Response, name: &str) -> String {
    response.headers().get(name).map(|v| v.to_str().unwrap().to_ascii_lowercase()).unwrap_or_default()
}

fn listed(response: &Response, name: &str) -> Vec<String> {
    header(response, name).split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
}

/// What a browser sends before a request it may not send cross-origin without asking.
async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str, headers: &str) -> Response {
    browser()
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .send()
        .await
        .unwrap()
}

fn assert_allowed_preflight(response: &Response, origin: &str, method: &str) {
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(header(response, "access-control-allow-origin"), origin);
    assert_eq!(header(response, "access-control-allow-credentials"), "true");
    assert!(listed(response, "access-control-allow-methods").contains(&method.to_ascii_lowercase()), "{response:?}");
    let allowed_headers = listed(response, "access-control-allow-headers");
    for needed in ["content-type", "authorization", "x-request-id"] {
        assert!(allowed_headers.contains(&needed.to_owned()), "{needed}: {allowed_headers:?}");
    }
    assert!(header(response, "access-control-max-age").parse::<u64>().unwrap() > 0);
    assert!(listed(response, "vary").contains(&"origin".to_owned()), "{response:?}");
}

#[tokio::test]
async fn a_front_end_origin_may_preflight_the_exchange_and_the_linking_routes() {
    let vk = Stub::start(Kind::Vk).await;
    let app = app_with(&[&vk], vec![]).await;
    let response = preflight(&app, "/api/v1/oauth/exchange", ORIGIN, "POST", "content-type,x-request-id").await;
    assert_allowed_preflight(&response, ORIGIN, "POST");
    for method in ["POST", "DELETE", "GET"] {
        let response = preflight(&app, "/api/v1/users/me/social/vk", "https://other.example", method, "authorization").await;
        assert_allowed_preflight(&response, "https://other.example", method);
    }
    // And the rest of the viewer's API, where the tokens the exchange hands out are used.
    let response = preflight(&app, "/api/v1/auth/refresh", ORIGIN, "POST", "content-type").await;
    assert_allowed_preflight(&response, ORIGIN, "POST");
}

#[tokio::test]
async fn any_other_origin_gets_no_cors_header() {
    let app = app_with(&[], vec![]).await;
    // A look-alike host, another port or scheme of the listed one, the opaque origin.
    for origin in ["https://evil.example", "http://127.0.0.1:3000.evil.example", "http://127.0.0.1:3001", "https://127.0.0.1:3000", "null"] {
        let response = preflight(&app, "/api/v1/oauth/exchange", origin, "POST", "content-type").await;
        for name in CORS_HEADERS {
            assert!(response.headers().get(name).is_none(), "{origin}: {name} in {response:?}");
        }
        let response =
            app.client.post(app.url("/api/v1/oauth/exchange")).header("origin", origin).json(&json!({"login_code": "x"})).send().await.unwrap();
        for name in CORS_HEADERS {
            assert!(response.headers().get(name).is_none(), "{origin}: {name} in {response:?}");
        }
        assert!(listed(&response, "vary").contains(&"origin".to_owned()), "{response:?}");
    }
    // Without a front-end address configured, no origin is listed at all.
    let app = crate::helpers::spawn_app().await;
    let response = preflight(&app, "/api/v1/oauth/exchange", ORIGIN, "POST", "content-type").await;
    assert!(response.headers().get("access-control-allow-origin").is_none(), "{response:?}");
}

/// The whole cross-origin sign-in: the front end exchanges its login code with
/// `credentials: "include"` and may read the answer.
#[tokio::test]
async fn the_exchange_from_a_front_end_origin_can_be_read_with_credentials() {
    let stub = Stub::start(Kind::Yandex).await;
    let app = app_with(&[&stub], vec![]).await;
    let flow = authorize(&app, "yandex", Some(FRONTEND)).await;
    stub.expect_sign_in(&flow, "cors", &Person::new("77", "cors@yandex.ru")).await;
    let response = callback(&app, &flow, "cors").await;
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let code = location.query_pairs().find(|(k, _)| k == "login_code").unwrap().1.into_owned();

    let response = app
        .client
        .post(app.url("/api/v1/oauth/exchange"))
        .header("origin", ORIGIN)
        .header("cookie", &flow.cookie)
        .json(&json!({"login_code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "access-control-allow-origin"), ORIGIN);
    assert_eq!(header(&response, "access-control-allow-credentials"), "true");
    let exposed = listed(&response, "access-control-expose-headers");
    for name in ["x-request-id", "ratelimit", "ratelimit-policy", "retry-after"] {
        assert!(exposed.contains(&name.to_owned()), "{name}: {exposed:?}");
    }
    let access = crate::helpers::tokens(response).await.access;
    // The tokens are then used on the viewer's API from the same origin.
    let response = app.client.get(app.url("/api/v1/users/me/social")).header("origin", ORIGIN).bearer_auth(&access).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "access-control-allow-origin"), ORIGIN);
}

/// Browsers send a preflight without `X-Request-Id` or a token, and may send many: it is
/// answered before the request-id rule and the quotas, while the requests themselves
/// are held to both, and their refusals stay readable by the front end.
#[tokio::test]
async fn preflights_pass_the_request_id_rule_and_the_quotas() {
    let app = app_with(&[], vec![("REQUIRE_REQUEST_ID", "true".into()), ("AUTH_RATE_LIMIT_API_ANONYMOUS", "1/60s burst 2".into())]).await;
    for _ in 0..5 {
        let response = preflight(&app, "/api/v1/oauth/exchange", ORIGIN, "POST", "content-type,x-request-id").await;
        assert_allowed_preflight(&response, ORIGIN, "POST");
    }
    let exchange = |id: &'static str| {
        app.client
            .post(app.url("/api/v1/oauth/exchange"))
            .header("origin", ORIGIN)
            .header("x-request-id", id)
            .json(&json!({"login_code": "x"}))
            .send()
    };
    for id in ["cors-1", "cors-2"] {
        let response = exchange(id).await.unwrap();
        assert_eq!(header(&response, "access-control-allow-origin"), ORIGIN);
        assert_problem(response, StatusCode::BAD_REQUEST, "invalid_login_code").await;
    }
    let refused = exchange("cors-3").await.unwrap();
    assert_eq!(header(&refused, "access-control-allow-origin"), ORIGIN);
    assert!(listed(&refused, "access-control-expose-headers").contains(&"retry-after".to_owned()));
    assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Without a request id the request itself is refused, readably.
    let response =
        app.client.post(app.url("/api/v1/oauth/exchange")).header("origin", ORIGIN).json(&json!({"login_code": "x"})).send().await.unwrap();
    assert_eq!(header(&response, "access-control-allow-origin"), ORIGIN);
    assert_problem(response, StatusCode::BAD_REQUEST, "request_id_required").await;
}

/// A preflight is answered inside the request id, the span and the metrics (still
/// before the request-id rule): it has an `X-Request-Id` like every answer, a log line
/// and a count, so preflight traffic shows.
#[tokio::test]
async fn preflights_have_a_request_id_a_log_line_and_a_count() {
    // The server's tasks run on this test's thread: their logs are captured.
    let (logs, _logging) = platform::testing::CapturedLogs::capture(tracing::Level::DEBUG);
    let app = app_with(&[], vec![("REQUIRE_REQUEST_ID", "true".into())]).await;
    let response = preflight(&app, "/api/v1/auth/refresh", ORIGIN, "POST", "content-type,x-request-id").await;
    assert_allowed_preflight(&response, ORIGIN, "POST");
    let id = header(&response, "x-request-id");
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "a generated request id: {id:?}");
    let text = logs.text();
    assert!(
        text.lines().any(|line| line.contains("answered") && line.contains(&id) && line.contains("OPTIONS /api/v1/auth/refresh")),
        "no log line of the preflight's span: {text:.3000}"
    );
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"http_server_requests_total{method="OPTIONS",route="/api/v1/auth/refresh",status="200"}"#), "{metrics}");
}
