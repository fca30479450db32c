//! `GET /users/me` serves a profile cached in Redis (store::profiles); every change of
//! the account, or of the roles it shows, reaches it at once.

use std::time::{Duration, Instant};

use auth::store::{Profiles, profiles::Cached};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, spawn_app};

async fn me(app: &TestApp, token: &str) -> Value {
    let response = app.get_with("/api/v1/users/me", token).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// Reads `token`'s profile once, then waits (with a deadline) until the background
/// fill has cached it, looking as the service looks: in its revocation round trip.
async fn cache(app: &TestApp, token: &str) -> Value {
    let shown = me(app, token).await;
    let claims = app.state.tokens.verify(token).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, entry) = app.state.revocations.lookup_with(claims.jti, claims.sid, app.state.profiles.lookup(claims.sub)).await.unwrap();
        if let Cached::Hit(user) = Profiles::parse(claims.sub, entry) {
            assert_eq!(serde_json::to_value(&user).unwrap(), shown);
            return shown;
        }
        assert!(Instant::now() < deadline, "the profile was not cached within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn roles(profile: &Value) -> Vec<&str> {
    profile["roles"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_cached_profile_is_served_without_postgresql_and_dropped_by_a_profile_change() {
    let app = spawn_app().await;
    let (_, tokens) = app.signed_in_user().await;
    let before = cache(&app, &tokens.access).await;
    let id: uuid::Uuid = before["id"].as_str().unwrap().parse().unwrap();

    // Behind the service's back: the cached copy is what it shows.
    sqlx::query("UPDATE users SET region = 'Tver' WHERE id = $1").bind(id).execute(&app.db).await.unwrap();
    assert_eq!(me(&app, &tokens.access).await, before);

    // Through the service: the change, and the row as it is now, show at once.
    let patch = app.client.patch(app.url("/api/v1/users/me")).bearer_auth(&tokens.access).json(&json!({"country": "kz"})).send().await.unwrap();
    assert_eq!(patch.status(), StatusCode::OK);
    let after = me(&app, &tokens.access).await;
    assert_eq!((after["country"].as_str(), after["region"].as_str()), (Some("KZ"), Some("Tver")));
}

#[tokio::test]
async fn a_password_change_reaches_a_cached_profile() {
    let app = spawn_app().await;
    let (_, tokens) = app.signed_in_user().await;
    let before = cache(&app, &tokens.access).await;
    let body = json!({"current_password": PASSWORD, "new_password": "a much better passphrase"});
    let response = app.send(Method::PUT, "/api/v1/users/me/password", Some(&tokens.access), Some(body)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_ne!(me(&app, &tokens.access).await["updated_at"], before["updated_at"]);
}

#[tokio::test]
async fn granting_and_taking_a_role_reach_a_cached_profile() {
    let app = spawn_app().await;
    let (_, admin) = app.signed_in_with_role("admin").await;
    let (_, viewer) = app.signed_in_user().await;
    let id = cache(&app, &viewer.access).await["id"].as_str().unwrap().to_owned();

    let grant = app.send(Method::POST, &format!("/api/v1/users/{id}/roles"), Some(&admin.access), Some(json!({"role": "subscriber"}))).await;
    assert_eq!(grant.status(), StatusCode::OK);
    assert_eq!(roles(&me(&app, &viewer.access).await), ["subscriber", "user"]);

    let (other_id, other) = app.signed_in_with_role("subscriber").await;
    assert_eq!(roles(&cache(&app, &other.access).await), ["subscriber", "user"]);
    let revoke = app.send(Method::DELETE, &format!("/api/v1/users/{other_id}/roles/subscriber"), Some(&admin.access), None).await;
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    assert_eq!(roles(&me(&app, &other.access).await), ["user"]);
}

#[tokio::test]
async fn renaming_or_deleting_a_role_reaches_every_cached_profile_that_shows_it() {
    let app = spawn_app().await;
    let (_, admin) = app.signed_in_with_role("admin").await;
    let role: Value = app
        .send(
            Method::POST,
            "/api/v1/roles",
            Some(&admin.access),
            Some(json!({"name": "critic", "description": "d", "permissions": ["reviews.write"]})),
        )
        .await
        .json()
        .await
        .unwrap();
    let role_id = role["id"].as_str().unwrap();
    let (_, ann) = app.signed_in_with_role("critic").await;
    let (_, bob) = app.signed_in_with_role("critic").await;
    for viewer in [&ann, &bob] {
        assert_eq!(roles(&cache(&app, &viewer.access).await), ["critic", "user"]);
    }

    let rename = app.send(Method::PATCH, &format!("/api/v1/roles/{role_id}"), Some(&admin.access), Some(json!({"name": "reviewer"}))).await;
    assert_eq!(rename.status(), StatusCode::OK);
    for viewer in [&ann, &bob] {
        assert_eq!(roles(&me(&app, &viewer.access).await), ["reviewer", "user"]);
    }

    // Cached again under the new generation, then the role goes.
    for viewer in [&ann, &bob] {
        cache(&app, &viewer.access).await;
    }
    let delete = app.send(Method::DELETE, &format!("/api/v1/roles/{role_id}"), Some(&admin.access), None).await;
    assert_eq!(delete.status(), StatusCode::NO_CONTENT);
    for viewer in [&ann, &bob] {
        assert_eq!(roles(&me(&app, &viewer.access).await), ["user"]);
    }
}
