//! The real `auth` binary as a child process, pointed at private servers, and the
//! HTTP calls the fault tests make.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::Engine;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::servers::{free_port, tail, temp_dir};

pub const PASSWORD: &str = "correct horse battery";
/// The introspection client every Auth here registers.
const CLIENT_ID: &str = "faults";
const CLIENT_SECRET: &str = "faults-introspection-secret-0123456789abcdef";

/// The Redis every test shares (only for tests whose fault is elsewhere); keys under
/// a prefix of the test's own.
pub fn shared_redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Polls `check` until it holds; panics after `within`.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `auth` binary, serving on a port of its own. Killed when dropped; its log is
/// printed when the test failed.
pub struct Auth {
    pub url: String,
    pub client: reqwest::Client,
    env: Vec<(String, String)>,
    dir: PathBuf,
    child: Option<Child>,
}

impl Auth {
    /// Starts Auth on `database_url` (created and migrated at start) and `redis_url`,
    /// with `extra` settings (later entries win), and waits until it serves.
    pub async fn start(database_url: &str, redis_url: &str, extra: &[(&str, &str)]) -> Self {
        let dir = temp_dir("auth");
        let port = free_port();
        let mut env: Vec<(String, String)> = vec![
            ("AUTH_LISTEN".into(), format!("127.0.0.1:{port}")),
            ("AUTH_DATABASE_URL".into(), database_url.into()),
            ("AUTH_DATABASE_MAX_CONNECTIONS".into(), "4".into()),
            ("REDIS_URL".into(), redis_url.into()),
            ("AUTH_REDIS_KEY_PREFIX".into(), format!("faults:{}", Uuid::new_v4().simple())),
            ("AUTH_JWT_DEV_KEY_FILE".into(), dir.join("signing.pem").display().to_string()),
            // Checks through a busy machine's Redis are not switched to memory by chance.
            ("AUTH_RATE_LIMIT_REDIS_TIMEOUT_MS".into(), "2000".into()),
            ("RUST_LOG".into(), std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into())),
        ];
        env.extend(auth::limits::POLICY_VARIABLES.iter().map(|name| (name.to_string(), "100000/s".to_string())));
        env.push(("AUTH_INTROSPECTION_CLIENTS".into(), format!("{CLIENT_ID}:{CLIENT_SECRET}")));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let mut auth = Self { url: format!("http://127.0.0.1:{port}"), client, env, dir, child: None };
        auth.spawn();
        let live = format!("{}/health/live", auth.url);
        let client = auth.client.clone();
        let started = Instant::now();
        while !client.get(&live).send().await.is_ok_and(|r| r.status().is_success()) {
            if let Some(status) = auth.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("auth exited at start ({status}):\n{}", auth.log_tail());
            }
            assert!(started.elapsed() < Duration::from_secs(60), "auth did not start:\n{}", auth.log_tail());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        auth
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("auth.log")).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_auth"));
        command.arg("serve");
        // Nothing of the developer's own configuration leaks in.
        for (name, _) in std::env::vars() {
            if ["AUTH_", "OAUTH_", "OTEL_", "MOVIES_"].iter().any(|p| name.starts_with(p)) || name == "REQUIRE_REQUEST_ID" {
                command.env_remove(name);
            }
        }
        let child = command
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting the auth binary");
        self.child = Some(child);
    }

    /// The prefix of every Redis key this Auth writes.
    pub fn redis_prefix(&self) -> &str {
        &self.env.iter().rev().find(|(k, _)| k == "AUTH_REDIS_KEY_PREFIX").unwrap().1
    }

    pub fn log_tail(&self) -> String {
        tail(&self.dir.join("auth.log"), 60)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub async fn signup(&self, email: &str) -> Response {
        self.client.post(self.url("/api/v1/auth/signup")).json(&json!({"email": email, "password": PASSWORD})).send().await.unwrap()
    }

    pub async fn login(&self, email: &str) -> Response {
        self.client.post(self.url("/api/v1/auth/login")).json(&json!({"email": email, "password": PASSWORD})).send().await.unwrap()
    }

    /// Signs up a fresh account; panics unless 201.
    pub async fn new_account(&self) -> String {
        let email = format!("viewer-{}@example.com", Uuid::new_v4().simple());
        let response = self.signup(&email).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{}", response.text().await.unwrap());
        email
    }

    /// Signs in; panics unless 200.
    pub async fn sign_in(&self, email: &str) -> Tokens {
        let response = self.login(email).await;
        assert_eq!(response.status(), StatusCode::OK, "{}", response.text().await.unwrap());
        Tokens::from(response.json::<Value>().await.unwrap())
    }

    pub async fn get_with(&self, path: &str, token: &str) -> Response {
        self.client.get(self.url(path)).bearer_auth(token).send().await.unwrap()
    }

    pub async fn post_with(&self, path: &str, token: &str) -> Response {
        self.client.post(self.url(path)).bearer_auth(token).send().await.unwrap()
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.client.post(self.url("/api/v1/auth/refresh")).json(&json!({"refresh_token": refresh_token})).send().await.unwrap()
    }

    /// `POST /api/v1/auth/introspect`: whether Auth calls the token active.
    pub async fn introspect(&self, token: &str) -> bool {
        let request = self.client.post(self.url("/api/v1/auth/introspect")).basic_auth(CLIENT_ID, Some(CLIENT_SECRET));
        let response = request.json(&json!({"token": token})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<Value>().await.unwrap()["active"].as_bool().unwrap()
    }

    /// The status of `GET /health/ready`.
    pub async fn ready(&self) -> StatusCode {
        self.client.get(self.url("/health/ready")).send().await.unwrap().status()
    }

    /// Whether readiness reports Redis reachable (`"redis": "ok"`).
    pub async fn redis_ok(&self) -> bool {
        let Ok(response) = self.client.get(self.url("/health/ready")).send().await else { return false };
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        body["redis"] == "ok"
    }

    /// The value of an unlabelled series of `GET /metrics`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.client.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap();
        text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }
}

impl Drop for Auth {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- auth log (last lines) ---\n{}", self.log_tail());
        }
        let setting = |name: &str| self.env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        if let (Some(url), Some(prefix)) = (setting("REDIS_URL"), setting("AUTH_REDIS_KEY_PREFIX")) {
            ratelimit::testing::delete_keys(url, prefix);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

impl From<Value> for Tokens {
    fn from(body: Value) -> Self {
        Self { access: body["access_token"].as_str().unwrap().to_owned(), refresh: body["refresh_token"].as_str().unwrap().to_owned() }
    }
}

impl Tokens {
    /// The session id (`sid`) the access token carries.
    pub fn session_id(&self) -> Uuid {
        let payload = self.access.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        claims["sid"].as_str().unwrap().parse().unwrap()
    }
}

/// Whether a response is a problem document with this status, and its `code`.
pub async fn problem_code(response: Response) -> (StatusCode, Option<String>, Option<String>) {
    let status = response.status();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap_or_default().to_owned());
    let code = response.json::<Value>().await.ok().and_then(|b| b["code"].as_str().map(str::to_owned));
    (status, content_type, code)
}
