use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn logout_ends_the_session_its_access_and_refresh_tokens_stop_working() {
    let app = spawn_app().await;
    let (email, tokens) = app.signed_in_user().await;
    let other = app.sign_in(&email).await;

    let response = app.post_with("/api/v1/auth/logout", &tokens.access).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let me = app.get_with("/api/v1/users/me", &tokens.access).await;
    assert_eq!(me.headers()["www-authenticate"], r#"Bearer error="invalid_token""#);
    assert_problem(me, StatusCode::UNAUTHORIZED, "invalid_token").await;
    assert_problem(app.refresh(&tokens.refresh).await, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
    assert_eq!(app.introspect(&tokens.access).await, json!({"active": false}));

    // The denylist entry lives until the token would have expired.
    let claims = app.state.tokens.verify(&tokens.access).unwrap();
    let key = format!("{}:jti:{}", app.settings.redis_key_prefix, claims.jti.simple());
    let ttl = redis_ttl(&key).await;
    let remaining = claims.exp - chrono::Utc::now().timestamp();
    // Lower bound loose: the machine may be slow between the logout and this check.
    assert!(ttl > 0 && ttl <= remaining + 1 && ttl > remaining / 2, "ttl {ttl}, token has {remaining}s left");

    // Another session of the same user is untouched.
    assert_eq!(app.get_with("/api/v1/users/me", &other.access).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn logout_is_refused_even_when_the_redis_cache_lost_its_entries() {
    let app = spawn_app().await;
    let (_, tokens) = app.signed_in_user().await;
    app.post_with("/api/v1/auth/logout", &tokens.access).await;
    // Redis keeps nothing on disk: simulate its restart by deleting our keys.
    flush_prefix(&app.settings.redis_key_prefix).await;
    let me = app.get_with("/api/v1/users/me", &tokens.access).await;
    assert_problem(me, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

#[tokio::test]
async fn logout_all_ends_every_session_of_the_user_only() {
    let app = spawn_app().await;
    let (email, phone) = app.signed_in_user().await;
    let laptop = app.sign_in(&email).await;
    let (_, stranger) = app.signed_in_user().await;
    // Prime the live cache so the test proves it gets overwritten.
    assert_eq!(app.get_with("/api/v1/users/me", &laptop.access).await.status(), StatusCode::OK);

    assert_eq!(app.post_with("/api/v1/auth/logout-all", &phone.access).await.status(), StatusCode::NO_CONTENT);
    for tokens in [&phone, &laptop] {
        assert_problem(app.get_with("/api/v1/users/me", &tokens.access).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
        assert_problem(app.refresh(&tokens.refresh).await, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
    }
    assert_eq!(app.get_with("/api/v1/users/me", &stranger.access).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn logout_without_a_token_is_401_with_a_bearer_challenge() {
    let app = spawn_app().await;
    let response = app.client.post(app.url("/api/v1/auth/logout")).send().await.unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

async fn redis_connection() -> redis::aio::MultiplexedConnection {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
}

async fn redis_ttl(key: &str) -> i64 {
    redis::cmd("TTL").arg(key).query_async(&mut redis_connection().await).await.unwrap()
}

pub async fn flush_prefix(prefix: &str) {
    let mut conn = redis_connection().await;
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut conn).await.unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query_async(&mut conn).await.unwrap();
    }
}

/// Nothing to revoke is no call to Redis: an empty pipeline is refused by the client,
/// and its error used to pause the cache's reads as if Redis had failed (a password
/// change without other sessions did it).
#[tokio::test]
async fn revoking_nothing_is_no_error() {
    let app = spawn_app().await;
    app.state.revocations.revoke(&[], None).await.expect("nothing to revoke");
}
