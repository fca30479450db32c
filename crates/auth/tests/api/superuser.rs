use std::{
    io::Write,
    process::{Command, Stdio},
};

use reqwest::StatusCode;

use crate::helpers::spawn_app;

fn create_superuser(database_url: &str, email: &str, stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_auth"))
        .args(["create-superuser", "--email", email])
        .env("AUTH_DATABASE_URL", database_url)
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    (output.status.success(), String::from_utf8(output.stdout).unwrap(), String::from_utf8(output.stderr).unwrap())
}

fn database_url(app: &crate::helpers::TestApp) -> String {
    use secrecy::ExposeSecret;
    app.settings.database_url.expose_secret().to_owned()
}

#[tokio::test]
async fn create_superuser_creates_an_admin_from_stdin_and_is_harmless_twice() {
    let app = spawn_app().await;
    let url = database_url(&app);
    let password = "root of all trust 42";
    let (ok, stdout, stderr) = create_superuser(&url, "Boss@Example.com", &format!("{password}\n"));
    assert!(ok, "{stderr}");
    // The result alone: the command's log lines (RUST_LOG=info here) go to stderr.
    assert_eq!(stdout, "created admin boss@example.com\n", "the address as stored, and nothing else");
    assert!(!stdout.contains(password) && !stderr.contains(password));

    let (ok, stdout, stderr) = create_superuser(&url, "boss@example.com", "");
    assert!(ok, "{stderr}");
    assert!(stdout.contains("already an admin"), "{stdout}");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 1);

    let login = app.login("boss@example.com", password).await;
    assert_eq!(login.status(), StatusCode::OK);
    let tokens = crate::helpers::tokens(login).await;
    assert_eq!(app.state.tokens.verify(&tokens.access).unwrap().roles, ["admin", "user"]);
    assert_eq!(app.get_with("/api/v1/roles", &tokens.access).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn create_superuser_promotes_an_existing_user_given_its_password_without_touching_it() {
    let app = spawn_app().await;
    let (email, _) = app.signed_in_user().await;
    let (ok, stdout, stderr) = create_superuser(&database_url(&app), &email, &format!("{}\n", crate::helpers::PASSWORD));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("promoted"), "{stdout}");
    let tokens = app.sign_in(&email).await;
    assert_eq!(app.state.tokens.verify(&tokens.access).unwrap().roles, ["admin", "user"]);
}

/// Sign-up verifies no address: whoever registered the operator's address first holds
/// that account, and must not become an admin because the operator ran the command.
#[tokio::test]
async fn create_superuser_does_not_promote_an_account_whose_password_it_was_not_given() {
    let app = spawn_app().await;
    let (email, _) = app.signed_in_user().await;
    for stdin in ["the operator's own password 42\n", ""] {
        let (ok, stdout, stderr) = create_superuser(&database_url(&app), &email, stdin);
        assert!(!ok, "{stdin:?}: {stdout}");
        assert!(stderr.contains("password"), "{stderr}");
    }
    let tokens = app.sign_in(&email).await;
    assert_eq!(app.state.tokens.verify(&tokens.access).unwrap().roles, ["user"]);
}

#[tokio::test]
async fn create_superuser_refuses_a_weak_or_missing_password_and_writes_nothing() {
    let app = spawn_app().await;
    let url = database_url(&app);
    for stdin in ["", "\n", "12345678\n"] {
        let (ok, _, stderr) = create_superuser(&url, "boss@example.com", stdin);
        assert!(!ok, "{stdin:?} accepted");
        assert!(stderr.contains("password"), "{stderr}");
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 0);
}

/// Two runs creating one admin at once: one creates it, the other finds it made
/// (before, its insert conflicted and it failed with `email_taken`).
#[tokio::test]
async fn create_superuser_run_twice_at_once_creates_one_admin_and_both_succeed() {
    let app = spawn_app().await;
    let url = database_url(&app);
    for round in 0..3 {
        let email = format!("boss{round}@example.com");
        let (first, second) = std::thread::scope(|s| {
            let first = s.spawn(|| create_superuser(&url, &email, "root of all trust 42\n"));
            let second = s.spawn(|| create_superuser(&url, &email, "root of all trust 42\n"));
            (first.join().unwrap(), second.join().unwrap())
        });
        for (ok, stdout, stderr) in [&first, &second] {
            assert!(ok, "{stdout}{stderr}");
        }
        let outputs = [first.1.as_str(), second.1.as_str()];
        assert!(outputs.iter().any(|o| o.contains("created admin")) && outputs.iter().any(|o| o.contains("already an admin")), "{outputs:?}");
    }
}

