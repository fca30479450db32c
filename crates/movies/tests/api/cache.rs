//! The answer cache's failures are logged once when they start and counted
//! (`movies_cache_failures_total`), never silent: a Redis that refuses writes, or an
//! entry that does not decode, turns the cache off as surely as a Redis that is down.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{Auth, Movies, MoviesOptions, eventually, redis_url};

/// `movies_cache_failures_total{call=...}` on this instance's `/metrics` (the counter is
/// the process's: other tests may move it too, so the tests compare with a baseline).
async fn failures(movies: &Movies, call: &str) -> f64 {
    let text = movies.client.get(movies.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let prefix = format!("movies_cache_failures_total{{call=\"{call}\"}} ");
    text.lines().find_map(|line| line.strip_prefix(&prefix)).and_then(|value| value.trim().parse().ok()).unwrap_or_else(|| panic!("{prefix} listed"))
}

fn count(text: &str, needle: &str) -> usize {
    text.lines().filter(|line| line.contains(needle)).count()
}

/// A Redis that answers reads but refuses every write (full, with `noeviction`): each
/// answer comes from PostgreSQL, and that is logged once and counted per refused write.
#[tokio::test]
async fn a_redis_that_refuses_writes_is_logged_once_and_counted() {
    let (logs, _guard) = platform::testing::CapturedLogs::capture(tracing::Level::INFO);
    let redis = ratelimit::testing::RedisServer::start();
    redis.command("CONFIG SET maxmemory-policy noeviction");
    redis.command("CONFIG SET maxmemory 1");
    assert!(redis.command("SET probe 1").contains("OOM"), "the test's Redis refuses writes");
    let auth = Auth::in_process().await;
    let movies = Movies::start_with(&auth.url, MoviesOptions { vars: vec![("REDIS_URL", redis.url())] }).await;
    let before = failures(&movies, "write").await;
    for _ in 0..3 {
        assert_eq!(movies.get("/api/v1/genres", None).await.status(), StatusCode::OK);
    }
    eventually("three refused writes counted", Duration::from_secs(10), || {
        let movies = &movies;
        async move { failures(movies, "write").await >= before + 3.0 }
    })
    .await;
    let text = logs.text();
    assert_eq!(count(&text, "could not write to the Redis cache"), 1, "{text}");
    assert_eq!(count(&text, "cache unavailable"), 0, "reads work: {text}");
}

/// An entry that is not an answer (another version's, or damaged) is answered from
/// PostgreSQL and overwritten, and that is logged and counted.
#[tokio::test]
async fn an_undecodable_entry_is_logged_counted_and_replaced() {
    let (logs, _guard) = platform::testing::CapturedLogs::capture(tracing::Level::INFO);
    let auth = Auth::in_process().await;
    let movies = Movies::start(&auth.url).await;
    let fresh = movies.json("/api/v1/genres", None).await;
    let keys = movies.cached("genres*").await;
    let mut redis = redis::Client::open(redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    for key in &keys {
        redis::cmd("SET").arg(key).arg("not an answer").query_async::<()>(&mut redis).await.unwrap();
    }
    let before = failures(&movies, "decode").await;
    assert_eq!(movies.json("/api/v1/genres", None).await, fresh, "answered from PostgreSQL");
    assert!(failures(&movies, "decode").await >= before + 1.0);
    let text = logs.text();
    assert_eq!(count(&text, "could not decode an entry of the Redis cache"), 1, "{text}");
    // Overwritten with the answer.
    eventually("the entry to be replaced", Duration::from_secs(10), || {
        let (mut redis, key) = (redis.clone(), keys[0].clone());
        async move { redis::cmd("GET").arg(key).query_async::<Option<String>>(&mut redis).await.unwrap().is_some_and(|v| v.starts_with('[')) }
    })
    .await;
}
