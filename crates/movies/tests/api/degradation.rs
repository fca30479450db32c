//! Auth stopped, killed, frozen or failing: the movies API keeps serving, honours
//! locally valid tokens (saying so in `X-Auth-Degraded: 1`), and resumes revocation
//! checks by itself when Auth is back.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use auth_client::BreakerState;
use axum::{
    extract::State,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use reqwest::StatusCode;

use crate::helpers::{Auth, INTROSPECTION_SECRET, Movies, MoviesOptions, Tokens, assert_problem, eventually};

/// Longest any request may take while Auth misbehaves: well above the 100 ms
/// introspection timeout, far below a hang.
const NO_HANG: Duration = Duration::from_secs(2);

/// Viewers signed in before the outage, not yet seen by the movies API (so their
/// first use must ask Auth).
async fn subscribers(auth: &Auth, n: usize) -> Vec<Tokens> {
    let mut tokens = Vec::new();
    for _ in 0..n {
        tokens.push(auth.viewer(&["subscriber"], None).await);
    }
    tokens
}

/// Asks for a subscription film's stream with each token, and for anonymous pages:
/// no 5xx, no request near a hang, tokens honoured with the degraded header.
async fn assert_serves_degraded(movies: &Movies, tokens: &[Tokens]) {
    let matrix = movies.film_id("The Matrix").await;
    for tokens in tokens {
        let response = tokio::time::timeout(NO_HANG, movies.get(&format!("/api/v1/films/{matrix}/stream"), Some(&tokens.access)))
            .await
            .expect("a request waited on Auth past the timeout");
        assert_eq!(response.status(), StatusCode::OK, "a locally valid token is honoured");
        assert_eq!(response.headers().get("x-auth-degraded").map(|v| v.to_str().unwrap()), Some("1"));
    }
    for path in ["/api/v1/films", "/api/v1/genres", "/api/v1/films/search?query=matrix"] {
        let response = tokio::time::timeout(NO_HANG, movies.get(path, None)).await.expect("anonymous requests never wait on Auth");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(response.headers().get("x-auth-degraded").is_none(), "anonymous answers are not degraded");
    }
}

/// What a stand-in for Auth answers every introspection with, after `delay`.
#[derive(Clone)]
struct Answer {
    status: StatusCode,
    retry_after: Option<&'static str>,
    body: serde_json::Value,
    delay: Duration,
}

impl Answer {
    fn status(status: StatusCode) -> Self {
        Self { status, retry_after: None, body: serde_json::Value::Null, delay: Duration::ZERO }
    }
}

/// Introspection calls about viewers' tokens a stand-in received (all but the start-up
/// check of the credentials): when each arrived, and when it left (answered, or its
/// caller gone).
#[derive(Default)]
struct Calls(std::sync::Mutex<Vec<(Instant, Option<Instant>)>>);

/// One call in flight, from its arrival until it is answered or its caller gives up:
/// hyper drops the handler, and this with it, when the caller closes the connection.
struct InFlight(Arc<Calls>, usize);

impl InFlight {
    fn enter(calls: &Arc<Calls>) -> Self {
        let mut spans = calls.0.lock().unwrap();
        spans.push((Instant::now(), None));
        Self(calls.clone(), spans.len() - 1)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.0.lock().unwrap()[self.1].1 = Some(Instant::now());
    }
}

/// How long before its timeout a caller counts as gone (`StandIn::most_in_flight`).
const CALLER_GONE: Duration = Duration::from_millis(100);

/// A stand-in for Auth: serves the real Auth's keys, answers every introspection with
/// one `Answer`, and counts the calls, so tests can measure how many are in flight at
/// once rather than look for a call that should not come.
struct StandIn {
    url: String,
    calls: Arc<Calls>,
    server: tokio::task::JoinHandle<()>,
}

impl StandIn {
    async fn start(jwks: serde_json::Value, answer: Answer) -> Self {
        async fn introspect(State((answer, calls)): State<(Answer, Arc<Calls>)>, body: axum::body::Bytes) -> Response {
            let check = serde_json::json!({ "token": auth_client::CREDENTIAL_CHECK_TOKEN });
            let is_check = serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|b| b == check);
            let _in_flight = (!is_check).then(|| InFlight::enter(&calls));
            // Auth being slow, not the test waiting.
            tokio::time::sleep(answer.delay).await;
            let mut response = (answer.status, axum::Json(answer.body)).into_response();
            if let Some(seconds) = answer.retry_after {
                response.headers_mut().insert("retry-after", seconds.parse().unwrap());
            }
            response
        }
        let calls = Arc::new(Calls::default());
        let app = axum::Router::new()
            .route("/.well-known/jwks.json", get(move || async move { axum::Json(jwks) }))
            .route("/api/v1/auth/introspect", post(introspect))
            .with_state((answer, calls.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, calls, server }
    }

    /// Introspection calls received about viewers' tokens.
    fn calls(&self) -> usize {
        self.calls.0.lock().unwrap().len()
    }

    /// The most introspection calls about viewers' tokens in flight at once, a call
    /// counting until it left or, at the latest, [`CALLER_GONE`] before its caller's
    /// `timeout` had passed since its arrival. The caller takes its place under the cap
    /// for another call when its own timer ends the call, and the stand-in learns of it
    /// when that connection's close reaches it: two connections, whose packets may reach
    /// it in either order. A cap exceeded keeps one call more in flight for most of a
    /// timeout, far beyond the margin.
    fn most_in_flight(&self, timeout: Duration) -> usize {
        let now = Instant::now();
        let spans = self.calls.0.lock().unwrap();
        let mut edges: Vec<(Instant, i32)> = spans
            .iter()
            .flat_map(|&(arrived, left)| {
                let gone = arrived + timeout.saturating_sub(CALLER_GONE);
                [(arrived, 1), (left.unwrap_or(now).min(gone), -1)]
            })
            .collect();
        // At equal times, leaving before arriving: touching spans do not overlap.
        edges.sort();
        edges.iter().scan(0, |in_flight, &(_, step)| Some(*in_flight + step).inspect(|n| *in_flight = *n)).max().unwrap_or(0) as usize
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A stand-in for Auth that serves the real Auth's keys and answers every
/// introspection with `answer`, and a movies API in front of it, with `vars`, holding
/// the keys.
async fn auth_answering_introspection_with(answer: Answer, vars: Vec<(&'static str, String)>) -> (Auth, StandIn, Movies) {
    let auth = Auth::in_process().await;
    let jwks: serde_json::Value = auth.client.get(format!("{}/.well-known/jwks.json", auth.url)).send().await.unwrap().json().await.unwrap();
    let stand_in = StandIn::start(jwks, answer).await;
    let movies = Movies::start_with(&stand_in.url, MoviesOptions { vars }).await;
    movies.wait_for_keys().await;
    (auth, stand_in, movies)
}

async fn assert_breaker_open(movies: &Movies) {
    assert_eq!(movies.state.auth.breaker_state(), BreakerState::Open);
    let health: serde_json::Value = movies.json("/health/ready", None).await;
    assert_eq!(health["auth"], "degraded");
}

/// After Auth is back: a token revoked now is refused within 30 s, without a restart.
async fn assert_recovers(auth: &Auth, movies: &Movies) {
    let viewer = auth.viewer(&[], None).await;
    auth.logout(&viewer).await;
    let token = viewer.access.clone();
    eventually("revocation checks to resume", Duration::from_secs(30), || {
        let (movies, token) = (movies, token.clone());
        async move { movies.get("/api/v1/films", Some(&token)).await.status() == StatusCode::UNAUTHORIZED }
    })
    .await;
    assert_ne!(movies.state.auth.breaker_state(), BreakerState::Open);
}

/// A token Auth has said was revoked is refused from then on without asking again, so
/// an outage of Auth does not bring it back as a degraded viewer once the introspection
/// cache has let its answer go.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_auth_said_was_revoked_stays_refused_while_auth_is_down() {
    let mut auth = Auth::process().await;
    let options = MoviesOptions { vars: vec![("MOVIES_AUTH_INTROSPECTION_CACHE_MS", "100".into())] };
    let movies = Movies::start_with(&auth.url, options).await;
    movies.wait_for_keys().await;
    let signed_out = auth.viewer(&["subscriber"], None).await;
    let other = auth.viewer(&["subscriber"], None).await;
    auth.logout(&signed_out).await;
    let matrix = movies.film_id("The Matrix").await;
    let stream = format!("/api/v1/films/{matrix}/stream");
    assert_problem(movies.get(&stream, Some(&signed_out.access)).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // Another viewer's answer, cached after the refusal: once it has left the cache
    // (its viewer served degraded), the refusal has too.
    assert_eq!(movies.get(&stream, Some(&other.access)).await.status(), StatusCode::OK);
    auth.stop();
    eventually("the other viewer served degraded", NO_HANG * 5, || {
        let (movies, stream, other) = (&movies, &stream, &other);
        async move { movies.get(stream, Some(&other.access)).await.headers().get("x-auth-degraded").is_some() }
    })
    .await;
    let again = movies.get(&stream, Some(&signed_out.access)).await;
    assert!(again.headers().get("x-auth-degraded").is_none());
    assert_problem(again, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_stopped_then_restarted() {
    let mut auth = Auth::process().await;
    let movies = Movies::start(&auth.url).await;
    movies.wait_for_keys().await;
    let tokens = subscribers(&auth, 6).await;
    auth.stop();
    assert_serves_degraded(&movies, &tokens).await;
    assert_breaker_open(&movies).await;
    auth.start().await;
    assert_recovers(&auth, &movies).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_killed_then_restarted() {
    let mut auth = Auth::process().await;
    let movies = Movies::start(&auth.url).await;
    movies.wait_for_keys().await;
    let tokens = subscribers(&auth, 6).await;
    auth.kill();
    assert_serves_degraded(&movies, &tokens).await;
    assert_breaker_open(&movies).await;
    auth.start().await;
    assert_recovers(&auth, &movies).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_hanging_then_thawed() {
    let auth = Auth::process().await;
    let movies = Movies::start(&auth.url).await;
    movies.wait_for_keys().await;
    let tokens = subscribers(&auth, 6).await;
    auth.freeze();
    assert_serves_degraded(&movies, &tokens).await;
    assert_breaker_open(&movies).await;
    auth.thaw();
    assert_recovers(&auth, &movies).await;
}

#[tokio::test]
async fn auth_answering_500_opens_the_breaker_and_stops_the_calls() {
    let (auth, broken, movies) = auth_answering_introspection_with(Answer::status(StatusCode::INTERNAL_SERVER_ERROR), vec![]).await;
    let tokens = subscribers(&auth, 8).await;
    assert_serves_degraded(&movies, &tokens).await;
    assert_breaker_open(&movies).await;
    assert_eq!(broken.calls(), 5, "the breaker opens after 5 failures; no further call waits on Auth");
}

/// Auth's rate limit refusing introspection (429) leaves the breaker closed: Auth is
/// up, and an open breaker would stop revocation checks for every viewer. Anyone able
/// to present many distinct tokens at once could otherwise open it at will.
#[tokio::test]
async fn auth_refusing_introspection_with_429_does_not_open_the_breaker() {
    // The movies API's tasks run on this thread (current-thread runtime): its logs are captured.
    let (logs, _logging) = platform::testing::CapturedLogs::capture(tracing::Level::WARN);
    let throttled = Answer { retry_after: Some("1"), ..Answer::status(StatusCode::TOO_MANY_REQUESTS) };
    let (auth, throttling, movies) = auth_answering_introspection_with(throttled, vec![]).await;
    let tokens = subscribers(&auth, 8).await;
    assert_serves_degraded(&movies, &tokens).await;
    assert_eq!(movies.state.auth.breaker_state(), BreakerState::Closed);
    assert_eq!(throttling.calls(), 8, "every token was asked about");
    // Whoever holds many tokens does not choose the log's volume: one line, not eight.
    let text = logs.text();
    assert_eq!(text.matches("introspection refused by Auth's rate limit").count(), 1, "{text}");
}

/// Auth answering every introspection "active" after `delay`, through a stand-in.
async fn slow_auth(delay: Duration, vars: Vec<(&'static str, String)>) -> (Auth, StandIn, Movies) {
    let live = Answer { body: serde_json::json!({"active": true, "roles": ["subscriber"]}), delay, ..Answer::status(StatusCode::OK) };
    auth_answering_introspection_with(live, vars).await
}

/// Streams of a subscription film for each token, all at once; the answers and the
/// introspection calls Auth received.
async fn burst(movies: &Movies, stand_in: &StandIn, tokens: &[&Tokens]) -> (Vec<reqwest::Response>, usize) {
    let matrix = movies.film_id("The Matrix").await;
    let path = format!("/api/v1/films/{matrix}/stream");
    let answers = futures::future::join_all(tokens.iter().map(|t| movies.get(&path, Some(&t.access)))).await;
    assert!(answers.iter().all(|r| r.status() == StatusCode::OK), "every viewer is served");
    (answers, stand_in.calls())
}

fn degraded(answers: &[reqwest::Response]) -> usize {
    answers.iter().filter(|r| r.headers().get("x-auth-degraded").is_some()).count()
}

/// A slow Auth and a burst of new tokens: no more introspection calls are in flight
/// than `MOVIES_AUTH_MAX_CONCURRENT_INTROSPECTIONS` (each holds a connection to Auth).
/// A token waits for a place up to the introspection timeout, then is served on its
/// signature, degraded; the breaker counts only the calls made.
#[tokio::test]
async fn introspection_calls_in_flight_are_capped_and_the_rest_served_degraded_after_the_timeout() {
    // Auth answers after the timeout: every call made times out, and no token is confirmed.
    let vars = vec![("MOVIES_AUTH_MAX_CONCURRENT_INTROSPECTIONS", "2".into()), ("MOVIES_AUTH_INTROSPECTION_TIMEOUT_MS", "1000".into())];
    let (auth, slow, movies) = slow_auth(Duration::from_millis(1500), vars).await;
    let tokens = subscribers(&auth, 6).await;
    let (answers, calls) = burst(&movies, &slow, &tokens.iter().collect::<Vec<_>>()).await;
    // Measured by Auth over the whole burst: both places were taken at once, never more.
    // (Tokens still waiting when the first calls time out take their places and call
    // too, up to four calls in all; a call that timed out counts until its caller's
    // timeout, whichever connection's packets reach the stand-in first.)
    assert_eq!(slow.most_in_flight(Duration::from_millis(1000)), 2, "introspection calls in flight at once, of {calls}");
    assert_eq!(degraded(&answers), 6, "no answer came for any token");
    assert_eq!(movies.state.auth.breaker_state(), BreakerState::Closed, "at most four calls failed, under the threshold of five");
}

/// Places free as answers come: within the timeout, every token is asked about in
/// turn, two at a time, and none is degraded.
#[tokio::test]
async fn a_token_waits_for_a_place_within_the_introspection_timeout() {
    let vars = vec![("MOVIES_AUTH_MAX_CONCURRENT_INTROSPECTIONS", "2".into()), ("MOVIES_AUTH_INTROSPECTION_TIMEOUT_MS", "5000".into())];
    let (auth, slow, movies) = slow_auth(Duration::from_millis(300), vars).await;
    let tokens = subscribers(&auth, 6).await;
    let (answers, calls) = burst(&movies, &slow, &tokens.iter().collect::<Vec<_>>()).await;
    assert_eq!((calls, degraded(&answers)), (6, 0));
    assert_eq!(slow.most_in_flight(Duration::from_millis(5000)), 2, "two at a time");
}

/// Requests with one token at once make one call, whatever their number: a burst of
/// one token cannot take every place (and leave other viewers' tokens unconfirmed).
#[tokio::test]
async fn concurrent_requests_with_one_token_make_one_introspection_call() {
    let vars = vec![("MOVIES_AUTH_MAX_CONCURRENT_INTROSPECTIONS", "1".into()), ("MOVIES_AUTH_INTROSPECTION_TIMEOUT_MS", "5000".into())];
    let (auth, slow, movies) = slow_auth(Duration::from_millis(300), vars).await;
    let viewer = auth.viewer(&["subscriber"], None).await;
    let (answers, calls) = burst(&movies, &slow, &[&viewer; 8]).await;
    assert_eq!((calls, degraded(&answers)), (1, 0));
}

/// Auth up, but refusing the movies API's introspection credentials (401), as when
/// Auth's list of clients changes under a running fleet. Here Auth is down when the
/// movies API starts, so the start-up check cannot see the secret is wrong
/// (`a_wrong_client_secret_at_start_is_an_error_and_readiness_names_it_at_once`). Signed-in viewers are served degraded, as while Auth is down, rather
/// than refused; the breaker opens; readiness names the cause; and one error names the
/// settings to check, not once per call, and never the secret.
#[tokio::test]
async fn auth_refusing_a_running_services_credentials_serves_viewers_degraded_and_logs_one_error() {
    const WRONG_SECRET: &str = "not-the-secret-auth-knows-0123456789abcdef";
    // The movies API's tasks run on this thread (current-thread runtime): its logs are captured.
    let (logs, _logging) = platform::testing::CapturedLogs::capture(tracing::Level::WARN);
    let mut auth = Auth::process().await;
    let tokens = subscribers(&auth, 8).await;
    auth.stop();
    let options = MoviesOptions { vars: vec![("MOVIES_AUTH_CLIENT_SECRET", WRONG_SECRET.into())] };
    let movies = Movies::start_with(&auth.url, options).await;
    auth.start().await;
    movies.wait_for_keys().await;
    assert_serves_degraded(&movies, &tokens).await;
    assert_eq!(movies.state.auth.breaker_state(), BreakerState::Open);
    let health: serde_json::Value = movies.json("/health/ready", None).await;
    assert_eq!(health["auth"], "credentials_refused");
    let text = logs.text();
    let errors: Vec<&str> = text.lines().filter(|line| line.contains("refused this service's introspection credentials")).collect();
    assert_eq!(errors.len(), 1, "one error for five refused calls:\n{text}");
    for expected in ["ERROR", "client_id=movies", "MOVIES_AUTH_CLIENT_ID and MOVIES_AUTH_CLIENT_SECRET", "AUTH_INTROSPECTION_CLIENTS"] {
        assert!(errors[0].contains(expected), "{expected}: {}", errors[0]);
    }
    assert!(!text.contains(WRONG_SECRET) && !text.contains(INTROSPECTION_SECRET), "a secret in the log:\n{text}");
}

/// A wrong secret while Auth is up is found at start: one error names the settings (not
/// the secret), and readiness says `credentials_refused` before any signed-in request
/// meets the refusal. The service starts all the same, and serves signed-in viewers
/// degraded: stopping would take the catalogue down for a change on Auth's side.
#[tokio::test]
async fn a_wrong_client_secret_at_start_is_an_error_and_readiness_names_it_at_once() {
    const WRONG_SECRET: &str = "not-the-secret-auth-knows-0123456789abcdef";
    // The services' tasks run on this thread (current-thread runtime): their logs are captured.
    let (logs, _logging) = platform::testing::CapturedLogs::capture(tracing::Level::WARN);
    let auth = Auth::in_process().await;
    let movies = Movies::start_with(&auth.url, MoviesOptions { vars: vec![("MOVIES_AUTH_CLIENT_SECRET", WRONG_SECRET.into())] }).await;
    let health: serde_json::Value = movies.json("/health/ready", None).await;
    assert_eq!(health["auth"], "credentials_refused");
    let text = logs.text();
    let errors: Vec<&str> = text.lines().filter(|line| line.contains("refused this service's introspection credentials (401) at start")).collect();
    assert_eq!(errors.len(), 1, "{text}");
    for expected in ["ERROR", "MOVIES_AUTH_CLIENT_ID and MOVIES_AUTH_CLIENT_SECRET", "AUTH_INTROSPECTION_CLIENTS"] {
        assert!(errors[0].contains(expected), "{expected}: {}", errors[0]);
    }
    movies.wait_for_keys().await;
    assert_serves_degraded(&movies, &subscribers(&auth, 2).await).await;
    assert!(!logs.text().contains(WRONG_SECRET), "a secret in the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn movies_starts_with_auth_down_serves_anonymously_and_picks_up_the_keys_later() {
    let mut auth = Auth::process().await;
    let viewer = auth.viewer(&["subscriber"], None).await;
    auth.stop();

    let movies = Movies::start(&auth.url).await;
    assert!(!movies.state.auth.has_keys());
    assert_eq!(movies.get("/api/v1/films", None).await.status(), StatusCode::OK);
    // The token's key is unknown and Auth unreachable: served as anonymous, not refused.
    let matrix = movies.film_id("The Matrix").await;
    let response = movies.get(&format!("/api/v1/films/{matrix}/stream"), Some(&viewer.access)).await;
    assert_eq!(response.headers().get("x-auth-degraded").map(|v| v.to_str().unwrap()), Some("1"));
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "anonymous viewers must sign in for subscription films");
    let list = movies.get("/api/v1/films", Some(&viewer.access)).await;
    assert_eq!(list.status(), StatusCode::OK);

    auth.start().await;
    movies.wait_for_keys().await;
    let response = movies.get(&format!("/api/v1/films/{matrix}/stream"), Some(&viewer.access)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("x-auth-degraded").is_none());
}

/// A token under a key the movies API has not fetched (as right after a key rotation),
/// while Auth is down: served as anonymous on every request, not only on the one that
/// tried to fetch the keys. Auth never said it does not know the key, so it is not refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_under_a_key_not_yet_fetched_is_anonymous_while_auth_is_down() {
    let mut auth = Auth::process().await;
    let movies = Movies::start(&auth.url).await;
    movies.wait_for_keys().await;
    auth.stop();
    let token = token_under_an_unpublished_key();
    for attempt in 0..3 {
        let response = movies.get("/api/v1/films", Some(&token)).await;
        assert_eq!(response.status(), StatusCode::OK, "attempt {attempt}");
        assert_eq!(response.headers().get("x-auth-degraded").map(|v| v.to_str().unwrap()), Some("1"), "attempt {attempt}");
    }
}

/// A token naming a key never published, with no `iat`: Auth cannot have issued it.
/// Header {"alg":"EdDSA","typ":"JWT","kid":"never-published"}, claims {}; the signature
/// cannot be checked without the key, so its bytes do not matter.
fn token_under_an_unpublished_key() -> String {
    format!("eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCIsImtpZCI6Im5ldmVyLXB1Ymxpc2hlZCJ9.e30.{}", "A".repeat(86))
}

fn is_degraded(response: &reqwest::Response) -> bool {
    response.headers().get("x-auth-degraded").is_some_and(|v| v == "1")
}

/// After a key rotation not announced ahead, anyone's junk token naming an unknown key
/// spends the refetch; until the next one, the key set held predates every token under
/// the new key and says nothing of it. Such tokens are served as anonymous, not refused
/// as forged (which would send their apps round a refresh loop). The refetch interval
/// is made an hour, so nothing but this rule can let them through.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_under_a_new_key_is_not_refused_while_the_refetch_is_spent() {
    let mut auth = Auth::process().await;
    let options = MoviesOptions { vars: vec![("MOVIES_AUTH_UNKNOWN_KID_REFETCH_MS", "3600000".into())] };
    let movies = Movies::start_with(&auth.url, options).await;
    movies.wait_for_keys().await;
    let junk = token_under_an_unpublished_key();
    // Auth answered the refetch and lacks the key: refused.
    assert_problem(movies.get("/api/v1/films", Some(&junk)).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
    auth.restart_with_a_new_key().await;
    let viewer = auth.viewer(&["subscriber"], None).await;
    for attempt in 0..2 {
        let response = movies.get("/api/v1/films", Some(&viewer.access)).await;
        assert_eq!(response.status(), StatusCode::OK, "attempt {attempt}");
        assert!(is_degraded(&response), "attempt {attempt}");
    }
    // A token that cannot be newer than the key set (it has no `iat`) is still refused,
    // and so is one dated ahead of the clock (2100), as Auth issues none.
    assert_problem(movies.get("/api/v1/films", Some(&junk)).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let (header, _) = junk.split_once('.').unwrap();
    let future = format!("{header}.eyJpYXQiOjQxMDI0NDQ4MDB9.{}", "A".repeat(86));
    assert_problem(movies.get("/api/v1/films", Some(&future)).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // Counted apart from outages: anyone can send such a token.
    let metrics = movies.client.get(movies.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let counted = metrics.lines().find_map(|l| l.strip_prefix("auth_client_unknown_key_total ")).and_then(|v| v.trim().parse::<f64>().ok());
    assert!(counted.is_some_and(|n| n >= 2.0), "auth_client_unknown_key_total: {counted:?}");
}

/// Auth hanging, and a token under a key the movies API does not hold (a rotation):
/// neither the request that fetches the keys nor the ones behind it wait for the JWKS
/// timeout, made 60 s here, so a wait for it could not pass for a slow answer. Once
/// Auth answers again, the failed fetch has the background retry find the new key
/// and readiness says "ok", without waiting for the 5-minute refresh.
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_auth_holds_no_request_for_the_jwks_timeout() {
    let mut auth = Auth::process().await;
    let options = MoviesOptions { vars: vec![("MOVIES_AUTH_JWKS_TIMEOUT_MS", "60000".into())] };
    let movies = Movies::start_with(&auth.url, options).await;
    movies.wait_for_keys().await;
    auth.restart_with_a_new_key().await;
    let viewer = auth.viewer(&["subscriber"], None).await;
    auth.freeze();
    let requests = (0..4).map(|_| tokio::time::timeout(NO_HANG, movies.get("/api/v1/films", Some(&viewer.access))));
    for answer in futures::future::join_all(requests).await {
        let response = answer.expect("a request waited on a hanging Auth for the keys");
        assert_eq!(response.status(), StatusCode::OK);
        assert!(is_degraded(&response));
    }
    readiness_says_auth_is(&movies, "degraded").await;
    auth.thaw();
    readiness_says_auth_is(&movies, "ok").await;
    let response = movies.get("/api/v1/films", Some(&viewer.access)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!is_degraded(&response), "the new key is held once Auth answers");
}

/// One answer of the movies API under load.
#[derive(Debug)]
struct Served {
    started: std::time::Instant,
    took: Duration,
    status: StatusCode,
    with_token: bool,
    degraded: bool,
}

/// Auth killed (SIGKILL) while the movies API is busy: viewers with tokens and
/// anonymous ones keep asking, every signed-in request calling Auth's introspection
/// (its cache is made 1 ms), so calls to Auth are in flight when it dies. Every answer,
/// before, during and after, is a 200 within `NO_HANG`; from the kill on, signed-in
/// answers are marked degraded; with Auth back, revocation checks resume.
#[tokio::test(flavor = "multi_thread")]
async fn auth_killed_under_load_movies_keeps_serving() {
    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    };
    let mut auth = Auth::process().await;
    let options = MoviesOptions { vars: vec![("MOVIES_AUTH_INTROSPECTION_CACHE_MS", "1".into())] };
    let movies = Arc::new(Movies::start_with(&auth.url, options).await);
    movies.wait_for_keys().await;
    let tokens = Arc::new(subscribers(&auth, 4).await);
    let matrix = movies.film_id("The Matrix").await;
    let served = Arc::new(Mutex::new(Vec::<Served>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let (movies, tokens, served, stop) = (movies.clone(), tokens.clone(), served.clone(), stop.clone());
            tokio::spawn(async move {
                let mut round = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    // Three of four clients are signed in; the fourth browses anonymously.
                    let token = (client < 3).then(|| tokens[(client + round) % tokens.len()].access.clone());
                    let path = if token.is_some() { format!("/api/v1/films/{matrix}/stream") } else { "/api/v1/films".to_owned() };
                    let started = std::time::Instant::now();
                    let response = movies.get(&path, token.as_deref()).await;
                    let degraded = response.headers().get("x-auth-degraded").is_some_and(|v| v == "1");
                    served.lock().unwrap().push(Served {
                        started,
                        took: started.elapsed(),
                        status: response.status(),
                        with_token: token.is_some(),
                        degraded,
                    });
                }
            })
        })
        .collect();
    let count_since = |from: std::time::Instant, with_token: bool| {
        served.lock().unwrap().iter().filter(|s| s.started >= from && s.with_token == with_token).count()
    };
    let begin = std::time::Instant::now();
    eventually("load before the kill", Duration::from_secs(30), || async { count_since(begin, true) >= 40 }).await;
    let before_kill = served.lock().unwrap().iter().filter(|s| s.with_token && !s.degraded).count();
    assert!(before_kill > 0, "Auth was never consulted before the kill");

    auth.kill();
    let killed = std::time::Instant::now();
    eventually("load after the kill", Duration::from_secs(30), || async { count_since(killed, true) >= 40 && count_since(killed, false) >= 10 })
        .await;
    assert_breaker_open(&movies).await;

    auth.start().await;
    assert_recovers(&auth, &movies).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    let served = served.lock().unwrap();
    for s in served.iter() {
        assert_eq!(s.status, StatusCode::OK, "{s:?}");
        assert!(s.took < NO_HANG, "a request waited on Auth: {s:?}");
        if !s.with_token {
            assert!(!s.degraded, "anonymous answers are not degraded: {s:?}");
        }
    }
    let in_flight = served.iter().filter(|s| s.started < killed && s.started + s.took > killed).count();
    // (An answer cached for 1 ms just before the kill may still be fresh just after it.)
    let window = (killed + Duration::from_millis(10), killed + Duration::from_secs(1));
    let degraded_after = served.iter().filter(|s| s.with_token && s.started >= window.0 && s.started + s.took <= window.1);
    assert!(degraded_after.clone().count() > 0 && degraded_after.clone().all(|s| s.degraded), "signed-in answers after the kill are degraded");
    eprintln!("auth killed under load: {} answers, {in_flight} in flight at the kill", served.len());
}

async fn readiness_says_auth_is(movies: &Movies, expected: &str) {
    eventually(&format!("readiness to report auth {expected}"), Duration::from_secs(15), || async move {
        let health: serde_json::Value = movies.json("/health/ready", None).await;
        health["auth"] == expected
    })
    .await;
}

/// Readiness reports whether Auth answers, not only the breaker: an outage with no
/// signed-in traffic shows once the key refresh fails, and a recovery with only
/// anonymous traffic once it succeeds, though the breaker stays open for lack of a probe.
#[tokio::test(flavor = "multi_thread")]
async fn readiness_reports_auth_unreachable_and_back_without_signed_in_traffic() {
    let mut auth = Auth::process().await;
    let options = MoviesOptions { vars: vec![("MOVIES_AUTH_JWKS_REFRESH_SECONDS", "1".into())] };
    let movies = Movies::start_with(&auth.url, options).await;
    movies.wait_for_keys().await;
    let tokens = subscribers(&auth, 6).await;
    readiness_says_auth_is(&movies, "ok").await;
    auth.stop();
    readiness_says_auth_is(&movies, "degraded").await;
    // Signed-in requests open the breaker; from then on only anonymous traffic.
    assert_serves_degraded(&movies, &tokens).await;
    assert_eq!(movies.state.auth.breaker_state(), BreakerState::Open);
    auth.start().await;
    readiness_says_auth_is(&movies, "ok").await;
    assert_eq!(movies.state.auth.breaker_state(), BreakerState::Open, "no signed-in request has probed Auth yet");
}
