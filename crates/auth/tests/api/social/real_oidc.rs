//! The Google flow against an independent, real OpenID provider: `oauth2-mock-server`
//! (npm, installed by `make test` into crates/auth/tests/oidc). It serves discovery and
//! JWKS, signs RS256 ID tokens with a key generated at start, verifies PKCE and echoes
//! the nonce: nothing here is shaped by our code.

use std::{path::PathBuf, process::Stdio, time::Duration};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use super::support::*;
use crate::helpers::{Options, TestApp, spawn_app_with};

/// A running provider; killed when dropped.
struct OidcProvider {
    issuer: String,
    _process: Child,
}

impl OidcProvider {
    async fn start(envs: &[(&str, &str)]) -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
        assert!(
            dir.join("node_modules/oauth2-mock-server").is_dir(),
            "the OpenID provider for this test is not installed: run `npm ci` in {} (`make test` does it)",
            dir.display()
        );
        let mut process = Command::new("node")
            .arg("provider.mjs")
            .current_dir(&dir)
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (Node.js 22.12 or later is needed for this test; `make test` provides one)");
        let stdout = process.stdout.take().unwrap();
        // The provider prints its issuer once it listens; wait for that, with a deadline.
        let first_line = tokio::time::timeout(Duration::from_secs(30), BufReader::new(stdout).lines().next_line())
            .await
            .expect("the OpenID provider did not start within 30 s")
            .unwrap()
            .expect("the OpenID provider exited before listening");
        let ready: Value = serde_json::from_str(&first_line).unwrap();
        Self { issuer: ready["issuer"].as_str().unwrap().to_owned(), _process: process }
    }

    async fn app(&self) -> TestApp {
        let vars = vec![
            ("AUTH_PUBLIC_URL", PUBLIC_URL.to_owned()),
            ("OAUTH_GOOGLE_CLIENT_ID", CLIENT_ID.to_owned()),
            ("OAUTH_GOOGLE_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ("OAUTH_GOOGLE_ISSUER", self.issuer.clone()),
        ];
        spawn_app_with(Options { extra_vars: vars, ..Default::default() }).await
    }
}

/// Authorize at our service, follow the provider's redirect (it signs the person in
/// at once), and deliver its callback to our service from the same browser.
async fn sign_in_through(app: &TestApp, provider: &OidcProvider) -> reqwest::Response {
    let flow = authorize(app, "google", None).await;
    assert!(flow.location.as_str().starts_with(&provider.issuer), "{}", flow.location);
    let at_provider = browser().get(flow.location.clone()).send().await.unwrap();
    assert_eq!(at_provider.status(), StatusCode::FOUND, "{:?}", at_provider.text().await);
    let back = url::Url::parse(at_provider.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(back.as_str().split('?').next().unwrap(), flow.callback_url);
    // The callback address is our public one; deliver it to the test app.
    let query: Vec<(String, String)> = back.query_pairs().into_owned().collect();
    browser().get(app.url("/api/v1/oauth/google/callback")).query(&query).header("cookie", &flow.cookie).send().await.unwrap()
}

#[tokio::test]
async fn google_sign_in_works_against_a_real_openid_provider() {
    let provider = OidcProvider::start(&[("OIDC_SUB", "real-sub-1"), ("OIDC_EMAIL", "real.person@gmail.com")]).await;
    let app = provider.app().await;

    let response = sign_in_through(&app, &provider).await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.text().await);
    let access = crate::helpers::tokens(response).await.access;
    let me_first = me(&app, &access).await;
    assert_eq!(me_first["email"], "real.person@gmail.com");

    let response = sign_in_through(&app, &provider).await;
    assert_eq!(response.status(), StatusCode::OK);
    let access = crate::helpers::tokens(response).await.access;
    assert_eq!(me(&app, &access).await["id"], me_first["id"]);
    assert_eq!(history_methods(&app, &access).await, ["google", "google"]);
    let linked: Value = app.get_with("/api/v1/users/me/social", &access).await.json().await.unwrap();
    assert_eq!(linked[0]["provider_user_id"], "real-sub-1");
}

/// Whether the account made from a real provider's sign-in counts its address as proven.
async fn proven_after_sign_up(sub: &str, email: &str, email_verified: &str) -> bool {
    let provider = OidcProvider::start(&[("OIDC_SUB", sub), ("OIDC_EMAIL", email), ("OIDC_EMAIL_VERIFIED", email_verified)]).await;
    let app = provider.app().await;
    let response = sign_in_through(&app, &provider).await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.text().await);
    assert_eq!(social_count(&app).await, 1);
    sqlx::query_scalar("SELECT email_verified FROM users WHERE email = $1").bind(email).fetch_one(&app.db).await.unwrap()
}

#[tokio::test]
async fn a_legacy_string_email_verified_from_a_real_provider_proves_the_address() {
    assert!(proven_after_sign_up("real-sub-2", "string.true@gmail.com", "string").await);
}

#[tokio::test]
async fn an_unverified_email_from_a_real_provider_proves_nothing() {
    assert!(!proven_after_sign_up("real-sub-3", "not.vouched@gmail.com", "false").await);
}
