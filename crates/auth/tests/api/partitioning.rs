//! Partitioned accounts and login history (docs/partitioning.md): uniqueness across
//! partitions, lookups that touch one partition, months made ahead and retired.

use std::time::Duration;

use auth::{
    domain::Email,
    partitions::PartitionSettings,
    store::{
        history,
        partitions::login_history_partitions,
        users::{self, CREDENTIALS_BY_EMAIL, CREDENTIALS_BY_LOGIN, NewUser, SELECT_BY_EMAIL, SELECT_BY_ID},
    },
};
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, PgPool};
use uuid::Uuid;

use crate::{
    helpers::{Options, PASSWORD, assert_problem, spawn_app, spawn_app_with},
    plans::{PlanMode, partitions_read, scans_of},
};

/// `count` accounts written straight into `users` (the trigger fills the lookup
/// tables), every other one with a login: `member{i}@example.com`, `Member{i}`.
async fn insert_accounts(db: &PgPool, count: i32) {
    sqlx::query(
        "INSERT INTO users (id, email, login)
         SELECT gen_random_uuid(), 'member' || g || '@example.com', CASE WHEN g % 2 = 0 THEN 'Member' || g END
           FROM generate_series(1, $1) g",
    )
    .bind(count)
    .execute(db)
    .await
    .unwrap();
}

/// An id that hash-partitions `users` into a different partition than `other`.
async fn id_in_another_partition(db: &PgPool, other: Uuid) -> Uuid {
    loop {
        let id = Uuid::now_v7();
        let same: bool = sqlx::query_scalar(
            "SELECT bool_or(satisfies_hash_partition('users'::regclass, 16, r, $1) AND satisfies_hash_partition('users'::regclass, 16, r, $2))
               FROM generate_series(0, 15) r",
        )
        .bind(id)
        .bind(other)
        .fetch_one(db)
        .await
        .unwrap();
        if !same {
            return id;
        }
    }
}

fn new_user(email: &str) -> NewUser {
    NewUser {
        email: Email::parse(email).unwrap(),
        email_verified: false,
        login: None,
        password_hash: None,
        birth_date: None,
        country: None,
        region: None,
    }
}

#[tokio::test]
async fn accounts_spread_over_the_partitions_and_the_lookup_tables_follow_every_write() {
    let app = spawn_app().await;
    insert_accounts(&app.db, 400).await;
    let spread: Vec<i64> = sqlx::query_scalar("SELECT count(*) FROM users GROUP BY tableoid ORDER BY 1").fetch_all(&app.db).await.unwrap();
    assert_eq!(spread.len(), 16, "every hash partition holds accounts: {spread:?}");
    assert!(spread[0] >= 5 && spread[15] <= 50, "{spread:?}");

    // Change an email and a login, change only a login's case, delete an account.
    sqlx::query("UPDATE users SET email = 'renamed@example.com', login = 'Renamed' WHERE email = 'member2@example.com'")
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query("UPDATE users SET login = 'MEMBER4' WHERE email = 'member4@example.com'").execute(&app.db).await.unwrap();
    sqlx::query("DELETE FROM users WHERE email = 'member6@example.com'").execute(&app.db).await.unwrap();

    // Each account holds exactly its email and its lower-cased login, nothing else.
    let (emails_off, logins_off): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM (SELECT email, id FROM users EXCEPT SELECT email, user_id FROM user_emails
                                        UNION ALL SELECT email, user_id FROM user_emails EXCEPT SELECT email, id FROM users) d),
                (SELECT count(*) FROM (SELECT lower(login), id FROM users WHERE login IS NOT NULL EXCEPT SELECT login, user_id FROM user_logins
                                        UNION ALL SELECT login, user_id FROM user_logins EXCEPT SELECT lower(login), id FROM users WHERE login IS NOT NULL) d)",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((emails_off, logins_off), (0, 0));
    // What was released can be taken again.
    for (email, login) in [("member2@example.com", "member2"), ("member6@example.com", "Member6")] {
        let response = app.post_json("/api/v1/auth/signup", &json!({"email": email, "password": PASSWORD, "login": login})).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{email}");
    }
}

