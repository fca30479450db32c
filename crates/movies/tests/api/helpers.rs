//! Real services on random ports: Auth (in-process, or as a child process for the
//! degradation scenarios) and the movies API, each with its own fresh database.

use std::{
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use reqwest::{Response, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery";
/// The movies API's introspection secret, as both services are given it.
pub const INTROSPECTION_SECRET: &str = "movies-tests-introspection-secret-0123456789";
pub const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/movies-small.json");

pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn database_url(name: &str) -> String {
    format!("{}/{name}", admin_url().rsplit_once('/').unwrap().0)
}

/// Drops a test database when dropped.
pub struct Database {
    pub name: String,
    pub url: String,
}

impl Database {
    pub fn new(kind: &str) -> Self {
        let name = format!("{kind}_test_{}", Uuid::new_v4().simple());
        Self { url: database_url(&name), name }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let name = self.name.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&admin_url()).await {
                    let _ = conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))).await;
                }
            });
        })
        .join()
        .unwrap();
    }
}

/// An HTTP client for the tests. reqwest may be built with `rustls-no-provider`
/// (feature unification with Auth's outgoing client), so install ring first.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `check` until it holds; panics after `within`.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {within:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Auth service, either in this process or as a child process of the real binary.
pub struct Auth {
    pub url: String,
    pub db: PgPool,
    _database: Database,
    env: Vec<(String, String)>,
    child: Option<Child>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub client: reqwest::Client,
}

impl Auth {
    fn env(database: &Database, port: u16) -> Vec<(String, String)> {
        let id = Uuid::new_v4().simple().to_string();
        let key = std::env::temp_dir().join("movies-tests").join(format!("{id}.pem"));
        vec![
            ("AUTH_LISTEN".into(), format!("127.0.0.1:{port}")),
            ("AUTH_DATABASE_URL".into(), database.url.clone()),
            ("AUTH_DATABASE_MAX_CONNECTIONS".into(), "5".into()),
            ("REDIS_URL".into(), redis_url()),
            ("AUTH_REDIS_KEY_PREFIX".into(), format!("test:{id}")),
            ("AUTH_JWT_DEV_KEY_FILE".into(), key.display().to_string()),
            ("AUTH_INTROSPECTION_CLIENTS".into(), format!("movies:{INTROSPECTION_SECRET}")),
            ("RUST_LOG".into(), "error".into()),
        ]
    }

