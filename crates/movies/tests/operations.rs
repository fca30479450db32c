//! What the people running the services rely on: `GET /metrics` on both services, the
//! operations listener (probes and `/metrics` outside the connection cap), and a
//! graceful shutdown of a real service process on SIGTERM.
//!
//! Auth runs as the real binary (a child process); the movies API in this process,
//! as in the other tests. One binary, so the metrics recorder of this process is the
//! movies API's only.

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[allow(dead_code)]
mod otlp;

use std::{
    collections::BTreeMap,
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use helpers::{Auth, Database, Movies, PASSWORD, eventually, free_port, http_client};
use platform::testing::{held_connection, whole_response};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};

/// One series of a Prometheus text exposition: name and labels.
#[derive(Debug)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_exposition(text: &str) -> Vec<Series> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample line: {line}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number in {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("unterminated labels: {line}"));
                    let labels = body
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("bad label {pair} in {line}"));
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
                None => (series.to_owned(), BTreeMap::new()),
            };
            Series { name, labels, value }
        })
        .collect()
}

struct Scrape(Vec<Series>);

impl Scrape {
    async fn of(client: &reqwest::Client, base: &str) -> Self {
        // No X-Request-Id: Prometheus sends none (deploy/tests/nginx_test.py scrapes with
        // REQUIRE_REQUEST_ID=true).
        let response = client.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
        Self(parse_exposition(&response.text().await.unwrap()))
    }