#[tokio::test]
async fn an_email_or_login_is_unique_across_partitions_of_users() {
    let app = spawn_app().await;
    let holder = users::insert(
        &mut app.db.acquire().await.unwrap(),
        NewUser { login: Some(auth::domain::Login::parse("Holder").unwrap()), ..new_user("holder@example.com") },
    )
    .await
    .unwrap()
    .unwrap();
    // A row that would live in another partition of users still cannot take them.
    let other = id_in_another_partition(&app.db, holder).await;
    for (email, login, constraint) in [("holder@example.com", None, "user_emails_pkey"), ("free@example.com", Some("hOLDER"), "user_logins_pkey")] {
        let err = sqlx::query("INSERT INTO users (id, email, login) VALUES ($1, $2, $3)")
            .bind(other)
            .bind(email)
            .bind(login)
            .execute(&app.db)
            .await
            .unwrap_err();
        let db_err = err.as_database_error().unwrap();
        assert_eq!((db_err.code().as_deref(), db_err.constraint()), (Some("23505"), Some(constraint)));
    }

    // Through the API: 409 with the documented codes, and nothing half-written.
    let response = app.post_json("/api/v1/auth/signup", &json!({"email": "HOLDER@example.com", "password": PASSWORD})).await;
    assert_problem(response, StatusCode::CONFLICT, "email_taken").await;
    let response = app.post_json("/api/v1/auth/signup", &json!({"email": "new@example.com", "password": PASSWORD, "login": "holder"})).await;
    assert_problem(response, StatusCode::CONFLICT, "login_taken").await;
    let (_, tokens) = app.signed_in_user().await;
    let patch = |body| app.send(reqwest::Method::PATCH, "/api/v1/users/me", Some(&tokens.access), Some(body));
    assert_problem(patch(json!({"email": "holder@example.com"})).await, StatusCode::CONFLICT, "email_taken").await;
    assert_problem(patch(json!({"login": "HOLDER"})).await, StatusCode::CONFLICT, "login_taken").await;
    let counts: (i64, i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM user_emails), (SELECT count(*) FROM user_logins)")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(counts, (2, 2, 1));
}

#[tokio::test]
async fn two_concurrent_signups_with_one_email_get_exactly_one_201_and_one_409() {
    let app = spawn_app().await;
    for round in 0..4 {
        let email = format!("race-{round}@example.com");
        let body = json!({"email": email, "password": PASSWORD});
        let (a, b) = tokio::join!(app.post_json("/api/v1/auth/signup", &body), app.post_json("/api/v1/auth/signup", &body));
        let mut statuses = [a.status(), b.status()];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT], "round {round}");
        let loser = if a.status() == StatusCode::CONFLICT { a } else { b };
        assert_problem(loser, StatusCode::CONFLICT, "email_taken").await;
        let holders: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE email = $1").bind(&email).fetch_one(&app.db).await.unwrap();
        assert_eq!(holders, 1);
    }
}

#[tokio::test]
async fn a_second_claim_of_an_email_waits_for_the_first_and_fails_only_if_it_commits() {
    let app = spawn_app().await;
    for first_commits in [true, false] {
        let email = format!("claimed-{first_commits}@example.com");
        let mut first = app.db.begin().await.unwrap();
        let first_id = users::insert(&mut first, new_user(&email)).await.unwrap().unwrap();
        let db = app.db.clone();
        let second_email = email.clone();
        let second = tokio::spawn(async move {
            let mut tx = db.begin().await.unwrap();
            let outcome = users::insert(&mut tx, new_user(&second_email)).await;
            tx.commit().await.unwrap();
            outcome
        });
        crate::helpers::until_a_session_waits_for_a_lock(&app.db).await;
        if first_commits {
            first.commit().await.unwrap();
        } else {
            first.rollback().await.unwrap();
        }
        let outcome = second.await.unwrap();
        let holder: Uuid = sqlx::query_scalar("SELECT user_id FROM user_emails WHERE email = $1").bind(&email).fetch_one(&app.db).await.unwrap();
        if first_commits {
            assert!(matches!(outcome, Ok(Err(users::Taken::Email))), "{outcome:?}");
            assert_eq!(holder, first_id);
        } else {
            assert_eq!(holder, outcome.unwrap().unwrap());
        }
    }
}