    /// Auth running inside the test process.
    pub async fn in_process() -> Self {
        let database = Database::new("auth");
        let env = Self::env(&database, 0);
        let settings = auth::config::Settings::from_lookup(|name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())).unwrap();
        let app = auth::startup::Application::build(&settings).await.unwrap();
        let url = format!("http://{}", app.local_addr());
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        let db = PgPool::connect(&database.url).await.unwrap();
        Self { url, db, _database: database, env, child: None, shutdown: Some(tx), client: http_client() }
    }

    /// The real `auth` binary as a child process, so it can be stopped, killed,
    /// frozen (SIGSTOP) and started again on the same port with the same data.
    pub async fn process() -> Self {
        Self::process_with(Vec::new()).await
    }

    /// As [`Auth::process`], with more environment (later entries win) and stdout
    /// written to `AUTH_TEST_LOG_FILE` when that is among them.
    pub async fn process_with(extra: Vec<(String, String)>) -> Self {
        let database = Database::new("auth");
        let port = free_port();
        let mut env = Self::env(&database, port);
        env.extend(extra);
        let mut auth = Self {
            url: format!("http://127.0.0.1:{port}"),
            db: PgPool::connect_lazy(&database.url).unwrap(),
            _database: database,
            env,
            child: None,
            shutdown: None,
            client: http_client(),
        };
        auth.start().await;
        auth
    }

    fn binary() -> PathBuf {
        // Integration tests run from target/<profile>/deps; the binaries sit one up.
        let exe = std::env::current_exe().unwrap();
        let path = exe.parent().and_then(|p| p.parent()).unwrap().join("auth");
        assert!(path.exists(), "{} is missing: build it with `cargo build -p auth` (make test does)", path.display());
        path
    }

    pub async fn start(&mut self) {
        let stdout = match self.env.iter().rev().find(|(k, _)| k == "AUTH_TEST_LOG_FILE") {
            Some((_, path)) => Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap()),
            None => Stdio::null(),
        };
        let child = Command::new(Self::binary())
            .arg("serve")
            .envs(self.env.iter().filter(|(k, _)| k != "AUTH_TEST_LOG_FILE").map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let url = format!("{}/health/ready", self.url);
        let client = self.client.clone();
        eventually("auth to become ready", Duration::from_secs(30), || {
            let (client, url) = (client.clone(), url.clone());
            async move { client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("auth runs as a process").id();
        let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap();
        assert!(status.success());
    }

    /// SIGTERM, then wait for the process to exit.
    pub fn stop(&mut self) {
        self.signal("TERM");
        self.child.take().unwrap().wait().unwrap();
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Stops Auth and starts it again signing with a new key, the old one no longer
    /// published: a rotation not announced ahead.
    pub async fn restart_with_a_new_key(&mut self) {
        self.stop();
        let key = self.env.iter_mut().find(|(k, _)| k == "AUTH_JWT_DEV_KEY_FILE").expect("a development key file");
        let _ = std::fs::remove_file(&key.1);
        key.1 = std::env::temp_dir().join("movies-tests").join(format!("{}.pem", Uuid::new_v4().simple())).display().to_string();
        self.start().await;
    }

    /// SIGSTOP: the port stays open, connections are accepted by the kernel, nothing answers.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    pub fn thaw(&self) {
        self.signal("CONT");
    }

    /// Signs up a viewer (with a birth date when given) holding `roles`, and signs in.
    pub async fn viewer(&self, roles: &[&str], birth_date: Option<&str>) -> Tokens {
        let email = format!("viewer-{}@example.com", Uuid::new_v4().simple());
        let mut body = json!({"email": email, "password": PASSWORD});
        if let Some(date) = birth_date {
            body["birth_date"] = json!(date);
        }
        let response = self.client.post(format!("{}/api/v1/auth/signup", self.url)).json(&body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let user: Value = response.json().await.unwrap();
        let id: Uuid = user["id"].as_str().unwrap().parse().unwrap();
        for role in roles {
            auth::store::users::grant_role(&self.db, id, role).await.unwrap();
        }
        self.sign_in(&email).await
    }

    pub async fn sign_in(&self, email: &str) -> Tokens {
        let response =
            self.client.post(format!("{}/api/v1/auth/login", self.url)).json(&json!({"email": email, "password": PASSWORD})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        Tokens { access: body["access_token"].as_str().unwrap().to_owned(), email: email.to_owned() }
    }

    pub async fn logout(&self, tokens: &Tokens) {
        let response = self.client.post(format!("{}/api/v1/auth/logout", self.url)).bearer_auth(&tokens.access).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
}

impl Drop for Auth {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-CONT").arg(child.id().to_string()).status();
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some((_, key)) = self.env.iter().find(|(k, _)| k == "AUTH_JWT_DEV_KEY_FILE") {
            let _ = std::fs::remove_file(key);
        }
        if let Some((_, prefix)) = self.env.iter().rev().find(|(k, _)| k == "AUTH_REDIS_KEY_PREFIX") {
            ratelimit::testing::delete_keys(&redis_url(), prefix);
        }
    }
}

pub struct Tokens {
    pub access: String,
    pub email: String,
}

pub struct Movies {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub state: movies::state::AppState,
    _database: Database,
    redis_url: String,
    redis_prefix: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Default)]
pub struct MoviesOptions {
    pub vars: Vec<(&'static str, String)>,
}

impl Movies {
    pub async fn start(auth_url: &str) -> Self {
        Self::start_with(auth_url, MoviesOptions::default()).await
    }

    pub async fn start_with(auth_url: &str, options: MoviesOptions) -> Self {
        let database = Database::new("movies");
        let mut vars: Vec<(&str, String)> = vec![
            ("MOVIES_LISTEN", "127.0.0.1:0".into()),
            ("MOVIES_DATABASE_URL", database.url.clone()),
            ("MOVIES_DATABASE_MAX_CONNECTIONS", "5".into()),
            ("REDIS_URL", redis_url()),
            ("MOVIES_REDIS_KEY_PREFIX", format!("test:{}", Uuid::new_v4().simple())),
            ("AUTH_URL", auth_url.to_owned()),
            ("MOVIES_AUTH_CLIENT_SECRET", INTROSPECTION_SECRET.into()),
            ("MOVIES_AUTH_JWKS_RETRY_MS", "100".into()),
            // Every test's requests come from one address; `ratelimit.rs` turns them on.
            ("MOVIES_RATE_LIMIT_ENABLED", "false".into()),
        ];
        vars.extend(options.vars);
        let settings = movies::config::Settings::from_lookup(|name| vars.iter().rev().find(|(k, _)| *k == name).map(|(_, v)| v.clone())).unwrap();
        let app = movies::startup::Application::build(&settings).await.unwrap();
        let records = movies::demo::read(std::path::Path::new(FIXTURE)).unwrap();
        movies::demo::load(&app.state().db, &records).await.unwrap();
        let addr = app.local_addr();
        let state = app.state().clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        let redis_url = settings.redis_url.expose_secret().to_owned();
        Self { addr, client: http_client(), state, _database: database, redis_url, redis_prefix: settings.redis_key_prefix, shutdown: Some(tx) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The prefix of this instance's Redis keys.
    pub fn redis_prefix(&self) -> &str {
        &self.redis_prefix
    }

    /// Waits until an answer is in the answer cache under `key` (after the cache's
    /// prefix and version, and may hold `*`: `genres:16`, `search:18:*:matrix`), and
    /// returns the Redis keys it matches. Answers are written in the background, after
    /// they are sent: a test whose next request must meet the cached answer waits here,
    /// or it could fail for a write still on its way (or pass where a wrong key would
    /// have been caught).
    pub async fn cached(&self, key: &str) -> Vec<String> {
        let redis = redis::Client::open(self.redis_url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
        let pattern = format!("{}:v1:{key}", self.redis_prefix);
        let keys = || {
            let (mut redis, pattern) = (redis.clone(), pattern.clone());
            async move { redis::cmd("KEYS").arg(&pattern).query_async::<Vec<String>>(&mut redis).await.unwrap() }
        };
        eventually(&format!("{pattern} in Redis"), Duration::from_secs(10), || async { !keys().await.is_empty() }).await;
        keys().await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    pub async fn json(&self, path: &str, token: Option<&str>) -> Value {
        let response = self.get(path, token).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.json().await.unwrap()
    }

    /// Loads the fixture's records and `extra` (records as in `movies.json`) together.
    pub async fn load_with_fixture(&self, extra: Value) {
        let mut records = movies::demo::read(std::path::Path::new(FIXTURE)).unwrap();
        records.extend(serde_json::from_value::<Vec<movies::demo::Record>>(extra).unwrap());
        movies::demo::load(&self.state.db, &records).await.unwrap();
    }

    /// The id of a fixture film by title.
    pub async fn film_id(&self, title: &str) -> Uuid {
        sqlx::query_scalar("SELECT id FROM films WHERE title = $1").bind(title).fetch_one(&self.state.db).await.unwrap()
    }

    /// Waits until the JWKS has been fetched.
    pub async fn wait_for_keys(&self) {
        let auth = self.state.auth.clone();
        eventually("the movies API to fetch Auth's keys", Duration::from_secs(30), || {
            let auth = auth.clone();
            async move { auth.has_keys() }
        })
        .await;
    }
}

impl Drop for Movies {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        ratelimit::testing::delete_keys(&redis_url(), &self.redis_prefix);
    }
}

/// A birth date `years_ago` years (and a month) before today.
pub fn birth_date(years_ago: u64) -> String {
    (chrono::Utc::now().date_naive() - chrono::Days::new(365 * years_ago + 30)).to_string()
}

pub fn titles(page: &Value) -> Vec<String> {
    let mut titles: Vec<String> = page["items"].as_array().unwrap().iter().map(|f| f["title"].as_str().unwrap().to_owned()).collect();
    titles.sort();
    titles
}

pub async fn assert_problem(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    body
}
