use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_problem, spawn_app, tokens};

#[tokio::test]
async fn refresh_returns_a_new_pair_and_the_old_refresh_token_stops_working() {
    let app = spawn_app().await;
    let (_, first) = app.signed_in_user().await;
    let response = app.refresh(&first.refresh).await;
    assert_eq!(response.status(), StatusCode::OK);
    let second = tokens(response).await;
    assert_ne!(second.refresh, first.refresh);
    assert_ne!(second.access, first.access);
    let claims = |t: &str| app.state.tokens.verify(t).unwrap();
    assert_eq!(claims(&first.access).sid, claims(&second.access).sid, "same session");

    // The successor works, and so does its successor.
    let third = app.refresh(&second.refresh).await;
    assert_eq!(third.status(), StatusCode::OK);
}

#[tokio::test]
async fn replaying_a_rotated_refresh_token_ends_the_whole_session() {
    let app = spawn_app().await;
    let (_, first) = app.signed_in_user().await;
    let second = tokens(app.refresh(&first.refresh).await).await;
    // In use: Redis holds the session's "live" mark, which the replay must overwrite.
    assert_eq!(app.get_with("/api/v1/users/me", &second.access).await.status(), StatusCode::OK);

    let replay = app.refresh(&first.refresh).await;
    assert_problem(replay, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;

    // Every token of the family is dead: the successor refresh token and the access tokens.
    let successor = app.refresh(&second.refresh).await;
    assert_problem(successor, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
    let me = app.get_with("/api/v1/users/me", &second.access).await;
    assert_problem(me, StatusCode::UNAUTHORIZED, "invalid_token").await;
    assert_eq!(app.introspect(&second.access).await, json!({"active": false}));
    let reason: String = sqlx::query_scalar("SELECT end_reason FROM sessions").fetch_one(&app.db).await.unwrap();
    assert_eq!(reason, "refresh_reuse");
}

#[tokio::test]
async fn a_replay_does_not_touch_the_users_other_sessions() {
    let app = spawn_app().await;
    let (email, phone) = app.signed_in_user().await;
    let laptop = app.sign_in(&email).await;
    app.refresh(&phone.refresh).await;
    app.refresh(&phone.refresh).await;
    let response = app.get_with("/api/v1/users/me", &laptop.access).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_malformed_and_expired_refresh_tokens_get_401() {
    let app = spawn_app().await;
    let (_, tokens) = app.signed_in_user().await;
    for bogus in ["", "nope", &"x".repeat(500), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        assert_problem(app.refresh(bogus).await, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
    }
    sqlx::query("UPDATE refresh_tokens SET expires_at = now() - interval '1 second'").execute(&app.db).await.unwrap();
    assert_problem(app.refresh(&tokens.refresh).await, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
}

#[tokio::test]
async fn refresh_with_the_wrong_type_is_422() {
    let app = spawn_app().await;
    let response = app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": 42})).await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test]
async fn concurrent_use_of_one_refresh_token_lets_at_most_one_through() {
    let app = spawn_app().await;
    let (_, tokens) = app.signed_in_user().await;
    let attempts = futures_join(&app, &tokens.refresh, 8).await;
    let ok = attempts.iter().filter(|s| **s == StatusCode::OK).count();
    assert!(ok <= 1, "{attempts:?}");
    assert!(attempts.iter().all(|s| *s == StatusCode::OK || *s == StatusCode::UNAUTHORIZED), "{attempts:?}");
}

async fn futures_join(app: &crate::helpers::TestApp, token: &str, n: usize) -> Vec<StatusCode> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let client = app.client.clone();
        let url = app.url("/api/v1/auth/refresh");
        let body = json!({"refresh_token": token});
        set.spawn(async move { client.post(url).json(&body).send().await.unwrap().status() });
    }
    set.join_all().await
}

/// ASVS V3.3.2: a session used every day still ends at its sign-in plus
/// `AUTH_SESSION_MAX_LIFETIME_SECONDS` (30 days): no refresh renews it past that, and
/// once there its refresh token is refused and the viewer signs in again.
#[tokio::test]
async fn refreshing_never_renews_a_session_past_its_lifetime_from_sign_in() {
    let app = spawn_app().await;
    let (_, first) = app.signed_in_user().await;
    let lifetime = chrono::Duration::days(30);
    let expiry = || async {
        sqlx::query_as::<_, (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>("SELECT created_at, expires_at FROM sessions")
            .fetch_one(&app.db)
            .await
            .unwrap()
    };
    // Signed in 29 days ago (moved back in the real table): a refresh now renews the
    // session by the refresh lifetime, but only up to a day from now.
    sqlx::query("UPDATE sessions SET created_at = created_at - interval '29 days'").execute(&app.db).await.unwrap();
    let second = tokens(app.refresh(&first.refresh).await).await;
    let (created, expires) = expiry().await;
    assert_eq!(expires, created + lifetime, "capped at sign-in plus the lifetime, not 30 days from now");
    let token_expiry: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT expires_at FROM refresh_tokens WHERE rotated_at IS NULL").fetch_one(&app.db).await.unwrap();
    assert_eq!(token_expiry, created + lifetime, "the successor refresh token too");
    // A day later, the lifetime is over: the refresh token is refused.
    sqlx::query("UPDATE sessions SET created_at = created_at - interval '1 day 1 second'").execute(&app.db).await.unwrap();
    let refused = app.refresh(&second.refresh).await;
    assert_problem(refused, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
}

/// A refresh racing the end of its session (a sign-out, a password change, a deleted
/// session): the ending transaction holds the session's row when the refresh arrives.
/// The refresh used to wait for it, then renew the ended session and answer 200 with a
/// pair that was dead on arrival; it must answer 401 and write nothing.
#[tokio::test]
async fn a_refresh_racing_the_end_of_its_session_gets_401_and_writes_nothing() {
    let app = spawn_app().await;
    let (_, signed_in) = app.signed_in_user().await;
    let session_id = app.state.tokens.verify(&signed_in.access).unwrap().sid;
    let mut ending = app.db.begin().await.unwrap();
    sqlx::query("UPDATE sessions SET ended_at = now(), end_reason = 'logout' WHERE id = $1").bind(session_id).execute(&mut *ending).await.unwrap();
    let commit_when_the_refresh_waits = async {
        crate::helpers::until_a_session_waits_for_a_lock(&app.db).await;
        ending.commit().await.unwrap();
    };
    let (response, ()) = tokio::join!(app.refresh(&signed_in.refresh), commit_when_the_refresh_waits);
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
    let (tokens_of_the_session, rotated): (i64, i64) = sqlx::query_as("SELECT count(*), count(rotated_at) FROM refresh_tokens WHERE session_id = $1")
        .bind(session_id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!((tokens_of_the_session, rotated), (1, 0), "no successor written, the presented token left as it was");
}