#[tokio::test]
async fn lookups_by_id_email_and_login_read_one_partition_of_each_table() {
    let app = spawn_app().await;
    insert_accounts(&app.db, 400).await;
    sqlx::query("ANALYZE users, user_emails, user_logins").execute(&app.db).await.unwrap();
    let (id, email, login): (Uuid, String, String) =
        sqlx::query_as("SELECT id, email, login FROM users WHERE email = 'member42@example.com'").fetch_one(&app.db).await.unwrap();
    let mut conn = app.db.acquire().await.unwrap();
    let cases = [
        ("by id", SELECT_BY_ID, format!("'{id}'"), None),
        ("by email", SELECT_BY_EMAIL, format!("'{email}'"), Some("user_emails")),
        ("credentials by email", CREDENTIALS_BY_EMAIL, format!("'{email}'"), Some("user_emails")),
        ("credentials by login", CREDENTIALS_BY_LOGIN, format!("'{}'", login.to_uppercase()), Some("user_logins")),
    ];
    for (what, sql, args, lookup) in cases {
        for mode in [PlanMode::Custom, PlanMode::Generic] {
            let scans = scans_of(&mut conn, sql, &args, mode).await;
            let users_read = partitions_read(&scans, "users");
            assert_eq!(users_read.len(), 1, "{what}, {mode:?}: {scans:#?}");
            let holder: bool = sqlx::query_scalar("SELECT tableoid::regclass::text = $2 FROM users WHERE id = $1")
                .bind(id)
                .bind(users_read[0])
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert!(holder, "{what}: read {} but the account is elsewhere", users_read[0]);
            if let Some(table) = lookup {
                assert_eq!(partitions_read(&scans, table).len(), 1, "{what}, {mode:?}: {scans:#?}");
            }
        }
    }
}

