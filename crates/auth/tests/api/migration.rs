//! Upgrading a database of the earlier, unpartitioned schema: every row moves into the
//! partitioned tables and the service works on the result (docs/partitioning.md).

use auth::{domain::PasswordHasher, startup::MIGRATOR, store::partitions::login_history_partitions, tokens::refresh};
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

use crate::helpers::{Options, PASSWORD, admin_url, assert_problem, spawn_app_with, tokens};

/// The migration that partitions `users` and `login_history`.
const PARTITIONING: i64 = 20261125000020;

/// The tables whose every row must survive, each with a key to order its rows by.
const TABLES: [(&str, &str); 7] = [
    ("users", "id"),
    ("roles", "id"),
    ("user_roles", "user_id, role_id"),
    ("sessions", "id"),
    ("refresh_tokens", "token_hash"),
    ("login_history", "id"),
    ("social_accounts", "provider, subject"),
];

/// A digest of each table's rows as text, in key order.
async fn digests(db: &PgPool) -> Vec<(String, i64, String)> {
    // Columns that migrations after the partitioning add: the rows are compared without them.
    const ADDED_LATER: &[&str] = &["email_verified", "password_unnormalised"];
    let mut digests = Vec::new();
    for (table, key) in TABLES {
        let (count, digest): (i64, Option<String>) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*), md5(string_agg((to_jsonb(t) - $1::text[])::text, '|' ORDER BY {key})) FROM {table} t"
        )))
        .bind(ADDED_LATER)
        .fetch_one(db)
        .await
        .unwrap();
        digests.push((table.to_owned(), count, digest.unwrap_or_default()));
    }
    digests
}