    /// The value of the one series with this name and (at least) these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<&Series> =
            self.0.iter().filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))).collect();
        assert!(found.len() <= 1, "{name} {labels:?} matches several series: {found:?}");
        found.first().map(|s| s.value)
    }

    fn expect(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no series {name} {labels:?} in:\n{:#?}", self.0.iter().map(|s| (&s.name, &s.labels)).collect::<Vec<_>>()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_sign_ins_limits_pools_and_degradation() {
    let mut auth = Auth::process().await;
    let movies = Movies::start(&auth.url).await;
    movies.wait_for_keys().await;
    let client = http_client();
    let with_id = |r: reqwest::RequestBuilder| r.header("x-request-id", uuid::Uuid::new_v4().to_string());

    // Auth: a sign-in that works, then wrong passwords until the per-account rule refuses.
    let email = format!("metrics-{}@example.com", uuid::Uuid::new_v4().simple());
    let signup =
        with_id(client.post(format!("{}/api/v1/auth/signup", auth.url))).json(&json!({"email": email, "password": PASSWORD})).send().await.unwrap();
    assert_eq!(signup.status(), StatusCode::CREATED);
    let login = |password: &'static str| {
        with_id(client.post(format!("{}/api/v1/auth/login", auth.url))).json(&json!({"email": email, "password": password})).send()
    };
    assert_eq!(login(PASSWORD).await.unwrap().status(), StatusCode::OK);
    let mut wrong = 0;
    let refused = loop {
        let response = login("not the password at all").await.unwrap();
        match response.status() {
            StatusCode::UNAUTHORIZED => wrong += 1,
            StatusCode::TOO_MANY_REQUESTS => break response,
            other => panic!("unexpected {other}"),
        }
        assert!(wrong < 50, "the sign-in rules never refused");
    };
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    // Scrapes are never rate limited (the general limit is a burst of 40 per address).
    for _ in 0..50 {
        assert_eq!(client.get(format!("{}/metrics", auth.url)).send().await.unwrap().status(), StatusCode::OK);
    }

    let m = Scrape::of(&client, &auth.url).await;
    let login_route = [("method", "POST"), ("route", "/api/v1/auth/login")];
    assert!(m.expect("http_server_requests_total", &[login_route[0], login_route[1], ("status", "200")]) >= 1.0);
    assert!(m.expect("http_server_requests_total", &[login_route[0], login_route[1], ("status", "401")]) >= f64::from(wrong));
    assert!(m.expect("http_server_requests_total", &[login_route[0], login_route[1], ("status", "429")]) >= 1.0);
    assert!(m.expect("http_server_requests_total", &[("method", "GET"), ("route", "/metrics"), ("status", "200")]) >= 50.0);
    let count = m.expect("http_server_request_duration_seconds_count", &login_route);
    assert_eq!(count, m.expect("http_server_request_duration_seconds_bucket", &[login_route[0], login_route[1], ("le", "+Inf")]));
    assert!(count >= f64::from(wrong) + 2.0, "every login timed: {count}");
    // Each checked password costs an Argon2 verification: a millisecond at the very least.
    let mean = m.expect("http_server_request_duration_seconds_sum", &login_route) / count;
    assert!(mean > 0.001 && mean < 10.0, "a plausible mean sign-in time: {mean}s");
    assert!(m.expect("http_server_request_duration_seconds_bucket", &[login_route[0], login_route[1], ("le", "0.001")]) < count);
    assert_eq!(m.expect("auth_sign_ins_total", &[("method", "password"), ("outcome", "success")]), 1.0);
    assert_eq!(m.expect("auth_sign_ins_total", &[("method", "password"), ("outcome", "wrong_password")]), f64::from(wrong));
    assert!(m.expect("auth_sign_ins_total", &[("method", "password"), ("outcome", "rate_limited")]) >= 1.0);
    assert!(m.expect("ratelimit_requests_total", &[("policy", "login-account-ip"), ("outcome", "limited")]) >= 1.0);
    assert!(m.expect("ratelimit_requests_total", &[("policy", "api-ip"), ("outcome", "allowed")]) >= 1.0);
    assert!(m.expect("ratelimit_requests_total", &[("policy", "api-ip"), ("outcome", "allowed")]) < 50.0, "the 50 scrapes are not counted");
    let fallbacks = m.expect("ratelimit_fallbacks_total", &[]);
    assert!(fallbacks >= 0.0);
    let fallback_active = m.expect("ratelimit_fallback_active", &[]);
    assert!(fallback_active == 0.0 || fallback_active == 1.0);
    assert_eq!(m.expect("db_pool_max_connections", &[("pool", "auth")]), 5.0, "the tests' AUTH_DATABASE_MAX_CONNECTIONS");
    let idle = m.expect("db_pool_connections", &[("pool", "auth"), ("state", "idle")]);
    let in_use = m.expect("db_pool_connections", &[("pool", "auth"), ("state", "in_use")]);
    assert!(idle + in_use >= 1.0 && idle + in_use <= 5.0, "idle {idle}, in use {in_use}");
    // Raw paths never become labels.
    assert!(m.0.iter().all(|s| !s.labels.values().any(|v| v.contains("@example.com") || v.contains(&email))));

    // Movies: answers, then Auth gone: degraded answers until the breaker opens.
    let viewer = auth.viewer(&["subscriber"], None).await;
    let matrix = movies.film_id("The Matrix").await;
    assert_eq!(movies.get("/api/v1/films", None).await.status(), StatusCode::OK);
    assert_eq!(movies.get(&format!("/api/v1/films/{matrix}"), None).await.status(), StatusCode::OK);
    let before = Scrape::of(&client, &movies.url("")).await;
    assert_eq!(before.expect("auth_client_breaker_open", &[]), 0.0, "the breaker's state is reported before it ever changes");
    let degraded_before = before.expect("auth_client_degraded_total", &[]);
    auth.kill();
    let mut degraded = 0.0;
    for _ in 0..10 {
        // Streaming needs Auth's word on the token (not asked before: nothing cached).
        let response = movies.get(&format!("/api/v1/films/{matrix}/stream"), Some(&viewer.access)).await;
        assert_eq!(response.status(), StatusCode::OK);
        if response.headers().get("x-auth-degraded").is_some() {
            degraded += 1.0;
        }
    }
    assert!(degraded >= 1.0);
    let m = Scrape::of(&client, &movies.url("")).await;
    assert_eq!(m.expect("auth_client_breaker_open", &[]), 1.0, "five failures open the breaker");
    assert!(m.expect("auth_client_degraded_total", &[]) - degraded_before >= degraded, "every degraded answer counted");
    assert!(m.expect("http_server_requests_total", &[("method", "GET"), ("route", "/api/v1/films/{id}/stream"), ("status", "200")]) >= 10.0);
    assert!(m.expect("http_server_requests_total", &[("method", "GET"), ("route", "/api/v1/films/{id}"), ("status", "200")]) >= 1.0);
    assert!(m.expect("http_server_requests_total", &[("method", "GET"), ("route", "/api/v1/films"), ("status", "200")]) >= 1.0);
    assert!(m.expect("http_server_request_duration_seconds_count", &[("method", "GET"), ("route", "/api/v1/films/{id}/stream")]) >= 10.0);
    assert_eq!(m.expect("db_pool_max_connections", &[("pool", "movies")]), 5.0);
    assert!(m.expect("db_pool_connections", &[("pool", "movies"), ("state", "idle")]) >= 0.0);
}

