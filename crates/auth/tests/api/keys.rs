//! The JWKS, key rotation and start-up configuration.

use ed25519_dalek::{
    SigningKey,
    pkcs8::{EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Options, spawn_app, spawn_app_with};

#[tokio::test]
async fn jwks_publishes_the_signing_key_that_verifies_issued_tokens() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let jwks: Value = response.json().await.unwrap();
    let (_, tokens) = app.signed_in_user().await;
    let header = jsonwebtoken::decode_header(&tokens.access).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwks["keys"][0].clone()).unwrap();
    assert_eq!(jwk.common.key_id, header.kid);
    // A verifier holding only the JWKS checks the token.
    let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["cinema"]);
    validation.set_issuer(&["cinema-auth"]);
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let claims = jsonwebtoken::decode::<Value>(&tokens.access, &key, &validation).unwrap().claims;
    for claim in ["iss", "aud", "sub", "sid", "jti", "iat", "exp", "roles"] {
        assert!(claims.get(claim).is_some(), "claim {claim} missing");
    }
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 900);
}

#[tokio::test]
async fn a_rotated_out_key_stays_published_and_accepted_while_the_new_one_signs() {
    let dir = std::env::temp_dir().join(format!("auth-rotation-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let old = SigningKey::generate(&mut rand::rngs::OsRng);
    let new = SigningKey::generate(&mut rand::rngs::OsRng);
    let new_path = dir.join("new.pem");
    let old_pub_path = dir.join("old.pub.pem");
    std::fs::write(&new_path, new.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes()).unwrap();
    std::fs::write(&old_pub_path, old.verifying_key().to_public_key_pem(LineEnding::LF).unwrap()).unwrap();

    let app = spawn_app_with(Options {
        extra_vars: vec![
            ("AUTH_JWT_PRIVATE_KEY_FILE", new_path.display().to_string()),
            ("AUTH_JWT_EXTRA_PUBLIC_KEY_FILES", old_pub_path.display().to_string()),
        ],
        ..Default::default()
    })
    .await;
    let jwks: Value = app.client.get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids.len(), 2);

    // A token issued before the rotation (signed by the old key, under its kid) still works.
    let (_, fresh) = app.signed_in_user().await;
    assert_eq!(jsonwebtoken::decode_header(&fresh.access).unwrap().kid.as_deref(), Some(kids[0]), "the new key signs");
    let claims = app.state.tokens.verify(&fresh.access).unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kids[1].to_owned());
    let der = old.to_pkcs8_der().unwrap();
    let legacy = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap();
    assert_eq!(app.get_with("/api/v1/users/me", &legacy).await.status(), StatusCode::OK);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_bad_setting_stops_start_up_with_one_line_naming_the_variable() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_auth")).arg("serve").env("AUTH_LISTEN", "nowhere").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("AUTH_LISTEN") && stderr.contains("nowhere"), "{stderr}");
}

#[test]
fn a_log_filter_that_does_not_parse_stops_start_up() {
    // Nothing of the machine's is touched even if the filter were accepted: closed
    // ports for the stores, a key file in the temporary directory.
    let key = std::env::temp_dir().join(format!("auth-log-filter-{}.pem", uuid::Uuid::new_v4().simple()));
    let output = exit_of(serve_against_closed_ports().env("RUST_LOG", "auth=loud").env("AUTH_JWT_DEV_KEY_FILE", &key));
    let _ = std::fs::remove_file(&key);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("auth: configuration error: RUST_LOG: "), "{stderr}");
}

/// A signing key file that cannot be read stops start-up with a line naming its
/// variable, before any database is made or migrated (the database here is a closed
/// port: reaching for it first would be another error).
#[test]
fn a_missing_signing_key_file_is_named_before_any_database_is_touched() {
    let output = exit_of(serve_against_closed_ports().env("RUST_LOG", "error").env("AUTH_JWT_PRIVATE_KEY_FILE", "/nonexistent/auth-signing.pem"));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("auth: AUTH_JWT_PRIVATE_KEY_FILE: reading signing key /nonexistent/auth-signing.pem"), "{stderr}");
}

#[test]
fn migrate_creates_the_database_and_exits() {
    let name = format!("auth_test_migrate_{}", uuid::Uuid::new_v4().simple());
    let base = crate::helpers::admin_url();
    let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_auth"))
        .arg("migrate")
        .env("AUTH_DATABASE_URL", &url)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use sqlx::{Connection, Executor};
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let roles: Vec<String> = sqlx::query_scalar("SELECT name FROM roles ORDER BY name").fetch_all(&mut conn).await.unwrap();
        assert_eq!(roles, ["admin", "subscriber", "user"]);
        conn.close().await.unwrap();
        let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
        admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{name}\" WITH (FORCE)"))).await.unwrap();
    });
}

/// The output of a process expected to stop by itself; one that still runs after the
/// deadline (a setting accepted that should not have been) is killed and fails the test.
/// `auth serve` with closed ports for PostgreSQL and Redis: a test that expects it to
/// stop early touches nothing of the machine's even if it went on.
fn serve_against_closed_ports() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_auth"));
    command
        .arg("serve")
        .env("AUTH_LISTEN", "127.0.0.1:0")
        .env("AUTH_DATABASE_URL", "postgres://postgres@127.0.0.1:1/auth_never_made")
        .env("REDIS_URL", "redis://127.0.0.1:1");
    command
}

fn exit_of(command: &mut std::process::Command) -> std::process::Output {
    let mut child = command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!("still running after 30 s; stderr: {}", String::from_utf8_lossy(&output.stderr));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}