#[tokio::test]
async fn a_history_page_reads_the_users_rows_in_index_order_whatever_their_number() {
    let app = spawn_app().await;
    let (_, tokens) = app.signed_in_user().await;
    let heavy = app.state.tokens.verify(&tokens.access).unwrap().sub;
    // Other viewers' sign-ins and 3,000 of one account (as under a password-guessing
    // attack), over the months that have partitions.
    sqlx::query(
        "INSERT INTO login_history (id, attempted_at, user_id, device, method, success, failure_reason)
         SELECT gen_random_uuid(), now() - g * interval '5 minutes', CASE WHEN g % 7 = 0 THEN $1 ELSE gen_random_uuid() END,
                'web', 'password', false, 'wrong_password'
           FROM generate_series(1, 21000) g",
    )
    .bind(heavy)
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query("ANALYZE login_history").execute(&app.db).await.unwrap();
    let copies: Vec<String> =
        sqlx::query_scalar("SELECT relid::regclass::text FROM pg_partition_tree('login_history_user_time_idx')").fetch_all(&app.db).await.unwrap();
    for mode in [PlanMode::Custom, PlanMode::Generic] {
        // The page query as the service runs it.
        let mut tx = app.db.begin().await.unwrap();
        sqlx::query(history::PAGE_PLANNER_SETTING).execute(&mut *tx).await.unwrap();
        let scans = scans_of(&mut tx, history::PAGE, &format!("'{heavy}', 21"), mode).await;
        tx.rollback().await.unwrap();
        let months = partitions_read(&scans, "login_history");
        assert!(months.len() > 1, "{scans:#?}");
        for scan in scans.iter().filter(|s| s.executed) {
            let index = scan.index.as_deref().unwrap_or_default();
            assert!(copies.iter().any(|c| c == index) && !scan.sorted, "{mode:?}: {scan:?}");
        }
    }
    let page: serde_json::Value = app.get_with("/api/v1/users/me/login-history?limit=21", &tokens.access).await.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 21);

    // The account's latest wrong passwords within the hour (the sign-in limit while
    // the limits' Redis is down): only the months that hour touches, on the index
    // (in order, or a bitmap of the account's hour then sorted: the rows of one
    // account's hour, whichever the planner finds cheaper).
    let months = login_history_partitions(&mut app.db.acquire().await.unwrap()).await.unwrap();
    let now = Utc::now();
    let hour: Vec<&str> = months.iter().filter(|m| m.from <= now && m.to > now - chrono::Duration::hours(1)).map(|m| m.name.as_str()).collect();
    let ahead: Vec<&str> = months.iter().filter(|m| m.from > now).map(|m| m.name.as_str()).collect();
    for mode in [PlanMode::Custom, PlanMode::Generic] {
        let mut conn = app.db.acquire().await.unwrap();
        let scans = scans_of(
            &mut conn,
            history::WRONG_PASSWORDS_IN_WINDOW,
            &format!("'{heavy}', 3600, 'wrong_password', {}, 49", history::WRONG_PASSWORDS_ROWS_READ),
            mode,
        )
        .await;
        let read = partitions_read(&scans, "login_history");
        assert!(read.iter().any(|p| hour.contains(p)), "{mode:?}: read {read:?}, the hour's months {hour:?}");
        // The months ahead are empty: whatever reads them reads nothing.
        assert!(read.iter().all(|p| hour.contains(p) || ahead.contains(p)), "{mode:?}: read {read:?}, the hour's months {hour:?}");
        for scan in scans.iter().filter(|s| s.executed && hour.contains(&s.relation.as_str())) {
            let index = scan.index.as_deref().unwrap_or_default();
            assert!(copies.iter().any(|c| c == index), "{mode:?}: {scan:?}");
        }
    }

    // A page far back, after 2,500 of the account's rows, two months or so ago: the
    // months after its cursor are skipped, and each month read starts at the cursor
    // in the index instead of reading the newer rows and filtering them out (with the
    // cursor an optional condition, a generic plan did, in every month).
    let (cursor_time, cursor_id): (DateTime<Utc>, Uuid) =
        sqlx::query_as("SELECT attempted_at, id FROM login_history WHERE user_id = $1 ORDER BY attempted_at DESC, id DESC OFFSET 2500 LIMIT 1")
            .bind(heavy)
            .fetch_one(&app.db)
            .await
            .unwrap();
    let mut conn = app.db.acquire().await.unwrap();
    let months = login_history_partitions(&mut conn).await.unwrap();
    let newer: Vec<&str> = months.iter().filter(|m| m.from > cursor_time).map(|m| m.name.as_str()).collect();
    assert!(newer.len() > 1, "the cursor should leave newer months to skip: {months:?}");
    drop(conn);
    for mode in [PlanMode::Custom, PlanMode::Generic] {
        let mut tx = app.db.begin().await.unwrap();
        sqlx::query(history::PAGE_PLANNER_SETTING).execute(&mut *tx).await.unwrap();
        let args = format!("'{heavy}', '{}', '{cursor_id}', 21", cursor_time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        let scans = scans_of(&mut tx, history::PAGE_AFTER, &args, mode).await;
        tx.rollback().await.unwrap();
        let read = partitions_read(&scans, "login_history");
        assert!(!read.is_empty() && read.iter().all(|p| !newer.contains(p)), "{mode:?}: read {read:?}, newer than the cursor {newer:?}");
        for scan in scans.iter().filter(|s| s.executed) {
            let index = scan.index.as_deref().unwrap_or_default();
            assert!(copies.iter().any(|c| c == index) && !scan.sorted && scan.filter.is_none(), "{mode:?}: {scan:?}");
        }
    }
}

/// Settings as the service reads them, with the given retention.
fn settings(retention_months: u32) -> PartitionSettings {
    PartitionSettings {
        login_history_retention_months: retention_months,
        maintenance_interval: Duration::from_secs(3600),
        ended_session_retention: Duration::from_secs(30 * 86_400),
    }
}