#[tokio::test]
async fn a_database_of_the_earlier_schema_moves_into_partitions_with_every_row_and_keeps_working() {
    // A database at the version before partitioning.
    let name = format!("auth_test_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
    admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).await.unwrap();
    let url = format!("{}/{name}", admin_url().rsplit_once('/').unwrap().0);
    let old = PgPool::connect(&url).await.unwrap();
    let previous = MIGRATOR.iter().map(|m| m.version).filter(|v| *v < PARTITIONING).max().unwrap();
    MIGRATOR.run_to(previous, &old).await.unwrap();
    let partitioned: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_partitioned_table)").fetch_one(&old).await.unwrap();
    assert!(!partitioned);

    // Its data: accounts (some with logins, one social-only), roles and grants,
    // sessions with refresh tokens, a linked social identity, and sign-ins over 18 months.
    let hash = PasswordHasher::new(1).unwrap().hash(&SecretString::from(PASSWORD)).await.unwrap();
    sqlx::query(
        "INSERT INTO users (id, email, login, password_hash, birth_date, country, region, created_at)
         SELECT gen_random_uuid(), 'old' || g || '@example.com', CASE WHEN g % 3 = 0 THEN 'Old_Timer' || g END,
                CASE WHEN g % 10 <> 0 THEN $1 END, date '1980-01-01' + g, 'RU', 'Moscow', now() - g * interval '1 day'
           FROM generate_series(1, 300) g",
    )
    .bind(&hash)
    .execute(&old)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO roles (id, name, description, permissions) VALUES (gen_random_uuid(), 'critic', 'Writes reviews', ARRAY['films.watch.free'])",
    )
    .execute(&old)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO user_roles (user_id, role_id)
         SELECT u.id, r.id FROM users u, roles r WHERE r.name = 'user' OR (r.name = 'critic' AND u.email LIKE 'old1%')",
    )
    .execute(&old)
    .await
    .unwrap();
    let refresh_token = format!("migrated-refresh-token-{}", Uuid::new_v4());
    sqlx::query(
        "WITH s AS (
             INSERT INTO sessions (id, user_id, expires_at, ip, user_agent, device)
             SELECT gen_random_uuid(), id, now() + interval '20 days', '203.0.113.9', 'Mozilla/5.0', 'web'
               FROM users WHERE email LIKE 'old2%' OR email = 'old3@example.com'
             RETURNING id, user_id
         )
         INSERT INTO refresh_tokens (token_hash, session_id, expires_at)
         SELECT CASE WHEN u.email = 'old3@example.com' THEN $1 ELSE sha256(s.id::text::bytea) END, s.id, now() + interval '20 days'
           FROM s JOIN users u ON u.id = s.user_id",
    )
    .bind(refresh::hash(&refresh_token))
    .execute(&old)
    .await
    .unwrap();
    sqlx::query("INSERT INTO social_accounts (provider, subject, user_id, email) SELECT 'yandex', 'ya-' || id, id, email FROM users WHERE email = 'old10@example.com'")
        .execute(&old)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO login_history (id, attempted_at, user_id, ip, user_agent, device, method, success, failure_reason)
         SELECT gen_random_uuid(), now() - g * interval '11 hours', u.id, '198.51.100.7', 'Mozilla/5.0', 'web', 'password',
                g % 5 <> 0, CASE WHEN g % 5 = 0 THEN 'wrong_password' END
           FROM generate_series(1, 1200) g
           JOIN users u ON u.email = 'old' || (1 + g % 300) || '@example.com'",
    )
    .execute(&old)
    .await
    .unwrap();
    let before = digests(&old).await;
    assert!(before.iter().all(|(_, count, _)| *count > 0), "{before:?}");
    let oldest_month: DateTime<Utc> =
        sqlx::query_scalar("SELECT date_trunc('month', min(attempted_at) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' FROM login_history")
            .fetch_one(&old)
            .await
            .unwrap();
    old.close().await;

    // The service starts on it and applies the remaining migrations. The retention is
    // long enough to keep the oldest sign-ins, so every row can be compared.
    let app = spawn_app_with(Options {
        database: Some(name),
        extra_vars: vec![("AUTH_LOGIN_HISTORY_RETENTION_MONTHS", "120".into())],
        ..Default::default()
    })
    .await;
    assert_eq!(digests(&app.db).await, before);

    // The layout is the new one, and nothing is left of the old.
    let layout: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT p.partrelid::regclass::text, p.partstrat::text, (SELECT count(*) FROM pg_inherits i WHERE i.inhparent = p.partrelid)
           FROM pg_partitioned_table p WHERE p.partrelid::regclass::text IN ('users', 'user_emails', 'user_logins', 'login_history') ORDER BY 1",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    let strategies: Vec<(&str, &str)> = layout.iter().map(|(table, strategy, _)| (table.as_str(), strategy.as_str())).collect();
    assert_eq!(strategies, [("login_history", "r"), ("user_emails", "h"), ("user_logins", "h"), ("users", "h")]);
    // Eighteen months of sign-ins, this one, four ahead and the default partition.
    assert!(layout[0].2 >= 24, "{layout:?}");
    assert!(layout[1..].iter().all(|(_, _, partitions)| *partitions == 16), "{layout:?}");
    let in_default: i64 = sqlx::query_scalar("SELECT count(*) FROM login_history_default").fetch_one(&app.db).await.unwrap();
    assert_eq!(in_default, 0);
    // The oldest sign-in made the first month's partition.
    let first: String =
        sqlx::query_scalar("SELECT tableoid::regclass::text FROM login_history ORDER BY attempted_at LIMIT 1").fetch_one(&app.db).await.unwrap();
    let months = login_history_partitions(&mut app.db.acquire().await.unwrap()).await.unwrap();
    assert_eq!((months[0].name.as_str(), months[0].from), (first.as_str(), oldest_month));
    let leftovers: Vec<String> =
        sqlx::query_scalar("SELECT relname::text FROM pg_class WHERE relname LIKE '%unpartitioned%'").fetch_all(&app.db).await.unwrap();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let foreign_keys: Vec<(String, String)> = sqlx::query_as(
        "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint
          WHERE contype = 'f' AND conrelid::regclass::text IN ('user_roles', 'sessions', 'social_accounts') AND conname LIKE '%user_id_fkey' ORDER BY 1",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        foreign_keys,
        [("sessions".into(), "users".into()), ("social_accounts".into(), "users".into()), ("user_roles".into(), "users".into())]
    );
    let lookups: (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM user_emails), (SELECT count(*) FROM user_logins)").fetch_one(&app.db).await.unwrap();
    assert_eq!(lookups, (300, 100));
    // Their hashes predate normalised passwords: each may be of a password as sent.
    let unnormalised: (i64, i64) =
        sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE password_unnormalised) FROM users").fetch_one(&app.db).await.unwrap();
    assert_eq!(unnormalised, (300, 300));

    // Old accounts sign in by email and by login, their old refresh token still works,
    // their history is there, and their email and login stay taken.
    let response = app.login("old7@example.com", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    let signed_in = tokens(response).await;
    let by_login = app.post_json("/api/v1/auth/login", &json!({"login": "OLD_TIMER9", "password": PASSWORD})).await;
    assert_eq!(by_login.status(), StatusCode::OK);
    assert_eq!(app.refresh(&refresh_token).await.status(), StatusCode::OK);
    let page: Value = app.get_with("/api/v1/users/me/login-history?limit=100", &signed_in.access).await.json().await.unwrap();
    let old_entries = page["items"].as_array().unwrap().iter().filter(|i| i["ip"] == "198.51.100.7").count();
    assert_eq!(old_entries, 4, "{page}");
    let me: Value = app.get_with("/api/v1/users/me", &signed_in.access).await.json().await.unwrap();
    assert_eq!((me["birth_date"].as_str(), me["roles"].clone()), (Some("1980-01-08"), json!(["user"])));
    let response = app.post_json("/api/v1/auth/signup", &json!({"email": "OLD7@example.com", "password": PASSWORD})).await;
    assert_problem(response, StatusCode::CONFLICT, "email_taken").await;
    let response = app.post_json("/api/v1/auth/signup", &json!({"email": "new@example.com", "password": PASSWORD, "login": "old_timer3"})).await;
    assert_problem(response, StatusCode::CONFLICT, "login_taken").await;

    // The re-pointed foreign keys still cascade.
    sqlx::query("DELETE FROM users WHERE email = 'old3@example.com'").execute(&app.db).await.unwrap();
    let orphans: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions s WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = s.user_id)")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(orphans, 0);
}

