//! The movies API's rate limits: per user with a well-signed token, else per address;
//! probes never limited; 429 problem+json with the standard headers.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{Auth, Movies, MoviesOptions, assert_problem, eventually};

async fn limited_movies(auth: &Auth) -> Movies {
    let options = MoviesOptions {
        vars: vec![
            ("MOVIES_RATE_LIMIT_ENABLED", "true".into()),
            ("MOVIES_RATE_LIMIT_API_ANONYMOUS", "1/h burst 3".into()),
            ("MOVIES_RATE_LIMIT_API_USER", "1/h burst 2".into()),
        ],
    };
    let movies = Movies::start_with(&auth.url, options).await;
    movies.wait_for_keys().await;
    movies
}

#[tokio::test]
async fn anonymous_viewers_are_limited_by_address_and_probes_never() {
    let auth = Auth::in_process().await;
    let movies = limited_movies(&auth).await;
    for remaining in [2, 1, 0] {
        let response = movies.get("/api/v1/genres", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["ratelimit-policy"], r#""api-ip";q=3;w=10800"#);
        assert!(response.headers()["ratelimit"].to_str().unwrap().starts_with(&format!(r#""api-ip";r={remaining};"#)));
    }
    let refused = movies.get("/api/v1/films", None).await;
    assert!(refused.headers().contains_key("retry-after"));
    assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // A token that does not verify counts by address too.
    let forged = movies.get("/api/v1/genres", Some("eyJhbGciOiJFZERTQSJ9.e30.AAAA")).await;
    assert_eq!(forged.status(), StatusCode::TOO_MANY_REQUESTS);
    for probe in ["/health/live", "/health/ready", "/metrics"] {
        assert_eq!(movies.get(probe, None).await.status(), StatusCode::OK, "{probe}");
    }
}

/// A query string that is not UTF-8 (400 `malformed_query`) counts against the limits
/// like any request, on any route, unknown paths included; probes stay unlimited.
#[tokio::test]
async fn malformed_query_strings_count_against_the_limits_like_any_request() {
    let auth = Auth::in_process().await;
    let movies = limited_movies(&auth).await;
    for (remaining, path) in [(2, "/api/v1/genres?x=%FF"), (1, "/api/v1/nowhere?x=%FF"), (0, "/api/v1/films?genre=%C0%80")] {
        let response = movies.get(path, None).await;
        let state = response.headers().get("ratelimit").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        assert!(state.starts_with(&format!(r#""api-ip";r={remaining};"#)), "{path}: {state}");
        assert_problem(response, StatusCode::BAD_REQUEST, "malformed_query").await;
    }
    assert_problem(movies.get("/api/v1/genres?x=%FF", None).await, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert_problem(movies.get("/api/v1/genres", None).await, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert_problem(movies.get("/health/ready?x=%FF", None).await, StatusCode::BAD_REQUEST, "malformed_query").await;
}

/// The limits can live in a Redis of their own (the deployment's never evicts):
/// whatever happens to the keys of `REDIS_URL`, which also holds the answer cache and
/// evicts when full, a viewer past the limit stays refused.
#[tokio::test]
async fn with_a_redis_of_their_own_the_limits_survive_the_loss_of_the_shared_redis_keys() {
    let limits = ratelimit::testing::RedisServer::start();
    let auth = Auth::in_process().await;
    let options = MoviesOptions {
        vars: vec![
            ("MOVIES_RATE_LIMIT_ENABLED", "true".into()),
            ("MOVIES_RATE_LIMIT_API_ANONYMOUS", "1/h burst 2".into()),
            ("MOVIES_RATE_LIMIT_REDIS_URL", limits.url()),
        ],
    };
    let movies = Movies::start_with(&auth.url, options).await;
    for _ in 0..2 {
        assert_eq!(movies.get("/api/v1/genres", None).await.status(), StatusCode::OK);
    }
    assert_problem(movies.get("/api/v1/genres", None).await, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let prefix = movies.redis_prefix();
    assert!(limits.command("KEYS *").contains(&format!("{prefix}:rl:")), "the limits' own Redis holds the counts");
    // What an evicting shared Redis does at worst: every key of this instance gone.
    ratelimit::testing::delete_keys(&crate::helpers::redis_url(), prefix);
    assert_problem(movies.get("/api/v1/genres", None).await, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

#[tokio::test]
async fn signed_in_viewers_are_limited_each_by_their_own_account() {
    let auth = Auth::in_process().await;
    let movies = limited_movies(&auth).await;
    let (ann, bob) = (auth.viewer(&[], None).await, auth.viewer(&[], None).await);
    for _ in 0..2 {
        let response = movies.get("/api/v1/films", Some(&ann.access)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["ratelimit-policy"], r#""api-user";q=2;w=7200"#);
    }
    assert_problem(movies.get("/api/v1/films", Some(&ann.access)).await, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Another account, and the address itself, each have their own allowance.
    assert_eq!(movies.get("/api/v1/films", Some(&bob.access)).await.status(), StatusCode::OK);
    assert_eq!(movies.get("/api/v1/films", None).await.status(), StatusCode::OK);
}

/// The limiter checks the signature and hands the token on; the viewer check must
/// still ask Auth whether it was revoked.
#[tokio::test]
async fn a_token_checked_by_the_limiter_is_still_refused_once_signed_out() {
    let auth = Auth::in_process().await;
    let options = MoviesOptions { vars: vec![("MOVIES_RATE_LIMIT_ENABLED", "true".into())] };
    let movies = Movies::start_with(&auth.url, options).await;
    movies.wait_for_keys().await;
    let viewer = auth.viewer(&[], None).await;
    let response = movies.get("/api/v1/films", Some(&viewer.access)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["ratelimit-policy"].to_str().unwrap().starts_with(r#""api-user""#));
    auth.logout(&viewer).await;
    eventually("the signed-out token to be refused", Duration::from_secs(5), || async {
        movies.get("/api/v1/films", Some(&viewer.access)).await.status() == StatusCode::UNAUTHORIZED
    })
    .await;
}

/// Whoever holds a leaked token cannot keep its owner at 429 after the owner signs
/// out: once Auth has said the token is revoked, its requests count by address, and
/// the owner's new token keeps its quota.
#[tokio::test]
async fn a_revoked_token_does_not_spend_its_owners_quota() {
    let auth = Auth::in_process().await;
    let options = MoviesOptions {
        vars: vec![
            ("MOVIES_RATE_LIMIT_ENABLED", "true".into()),
            ("MOVIES_RATE_LIMIT_API_ANONYMOUS", "1/h burst 100".into()),
            ("MOVIES_RATE_LIMIT_API_USER", "1/h burst 2".into()),
        ],
    };
    let movies = Movies::start_with(&auth.url, options).await;
    movies.wait_for_keys().await;
    let leaked = auth.viewer(&[], None).await;
    auth.logout(&leaked).await;
    for attempt in 0..5 {
        let replay = movies.get("/api/v1/genres", Some(&leaked.access)).await;
        let state = replay.headers().get("ratelimit").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        if attempt > 0 {
            assert!(state.starts_with(r#""api-ip";"#), "attempt {attempt}: {state}");
        }
        assert_problem(replay, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    let fresh = auth.sign_in(&leaked.email).await;
    let response = movies.get("/api/v1/genres", Some(&fresh.access)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["ratelimit"].to_str().unwrap().starts_with(r#""api-user";r=0;"#), "the revoked token's first request took one");
}
