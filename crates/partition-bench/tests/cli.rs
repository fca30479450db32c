//! The benchmark's binary end to end, on a few rows against the real PostgreSQL
//! (TEST_DATABASE_URL): `make test` runs it, so the benchmark cannot rot between the
//! rare `make bench` runs.

use std::process::Command;

use sqlx::{Connection, PgConnection};

fn server() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

#[test]
fn refuses_zero_insert_connections_without_a_panic() {
    let output = Command::new(env!("CARGO_BIN_EXE_partition-bench"))
        .args(["--users", "10", "--history", "10", "--samples", "1", "--inserts", "1", "--insert-connections", "0"])
        .args(["--database", "auth_bench_never_made"])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--insert-connections must be positive"), "{stderr}");
}

/// The whole benchmark on a few rows, through to dropping its scratch database: a
/// statement the schema came to refuse (the lookups named beside `users` in one
/// TRUNCATE, once a trigger on `users` empties them) failed it only at `make bench`.
#[tokio::test]
async fn runs_through_on_a_few_rows_and_drops_its_database() {
    let name = format!("auth_bench_{}", uuid::Uuid::new_v4().simple());
    let output = Command::new(env!("CARGO_BIN_EXE_partition-bench"))
        .args(["--users", "300", "--history", "600", "--samples", "5", "--inserts", "20", "--insert-connections", "2"])
        .args(["--database", &name])
        .env("AUTH_DATABASE_URL", server())
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.contains("### partition-bench: 300 accounts, 600 sign-ins"), "{report}{stderr}");
    let mut admin = PgConnection::connect(&server()).await.unwrap();
    let left: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)").bind(&name).fetch_one(&mut admin).await.unwrap();
    assert!(!left, "{name} was left behind");
}
