use base64::Engine;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{CLIENT_ID, CLIENT_SECRET, Options, TestApp, assert_problem, spawn_app, spawn_app_with};

/// A 401 `invalid_client` problem with the `Basic` challenge; returns its body.
async fn assert_invalid_client(response: Response) -> Value {
    assert_eq!(response.headers().get("www-authenticate").map(|v| v.to_str().unwrap()), Some(r#"Basic realm="introspection""#));
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_client").await
}

/// `POST /api/v1/auth/introspect` with `Authorization: <authorization>`, or none.
async fn introspect_with_header(app: &TestApp, authorization: Option<&str>, token: &str) -> Response {
    let mut request = app.client.post(app.url("/api/v1/auth/introspect")).json(&json!({"token": token}));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.unwrap()
}

fn basic(plain: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(plain))
}

#[tokio::test]
async fn introspection_of_a_live_token_returns_its_claims_in_rfc7662_shape() {
    let app = spawn_app().await;
    let (_, tokens) = app.signed_in_user().await;
    let claims = app.state.tokens.verify(&tokens.access).unwrap();
    let body = app.introspect(&tokens.access).await;
    assert_eq!(body["active"], true);
    assert_eq!(body["sub"], claims.sub.to_string());
    assert_eq!(body["sid"], claims.sid.to_string());
    assert_eq!(body["jti"], claims.jti.to_string());
    assert_eq!(body["exp"], claims.exp);
    assert_eq!(body["iss"], "cinema-auth");
    assert_eq!(body["aud"], "cinema");
    assert_eq!(body["roles"], json!(["user"]));
    assert_eq!(body["token_type"], "Bearer");
    // No birth date: said as null, not left out (absent means an Auth that does not say).
    assert_eq!(body.get("age_class"), Some(&serde_json::Value::Null), "{body}");
}

#[tokio::test]
async fn introspection_accepts_the_rfc7662_form_encoding() {
    let app = spawn_app().await;
    let (_, tokens) = app.signed_in_user().await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/introspect"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("token", tokens.access.as_str()), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["active"], true);
    // Media types are case-insensitive, and may carry parameters.
    for content_type in ["Application/X-WWW-Form-Urlencoded", "application/x-www-form-urlencoded ; charset=UTF-8"] {
        let response = app
            .client
            .post(app.url("/api/v1/auth/introspect"))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(format!("token={}", tokens.access))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{content_type}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["active"], true, "{content_type}");
    }
}

#[tokio::test]
async fn introspection_of_junk_or_a_refresh_token_is_inactive() {
    let app = spawn_app().await;
    let (_, tokens) = app.signed_in_user().await;
    for token in ["junk", tokens.refresh.as_str(), ""] {
        assert_eq!(app.introspect(token).await, json!({"active": false}));
    }
}

#[tokio::test]
async fn introspection_shows_a_role_change_at_once() {
    let app = spawn_app().await;
    let (_, tokens) = app.signed_in_user().await;
    let user_id = app.state.tokens.verify(&tokens.access).unwrap().sub;
    auth::store::users::grant_role(&app.db, user_id, "subscriber").await.unwrap();
    assert_eq!(app.introspect(&tokens.access).await["roles"], json!(["subscriber", "user"]));
    // The token itself still carries the old roles until it is refreshed.
    assert_eq!(app.state.tokens.verify(&tokens.access).unwrap().roles, ["user"]);
    let refreshed = crate::helpers::tokens(app.refresh(&tokens.refresh).await).await;
    assert_eq!(app.state.tokens.verify(&refreshed.access).unwrap().roles, ["subscriber", "user"]);
}

