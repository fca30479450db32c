//! `spawn_app()`: a real Auth on a random port with its own database and Redis prefix.

use std::{
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use auth::{config::Settings, startup::Application, state::AppState};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery";
/// The introspection client every test app registers (`AUTH_INTROSPECTION_CLIENTS`).
pub const CLIENT_ID: &str = "movies";
pub const CLIENT_SECRET: &str = "tests-introspection-secret-0123456789abcdef";
pub const DESKTOP_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";

pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// The operations listener's address, when `AUTH_OPS_LISTEN` is set.
    pub ops_addr: Option<SocketAddr>,
    pub client: reqwest::Client,
    pub db: PgPool,
    pub state: AppState,
    pub key_file: PathBuf,
    pub settings: Settings,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// Dropped after `shutdown` is sent (fields drop after `Drop::drop`).
    _leftovers: Leftovers,
}

/// What a test app leaves behind, removed when this is dropped: its database, its
/// development key file and its Redis keys. Made before the application starts, so a
/// test whose application fails to start (or that panics anywhere) leaves none of them.
struct Leftovers {
    database: String,
    key_file: PathBuf,
    redis_prefix: String,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.key_file);
        ratelimit::testing::delete_keys(&redis_url(), &self.redis_prefix);
        drop_database(&self.database);
    }
}

/// `DROP DATABASE … WITH (FORCE)`, from synchronous code that may run inside a runtime
/// or while unwinding: on a thread with its own runtime. Errors are ignored.
pub fn drop_database(name: &str) {
    let statement = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            if let Ok(mut conn) = PgConnection::connect(&admin_url()).await {
                let _ = conn.execute(sqlx::AssertSqlSafe(statement)).await;
            }
        });
    })
    .join();
}

pub struct Options {
    pub access_ttl_seconds: u64,
    pub extra_vars: Vec<(&'static str, String)>,
    /// A database the test made (named `auth_test_…`) to run on instead of a fresh
    /// one; it is migrated at start and dropped at the end all the same.
    pub database: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self { access_ttl_seconds: 900, extra_vars: Vec::new(), database: None }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    let id = Uuid::new_v4().simple().to_string();
    let db_name = options.database.clone().unwrap_or_else(|| format!("auth_test_{id}"));
    let base = admin_url();
    let db_url = format!("{}/{db_name}", base.rsplit_once('/').unwrap().0);
    let key_file = std::env::temp_dir().join("auth-tests").join(format!("{id}.pem"));
    let mut vars: Vec<(&str, String)> = vec![
        ("AUTH_LISTEN", "127.0.0.1:0".into()),
        ("AUTH_DATABASE_URL", db_url.clone()),
        ("AUTH_DATABASE_MAX_CONNECTIONS", "5".into()),
        ("REDIS_URL", redis_url()),
        ("AUTH_REDIS_KEY_PREFIX", format!("test:{id}")),
        ("AUTH_JWT_DEV_KEY_FILE", key_file.display().to_string()),
        ("AUTH_ACCESS_TOKEN_TTL_SECONDS", options.access_ttl_seconds.to_string()),
        // Decisions, not timing: a busy test machine must not switch the limiter to
        // its in-process store (tests/api/ratelimit.rs sets the production deadline
        // where that is the point).
        ("AUTH_RATE_LIMIT_REDIS_TIMEOUT_MS", "2000".into()),
    ];
    // Other features' tests send bursts from one address: limits far above them, still
    // through the layer. tests/api/ratelimit.rs sets the policies it exercises.
    for name in auth::limits::POLICY_VARIABLES {
        vars.push((name, "100000/s".into()));
    }
    vars.push(("AUTH_INTROSPECTION_CLIENTS", format!("{CLIENT_ID}:{CLIENT_SECRET}")));
    vars.extend(options.extra_vars);
    // Later entries override earlier ones.
    let settings = Settings::from_lookup(|name| vars.iter().rev().find(|(k, _)| *k == name).map(|(_, v)| v.clone())).unwrap();
    let leftovers = Leftovers { database: db_name, key_file: key_file.clone(), redis_prefix: settings.redis_key_prefix.clone() };
    // The application creates its own database: that path is under test too.
    let app = Application::build(&settings).await.expect("the application starts");
    let addr = app.local_addr();
    let ops_addr = app.ops_addr();
    let state = app.state().clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    let db = PgPool::connect(&db_url).await.unwrap();
    // reqwest is built with `rustls-no-provider` for Auth's provider calls (which bring
    // their own TLS configuration); clients that use reqwest's defaults need a provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    TestApp {
        addr,
        ops_addr,
        client: reqwest::Client::builder().user_agent(DESKTOP_UA).build().unwrap(),
        db,
        state,
        key_file,
        settings,
        shutdown: Some(tx),
        _leftovers: leftovers,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client.post(self.url(path)).json(body).send().await.unwrap()
    }

    pub async fn get_with(&self, path: &str, token: &str) -> Response {
        self.client.get(self.url(path)).bearer_auth(token).send().await.unwrap()
    }

    pub async fn post_with(&self, path: &str, token: &str) -> Response {
        self.client.post(self.url(path)).bearer_auth(token).send().await.unwrap()
    }

    pub async fn signup(&self, email: &str) -> Value {
        let response = self.post_json("/api/v1/auth/signup", &json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post_json("/api/v1/auth/login", &json!({"email": email, "password": password})).await
    }

    /// Signs up a fresh account and signs in; returns its email and tokens.
    pub async fn signed_in_user(&self) -> (String, Tokens) {
        let email = format!("viewer-{}@example.com", Uuid::new_v4().simple());
        self.signup(&email).await;
        let tokens = self.sign_in(&email).await;
        (email, tokens)
    }

    pub async fn sign_in(&self, email: &str) -> Tokens {
        let response = self.login(email, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::OK);
        tokens(response).await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post_json("/api/v1/auth/refresh", &json!({"refresh_token": refresh_token})).await
    }

    /// Introspects `token` as the registered client; panics unless 200.
    pub async fn introspect(&self, token: &str) -> Value {
        let response = self.introspect_as(CLIENT_ID, CLIENT_SECRET, token).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// `POST /api/v1/auth/introspect` (JSON) with these client credentials.
    pub async fn introspect_as(&self, client_id: &str, secret: &str, token: &str) -> Response {
        self.client.post(self.url("/api/v1/auth/introspect")).basic_auth(client_id, Some(secret)).json(&json!({"token": token})).send().await.unwrap()
    }
}

pub async fn tokens(response: Response) -> Tokens {
    let body: Value = response.json().await.unwrap();
    Tokens { access: body["access_token"].as_str().unwrap().to_owned(), refresh: body["refresh_token"].as_str().unwrap().to_owned() }
}

/// Asserts a problem+json response with the given status and code; returns its body.
pub async fn assert_problem(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    body
}

/// Field names of a 422 problem's `errors`.
pub fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap().to_owned()).collect()
}

impl TestApp {
    /// Signs up an account, grants it `role` directly in the database, and signs in.
    pub async fn signed_in_with_role(&self, role: &str) -> (uuid::Uuid, Tokens) {
        let email = format!("{role}-{}@example.com", Uuid::new_v4().simple());
        let user = self.signup(&email).await;
        let id: Uuid = user["id"].as_str().unwrap().parse().unwrap();
        auth::store::users::grant_role(&self.db, id, role).await.unwrap();
        (id, self.sign_in(&email).await)
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }
}

/// Waits until some session of this test's database waits for a lock.
pub async fn until_a_session_waits_for_a_lock(db: &PgPool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
                .fetch_one(db)
                .await
                .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no session started waiting for a lock within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