#[tokio::test]
async fn login_history_has_its_own_partition_for_this_month_and_the_next_three() {
    let app = spawn_app().await;
    let mut conn = app.db.acquire().await.unwrap();
    // A row in the middle of each month lands in a partition of exactly that month.
    let check = async |conn: &mut sqlx::PgConnection| {
        for months_ahead in 0..=3 {
            let mut tx = conn.begin().await.unwrap();
            let (partition, month_start, month_end): (String, DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(
                "WITH m AS (SELECT date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => $1) AS start)
                 INSERT INTO login_history (id, attempted_at, device, method, success, failure_reason)
                 SELECT gen_random_uuid(), (start + interval '14 days') AT TIME ZONE 'UTC', 'web', 'password', false, 'unknown_account' FROM m
                 RETURNING tableoid::regclass::text, (SELECT start AT TIME ZONE 'UTC' FROM m), (SELECT (start + interval '1 month') AT TIME ZONE 'UTC' FROM m)",
            )
            .bind(months_ahead)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
            let bounds = login_history_partitions(&mut tx).await.unwrap().into_iter().find(|p| p.name == partition).map(|p| (p.from, p.to));
            assert_eq!(bounds, Some((month_start, month_end)), "{months_ahead} months ahead: {partition}");
            tx.rollback().await.unwrap();
        }
    };
    check(&mut *conn).await;

    // Made by the maintenance too: drop the coming months, run it, they are back. (The
    // run the service starts with may be the one that makes them: either is fine.)
    let ahead: Vec<String> =
        login_history_partitions(&mut conn).await.unwrap().into_iter().filter(|p| p.from > chrono::Utc::now()).map(|p| p.name).collect();
    assert!(ahead.len() >= 3, "{ahead:?}");
    for name in &ahead {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {name}"))).execute(&mut *conn).await.unwrap();
    }
    let outcome = auth::partitions::maintain(&app.db, &settings(12)).await.unwrap();
    assert!(outcome.dropped.is_empty() && !outcome.rows_in_default, "{outcome:?}");
    let now: Vec<String> = login_history_partitions(&mut conn).await.unwrap().into_iter().map(|p| p.name).collect();
    assert!(ahead.iter().all(|name| now.contains(name)), "{ahead:?} in {now:?}");
    check(&mut *conn).await;
}

#[tokio::test]
async fn retention_drops_whole_months_older_than_the_setting_and_nothing_newer() {
    let app = spawn_app_with(Options { extra_vars: vec![("AUTH_LOGIN_HISTORY_RETENTION_MONTHS", "3".into())], ..Default::default() }).await;
    assert_eq!(app.settings.partitions.login_history_retention_months, 3);
    // Months back to ten ago, as an older deployment would have; a sign-in every ten
    // days, none within two days of the three months' limit (89 to 92 days). Set up
    // under pg_partman's lock, so that the maintenance run the service starts with goes
    // wholly before or wholly after; either way the outcome below is the same.
    let mut setup = past_months_under_upkeeps_lock(&app.db).await;
    sqlx::query(
        "INSERT INTO login_history (id, attempted_at, device, method, success, failure_reason)
         SELECT gen_random_uuid(), now() - d * interval '1 day', 'web', 'password', false, 'unknown_account' FROM generate_series(5, 295, 10) d",
    )
    .execute(&mut *setup)
    .await
    .unwrap();
    let in_default: i64 = sqlx::query_scalar("SELECT count(*) FROM login_history_default").fetch_one(&mut *setup).await.unwrap();
    assert_eq!(in_default, 0, "every row has its month's partition");
    let before = login_history_partitions(&mut setup).await.unwrap();
    setup.commit().await.unwrap();
    let mut conn = app.db.acquire().await.unwrap();
    // The rule: a month goes once its end is more than three months ago.
    let expired: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM unnest($1::text[], $2::timestamptz[]) AS p(name, ends) WHERE ends < now() - interval '3 months' ORDER BY ends",
    )
    .bind(before.iter().map(|p| p.name.clone()).collect::<Vec<_>>())
    .bind(before.iter().map(|p| p.to).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert!(expired.len() >= 6, "{expired:?}");
    let surviving: i64 = sqlx::query_scalar("SELECT count(*) FROM login_history WHERE date_trunc('month', attempted_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '1 month' >= now() - interval '3 months'")
        .fetch_one(&mut *conn)
        .await
        .unwrap();

    let outcome = auth::partitions::maintain(&app.db, &app.settings.partitions).await.unwrap();

    assert!(!outcome.rows_in_default);
    // The expired months are gone as tables (dropped, not kept detached); the others stay.
    for p in &before {
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text").bind(&p.name).fetch_one(&mut *conn).await.unwrap();
        assert_eq!(exists.is_none(), expired.contains(&p.name), "{p:?}");
    }
    let (rows, young): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE attempted_at > now() - interval '3 months') FROM login_history")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!(rows, surviving);
    // Everything younger than the retention is still there: the rows 5 to 85 days old.
    assert_eq!(young, 9);
    let now = chrono::Utc::now();
    for p in login_history_partitions(&mut conn).await.unwrap() {
        assert!(p.to >= now - chrono::Months::new(3), "{p:?} should have gone");
    }
}

