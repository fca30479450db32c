use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app};

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
}

#[tokio::test]
async fn introspection_accepts_the_rfc7662_form_encoding() {
    let app = spawn_app().await;
    let (_, tokens) = app.signed_in_user().await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/introspect"))
        .form(&[("token", tokens.access.as_str()), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["active"], true);
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
    let response = app.post_json("/api/v1/auth/introspect", &json!({})).await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}