/// `auth migrate` on `url`: whether it succeeded, and its standard error.
fn migrate(url: &str) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_auth")).arg("migrate").env("AUTH_DATABASE_URL", url).output().unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Whether the partitioning migration is recorded as applied in the database at `url`.
async fn partitioned(url: &str) -> bool {
    let db = PgPool::connect(url).await.unwrap();
    // A table that may not exist cannot be named in the statement that checks it.
    let applied = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(&db).await.unwrap()
        && sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM _sqlx_migrations WHERE version = $1)").bind(PARTITIONING).fetch_one(&db).await.unwrap();
    db.close().await;
    applied
}

/// A DBA made pg_partman with a plain `CREATE EXTENSION`, in schema public: the
/// migration, which calls it in schema partman, failed with "function
/// partman.create_parent(…) does not exist". Auth says where it is and what to run.
#[tokio::test]
async fn migrate_says_what_to_do_when_pg_partman_is_in_another_schema() {
    let name = format!("auth_test_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
    admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).await.unwrap();
    let url = format!("{}/{name}", admin_url().rsplit_once('/').unwrap().0);
    let mut db = PgConnection::connect(&url).await.unwrap();
    db.execute("CREATE EXTENSION pg_partman").await.unwrap();
    db.close().await.unwrap();
    let (ok, stderr) = migrate(&url);
    let applied = partitioned(&url).await;
    admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{name}\" WITH (FORCE)"))).await.unwrap();
    assert!(!ok && !applied, "{stderr}");
    assert!(
        stderr.contains("pg_partman is installed in schema \"public\"") && stderr.contains("CREATE EXTENSION pg_partman SCHEMA partman"),
        "{stderr}"
    );
}

/// A role that is no superuser, on a database where nobody has made pg_partman: it
/// may not create it, and got a bare "permission denied to create extension".
#[tokio::test]
async fn migrate_says_what_to_do_when_its_role_may_not_create_pg_partman() {
    let id = Uuid::new_v4().simple();
    let (name, role) = (format!("auth_test_{id}"), format!("auth_test_role_{id}"));
    let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
    admin.execute(sqlx::AssertSqlSafe(format!("CREATE ROLE \"{role}\" LOGIN NOSUPERUSER"))).await.unwrap();
    admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\" OWNER \"{role}\""))).await.unwrap();
    let server = admin_url().rsplit_once('/').unwrap().0.to_owned();
    let as_role = server.replacen("://postgres@", &format!("://{role}@"), 1);
    assert_ne!(as_role, server, "TEST_DATABASE_URL names user postgres");
    let (ok, stderr) = migrate(&format!("{as_role}/{name}"));
    let applied = partitioned(&format!("{server}/{name}")).await;
    admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{name}\" WITH (FORCE)"))).await.unwrap();
    admin.execute(sqlx::AssertSqlSafe(format!("DROP ROLE \"{role}\""))).await.unwrap();
    assert!(!ok && !applied, "{stderr}");
    assert!(stderr.contains(&format!("role \"{role}\" may not create it")) && stderr.contains("a superuser runs"), "{stderr}");
}
