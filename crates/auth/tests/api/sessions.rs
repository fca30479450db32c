use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

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
async fn an_expired_session_is_not_live_to_end_either() {
    let app = spawn_app().await;
    let (email, desktop) = app.signed_in_user().await;
    let old = app.sign_in(&email).await;
    let old_sid = app.state.tokens.verify(&old.access).unwrap().sid;
    sqlx::query("UPDATE sessions SET expires_at = now() - interval '1 day' WHERE id = $1").bind(old_sid).execute(&app.db).await.unwrap();
    let sessions: Vec<Value> = app.get_with("/api/v1/auth/sessions", &desktop.access).await.json().await.unwrap();
    assert_eq!(sessions.len(), 1, "not listed");
    let response = app.client.delete(app.url(&format!("/api/v1/auth/sessions/{old_sid}"))).bearer_auth(&desktop.access).send().await.unwrap();
    assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
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

/// The account's hash and, in sign-in order, its two sessions: the owner's, then the
/// one that changes the password.
async fn owner_and_other_session(app: &crate::helpers::TestApp, email: &str) -> (uuid::Uuid, String, uuid::Uuid, uuid::Uuid) {
    app.signup(email).await;
    app.sign_in(email).await;
    app.sign_in(email).await;
    let (user_id, hash): (uuid::Uuid, String) =
        sqlx::query_as("SELECT id, password_hash FROM users WHERE email = $1").bind(email).fetch_one(&app.db).await.unwrap();
    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM sessions WHERE user_id = $1 ORDER BY created_at").bind(user_id).fetch_all(&app.db).await.unwrap();
    (user_id, hash, ids[0], ids[1])
}

/// Two password changes checked against the same password: the first to commit wins,
/// and the second, checked against a password that is no longer the account's, changes
/// nothing (over HTTP it answers 422 `current_password`). Both used to commit: the
/// first caller was told its change had worked, and the second had been authorised by
/// a replaced password.
#[tokio::test]
async fn of_two_password_changes_checked_against_one_password_only_the_first_commits() {
    use auth::store::users;
    let app = spawn_app().await;
    let (user_id, old_hash, _, _) = owner_and_other_session(&app, "changed-twice@example.com").await;
    let mut first = app.db.begin().await.unwrap();
    assert!(users::set_password_hash(&mut *first, user_id, Some(&old_hash), "the-first-new-hash").await.unwrap());
    let second = async {
        let mut tx = app.db.begin().await.unwrap();
        let changed = users::set_password_hash(&mut *tx, user_id, Some(&old_hash), "the-second-new-hash").await.unwrap();
        tx.commit().await.unwrap();
        changed
    };
    let commit_when_the_second_waits = async {
        crate::helpers::until_a_session_waits_for_a_lock(&app.db).await;
        first.commit().await.unwrap();
    };
    let (second_changed, ()) = tokio::join!(second, commit_when_the_second_waits);
    assert!(!second_changed, "a change checked against a replaced password went through");
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1").bind(user_id).fetch_one(&app.db).await.unwrap();
    assert_eq!(stored, "the-first-new-hash");
}

/// A password change whose session the owner ends while the passwords are hashed
/// (here, logout-all under way when the change reaches the database) is refused: the
/// change waits for the ending and then finds its session ended. It used to commit,
/// setting the password of whoever held the ended session.
#[tokio::test]
async fn a_password_change_whose_session_is_ended_meanwhile_changes_nothing() {
    use auth::store::{
        sessions::{self, EndReason},
        users,
    };
    let app = spawn_app().await;
    let (user_id, old_hash, _, other) = owner_and_other_session(&app, "ended-meanwhile@example.com").await;
    let mut logout_all = app.db.begin().await.unwrap();
    assert_eq!(sessions::end_all(&mut *logout_all, user_id, None, EndReason::LogoutAll).await.unwrap().len(), 2);
    let change = async {
        let mut tx = app.db.begin().await.unwrap();
        let set = users::set_password_hash(&mut *tx, user_id, Some(&old_hash), "the-new-hash").await.unwrap();
        (set, sessions::hold_live(&mut tx, other).await.unwrap())
        // Dropped without a commit, as the handler's refusal rolls back.
    };
    let commit_when_the_change_waits = async {
        crate::helpers::until_a_session_waits_for_a_lock(&app.db).await;
        logout_all.commit().await.unwrap();
    };
    let ((set, live), ()) = tokio::join!(change, commit_when_the_change_waits);
    assert!(set, "the password itself was not changed meanwhile");
    assert!(!live, "the change went on with an ended session");
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1").bind(user_id).fetch_one(&app.db).await.unwrap();
    assert_eq!(stored, old_hash);
}

/// A profile change (here of the sign-in address) racing logout-all: its token was
/// checked while the session was live, then logout-all commits while the change waits
/// for the account's row. The change must not commit under an ended session.
#[tokio::test]
async fn a_profile_change_whose_session_is_ended_meanwhile_changes_nothing() {
    use auth::store::sessions::{self, EndReason};
    let app = spawn_app().await;
    let (email, tokens) = app.signed_in_user().await;
    let user_id: Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = $1").bind(&email).fetch_one(&app.db).await.unwrap();
    let mut logout_all = app.db.begin().await.unwrap();
    assert_eq!(sessions::end_all(&mut *logout_all, user_id, None, EndReason::LogoutAll).await.unwrap().len(), 1);
    let change = app.send(Method::PATCH, "/api/v1/users/me", Some(&tokens.access), Some(json!({"email": "moved-meanwhile@example.com"})));
    let commit_when_the_change_waits = async {
        crate::helpers::until_a_session_waits_for_a_lock(&app.db).await;
        logout_all.commit().await.unwrap();
    };
    let (response, ()) = tokio::join!(change, commit_when_the_change_waits);
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let stored: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1").bind(user_id).fetch_one(&app.db).await.unwrap();
    assert_eq!(stored, email);
}

/// The other order: logout-all reaches the database while a password change holds its
/// session, before the change ends the other sessions. Logout-all waits for the change
/// (it share-locks the account first) and then ends the changing session too; neither
/// fails. Without that lock, logout-all held the owner's session and waited for the
/// changing one while the change waited for the owner's: a deadlock, which PostgreSQL
/// broke by failing one of them, possibly the owner's logout-all.
#[tokio::test]
async fn logout_all_during_a_password_change_waits_for_it_rather_than_deadlock() {
    use auth::store::{
        sessions::{self, EndReason},
        users,
    };
    let app = spawn_app().await;
    let (user_id, old_hash, owner, other) = owner_and_other_session(&app, "logout-all-during-change@example.com").await;
    let mut change = app.db.begin().await.unwrap();
    assert!(users::set_password_hash(&mut *change, user_id, Some(&old_hash), "the-new-hash").await.unwrap());
    assert!(sessions::hold_live(&mut change, other).await.unwrap());
    let logout_all = async { sessions::end_all(&app.db, user_id, None, EndReason::LogoutAll).await.unwrap() };
    let finish_the_change_when_logout_all_waits = async {
        crate::helpers::until_a_session_waits_for_a_lock(&app.db).await;
        let ended = sessions::end_all(&mut *change, user_id, Some(other), EndReason::PasswordChanged).await.unwrap();
        change.commit().await.unwrap();
        ended
    };
    let (ended_by_logout_all, ended_by_change) = tokio::join!(logout_all, finish_the_change_when_logout_all_waits);
    assert_eq!(ended_by_change, [owner]);
    assert_eq!(ended_by_logout_all, [other]);
}

#[tokio::test]
async fn dead_sessions_and_expired_refresh_tokens_are_purged() {
    let app = spawn_app().await;
    let (email, live) = app.signed_in_user().await;
    // The live session refreshes twice: two rotated tokens and a current one.
    let live = tokens(app.refresh(&live.refresh).await).await;
    let live = tokens(app.refresh(&live.refresh).await).await;
    let sid = |t: &crate::helpers::Tokens| app.state.tokens.verify(&t.access).unwrap().sid;
    let live_sid = sid(&live);
    let (ended_long_ago, expired_long_ago, ended_lately) = (app.sign_in(&email).await, app.sign_in(&email).await, app.sign_in(&email).await);
    let set = |sql: &'static str, id: uuid::Uuid| sqlx::query(sql).bind(id).execute(&app.db);
    set("UPDATE sessions SET created_at = now() - interval '40 days', ended_at = now() - interval '31 days' WHERE id = $1", sid(&ended_long_ago))
        .await
        .unwrap();
    set("UPDATE sessions SET created_at = now() - interval '70 days', expires_at = now() - interval '31 days' WHERE id = $1", sid(&expired_long_ago))
        .await
        .unwrap();
    set("UPDATE sessions SET created_at = now() - interval '40 days', ended_at = now() - interval '1 day' WHERE id = $1", sid(&ended_lately))
        .await
        .unwrap();
    // One of the live session's rotated tokens has expired; the other has not.
    sqlx::query(
        "UPDATE refresh_tokens SET expires_at = now() - interval '1 second'
          WHERE token_hash = (SELECT token_hash FROM refresh_tokens WHERE session_id = $1 AND rotated_at IS NOT NULL ORDER BY issued_at LIMIT 1)",
    )
    .bind(live_sid)
    .execute(&app.db)
    .await
    .unwrap();

    // The service's own upkeep, run at its start, may still be purging concurrently on
    // a slow machine: the counts are its and this run's together, the rows left exact.
    let purged = auth::partitions::purge_sessions(&app.state.db, &app.settings.partitions).await.unwrap();
    assert!(purged.sessions <= 2 && purged.refresh_tokens <= 1, "{purged:?}");
    let left: Vec<(uuid::Uuid, i64)> =
        sqlx::query_as("SELECT s.id, (SELECT count(*) FROM refresh_tokens WHERE session_id = s.id) FROM sessions s ORDER BY s.created_at")
            .fetch_all(&app.db)
            .await
            .unwrap();
    let mut expected = vec![(sid(&ended_lately), 1), (live_sid, 2)];
    expected.sort_by_key(|(id, _)| *id != sid(&ended_lately));
    assert_eq!(left, expected, "the recently ended session and the live one (with its unexpired tokens) stay");
    // The live session goes on; a second run finds nothing.
    assert_eq!(app.refresh(&live.refresh).await.status(), StatusCode::OK);
    let again = auth::partitions::purge_sessions(&app.state.db, &app.settings.partitions).await.unwrap();
    assert_eq!((again.sessions, again.refresh_tokens), (0, 0));
}