/// Two accounts swapping emails, or logins, in transactions stepped by hand: each claim
/// finds the other's value still held and fails at once (the trigger claims before it
/// releases), instead of both waiting on each other's release until PostgreSQL aborts
/// one for a deadlock.
#[tokio::test]
async fn accounts_swapping_emails_or_logins_fail_at_once_without_a_deadlock() {
    let app = spawn_app().await;
    let mut first = app.db.begin().await.unwrap();
    let a = users::insert(&mut first, NewUser { login: Some(auth::domain::Login::parse("Alpha").unwrap()), ..new_user("alpha@example.com") })
        .await
        .unwrap()
        .unwrap();
    let b = users::insert(&mut first, NewUser { login: Some(auth::domain::Login::parse("Beta").unwrap()), ..new_user("beta@example.com") })
        .await
        .unwrap()
        .unwrap();
    first.commit().await.unwrap();
    for (column, a_value, b_value) in [("email", "alpha@example.com", "beta@example.com"), ("login", "alpha", "beta")] {
        let update = format!("UPDATE users SET {column} = $2 WHERE id = $1");
        let mut one = app.db.begin().await.unwrap();
        let mut other = app.db.begin().await.unwrap();
        // Each statement must finish on its own: waiting for the other would hang here.
        sqlx::query("SET LOCAL lock_timeout = '5s'").execute(&mut *one).await.unwrap();
        sqlx::query("SET LOCAL lock_timeout = '5s'").execute(&mut *other).await.unwrap();
        let a_takes_b = sqlx::query(sqlx::AssertSqlSafe(update.clone())).bind(a).bind(b_value).execute(&mut *one).await;
        let b_takes_a = sqlx::query(sqlx::AssertSqlSafe(update.clone())).bind(b).bind(a_value).execute(&mut *other).await;
        for (who, outcome) in [("a", a_takes_b), ("b", b_takes_a)] {
            let code = outcome.expect_err(who).as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
            assert_eq!(code.as_deref(), Some("23505"), "{column}: {who}'s claim is a unique violation, not a wait");
        }
    }
}

/// Rows of a month that has no partition (upkeep stopped for months, or a clock far
/// off) fall into the default partition. The next run moves them into their month, made
/// for them, instead of failing to attach that month, and so every later run with it,
/// retention included.
#[tokio::test]
async fn rows_of_a_month_without_a_partition_are_moved_out_of_the_default_one() {
    let app = spawn_app().await;
    let mut setup = app.db.begin().await.unwrap();
    // Under pg_partman's lock: the run the service starts with goes wholly before or after.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('pg_partman run_maintenance'))").execute(&mut *setup).await.unwrap();
    let last = login_history_partitions(&mut setup).await.unwrap().pop().unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {}", last.name))).execute(&mut *setup).await.unwrap();
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO login_history (id, attempted_at, device, method, success, failure_reason)
         VALUES (gen_random_uuid(), $1 + interval '10 days', 'web', 'password', false, 'unknown_account') RETURNING id",
    )
    .bind(last.from)
    .fetch_one(&mut *setup)
    .await
    .unwrap();
    let in_default: i64 = sqlx::query_scalar("SELECT count(*) FROM login_history_default").fetch_one(&mut *setup).await.unwrap();
    assert_eq!(in_default, 1);
    setup.commit().await.unwrap();

    let outcome = auth::partitions::maintain(&app.db, &settings(12)).await.unwrap();
    assert!(outcome.moved_from_default <= 1 && !outcome.rows_in_default, "{outcome:?}");
    let home: String =
        sqlx::query_scalar("SELECT tableoid::regclass::text FROM login_history WHERE id = $1").bind(id).fetch_one(&app.db).await.unwrap();
    assert_eq!(home, last.name);
}

