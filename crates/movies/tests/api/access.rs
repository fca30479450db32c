//! What each viewer may see and watch, decided from real Auth tokens.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{Auth, Movies, assert_problem, birth_date, eventually, titles};

#[tokio::test]
async fn lists_and_search_hide_films_above_the_viewers_age_class() {
    let auth = Auth::in_process().await;
    let movies = Movies::start(&auth.url).await;
    movies.wait_for_keys().await;
    let child = auth.viewer(&[], Some(&birth_date(7))).await;
    let teen = auth.viewer(&[], Some(&birth_date(13))).await;
    let adult = auth.viewer(&[], Some(&birth_date(30))).await;
    let unknown_age = auth.viewer(&[], None).await;
    let admin = auth.viewer(&["admin"], Some(&birth_date(7))).await;

    let seen = |tokens: &crate::helpers::Tokens| {
        let token = tokens.access.clone();
        let movies = &movies;
        async move { titles(&movies.json("/api/v1/films", Some(&token)).await) }
    };
    assert_eq!(seen(&child).await, ["1941", "Classic Masterpiece", "Family Picnic"]);
    assert_eq!(seen(&teen).await, ["1941", "Classic Masterpiece", "Family Picnic", "Teen Spirit"]);
    assert_eq!(seen(&unknown_age).await.len(), 6, "unknown birth date: up to 16+");
    assert_eq!(seen(&adult).await.len(), 7);
    assert_eq!(seen(&admin).await.len(), 7, "admins see everything");

    let search = movies.json("/api/v1/films/search?query=adults%20only", Some(&adult.access)).await;
    assert_eq!(titles(&search), ["Adults Only Night"]);
    let search = movies.json("/api/v1/films/search?query=matrix", Some(&child.access)).await;
    assert_eq!(search["page"]["total"], 0);
}

#[tokio::test]
async fn detail_and_stream_answer_401_403_or_200_by_the_rules() {
    let auth = Auth::in_process().await;
    let movies = Movies::start(&auth.url).await;
    movies.wait_for_keys().await;
    let viewer = auth.viewer(&[], Some(&birth_date(30))).await;
    let subscriber = auth.viewer(&["subscriber"], Some(&birth_date(30))).await;
    let young_subscriber = auth.viewer(&["subscriber"], Some(&birth_date(13))).await;

    let matrix = movies.film_id("The Matrix").await; // 16+, subscription
    let picnic = movies.film_id("Family Picnic").await; // 0+, free
    let adults = movies.film_id("Adults Only Night").await; // 18+, free
    let stream = |id: uuid::Uuid| format!("/api/v1/films/{id}/stream");

    // Anonymous: free films play; subscription films ask to sign in, and so do 18+
    // ones (signed in as an adult, they would be served).
    assert_eq!(movies.get(&stream(picnic), None).await.status(), StatusCode::OK);
    let anonymous = movies.get(&stream(matrix), None).await;
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    assert_problem(anonymous, StatusCode::UNAUTHORIZED, "sign_in_required").await;
    let anonymous = movies.get(&stream(adults), None).await;
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    assert_problem(anonymous, StatusCode::UNAUTHORIZED, "sign_in_required").await;
    assert_problem(movies.get(&format!("/api/v1/films/{adults}"), None).await, StatusCode::UNAUTHORIZED, "sign_in_required").await;

    // Signed in without a subscription: 403 on subscription films.
    assert_problem(movies.get(&stream(matrix), Some(&viewer.access)).await, StatusCode::FORBIDDEN, "subscription_required").await;
    assert_eq!(movies.get(&stream(adults), Some(&viewer.access)).await.status(), StatusCode::OK);

    // A subscriber plays it; a young subscriber is still held by the age class.
    let response = movies.get(&stream(matrix), Some(&subscriber.access)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("x-auth-degraded").is_none());
    let descriptor: serde_json::Value = response.json().await.unwrap();
    assert_eq!(descriptor["film_id"], matrix.to_string());
    assert_eq!(descriptor["protocol"], "hls");
    assert!(descriptor["manifest_url"].as_str().unwrap().contains("/master.m3u8?expires="), "signed (tests/api/playback.rs): {descriptor}");
    assert_problem(movies.get(&stream(matrix), Some(&young_subscriber.access)).await, StatusCode::FORBIDDEN, "age_restricted").await;
    assert_problem(movies.get(&format!("/api/v1/films/{matrix}"), Some(&young_subscriber.access)).await, StatusCode::FORBIDDEN, "age_restricted")
        .await;
}

