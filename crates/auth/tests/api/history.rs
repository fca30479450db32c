use std::collections::HashSet;

use auth::store::history;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    helpers::{PASSWORD, assert_problem, error_fields, spawn_app},
    plans::{PlanMode, scans_of},
};

const TV_UA: &str = "Mozilla/5.0 (SMART-TV; Linux; Tizen 7.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/5.0 TV Safari/537.36";

#[tokio::test]
async fn every_sign_in_attempt_is_recorded_with_its_outcome() {
    let app = spawn_app().await;
    let (email, tokens) = app.signed_in_user().await;
    let user_id = app.state.tokens.verify(&tokens.access).unwrap().sub;
    assert_eq!(app.login(&email, "wrong password!").await.status(), StatusCode::UNAUTHORIZED);
    let tv = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("user-agent", TV_UA)
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(tv.status(), StatusCode::OK);
    assert_eq!(app.login("nobody@example.com", "whatever123").await.status(), StatusCode::UNAUTHORIZED);
    // An account without a password (social sign-in only, a later issue).
    let social: uuid::Uuid = sqlx::query_scalar("INSERT INTO users (id, email) VALUES (gen_random_uuid(), 'social@example.com') RETURNING id")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(app.login("social@example.com", "whatever123").await.status(), StatusCode::UNAUTHORIZED);

    let page: Value = app.get_with("/api/v1/users/me/login-history", &tokens.access).await.json().await.unwrap();
    let items = page["items"].as_array().unwrap();
    let outcomes: Vec<(bool, Option<&str>, &str)> =
        items.iter().map(|i| (i["success"].as_bool().unwrap(), i["failure_reason"].as_str(), i["device"].as_str().unwrap())).collect();
    assert_eq!(outcomes, [(true, None, "smart_tv"), (false, Some("wrong_password"), "web"), (true, None, "web")], "newest first");
    for item in items {
        assert_eq!(item["method"], "password");
        assert_eq!(item["ip"], "127.0.0.1");
        assert!(item["attempted_at"].is_string() && item["user_agent"].is_string());
    }
    assert!(page.get("next_cursor").is_none());

    let unknown: Vec<(Option<uuid::Uuid>, String)> = sqlx::query_as(
        "SELECT user_id, failure_reason FROM login_history WHERE failure_reason IN ('unknown_account', 'password_not_set') ORDER BY failure_reason",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(unknown, [(Some(social), "password_not_set".to_owned()), (None, "unknown_account".to_owned())]);
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM login_history WHERE user_id = $1").bind(user_id).fetch_one(&app.db).await.unwrap();
    assert_eq!(total, 3);
}

#[tokio::test]
async fn history_pages_by_cursor_without_gaps_or_repeats() {
    let app = spawn_app().await;
    let (_, tokens) = app.signed_in_user().await;
    let user_id = app.state.tokens.verify(&tokens.access).unwrap().sub;
    // Thousands of entries, several sharing one timestamp, inserted directly.
    sqlx::query(
        "INSERT INTO login_history (id, attempted_at, user_id, device, method, success)
         SELECT gen_random_uuid(), now() - (g / 3) * interval '1 minute', $1, 'web', 'password', true
           FROM generate_series(1, 2500) g",
    )
    .bind(user_id)
    .execute(&app.db)
    .await
    .unwrap();

    let mut seen = HashSet::new();
    let mut previous: Option<(String, String)> = None;
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/users/me/login-history?limit=100&cursor={c}"),
            None => "/api/v1/users/me/login-history?limit=100".into(),
        };
        let page: Value = app.get_with(&path, &tokens.access).await.json().await.unwrap();
        pages += 1;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 100);
        for item in items {
            let key = (item["attempted_at"].as_str().unwrap().to_owned(), item["id"].as_str().unwrap().to_owned());
            if let Some(prev) = &previous {
                assert!(key.0 <= prev.0, "newest first");
            }
            assert!(seen.insert(key.1.clone()), "repeated {key:?}");
            previous = Some(key);
        }
        match page.get("next_cursor").and_then(Value::as_str) {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 2501, "2,500 inserted plus the sign-in");
    assert_eq!(pages, 26);
}

#[tokio::test]
async fn history_is_per_user_and_limits_and_cursors_are_validated() {
    let app = spawn_app().await;
    let (_, mine) = app.signed_in_user().await;
    let (_, theirs) = app.signed_in_user().await;
    let page: Value = app.get_with("/api/v1/users/me/login-history", &theirs.access).await.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("cursor=garbage", "cursor"),
        ("limit=-1", "limit"),
        ("limit=1&limit=2", "limit"),
        // Found by fuzz/history_cursor: a well-formed cursor of a time before 4714-11-24 BC,
        // which PostgreSQL refuses to bind ("timestamp out of range"): was a 500.
        ("cursor=_RLZwnxXf_8AAAAAAAAAAAAAAAAAAAAA", "cursor"),
        ("cursor=kPpKYsTgAAAAAAAAAAAAAAAAAAAAAAAA", "cursor"),
    ] {
        let response = app.get_with(&format!("/api/v1/users/me/login-history?{query}"), &mine.access).await;
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(error_fields(&problem), [field], "{query}");
    }
}

#[tokio::test]
async fn the_history_query_uses_the_user_time_index() {
    let app = spawn_app().await;
    let (_, tokens) = app.signed_in_user().await;
    let user_id = app.state.tokens.verify(&tokens.access).unwrap().sub;
    sqlx::query("INSERT INTO login_history (id, attempted_at, user_id, device, method, success) SELECT gen_random_uuid(), now() - g * interval '1 second', gen_random_uuid(), 'web', 'password', true FROM generate_series(1, 20000) g")
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query("ANALYZE login_history").execute(&app.db).await.unwrap();
    // The table has a partition per month (docs/partitioning.md), each with its own
    // copy of the index: the page query, as the service runs it, reads each copy in
    // order and merges them, whether planned for this user or for any.
    let copies: Vec<String> =
        sqlx::query_scalar("SELECT relid::regclass::text FROM pg_partition_tree('login_history_user_time_idx')").fetch_all(&app.db).await.unwrap();
    for mode in [PlanMode::Custom, PlanMode::Generic] {
        let mut tx = app.db.begin().await.unwrap();
        sqlx::query(history::PAGE_PLANNER_SETTING).execute(&mut *tx).await.unwrap();
        let scans = scans_of(&mut tx, history::PAGE, &format!("'{user_id}', 21"), mode).await;
        tx.rollback().await.unwrap();
        assert!(!scans.is_empty());
        for scan in scans.iter().filter(|s| s.relation.starts_with("login_history")) {
            assert!(copies.iter().any(|c| Some(c.as_str()) == scan.index.as_deref()) && !scan.sorted, "{mode:?}: {scans:#?}");
        }
    }
}