/// One row dated years ahead (a clock far off) gets a month of its own; pg_partman then
/// counted its months made ahead up to that one and made none of the coming months
/// until then. The run makes this month and the coming ones whatever the last month is,
/// and reports a month made and dropped within it.
#[tokio::test]
async fn a_row_years_ahead_does_not_stop_the_coming_months_being_made() {
    let app = spawn_app().await;
    let mut setup = app.db.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('pg_partman run_maintenance'))").execute(&mut *setup).await.unwrap();
    sqlx::query(
        "INSERT INTO login_history (id, attempted_at, device, method, success, failure_reason)
         VALUES (gen_random_uuid(), now() + interval '5 years', 'web', 'password', false, 'unknown_account'),
                (gen_random_uuid(), now() - interval '30 months', 'web', 'password', false, 'unknown_account')",
    )
    .execute(&mut *setup)
    .await
    .unwrap();
    setup.commit().await.unwrap();
    let first = auth::partitions::maintain(&app.db, &settings(12)).await.unwrap();
    assert_eq!(first.moved_from_default, 2, "{first:?}");
    assert_eq!(first.dropped.len(), 1, "the old row's month, made and dropped in one run, is reported: {first:?}");
    assert!(first.dropped[0].to < chrono::Utc::now() - chrono::Duration::days(365));

    // The coming months go missing (upkeep stopped, say): the next run makes them.
    let mut conn = app.db.acquire().await.unwrap();
    let coming: Vec<String> = login_history_partitions(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.from > chrono::Utc::now() && p.from < chrono::Utc::now() + chrono::Duration::days(100))
        .map(|p| p.name)
        .collect();
    assert!(coming.len() >= 3, "{coming:?}");
    for name in &coming {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {name}"))).execute(&mut *conn).await.unwrap();
    }
    let second = auth::partitions::maintain(&app.db, &settings(12)).await.unwrap();
    let made: Vec<String> = second.created.iter().map(|p| p.name.clone()).collect();
    assert!(coming.iter().all(|name| made.contains(name)), "{coming:?} made again: {made:?}");
}

/// How long the longest wait for pg_partman's advisory lock `name` in this database has
/// lasted so far, in seconds; `None` while nobody waits for it.
/// A transaction holding pg_partman's maintenance lock (so that a run of the service's
/// goes wholly before or after it) in which the ten months before this one have been made.
async fn past_months_under_upkeeps_lock(db: &PgPool) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut setup = db.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('pg_partman run_maintenance'))").execute(&mut *setup).await.unwrap();
    sqlx::query(
        "SELECT partman.create_partition_time(current_schema() || '.login_history',
                ARRAY(SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') - make_interval(months => m)) AT TIME ZONE 'UTC' FROM generate_series(1, 10) m))",
    )
    .execute(&mut *setup)
    .await
    .unwrap();
    setup
}

async fn advisory_wait_seconds(db: &PgPool, name: &str) -> Option<f64> {
    sqlx::query_scalar(
        "SELECT extract(epoch FROM max(clock_timestamp() - waitstart))::float8 FROM pg_locks
          WHERE locktype = 'advisory' AND NOT granted AND objid = hashtext($1)::oid
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(name)
    .fetch_one(db)
    .await
    .unwrap()
}

/// A second run (another instance, or cron's `auth maintain-partitions`) while one
/// holds pg_partman's lock waits for it and then runs. Its lock timeout of 3 s applied to
/// that wait too: the second run failed with "canceling statement due to lock timeout".
#[tokio::test]
async fn a_maintenance_run_waits_for_one_in_progress_instead_of_failing() {
    let app = spawn_app().await;
    let mut first = app.db.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('pg_partman run_maintenance'))").execute(&mut *first).await.unwrap();
    let db = app.db.clone();
    let second = tokio::spawn(async move { auth::partitions::maintain(&db, &settings(12)).await });
    // Held until the second run has waited longer than its lock timeout of 3 s would
    // have let it, or it has ended.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !second.is_finished() && advisory_wait_seconds(&app.db, "pg_partman run_maintenance").await.is_none_or(|waited| waited < 4.0) {
        assert!(std::time::Instant::now() < deadline, "the second run neither waited nor ended");
        tokio::task::yield_now().await;
    }
    first.commit().await.unwrap();
    let outcome = second.await.unwrap();
    assert!(outcome.is_ok(), "{outcome:?}");
}

