//! The catalogue database failing under the API: its failures are answered 503
//! problem+json, never 500, and the service recovers by itself.

use std::time::Duration;

use reqwest::StatusCode;
use sqlx::{Connection, PgConnection};

use crate::helpers::{Auth, Movies, MoviesOptions, admin_url, assert_problem, eventually};

/// A PostgreSQL restart or failover ends every connection with SQLSTATE 57P01
/// (`admin_shutdown`); `pg_terminate_backend` does the same to the movies database only.
#[tokio::test(flavor = "multi_thread")]
async fn a_terminated_database_connection_is_answered_503_and_the_next_requests_are_served() {
    let auth = Auth::in_process().await;
    // One connection, so the request after the termination must use the ended one.
    let options = MoviesOptions { vars: vec![("MOVIES_DATABASE_MAX_CONNECTIONS", "1".into())] };
    let movies = Movies::start_with(&auth.url, options).await;
    let database: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&movies.state.db).await.unwrap();
    let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
    // A new page each time: a cached page would be answered without the database.
    let mut page = 0;
    let mut next_page = || {
        page += 1;
        format!("/api/v1/films?page[number]={page}")
    };
    let mut unavailable = None;
    // The pool checks a connection idle for a second or more before handing it out
    // (and replaces an ended one silently), so on a slow machine a try may be served.
    for _ in 0..5 {
        assert_eq!(movies.get(&next_page(), None).await.status(), StatusCode::OK);
        let ended: i64 = sqlx::query_scalar(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000)) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&database)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert_eq!(ended, 1, "the movies API's one connection");
        let response = movies.get(&next_page(), None).await;
        if response.status() != StatusCode::OK {
            unavailable = Some(assert_problem(response, StatusCode::SERVICE_UNAVAILABLE, "service_unavailable").await);
            break;
        }
    }
    let problem = unavailable.expect("no request met the ended connection");
    assert_eq!(problem["status"], 503);
    let path = next_page();
    eventually("the movies API to serve again", Duration::from_secs(10), || {
        let (movies, path) = (&movies, path.clone());
        async move { movies.get(&path, None).await.status() == StatusCode::OK }
    })
    .await;
}
