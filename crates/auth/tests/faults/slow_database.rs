//! A slow database: Auth's statements stuck behind a lock another session holds. They
//! are cancelled by the statement timeout and answered 503 problem+json; requests
//! beyond the pool's size wait at most the acquire timeout; nothing is left waiting in
//! PostgreSQL; and once the lock goes, the pool serves again at full width.

use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::StatusCode;
use sqlx::{Connection, PgConnection};

use crate::{
    harness::{Auth, problem_code, shared_redis_url},
    postgres_down::blocked_by,
    servers::Postgres,
};

const POOL: usize = 3;
const STATEMENT_TIMEOUT: Duration = Duration::from_millis(1500);
/// The pool's acquire timeout (platform::db).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
const HISTORY: &str = "/api/v1/users/me/login-history";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_stuck_behind_a_lock_fail_cleanly_within_the_statement_timeout_and_the_pool_recovers() {
    let pg = Postgres::start();
    let timeout_ms = STATEMENT_TIMEOUT.as_millis().to_string();
    let auth = Auth::start(
        &pg.url("auth"),
        &shared_redis_url(),
        &[("AUTH_DATABASE_MAX_CONNECTIONS", &POOL.to_string()), ("AUTH_DATABASE_STATEMENT_TIMEOUT_MS", &timeout_ms)],
    )
    .await;
    let email = auth.new_account().await;
    let tokens = auth.sign_in(&email).await;
    assert_eq!(auth.get_with("/api/v1/users/me", &tokens.access).await.status(), StatusCode::OK);

    // Another session takes `users` and `login_history` and keeps them: every sign-in
    // and history read waits. (`/users/me` may be answered from its Redis cache.)
    let mut locker = PgConnection::connect(&pg.url("auth")).await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE users, login_history IN ACCESS EXCLUSIVE MODE").execute(&mut locker).await.unwrap();

    // Three times as many requests as the pool has connections, all at once.
    let requests = (0..3 * POOL).map(|i| {
        let (auth, email, access) = (&auth, email.clone(), tokens.access.clone());
        async move {
            let started = Instant::now();
            let response = if i % 2 == 0 { auth.login(&email).await } else { auth.get_with(HISTORY, &access).await };
            let (status, content_type, code) = problem_code(response).await;
            (status, content_type, code, started.elapsed())
        }
    });
    let answers = join_all(requests).await;
    // A statement waits at most the statement timeout; a request waits for a
    // connection at most the acquire timeout, and may then run one statement.
    let bound = ACQUIRE_TIMEOUT + STATEMENT_TIMEOUT + Duration::from_secs(2);
    for (status, content_type, code, took) in &answers {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{answers:?}");
        assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{answers:?}");
        assert!(matches!(code.as_deref(), Some("timeout" | "service_unavailable")), "{answers:?}");
        assert!(*took <= bound, "an answer took {took:?}, past {bound:?}: {answers:?}");
    }
    assert!(answers.iter().any(|a| a.2.as_deref() == Some("timeout")), "no statement was cancelled by the timeout: {answers:?}");
    // Cancelled in PostgreSQL, not abandoned there: with the lock still held, none of
    // Auth's statements waits for it any more.
    let deadline = Instant::now() + STATEMENT_TIMEOUT * 2;
    while blocked_by(&mut locker).await > 0 {
        assert!(Instant::now() < deadline, "Auth's statements still wait for the lock after their answers");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A request while the lock is still held still gets an answer within the bound.
    let started = Instant::now();
    let (status, _, _) = problem_code(auth.login(&email).await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() <= bound);

    sqlx::raw_sql("ROLLBACK").execute(&mut locker).await.unwrap();
    // No deadlock and no leaked connection: twice the pool's width at once, all served.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let requests = (0..2 * POOL).map(|i| {
            let (auth, email, access) = (&auth, email.clone(), tokens.access.clone());
            async move { if i % 2 == 0 { auth.login(&email).await.status() } else { auth.get_with(HISTORY, &access).await.status() } }
        });
        let statuses = join_all(requests).await;
        if statuses.iter().all(|s| *s == StatusCode::OK) {
            break;
        }
        assert!(Instant::now() < deadline, "not serving again after the lock went: {statuses:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(auth.ready().await, StatusCode::OK);
}