#[tokio::test]
async fn introspection_without_a_token_field_is_422() {
    let app = spawn_app().await;
    let response =
        app.client.post(app.url("/api/v1/auth/introspect")).basic_auth(CLIENT_ID, Some(CLIENT_SECRET)).json(&json!({})).send().await.unwrap();
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

/// RFC 7662 §2.1: the endpoint requires its callers to be authorized. Without
/// credentials, in either encoding, the answer is 401 with a `Basic` challenge, and
/// nothing about the token.
#[tokio::test]
async fn introspection_without_client_credentials_is_401_with_a_basic_challenge() {
    let app = spawn_app().await;
    let (_, tokens) = app.signed_in_user().await;
    let body = assert_invalid_client(introspect_with_header(&app, None, &tokens.access).await).await;
    assert!(body.get("active").is_none(), "{body}");
    let form = app.client.post(app.url("/api/v1/auth/introspect")).form(&[("token", tokens.access.as_str())]).send().await.unwrap();
    assert_invalid_client(form).await;
    // A viewer's own access token is no client credential.
    let bearer = introspect_with_header(&app, Some(&format!("Bearer {}", tokens.access)), &tokens.access).await;
    assert_invalid_client(bearer).await;
}

/// An unknown client id and a known one with a wrong secret get the very same answer,
/// so a guesser cannot tell which ids exist; malformed credentials get it too.
#[tokio::test]
async fn an_unknown_client_a_wrong_secret_and_malformed_credentials_get_the_same_401() {
    let app = spawn_app().await;
    let (_, tokens) = app.signed_in_user().await;
    let unknown = assert_invalid_client(app.introspect_as("billing", CLIENT_SECRET, &tokens.access).await).await;
    let wrong = assert_invalid_client(app.introspect_as(CLIENT_ID, &CLIENT_SECRET.replace('a', "b"), &tokens.access).await).await;
    assert_eq!(unknown, wrong);
    for malformed in
        ["Basic", "Basic !!!not-base64", &basic("movies"), &basic(&format!("{CLIENT_ID}:{CLIENT_SECRET}%ZZ")), "Digest username=\"movies\""]
    {
        let body = assert_invalid_client(introspect_with_header(&app, Some(malformed), &tokens.access).await).await;
        assert_eq!(body, unknown, "{malformed}");
    }
}

/// RFC 6749 §2.3.1: the id and secret are form-urlencoded before Base64, and decoded
/// by the server.
#[tokio::test]
async fn basic_credentials_with_percent_encoded_parts_are_decoded() {
    let app = spawn_app().await;
    let (_, tokens) = app.signed_in_user().await;
    let encoded_id = "%6D%6F%76%69%65%73"; // "movies"
    let encoded_secret = CLIENT_SECRET.replace('-', "%2D").replace('t', "%74");
    let response = introspect_with_header(&app, Some(&basic(&format!("{encoded_id}:{encoded_secret}"))), &tokens.access).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["active"], true);
}

/// Without `AUTH_INTROSPECTION_CLIENTS`, no one may introspect, and start-up warns
/// once; with the rate limits off, the handler checks the credentials itself.
#[tokio::test]
async fn with_no_client_registered_every_call_is_refused_and_with_limits_off_credentials_are_still_checked() {
    // Auth's start-up runs on this thread: its logs are captured.
    let (logs, logging) = platform::testing::CapturedLogs::capture(tracing::Level::WARN);
    let none = spawn_app_with(Options { extra_vars: vec![("AUTH_INTROSPECTION_CLIENTS", "".into())], ..Default::default() }).await;
    drop(logging);
    let text = logs.text();
    let warnings: Vec<&str> = text.lines().filter(|line| line.contains("AUTH_INTROSPECTION_CLIENTS is empty")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(warnings[0].contains("WARN") && warnings[0].contains("refused"), "{}", warnings[0]);
    let (_, tokens) = none.signed_in_user().await;
    assert!(none.state.introspection_clients.is_empty());
    assert_invalid_client(none.introspect_as(CLIENT_ID, CLIENT_SECRET, &tokens.access).await).await;
    drop(none);

    let unlimited = spawn_app_with(Options { extra_vars: vec![("AUTH_RATE_LIMIT_ENABLED", "false".into())], ..Default::default() }).await;
    let (_, tokens) = unlimited.signed_in_user().await;
    let refused = unlimited.introspect_as(CLIENT_ID, "wrong-secret-wrong-secret-wrong-secret", &tokens.access).await;
    assert!(refused.headers().get("ratelimit").is_none(), "limits are off");
    assert_invalid_client(refused).await;
    assert_invalid_client(introspect_with_header(&unlimited, None, &tokens.access).await).await;
    assert_eq!(unlimited.introspect(&tokens.access).await["active"], true);
}