/// Every documented counter is on `/metrics` from the start, at zero, with each label
/// value it can take: an alert on a series that appears only once it first moves
/// cannot tell "never happened" from "not scraped".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_service_lists_its_counters_at_zero() {
    // Auth is a fresh process: nothing has moved its counters.
    let auth = Auth::process().await;
    let client = http_client();
    let m = Scrape::of(&client, &auth.url).await;
    assert_eq!(m.expect("http_server_connection_cap_reached_total", &[]), 0.0);
    assert_eq!(m.expect("ratelimit_fallbacks_total", &[]), 0.0);
    assert_eq!(m.expect("ratelimit_fallback_active", &[]), 0.0);
    for method in ["password", "yandex", "vk", "google", "mailru"] {
        assert_eq!(m.expect("auth_sign_ins_total", &[("method", method), ("outcome", "success")]), 0.0, "{method}");
    }
    for outcome in ["unknown_account", "wrong_password", "password_not_set", "rate_limited"] {
        assert_eq!(m.expect("auth_sign_ins_total", &[("method", "password"), ("outcome", outcome)]), 0.0, "{outcome}");
    }
    for outcome in ["wrong_password", "rate_limited"] {
        assert_eq!(m.expect("auth_sign_ins_total", &[("method", "password_change"), ("outcome", outcome)]), 0.0, "{outcome}");
    }
    for call in ["revocation_read", "session_state_write", "profile_write"] {
        assert_eq!(m.expect("auth_cache_failures_total", &[("call", call)]), 0.0, "{call}");
    }
    for policy in AUTH_POLICIES {
        for outcome in ["allowed", "limited"] {
            assert_eq!(m.expect("ratelimit_requests_total", &[("policy", policy), ("outcome", outcome)]), 0.0, "{policy} {outcome}");
        }
    }
    // The movies API runs in this process, beside the other test's: listed, whatever
    // that one moved.
    let movies = Movies::start(&auth.url).await;
    let m = Scrape::of(&client, &movies.url("")).await;
    for counter in [
        "http_server_connection_cap_reached_total",
        "ratelimit_fallbacks_total",
        "ratelimit_fallback_active",
        "auth_client_degraded_total",
        "auth_client_unknown_key_total",
        "auth_client_introspections_shed_total",
        "auth_client_introspections_throttled_total",
    ] {
        assert!(m.expect(counter, &[]) >= 0.0, "{counter}");
    }
    for call in ["read", "write", "decode"] {
        assert!(m.expect("movies_cache_failures_total", &[("call", call)]) >= 0.0, "{call}");
    }
    for policy in MOVIES_POLICIES {
        for outcome in ["allowed", "limited"] {
            assert!(m.expect("ratelimit_requests_total", &[("policy", policy), ("outcome", outcome)]) >= 0.0, "{policy} {outcome}");
        }
    }
}