/// A mistyped database URL: the administrative commands stop, naming the variable,
/// rather than make a new, empty database and report success there.
#[tokio::test]
async fn admin_commands_refuse_a_database_that_does_not_exist_and_make_none() {
    let app = spawn_app().await;
    let name = format!("auth_typo_{}", uuid::Uuid::new_v4().simple());
    let url = database_url(&app);
    let (server, _) = url.rsplit_once('/').unwrap();
    let typo = format!("{server}/{name}");
    let (ok, stdout, stderr) = create_superuser(&typo, "boss@example.com", "root of all trust 42\n");
    assert!(!ok && stdout.is_empty(), "{stdout}{stderr}");
    assert!(stderr.contains(&format!("AUTH_DATABASE_URL: the database \"{name}\" does not exist")), "{stderr}");
    let upkeep = Command::new(env!("CARGO_BIN_EXE_auth")).arg("maintain-partitions").env("AUTH_DATABASE_URL", &typo).output().unwrap();
    let stderr = String::from_utf8_lossy(&upkeep.stderr);
    assert!(!upkeep.status.success() && upkeep.stdout.is_empty(), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    let made: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)").bind(&name).fetch_one(&app.db).await.unwrap();
    assert!(!made, "{name} was created");
}

/// The partitioning benchmark is a binary of its own (`crates/partition-bench`), not a
/// command of the service's: the image ships `auth`, and with it no code that drops and
/// fills databases.
#[test]
fn the_service_binary_has_no_partition_benchmark() {
    let output = Command::new(env!("CARGO_BIN_EXE_auth")).args(["bench-partitions", "--help"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unrecognized subcommand 'bench-partitions'"), "{stderr}");
}

/// A rolling upgrade: a newer release has migrated the database and an instance of this
/// one (re)starts, or an operator runs a command with it. sqlx refused a migration it
/// did not know ("previously applied but is missing in the resolved migrations"), so
/// every command of the older release failed.
#[tokio::test]
async fn commands_run_on_a_schema_migrated_by_a_newer_release() {
    let app = spawn_app().await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99991231000000, 'from a newer release', true, '\\x00', 0)",
    )
    .execute(&app.db)
    .await
    .unwrap();
    // Serving (and `auth migrate`) apply this release's migrations, of which none is missing.
    auth::startup::connect_and_migrate(&app.settings).await.expect("the service starts");
    let migrate = Command::new(env!("CARGO_BIN_EXE_auth"))
        .arg("migrate")
        .env("AUTH_DATABASE_URL", database_url(&app))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&migrate.stderr);
    assert!(migrate.status.success(), "{stderr}");
    assert!(stderr.contains("newer than this binary"), "{stderr}");
    let upkeep = Command::new(env!("CARGO_BIN_EXE_auth")).arg("maintain-partitions").env("AUTH_DATABASE_URL", database_url(&app)).output().unwrap();
    assert!(upkeep.status.success(), "{}", String::from_utf8_lossy(&upkeep.stderr));
    let (ok, stdout, stderr) = create_superuser(&database_url(&app), "boss@example.com", "root of all trust 42\n");
    assert!(ok && stdout.contains("created admin"), "{stdout}{stderr}");
}

/// A binary newer than the database: the administrative commands apply no migration
/// (that is `auth migrate`'s, or the service's at start), and say what to run.
#[tokio::test]
async fn admin_commands_refuse_a_schema_that_lacks_this_releases_migrations_and_apply_none() {
    let app = spawn_app().await;
    let newest: i64 =
        sqlx::query_scalar("DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations) RETURNING version")
            .fetch_one(&app.db)
            .await
            .unwrap();
    let (ok, stdout, stderr) = create_superuser(&database_url(&app), "boss@example.com", "root of all trust 42\n");
    assert!(!ok && stdout.is_empty(), "{stdout}{stderr}");
    assert!(stderr.contains("run `auth migrate`"), "{stderr}");
    let upkeep = Command::new(env!("CARGO_BIN_EXE_auth")).arg("maintain-partitions").env("AUTH_DATABASE_URL", database_url(&app)).output().unwrap();
    let stderr = String::from_utf8_lossy(&upkeep.stderr);
    assert!(!upkeep.status.success() && upkeep.stdout.is_empty(), "{stderr}");
    assert!(stderr.contains("run `auth migrate`"), "{stderr}");
    let applied: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM _sqlx_migrations WHERE version = $1)").bind(newest).fetch_one(&app.db).await.unwrap();
    assert!(!applied, "migration {newest} was applied by an administrative command");
}