#[tokio::test]
async fn invalid_tokens_get_401_with_an_invalid_token_challenge() {
    let auth = Auth::in_process().await;
    let movies = Movies::start(&auth.url).await;
    movies.wait_for_keys().await;
    let viewer = auth.viewer(&[], None).await;
    let mut tampered = viewer.access.clone();
    tampered.pop();
    tampered.push(if viewer.access.ends_with('A') { 'B' } else { 'A' });
    for token in ["garbage", "a.b.c", tampered.as_str()] {
        let response = movies.get("/api/v1/films", Some(token)).await;
        assert_eq!(response.headers()["www-authenticate"], r#"Bearer error="invalid_token""#);
        assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    let response = movies.client.get(movies.url("/api/v1/films")).header("authorization", "Basic dTpw").send().await.unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

#[tokio::test]
async fn a_token_revoked_by_logout_is_refused_within_five_seconds() {
    let auth = Auth::in_process().await;
    let movies = Movies::start(&auth.url).await;
    movies.wait_for_keys().await;
    let viewer = auth.viewer(&["subscriber"], None).await;
    assert_eq!(movies.get("/api/v1/films", Some(&viewer.access)).await.status(), StatusCode::OK);
    auth.logout(&viewer).await;
    let token = viewer.access.clone();
    eventually("the movies API to refuse the revoked token", Duration::from_secs(5), || {
        let (movies, token) = (&movies, token.clone());
        async move { movies.get("/api/v1/films", Some(&token)).await.status() == StatusCode::UNAUTHORIZED }
    })
    .await;
}

/// The token's age class is the one at sign-in; introspection answers the class of
/// the birth date Auth holds now, which wins: a corrected birth date takes effect within
/// the introspection cache's time (2 s), not at the token's next refresh, both ways.
#[tokio::test]
async fn a_corrected_birth_date_is_honoured_through_introspection_both_ways() {
    let auth = Auth::in_process().await;
    let movies = Movies::start(&auth.url).await;
    movies.wait_for_keys().await;
    let viewer = auth.viewer(&[], Some(&birth_date(13))).await;
    let adults_only = movies.film_id("Adults Only Night").await;
    let path = format!("/api/v1/films/{adults_only}");
    let response = movies.get(&path, Some(&viewer.access)).await;
    assert_problem(response, StatusCode::FORBIDDEN, "age_restricted").await;
    let set_birth_date = |years_ago: u64| {
        let (auth, token) = (&auth, viewer.access.clone());
        async move {
            let body = serde_json::json!({"birth_date": birth_date(years_ago)});
            let response = auth.client.patch(format!("{}/api/v1/users/me", auth.url)).bearer_auth(token).json(&body).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
    };
    let served_within = |status: StatusCode, what: &'static str| {
        let (movies, token, path) = (&movies, viewer.access.clone(), path.clone());
        eventually(what, Duration::from_secs(5), move || {
            let (token, path) = (token.clone(), path.clone());
            async move { movies.get(&path, Some(&token)).await.status() == status }
        })
    };
    set_birth_date(30).await;
    served_within(StatusCode::OK, "the corrected (adult) birth date to be honoured with the same token").await;
    set_birth_date(13).await;
    served_within(StatusCode::FORBIDDEN, "the corrected (minor) birth date to be honoured with the same token").await;
}

#[tokio::test]
async fn a_role_granted_in_auth_is_honoured_at_once_through_introspection() {
    let auth = Auth::in_process().await;
    let movies = Movies::start(&auth.url).await;
    movies.wait_for_keys().await;
    let viewer = auth.viewer(&[], None).await;
    let matrix = movies.film_id("The Matrix").await;
    let path = format!("/api/v1/films/{matrix}/stream");
    assert_eq!(movies.get(&path, Some(&viewer.access)).await.status(), StatusCode::FORBIDDEN);
    let user_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = $1").bind(&viewer.email).fetch_one(&auth.db).await.unwrap();
    auth::store::users::grant_role(&auth.db, user_id, "subscriber").await.unwrap();
    let token = viewer.access.clone();
    eventually("the new role to be honoured (introspection cache expiry)", Duration::from_secs(5), || {
        let (movies, token, path) = (&movies, token.clone(), path.clone());
        async move { movies.get(&path, Some(&token)).await.status() == StatusCode::OK }
    })
    .await;
}