/// Auth's rate-limit policies, by the names they carry in metrics.
const AUTH_POLICIES: [&str; 11] = [
    "api-ip",
    "api-user",
    "signup-ip",
    "refresh-ip",
    "password-change-ip",
    "login-ip",
    "login-account-ip",
    "login-account",
    "introspect-client",
    "oauth-authorize-ip",
    "oauth-exchange-ip",
];

const MOVIES_POLICIES: [&str; 2] = ["api-ip", "api-user"];

/// A service that starts while the Redis of its limits is down falls back to the
/// in-process limits at once, and `/metrics` says so from the start: the fallback
/// counted, the gauge at 1 (the alert on it fires), the request counters listed. Each
/// service runs as its own process, so that its metrics recorder is its own and
/// nothing recorded before the first request is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_started_with_its_limits_redis_down_shows_the_fallback() {
    let down = format!("redis://127.0.0.1:{}", free_port());
    let auth = Auth::process_with(vec![("AUTH_RATE_LIMIT_REDIS_URL".into(), down.clone())]).await;
    let client = http_client();
    let m = Scrape::of(&client, &auth.url).await;
    assert_eq!(m.expect("ratelimit_fallbacks_total", &[]), 1.0, "auth");
    assert_eq!(m.expect("ratelimit_fallback_active", &[]), 1.0, "auth");
    for policy in AUTH_POLICIES {
        assert_eq!(m.expect("ratelimit_requests_total", &[("policy", policy), ("outcome", "allowed")]), 0.0, "{policy}");
    }

    let movies = MoviesProcess::spawn(&auth.url, &[("MOVIES_RATE_LIMIT_REDIS_URL", down)]).await;
    let m = Scrape::of(&client, &movies.url).await;
    assert_eq!(m.expect("ratelimit_fallbacks_total", &[]), 1.0, "movies");
    assert_eq!(m.expect("ratelimit_fallback_active", &[]), 1.0, "movies");
    for policy in MOVIES_POLICIES {
        for outcome in ["allowed", "limited"] {
            assert_eq!(m.expect("ratelimit_requests_total", &[("policy", policy), ("outcome", outcome)]), 0.0, "{policy} {outcome}");
        }
    }
}

/// `movies healthcheck` run as the container runs it, with only these variables:
/// whether it passed, and what it said.
async fn movies_healthcheck(vars: &[(&str, &str)]) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_movies"))
        .arg("healthcheck")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().copied())
        .output()
        .await
        .unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The movies binary with its operations listener set and its connection cap at 2,
