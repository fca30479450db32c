use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, assert_problem, error_fields, spawn_app};

#[tokio::test]
async fn me_returns_the_callers_account() {
    let app = spawn_app().await;
    let (email, tokens) = app.signed_in_user().await;
    let response = app.get_with("/api/v1/users/me", &tokens.access).await;
    assert_eq!(response.status(), StatusCode::OK);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["email"], email.as_str());
    assert_eq!(me["roles"], json!(["user"]));
    assert!(me.get("password_hash").is_none());
}

#[tokio::test]
async fn me_without_a_token_is_401() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/api/v1/users/me")).send().await.unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let response = app.client.get(app.url("/api/v1/users/me")).header("authorization", "Basic YTpi").send().await.unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

#[tokio::test]
async fn patch_me_changes_set_fields_clears_null_ones_and_keeps_absent_ones() {
    let app = spawn_app().await;
    let (_, tokens) = app.signed_in_user().await;
    let patch = |body: Value| {
        let app = &app;
        let token = tokens.access.clone();
        async move { app.client.patch(app.url("/api/v1/users/me")).bearer_auth(token).json(&body).send().await.unwrap() }
    };
    let response =
        patch(json!({"login": "Neo", "birth_date": "1999-03-31", "country": "ru", "region": "Moscow", "email": "NEO@matrix.example"})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let me: Value = response.json().await.unwrap();
    assert_eq!((me["login"].as_str(), me["country"].as_str(), me["email"].as_str()), (Some("Neo"), Some("RU"), Some("neo@matrix.example")));

    let me: Value = patch(json!({"region": null})).await.json().await.unwrap();
    assert_eq!(me["region"], Value::Null);
    assert_eq!(me["login"], "Neo");
    assert_eq!(me["birth_date"], "1999-03-31");

    // The new email signs in.
    assert_eq!(app.login("neo@matrix.example", PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn patch_me_refuses_taken_email_or_login_and_invalid_values() {
    let app = spawn_app().await;
    app.post_json("/api/v1/auth/signup", &json!({"email": "taken@example.com", "password": PASSWORD, "login": "taken"})).await;
    let (_, tokens) = app.signed_in_user().await;
    let patch = |body: Value| app.client.patch(app.url("/api/v1/users/me")).bearer_auth(&tokens.access).json(&body).send();

    assert_problem(patch(json!({"email": "Taken@example.com"})).await.unwrap(), StatusCode::CONFLICT, "email_taken").await;
    assert_problem(patch(json!({"login": "TAKEN"})).await.unwrap(), StatusCode::CONFLICT, "login_taken").await;
    for (body, field) in [
        (json!({"email": "nope"}), "email"),
        (json!({"email": null}), "email"),
        (json!({"birth_date": "tomorrow"}), "birth_date"),
        (json!({"roles": ["admin"]}), "roles"),
    ] {
        let problem = assert_problem(patch(body.clone()).await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(error_fields(&problem), [field], "{body}");
    }
}

#[tokio::test]
async fn changing_the_password_ends_every_other_session() {
    let app = spawn_app().await;
    let (email, current) = app.signed_in_user().await;
    let other = app.sign_in(&email).await;
    // In use: Redis holds its session's "live" mark, which the change must overwrite.
    assert_eq!(app.get_with("/api/v1/users/me", &other.access).await.status(), StatusCode::OK);
    let new_password = "a much better passphrase";
    let response = app
        .client
        .put(app.url("/api/v1/users/me/password"))
        .bearer_auth(&current.access)
        .json(&json!({"current_password": PASSWORD, "new_password": new_password}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    assert_eq!(app.get_with("/api/v1/users/me", &current.access).await.status(), StatusCode::OK);
    assert_eq!(app.refresh(&current.refresh).await.status(), StatusCode::OK);
    assert_problem(app.get_with("/api/v1/users/me", &other.access).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
    assert_problem(app.refresh(&other.refresh).await, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
    assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.login(&email, new_password).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_password_change_needs_the_current_password_and_a_good_new_one() {
    let app = spawn_app().await;
    let (email, tokens) = app.signed_in_user().await;
    let change = |current: &str, new: &str| {
        app.client
            .put(app.url("/api/v1/users/me/password"))
            .bearer_auth(&tokens.access)
            .json(&json!({"current_password": current, "new_password": new}))
            .send()
    };
    let problem =
        assert_problem(change("wrong one!", "a much better passphrase").await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(error_fields(&problem), ["current_password"]);
    let problem = assert_problem(change(PASSWORD, "qwerty123").await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(error_fields(&problem), ["new_password"]);
    // Left out: an account with a password needs it to set another.
    let without = app
        .client
        .put(app.url("/api/v1/users/me/password"))
        .bearer_auth(&tokens.access)
        .json(&json!({"new_password": "a much better passphrase"}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(without, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(error_fields(&problem), ["current_password"]);
    assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::OK, "the password is unchanged");
}
