use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{PASSWORD, assert_problem, error_fields, spawn_app};

#[tokio::test]
async fn signup_returns_201_with_the_user_and_never_the_hash() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/api/v1/auth/signup",
            &json!({"email": "  Ann.Lee@Example.COM ", "password": PASSWORD, "login": "ann_lee",
                    "birth_date": "1990-04-01", "country": "ru", "region": "Moscow"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let text = response.text().await.unwrap();
    assert!(!text.contains("argon2") && !text.contains("password"), "{text}");
    let user: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(user["email"], "ann.lee@example.com");
    assert_eq!(user["login"], "ann_lee");
    assert_eq!(user["birth_date"], "1990-04-01");
    assert_eq!(user["country"], "RU");
    assert_eq!(user["region"], "Moscow");
    assert_eq!(user["roles"], json!(["user"]));

    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE email = 'ann.lee@example.com'").fetch_one(&app.db).await.unwrap();
    assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
}

#[tokio::test]
async fn signup_refuses_a_duplicate_email_whatever_its_case_with_409() {
    let app = spawn_app().await;
    app.signup("dup@example.com").await;
    let response = app.post_json("/api/v1/auth/signup", &json!({"email": "DUP@example.com ", "password": PASSWORD})).await;
    assert_problem(response, StatusCode::CONFLICT, "email_taken").await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn signup_refuses_a_duplicate_login_whatever_its_case_with_409() {
    let app = spawn_app().await;
    let first = app.post_json("/api/v1/auth/signup", &json!({"email": "a@example.com", "password": PASSWORD, "login": "Viewer"})).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let second = app.post_json("/api/v1/auth/signup", &json!({"email": "b@example.com", "password": PASSWORD, "login": "viewer"})).await;
    assert_problem(second, StatusCode::CONFLICT, "login_taken").await;
    // Nothing half-written: no user row and no role grant for the refused account.
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&app.db).await.unwrap();
    let grants: i64 = sqlx::query_scalar("SELECT count(*) FROM user_roles").fetch_one(&app.db).await.unwrap();
    assert_eq!((users, grants), (1, 1));
}

#[tokio::test]
async fn signup_refuses_passwords_that_fail_the_policy_with_422_naming_the_field() {
    let app = spawn_app().await;
    let cases = [("short", "at least 8"), ("password123", "too common"), ("12345678", "too common"), ("ann@example.com", "email")];
    for (password, fragment) in cases {
        let response = app.post_json("/api/v1/auth/signup", &json!({"email": "ann@example.com", "password": password})).await;
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(error_fields(&problem), ["password"], "{password}");
        assert!(problem["errors"][0]["message"].as_str().unwrap().contains(fragment), "{password}: {problem}");
    }
}

#[tokio::test]
async fn signup_refuses_invalid_fields_with_422_naming_each() {
    let app = spawn_app().await;
    let cases = [
        (json!({"email": "not-an-email", "password": PASSWORD}), "email"),
        (json!({"email": "a@example.com", "password": PASSWORD, "login": "a"}), "login"),
        (json!({"email": "a@example.com", "password": PASSWORD, "country": "Russia"}), "country"),
        (json!({"email": "a@example.com", "password": PASSWORD, "birth_date": "3000-01-01"}), "birth_date"),
        (json!({"email": "a@example.com", "password": PASSWORD, "birth_date": "01.02.1990"}), "birth_date"),
        (json!({"email": "a@example.com", "password": 12345678}), "password"),
        (json!({"email": ["a@example.com"], "password": PASSWORD}), "email"),
        (json!({"email": "a@example.com", "password": PASSWORD, "region": ""}), "region"),
    ];
    for (body, field) in cases {
        let response = app.post_json("/api/v1/auth/signup", &body).await;
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(error_fields(&problem), [field], "{body}");
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn signup_with_a_missing_field_or_an_unknown_one_is_422() {
    let app = spawn_app().await;
    for body in [json!({"password": PASSWORD}), json!({"email": "a@example.com", "password": PASSWORD, "is_admin": true})] {
        let response = app.post_json("/api/v1/auth/signup", &body).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
}