/// both places held by idle kept-alive connections: the operations listener answers
/// the probes and `/metrics` at once, and `movies healthcheck` passes by asking it,
/// while the API listener accepts nothing more until a place frees (and fails the same
/// healthcheck without it). `/metrics` is a 404 on the API's port; the operations
/// listener serves nothing but the probes and `/metrics`, and its connections are not
/// counted in the API listener's series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ops_listener_answers_while_the_connection_cap_is_held_and_keeps_metrics_off_the_api_port() {
    use tokio::io::AsyncWriteExt;
    let auth = Auth::process().await;
    let ops = format!("127.0.0.1:{}", free_port());
    let movies = MoviesProcess::spawn(&auth.url, &[("MOVIES_MAX_CONNECTIONS", "2".into()), ("MOVIES_OPS_LISTEN", ops.clone())]).await;
    let api = movies.url.trim_start_matches("http://").to_owned();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).pool_max_idle_per_host(0).build().unwrap();
    let metrics_on_api = client.get(format!("{}/metrics", movies.url)).send().await.unwrap();
    assert_eq!(metrics_on_api.status(), StatusCode::NOT_FOUND);
    assert_eq!(metrics_on_api.headers()["content-type"], "application/problem+json");

    let mut held = vec![held_connection(&api).await, held_connection(&api).await];
    let mut waiting = tokio::net::TcpStream::connect(&api).await.unwrap();
    waiting.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    // A bounded wait, as what it shows is that something does not happen; the end of
    // the test shows the request was waiting for a place, not lost.
    let mut byte = [0u8; 1];
    let answered = tokio::time::timeout(Duration::from_millis(500), waiting.peek(&mut byte)).await;
    assert!(answered.is_err(), "the API listener served a connection over its cap");

    for path in ["/health/live", "/health/ready"] {
        let response = client.get(format!("http://{ops}{path}")).send().await.unwrap_or_else(|e| panic!("{path} on the operations listener: {e}"));
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let m = Scrape::of(&client, &format!("http://{ops}")).await;
    assert_eq!(m.expect("http_server_connections_max", &[]), 2.0, "the API listener's cap, not the operations listener's");
    assert_eq!(m.expect("http_server_connections_open", &[]), 2.0, "the API listener's held connections, not the scrape's");
    assert!(m.expect("http_server_connection_cap_reached_total", &[]) >= 1.0);
    for path in ["/api/v1/films", "/api/openapi.json", "/", "/metrics/x"] {
        let response = client.get(format!("http://{ops}{path}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(response.headers()["content-type"], "application/problem+json", "{path}");
    }

    let (passed, said) = movies_healthcheck(&[("MOVIES_LISTEN", &api), ("MOVIES_OPS_LISTEN", &ops)]).await;
    assert!(passed, "the healthcheck asks the operations listener: {said}");
    let (passed, said) = movies_healthcheck(&[("MOVIES_LISTEN", &api)]).await;
    assert!(!passed && said.contains("did not answer"), "without it, the healthcheck waits behind the cap: {said}");

    drop(held.pop());
    let answer = whole_response(&mut waiting, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "served once a place freed: {answer}");
}

/// The real `movies` binary as a child process, with a fresh database.
struct MoviesProcess {
    child: Child,
    url: String,
    redis_prefix: String,
    _database: Database,
}

impl MoviesProcess {
    async fn spawn(auth_url: &str, extra: &[(&str, String)]) -> Self {
        let database = Database::new("movies");
        let port = free_port();
        let redis_prefix = format!("test:{}", uuid::Uuid::new_v4().simple());
        let child = Command::new(env!("CARGO_BIN_EXE_movies"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MOVIES_LISTEN", format!("127.0.0.1:{port}"))
            .env("MOVIES_DATABASE_URL", &database.url)
            .env("MOVIES_DATABASE_MAX_CONNECTIONS", "5")
            .env("REDIS_URL", helpers::redis_url())
            .env("MOVIES_REDIS_KEY_PREFIX", &redis_prefix)
            .env("AUTH_URL", auth_url)
            .env("MOVIES_AUTH_CLIENT_SECRET", helpers::INTROSPECTION_SECRET)
            .env("RUST_LOG", "error")
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let process = Self { child, url: format!("http://127.0.0.1:{port}"), redis_prefix, _database: database };
        let (client, ready) = (http_client(), format!("{}/health/ready", process.url));
        eventually("movies to become ready", Duration::from_secs(60), || {
            let (client, ready) = (client.clone(), ready.clone());
            async move { client.get(&ready).send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        process
    }
}

impl Drop for MoviesProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        ratelimit::testing::delete_keys(&helpers::redis_url(), &self.redis_prefix);
    }
}

/// The real `auth` binary, run by the test so it can be signalled.
struct AuthProcess {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    key: PathBuf,
    redis_prefix: String,
}

impl AuthProcess {
    fn spawn(database: &Database, extra: &[(&str, String)]) -> Self {
        let exe = std::env::current_exe().unwrap();
        let binary = exe.parent().and_then(|p| p.parent()).unwrap().join("auth");
        assert!(binary.exists(), "{} is missing: build it with `cargo build -p auth`", binary.display());
        let port = free_port();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let log = std::env::temp_dir().join(format!("auth-shutdown-{id}.log"));
        let key = std::env::temp_dir().join(format!("auth-shutdown-{id}.pem"));
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AUTH_LISTEN", format!("127.0.0.1:{port}"))
            .env("AUTH_DATABASE_URL", &database.url)
            .env("AUTH_DATABASE_MAX_CONNECTIONS", "16")
            .env("REDIS_URL", helpers::redis_url())
            .env("AUTH_REDIS_KEY_PREFIX", format!("test:{id}"))
            .env("AUTH_JWT_DEV_KEY_FILE", &key)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::null());
        for (name, value) in extra {
            command.env(name, value);
        }
        Self { child: Some(command.spawn().unwrap()), port, log, key, redis_prefix: format!("test:{id}") }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id();
        assert!(Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap().success());
    }

    fn running(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }
}

impl Drop for AuthProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_file(&self.key);
        ratelimit::testing::delete_keys(&helpers::redis_url(), &self.redis_prefix);
    }
}

/// Auth's connections waiting for a lock in this database.
async fn waiting_on_locks(observer: &mut PgConnection, database: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'auth' AND wait_event_type = 'Lock'")
        .bind(database)
        .fetch_one(observer)
        .await
        .unwrap()
}

#[derive(Debug)]
enum Outcome {
    Answered(StatusCode),
    /// Connection refused: the listener was closed; the request was never accepted.
    Refused,
    Failed(#[allow(dead_code)] String),
}

/// SIGTERM while requests stream in: the listener closes at once, every request
/// already accepted is answered, the spans are exported, the pool is closed, and the
/// process exits 0. The requests in flight at the signal are made to wait by a lock
/// the test holds on the table they read, so they are provably in flight (PostgreSQL
/// shows them waiting) when the signal comes, whatever the machine's speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_in_flight_and_refuses_new_connections() {
    const WORKERS: usize = 6;
    let receiver = otlp::Receiver::grpc();
    let database = Database::new("auth");
    let mut auth = AuthProcess::spawn(
        &database,
        &[
            ("AUTH_RATE_LIMIT_ENABLED", "false".into()),
            ("AUTH_SHUTDOWN_TIMEOUT_SECONDS", "60".into()),
            // The requests wait on the test's lock for as long as the test takes to get
            // every worker waiting and Auth stopping, which a busy machine can stretch
            // past the 5 s statement timeout (a CI run got a 503): the drain is under
            // test here, not the timeouts.
            ("AUTH_DATABASE_STATEMENT_TIMEOUT_MS", "60000".into()),
            ("AUTH_REQUEST_TIMEOUT_SECONDS", "60".into()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.clone()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
            ("OTEL_SERVICE_NAME", "auth".into()),
        ],
    );
    let client = http_client();
    let ready = auth.url("/health/ready");
    eventually("auth to become ready", Duration::from_secs(60), || {
        let (client, ready) = (client.clone(), ready.clone());
        async move { client.get(&ready).send().await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    let email = format!("drain-{}@example.com", uuid::Uuid::new_v4().simple());
    let signup = client.post(auth.url("/api/v1/auth/signup")).json(&json!({"email": email, "password": PASSWORD})).send().await.unwrap();
    assert_eq!(signup.status(), StatusCode::CREATED);
    let login = client.post(auth.url("/api/v1/auth/login")).json(&json!({"email": email, "password": PASSWORD})).send().await.unwrap();
    let token = login.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();

    // The stream: each worker sends GET /api/v1/users/me, one at a time, each on a new
    // connection, until a connection is refused.
    let me = auth.url("/api/v1/users/me");
    let current: Arc<Mutex<Vec<Option<String>>>> = Arc::new(Mutex::new(vec![None; WORKERS]));
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (me, token, current) = (me.clone(), token.clone(), current.clone());
        workers.push(tokio::spawn(async move {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(120)).build().unwrap();
            let mut outcomes = Vec::new();
            for n in 0.. {
                let id = format!("drain-{w}-{n}");
                current.lock().unwrap()[w] = Some(id.clone());
                let outcome = match client.get(&me).bearer_auth(&token).header("x-request-id", &id).send().await {
                    Ok(response) => Outcome::Answered(response.status()),
                    Err(e) if e.is_connect() => Outcome::Refused,
                    Err(e) => Outcome::Failed(format!("{e:?}")),
                };
                let stop = !matches!(outcome, Outcome::Answered(_));
                outcomes.push((id, outcome));
                if stop {
                    return outcomes;
                }
            }
            unreachable!()
        }));
    }
    // Requests flow…
    let stream_started = current.clone();
    eventually("every worker to have been answered a few times", Duration::from_secs(60), || {
        let current = stream_started.clone();
        async move {
            current
                .lock()
                .unwrap()
                .iter()
                .all(|id| id.as_deref().and_then(|id| id.rsplit('-').next()).and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| n >= 3))
        }
    })
    .await;

    // …until the users table is locked: each worker's next request waits in PostgreSQL.
    let admin = database.url.clone();
    let mut lock = PgConnection::connect(&admin).await.unwrap();
    lock.execute("BEGIN").await.unwrap();
    lock.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let mut observer = PgConnection::connect(&admin).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while waiting_on_locks(&mut observer, &database.name).await < WORKERS as i64 {
        assert!(tokio::time::Instant::now() < deadline, "the workers' requests never all waited on the lock");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let in_flight: Vec<String> = current.lock().unwrap().iter().map(|id| id.clone().unwrap()).collect();

    // SIGTERM: the listener closes at once, while the requests are still in flight.
    auth.signal("TERM");
    let address = format!("127.0.0.1:{}", auth.port);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match TcpStream::connect(&address) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            _ => {
                assert!(tokio::time::Instant::now() < deadline, "the listener still accepts connections after SIGTERM");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(auth.running(), "the process waits for its requests in flight");
    assert_eq!(waiting_on_locks(&mut observer, &database.name).await, WORKERS as i64, "the requests are still in flight");

    // Released: they finish, and the process exits on its own, successfully.
    lock.execute("ROLLBACK").await.unwrap();
    let mut child = auth.child.take().unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "auth exits 0 after draining: {status:?}");

    let mut answered = 0;
    for worker in workers {
        let outcomes = worker.await.unwrap();
        let (last_id, last) = outcomes.last().unwrap();
        assert!(matches!(last, Outcome::Refused), "{last_id}: after the drain, connections are refused: {last:?}");
        for (id, outcome) in &outcomes[..outcomes.len() - 1] {
            match outcome {
                Outcome::Answered(StatusCode::OK) => answered += 1,
                other => panic!("{id} was accepted and failed: {other:?}"),
            }
        }
        // The request in flight at the signal is the one before the refused one.
        let drained = &outcomes[outcomes.len() - 2].0;
        assert!(in_flight.contains(drained), "{drained} was the worker's request in flight at SIGTERM");
    }
    assert!(answered >= WORKERS * 4, "{answered} requests answered");

    // Spans of the requests that finished during the drain were exported before the exit.
    for id in &in_flight {
        receiver.wait_for(&format!("the server span of {id}"), |s| s.attr("http.request_id") == Some(id.as_str()) && s.kind == 2).await;
    }
    let log = std::fs::read_to_string(&auth.log).unwrap();
    let position = |needle: &str| log.find(needle).unwrap_or_else(|| panic!("no {needle:?} in the log:\n{log}"));
    assert!(position("not accepting new connections") < position("database pool closed"), "drain, then the pool closed:\n{log}");
    assert!(!log.contains("abandoned"), "nothing abandoned at the deadline:\n{log}");
}
