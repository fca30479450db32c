use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{DESKTOP_UA, assert_problem, spawn_app, tokens};

const PHONE_UA: &str =
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";

#[tokio::test]
async fn sessions_lists_live_sessions_with_device_ip_and_agent() {
    let app = spawn_app().await;
    let (email, desktop) = app.signed_in_user().await;
    let phone_login = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("user-agent", PHONE_UA)
        .json(&serde_json::json!({"email": email, "password": crate::helpers::PASSWORD}))
        .send()
        .await
        .unwrap();
    let phone = tokens(phone_login).await;

    let response = app.get_with("/api/v1/auth/sessions", &desktop.access).await;
    assert_eq!(response.status(), StatusCode::OK);
    let sessions: Vec<Value> = response.json().await.unwrap();
    assert_eq!(sessions.len(), 2);
    let current: Vec<&Value> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["device"], "web");
    assert_eq!(current[0]["user_agent"], DESKTOP_UA);
    assert_eq!(current[0]["ip"], "127.0.0.1");
    let phone_sid = app.state.tokens.verify(&phone.access).unwrap().sid.to_string();
    let phone_row = sessions.iter().find(|s| s["id"] == phone_sid.as_str()).unwrap();
    assert_eq!(phone_row["device"], "mobile");
    for field in ["created_at", "last_used_at", "expires_at"] {
        assert!(phone_row[field].is_string(), "{field}");
    }
}

#[tokio::test]
async fn deleting_a_session_ends_it_and_only_it() {
    let app = spawn_app().await;
    let (email, desktop) = app.signed_in_user().await;
    let phone = app.sign_in(&email).await;
    let phone_sid = app.state.tokens.verify(&phone.access).unwrap().sid;

    let response = app.client.delete(app.url(&format!("/api/v1/auth/sessions/{phone_sid}"))).bearer_auth(&desktop.access).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_problem(app.get_with("/api/v1/users/me", &phone.access).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
    assert_problem(app.refresh(&phone.refresh).await, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
    assert_eq!(app.get_with("/api/v1/users/me", &desktop.access).await.status(), StatusCode::OK);
    let sessions: Vec<Value> = app.get_with("/api/v1/auth/sessions", &desktop.access).await.json().await.unwrap();
    assert_eq!(sessions.len(), 1);

    // Ending it again, or another user's session, is 404.
    let again = app.client.delete(app.url(&format!("/api/v1/auth/sessions/{phone_sid}"))).bearer_auth(&desktop.access).send().await.unwrap();
    assert_problem(again, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn a_user_cannot_end_another_users_session() {
    let app = spawn_app().await;
    let (_, mine) = app.signed_in_user().await;
    let (_, theirs) = app.signed_in_user().await;
    let their_sid = app.state.tokens.verify(&theirs.access).unwrap().sid;
    let response = app.client.delete(app.url(&format!("/api/v1/auth/sessions/{their_sid}"))).bearer_auth(&mine.access).send().await.unwrap();
    assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(app.get_with("/api/v1/users/me", &theirs.access).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_session_id_that_is_not_a_uuid_is_422() {
    let app = spawn_app().await;
    let (_, tokens) = app.signed_in_user().await;
    let response = app.client.delete(app.url("/api/v1/auth/sessions/not-a-uuid")).bearer_auth(&tokens.access).send().await.unwrap();
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

/// A sign-in that checked the old password while the password was being changed opens
/// no session once the change commits: `sessions::open` share-locks the account and
/// re-reads its hash, so the change (which ends every session after updating the row)
/// and the sign-in are ordered, and no session opened with the old password survives.
#[tokio::test]
async fn a_sign_in_checked_against_a_password_being_changed_opens_no_session() {
    use auth::store::{history::Method, sessions};
    let app = spawn_app().await;
    app.signup("changing@example.com").await;
    let (user_id, old_hash): (uuid::Uuid, String) =
        sqlx::query_as("SELECT id, password_hash FROM users WHERE email = 'changing@example.com'").fetch_one(&app.db).await.unwrap();
    let open = |hash: String| {
        let db = app.db.clone();
        async move {
            let client = sessions::Client { ip: None, user_agent: None };
            let expires = chrono::Utc::now() + chrono::Duration::days(1);
            sessions::open(&db, user_id, Some(&hash), &client, Method::Password, uuid::Uuid::new_v4().as_bytes(), expires).await.unwrap()
        }
    };
    let mut change = app.db.begin().await.unwrap();
    sqlx::query("UPDATE users SET password_hash = 'the-new-hash' WHERE id = $1").bind(user_id).execute(&mut *change).await.unwrap();
    let commit_when_the_sign_in_waits = async {
        crate::helpers::until_a_session_waits_for_a_lock(&app.db).await;
        change.commit().await.unwrap();
    };
    let (opened, ()) = tokio::join!(open(old_hash), commit_when_the_sign_in_waits);
    assert!(opened.is_none(), "a session was opened with the replaced password");
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions WHERE user_id = $1").bind(user_id).fetch_one(&app.db).await.unwrap();
    assert_eq!(sessions, 0);
    // Checked against the current hash, a sign-in opens its session.
    assert!(open("the-new-hash".into()).await.is_some());
}