/// A long query reading an expired month (an export, a pg_dump) used to stall every
/// sign-in: the drop locked the whole table, then waited for the month, and inserts
/// queued behind it until the lock timeout (3 s) failed the run, taking the making of
/// the coming months down with it, at every run. The months are made first, on their
/// own; the drop locks the expired months before the table, so it waits for the reader
/// without holding the table, and leaves them to a later run.
#[tokio::test]
async fn a_query_reading_an_expired_month_holds_up_only_its_drop_not_sign_ins_or_the_coming_months() {
    let app = spawn_app().await;
    // The run the service starts with has made its months once it has written the
    // retention; everything below happens after it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sqlx::query_scalar::<_, Option<String>>("SELECT retention FROM partman.part_config").fetch_one(&app.db).await.unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the service's first maintenance run never ran");
        tokio::task::yield_now().await;
    }
    // Months back to ten ago, and none ahead: upkeep must make those.
    let mut setup = past_months_under_upkeeps_lock(&app.db).await;
    let partitions = login_history_partitions(&mut setup).await.unwrap();
    let coming: Vec<String> = partitions.iter().filter(|p| p.from > Utc::now()).map(|p| p.name.clone()).collect();
    assert!(coming.len() >= 3, "{partitions:?}");
    for name in &coming {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {name}"))).execute(&mut *setup).await.unwrap();
    }
    setup.commit().await.unwrap();
    let expired: Vec<String> =
        partitions.iter().filter(|p| p.to < Utc::now() - chrono::Months::new(3) - chrono::Duration::days(1)).map(|p| p.name.clone()).collect();
    assert!(expired.len() >= 6, "{partitions:?}");

    // The reader: a transaction that has read the oldest expired month and is still open.
    let mut reader = app.db.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {}", expired[0]))).execute(&mut *reader).await.unwrap();

    let db = app.db.clone();
    let run = tokio::spawn(async move { auth::partitions::maintain(&db, &settings(3)).await });
    // Sign-ins insert into login_history; a lock on the whole table against everyone,
    // held or asked for, is what they would queue behind.
    let mut table_locked = false;
    while !run.is_finished() {
        table_locked |= sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE relation = 'login_history'::regclass AND mode = 'AccessExclusiveLock')",
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
    }
    let outcome = run.await.unwrap().expect("the run succeeds, its drop left for later");
    assert!(!table_locked, "the table was locked against sign-ins while the reader held a month");
    let created: Vec<&str> = outcome.created.iter().map(|p| p.name.as_str()).collect();
    assert!(coming.iter().all(|name| created.contains(&name.as_str())), "{coming:?} made: {outcome:?}");
    assert!(outcome.dropped.is_empty(), "{outcome:?}");
    let postponed: Vec<&str> = outcome.drop_postponed.iter().map(|p| p.name.as_str()).collect();
    assert!(expired.iter().all(|name| postponed.contains(&name.as_str())), "{expired:?} postponed: {outcome:?}");

    // A reader of the whole table (pg_dump locks every table first): the drop gets the
    // months, then waits its short while for the table, and gives up again.
    reader.rollback().await.unwrap();
    let mut reader = app.db.begin().await.unwrap();
    sqlx::query("LOCK TABLE ONLY login_history IN ACCESS SHARE MODE").execute(&mut *reader).await.unwrap();
    let outcome = auth::partitions::maintain(&app.db, &settings(3)).await.expect("the run succeeds, its drop left for later");
    assert!(outcome.dropped.is_empty() && outcome.drop_postponed.len() == expired.len(), "{outcome:?}");

    // Once the reader is done, the next run drops them.
    reader.rollback().await.unwrap();
    let outcome = auth::partitions::maintain(&app.db, &settings(3)).await.unwrap();
    let dropped: Vec<&str> = outcome.dropped.iter().map(|p| p.name.as_str()).collect();
    assert!(expired.iter().all(|name| dropped.contains(&name.as_str())) && outcome.drop_postponed.is_empty(), "{outcome:?}");
}

/// A support engineer's `TRUNCATE users` (of a staging copy, say): the row trigger that
/// keeps the lookup tables does not fire on TRUNCATE, and they have no foreign key, so
/// every email and login stayed taken and signing up again was 409 email_taken.
#[tokio::test]
async fn truncating_users_frees_their_emails_and_logins() {
    let app = spawn_app().await;
    insert_accounts(&app.db, 10).await;
    app.signup("returning@example.com").await;
    sqlx::query("TRUNCATE users CASCADE").execute(&app.db).await.unwrap();
    let (emails, logins): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM user_emails), (SELECT count(*) FROM user_logins)").fetch_one(&app.db).await.unwrap();
    assert_eq!((emails, logins), (0, 0));
    app.signup("returning@example.com").await;
    let mut conn = app.db.acquire().await.unwrap();
    users::insert(&mut conn, NewUser { login: Some(auth::domain::Login::parse("Member2").unwrap()), ..new_user("member2@example.com") })
        .await
        .unwrap()
        .expect("the login and email of a truncated account are free");
}
