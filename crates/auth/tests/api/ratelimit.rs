//! Rate limits against the real Redis (docs/rate-limiting.md): every policy, the
//! headers, two instances sharing one limit, trusted proxies, Redis stopping mid-test,
//! the sign-in rules, and a three-node Redis Cluster.
//!
//! Intervals are made short through the settings; waiting for a limit to pass is a
//! poll with a deadline (a refused request is not charged, so polling does not delay
//! the answer). Different client addresses are simulated through a trusted proxy.

use std::{future::Future, time::Duration};

use auth::store::history;
use ratelimit::{
    Backend,
    testing::{RedisCluster, RedisServer},
};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Options, PASSWORD, TestApp, assert_problem, spawn_app_with};

const DEADLINE: Duration = Duration::from_secs(20);

async fn app_with(vars: &[(&'static str, &str)]) -> TestApp {
    spawn_app_with(Options { extra_vars: vars.iter().map(|(k, v)| (*k, v.to_string())).collect(), ..Default::default() }).await
}

fn header(response: &Response, name: &str) -> String {
    response.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

/// The burst passes the policy, then a request is refused with 429 and `code`, and
/// once the policy's interval has passed a request is allowed again.
///
/// Requests that hash a password can be slow on a busy machine, and the policy may
/// earn a request back meanwhile: so at least `burst` pass, and a refusal comes
/// within a few more (exact counts are checked on a cheap route in
/// `headers_describe_each_policy_and_retry_after_is_exact`).
async fn assert_policy<F, Fut>(policy: &str, burst: usize, code: &str, mut send: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Response>,
{
    let mut passed = 0;
    let refused = loop {
        let response = send().await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            break response;
        }
        // Sign-in's account-wide count is told only when it refuses.
        let reported = header(&response, "ratelimit").contains(&format!("\"{policy}\";r="));
        assert_eq!(reported, policy != "login-account", "{policy}: {}", header(&response, "ratelimit"));
        passed += 1;
        assert!(passed <= burst + 3, "{policy}: no refusal after {passed} requests");
    };
    assert!(passed >= burst, "{policy}: refused after {passed} requests, burst {burst}");
    let retry_after: u64 = header(&refused, "retry-after").parse().expect("Retry-After on a 429");
    assert!((1..=4).contains(&retry_after), "{policy}: Retry-After {retry_after}");
    assert!(header(&refused, "ratelimit").contains(&format!("\"{policy}\";r=0;")), "{policy}");
    assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, code).await;
    let start = tokio::time::Instant::now();
    loop {
        let response = send().await;
        if response.status() != StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "{policy}: still refused after {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn email() -> String {
    format!("viewer-{}@example.com", Uuid::new_v4().simple())
}

#[tokio::test]
async fn every_request_policy_allows_its_burst_then_429_then_again_after_the_interval() {
    // 2 at once, one more every 2 s.
    let fast = "1/2s burst 2";
    let app = app_with(&[
        ("AUTH_RATE_LIMIT_API_ANONYMOUS", fast),
        ("AUTH_RATE_LIMIT_SIGNUP", fast),
        ("AUTH_RATE_LIMIT_REFRESH", fast),
        ("AUTH_RATE_LIMIT_PASSWORD_CHANGE", fast),
        ("AUTH_RATE_LIMIT_LOGIN_IP", fast),
        // Through a trusted proxy, so each policy below gets addresses of its own.
        ("AUTH_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let from = |ip: &'static str| move |request: reqwest::RequestBuilder| request.header("x-forwarded-for", ip);

    let ip = from("198.51.100.1");
    assert_policy("api-ip", 2, "rate_limited", || async { ip(app.client.get(app.url("/.well-known/jwks.json"))).send().await.unwrap() }).await;

    let ip = from("198.51.100.2");
    assert_policy("signup-ip", 2, "rate_limited", || async {
        ip(app.client.post(app.url("/api/v1/auth/signup"))).json(&json!({"email": email(), "password": PASSWORD})).send().await.unwrap()
    })
    .await;

    let ip = from("198.51.100.3");
    assert_policy("refresh-ip", 2, "rate_limited", || async {
        ip(app.client.post(app.url("/api/v1/auth/refresh"))).json(&json!({"refresh_token": "not-a-token"})).send().await.unwrap()
    })
    .await;

    // Unknown accounts each time: only the per-address sign-in limit applies.
    let ip = from("198.51.100.4");
    assert_policy("login-ip", 2, "rate_limited", || async {
        ip(app.client.post(app.url("/api/v1/auth/login"))).json(&json!({"email": email(), "password": "wrong password"})).send().await.unwrap()
    })
    .await;

    let ip = from("198.51.100.5");
    let signup = ip(app.client.post(app.url("/api/v1/auth/signup"))).json(&json!({"email": "limited@example.com", "password": PASSWORD}));
    assert_eq!(signup.send().await.unwrap().status(), StatusCode::CREATED);
    let ip = from("198.51.100.6");
    let login = ip(app.client.post(app.url("/api/v1/auth/login"))).json(&json!({"email": "limited@example.com", "password": PASSWORD}));
    let token = crate::helpers::tokens(login.send().await.unwrap()).await.access;
    let ip = from("198.51.100.7");
    assert_policy("password-change-ip", 2, "rate_limited", || async {
        let body = json!({"current_password": "not the password", "new_password": "another horse battery"});
        ip(app.client.put(app.url("/api/v1/users/me/password"))).bearer_auth(&token).json(&body).send().await.unwrap()
    })
    .await;
}

/// Starting a social sign-in needs no login and stores a flow in Redis for ten
/// minutes: an address gets a small quota of its own, well under the general one, so a
/// spray of starts cannot fill Redis (which evicted the sign-in counters). The code
/// exchange likewise.
#[tokio::test]
async fn social_sign_in_starts_and_code_exchanges_have_their_own_per_address_limits() {
    let fast = "1/2s burst 2";
    let app = app_with(&[
        ("AUTH_RATE_LIMIT_OAUTH_AUTHORIZE", fast),
        ("AUTH_RATE_LIMIT_OAUTH_EXCHANGE", fast),
        ("AUTH_RATE_LIMIT_API_ANONYMOUS", "100/s burst 100"),
        ("AUTH_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let from = |ip: &'static str| move |request: reqwest::RequestBuilder| request.header("x-forwarded-for", ip);

    // Every provider's start counts against one quota per address.
    let ip = from("198.51.100.21");
    let mut provider = ["yandex", "vk", "google", "mailru"].into_iter().cycle();
    assert_policy("oauth-authorize-ip", 2, "rate_limited", || {
        let path = format!("/api/v1/oauth/{}/authorize", provider.next().unwrap());
        let request = ip(app.client.get(app.url(&path)));
        async move { request.send().await.unwrap() }
    })
    .await;

    // Starting a link stores the same flow, signed in: the same per-address quota.
    let (_, tokens) = app.signed_in_user().await;
    let ip = from("198.51.100.24");
    assert_policy("oauth-authorize-ip", 2, "rate_limited", || {
        let request = ip(app.client.post(app.url("/api/v1/users/me/social/yandex"))).bearer_auth(&tokens.access);
        async move { request.send().await.unwrap() }
    })
    .await;

    let ip = from("198.51.100.22");
    assert_policy("oauth-exchange-ip", 2, "rate_limited", || async {
        ip(app.client.post(app.url("/api/v1/oauth/exchange"))).json(&json!({"code": "not-a-code"})).send().await.unwrap()
    })
    .await;

    // Another address has its own quota; the provider list is not limited by it.
    let other = app.client.get(app.url("/api/v1/oauth/yandex/authorize")).header("x-forwarded-for", "198.51.100.23").send().await.unwrap();
    assert_ne!(other.status(), StatusCode::TOO_MANY_REQUESTS);
    let providers = app.client.get(app.url("/api/v1/oauth/providers")).header("x-forwarded-for", "198.51.100.21").send().await.unwrap();
    assert!(!header(&providers, "ratelimit").contains("oauth-"), "{}", header(&providers, "ratelimit"));
}

#[tokio::test]
async fn the_user_limit_counts_by_account_whatever_the_address() {
    let app = app_with(&[("AUTH_RATE_LIMIT_API_USER", "1/2s burst 2"), ("AUTH_TRUSTED_PROXIES", "127.0.0.1")]).await;
    let (_, tokens) = app.signed_in_user().await;
    let token = tokens.access;
    let mut addresses = ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"].into_iter().cycle();
    assert_policy("api-user", 2, "rate_limited", || {
        let request = app.client.get(app.url("/api/v1/users/me")).bearer_auth(&token).header("x-forwarded-for", addresses.next().unwrap());
        async move { request.send().await.unwrap() }
    })
    .await;
    // A token that does not verify counts by address instead (and is answered 401).
    let forged = app.client.get(app.url("/api/v1/users/me")).bearer_auth(format!("{token}x")).send().await.unwrap();
    assert!(header(&forged, "ratelimit").starts_with("\"api-ip\";"));
    assert_problem(forged, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

/// Whoever holds a leaked token cannot keep its owner at 429 after the owner signs
/// out everywhere: once Auth has found the token revoked, its requests count by
/// address, and the owner's new session keeps its quota.
#[tokio::test]
async fn a_revoked_token_does_not_spend_its_owners_quota() {
    let app = app_with(&[("AUTH_RATE_LIMIT_API_USER", "1/m burst 3"), ("AUTH_RATE_LIMIT_API_ANONYMOUS", "1/m burst 100")]).await;
    let (email, leaked) = app.signed_in_user().await;
    let out = app.post_with("/api/v1/auth/logout-all", &leaked.access).await;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    for attempt in 0..6 {
        let replay = app.get_with("/api/v1/users/me", &leaked.access).await;
        if attempt > 0 {
            assert!(header(&replay, "ratelimit").starts_with("\"api-ip\";"), "attempt {attempt}: {}", header(&replay, "ratelimit"));
        }
        assert_problem(replay, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    let fresh = crate::helpers::tokens(app.login(&email, PASSWORD).await).await;
    let me = app.get_with("/api/v1/users/me", &fresh.access).await;
    assert_eq!(me.status(), StatusCode::OK, "{}", header(&me, "ratelimit"));
    assert!(
        header(&me, "ratelimit").starts_with("\"api-user\";r=0;"),
        "one request of the burst was the revoked token's first, one the sign-out's: {}",
        header(&me, "ratelimit")
    );
}

#[tokio::test]
async fn headers_describe_each_policy_and_retry_after_is_exact() {
    // One request per 30 s, two at once: deterministic whole seconds.
    let app =
        app_with(&[("AUTH_RATE_LIMIT_API_ANONYMOUS", "2/m"), ("AUTH_RATE_LIMIT_LOGIN_IP", "30/m"), ("AUTH_RATE_LIMIT_LOGIN_ACCOUNT_IP", "5/15m")])
            .await;
    let first = app.client.get(app.url("/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(header(&first, "ratelimit-policy"), "\"api-ip\";q=2;w=60");
    assert_eq!(header(&first, "ratelimit"), "\"api-ip\";r=1;t=30");
    assert!(first.headers().get("retry-after").is_none());

    // A failed sign-in counts against the account's policies (reported by the
    // handler) and the address's (reported by the layer).
    let login = app.login("nobody@example.com", "wrong password").await;
    assert_eq!(login.status(), StatusCode::UNAUTHORIZED);
    // The account-wide count is not told (see `a_failed_attempt_tells_nothing_of_others_attempts`).
    assert_eq!(header(&login, "ratelimit-policy"), "\"login-account-ip\";q=5;w=900, \"api-ip\";q=2;w=60, \"login-ip\";q=30;w=60");
    assert_eq!(header(&login, "ratelimit"), "\"login-account-ip\";r=4;t=180, \"api-ip\";r=0;t=60, \"login-ip\";r=29;t=2");

    let refused = app.client.get(app.url("/api/v1/auth/sessions")).send().await.unwrap();
    // The refusing policy's `t` and `Retry-After` name the same moment.
    assert_eq!(header(&refused, "retry-after"), "30");
    assert_eq!(header(&refused, "ratelimit"), "\"api-ip\";r=0;t=30");
    let problem = assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert_eq!(problem["type"], "https://errors.cinema.example/rate_limited");

    // Probes are never limited and carry no rate-limit headers.
    for _ in 0..5 {
        let live = app.client.get(app.url("/health/live")).send().await.unwrap();
        assert_eq!(live.status(), StatusCode::OK);
        assert!(live.headers().get("ratelimit").is_none());
    }
    assert_eq!(app.client.get(app.url("/health/ready")).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn two_instances_share_one_limit_through_redis() {
    let prefix = format!("test:shared:{}", Uuid::new_v4().simple());
    let vars = [("AUTH_RATE_LIMIT_API_ANONYMOUS", "1/m burst 4"), ("AUTH_REDIS_KEY_PREFIX", prefix.as_str())];
    let (a, b) = (app_with(&vars).await, app_with(&vars).await);
    for app in [&a, &b, &a, &b] {
        assert_eq!(app.client.get(app.url("/.well-known/jwks.json")).send().await.unwrap().status(), StatusCode::OK);
    }
    for app in [&a, &b] {
        let refused = app.client.get(app.url("/.well-known/jwks.json")).send().await.unwrap();
        assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    }
}

/// A query string that is not UTF-8 (400 `malformed_query`) counts against the limits
/// like any request, on any route, unknown paths included: refused before the limiter,
/// such requests were a way to send without limit. Probes stay unlimited.
#[tokio::test]
async fn malformed_query_strings_count_against_the_limits_like_any_request() {
    let app = app_with(&[("AUTH_RATE_LIMIT_API_ANONYMOUS", "1/m burst 3")]).await;
    for (remaining, path) in [(2, "/api/v1/roles?x=%FF"), (1, "/api/v1/nowhere?x=%FF"), (0, "/.well-known/jwks.json?x=%C0%80")] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert!(header(&response, "ratelimit").starts_with(&format!("\"api-ip\";r={remaining};")), "{path}: {}", header(&response, "ratelimit"));
        assert_problem(response, StatusCode::BAD_REQUEST, "malformed_query").await;
    }
    let refused = app.client.get(app.url("/api/v1/roles?x=%FF")).send().await.unwrap();
    assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let refused = app.client.get(app.url("/.well-known/jwks.json")).send().await.unwrap();
    assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let probe = app.client.get(app.url("/health/ready?x=%FF")).send().await.unwrap();
    assert_problem(probe, StatusCode::BAD_REQUEST, "malformed_query").await;
}

#[tokio::test]
async fn a_spoofed_x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    // No trusted proxies (the default): the peer address is the client's.
    let app = app_with(&[("AUTH_RATE_LIMIT_API_ANONYMOUS", "1/m burst 3")]).await;
    for i in 0..3 {
        let response = app
            .client
            .get(app.url("/.well-known/jwks.json"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .header("x-real-ip", format!("198.51.100.{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let spoofed = app.client.get(app.url("/.well-known/jwks.json")).header("x-forwarded-for", "198.51.100.99").send().await.unwrap();
    assert_problem(spoofed, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

#[tokio::test]
async fn sessions_and_history_record_the_peer_and_not_a_made_up_address() {
    let app = app_with(&[]).await;
    let email = email();
    app.signup(&email).await;
    let login = app.client.post(app.url("/api/v1/auth/login")).header("x-forwarded-for", "198.51.100.99").header("x-real-ip", "198.51.100.98");
    let tokens = crate::helpers::tokens(login.json(&json!({"email": email, "password": PASSWORD})).send().await.unwrap()).await;
    let sessions: Value = app.get_with("/api/v1/auth/sessions", &tokens.access).await.json().await.unwrap();
    assert_eq!(sessions[0]["ip"], "127.0.0.1", "{sessions}");
    let history: Value = app.get_with("/api/v1/users/me/login-history", &tokens.access).await.json().await.unwrap();
    assert_eq!(history["items"][0]["ip"], "127.0.0.1");
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_address_has_its_own_limit_and_is_recorded() {
    let app = app_with(&[("AUTH_RATE_LIMIT_API_ANONYMOUS", "1/m burst 3"), ("AUTH_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8")]).await;
    let email = email();
    let signup = app
        .client
        .post(app.url("/api/v1/auth/signup"))
        .header("x-forwarded-for", "198.51.100.10")
        .json(&json!({"email": email, "password": PASSWORD}));
    assert_eq!(signup.send().await.unwrap().status(), StatusCode::CREATED);
    // The client made up the first entry; a second proxy (10.1.1.1) appended the real one.
    let chain = "6.6.6.6, 203.0.113.77, 10.1.1.1";
    let login = app.client.post(app.url("/api/v1/auth/login")).header("x-forwarded-for", chain).json(&json!({"email": email, "password": PASSWORD}));
    let tokens = crate::helpers::tokens(login.send().await.unwrap()).await;
    let sessions: Value = app.get_with("/api/v1/auth/sessions", &tokens.access).await.json().await.unwrap();
    assert_eq!(sessions[0]["ip"], "203.0.113.77", "{sessions}");
    let history: Value = app.get_with("/api/v1/users/me/login-history", &tokens.access).await.json().await.unwrap();
    assert_eq!(history["items"][0]["ip"], "203.0.113.77");
    // 198.51.100.10 used one request of its own burst, 203.0.113.77 one of another.
    for _ in 0..2 {
        let r = app.client.get(app.url("/.well-known/jwks.json")).header("x-forwarded-for", "198.51.100.10").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let refused = app.client.get(app.url("/.well-known/jwks.json")).header("x-forwarded-for", "198.51.100.10").send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let other = app.client.get(app.url("/.well-known/jwks.json")).header("x-real-ip", "198.51.100.11").send().await.unwrap();
    assert_eq!(other.status(), StatusCode::OK);
}

/// Sends a sign-in as if from `ip`, through the trusted proxy on 127.0.0.1.
async fn login_from(app: &TestApp, ip: &str, email: &str, password: &str) -> Response {
    app.client
        .post(app.url("/api/v1/auth/login"))
        .header("x-forwarded-for", ip)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_attacker_is_throttled_while_the_owner_signs_in_from_elsewhere() {
    // The default sign-in rules: 5 per account per address per 15 minutes, 50 per account per hour.
    let app =
        app_with(&[("AUTH_TRUSTED_PROXIES", "127.0.0.1"), ("AUTH_RATE_LIMIT_LOGIN_ACCOUNT_IP", "5/15m"), ("AUTH_RATE_LIMIT_LOGIN_ACCOUNT", "50/h")])
            .await;
    let owner = email();
    app.signup(&owner).await;
    let attacker = "198.51.100.66";
    for i in 0..5 {
        let guess = login_from(&app, attacker, &owner, &format!("guess number {i}")).await;
        assert_problem(guess, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    let refused = login_from(&app, attacker, &owner, "guess number 5").await;
    assert_eq!(header(&refused, "retry-after"), "180", "one attempt back every 3 minutes");
    assert!(header(&refused, "ratelimit").contains("\"login-account-ip\";r=0;t=180"), "{}", header(&refused, "ratelimit"));
    assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "too_many_sign_in_attempts").await;
    // Even the right password is not checked from there now.
    let right_but_refused = login_from(&app, attacker, &owner, PASSWORD).await;
    assert_eq!(right_but_refused.status(), StatusCode::TOO_MANY_REQUESTS);

    // The owner, elsewhere, signs in.
    let signed_in = login_from(&app, "203.0.113.5", &owner, PASSWORD).await;
    assert_eq!(signed_in.status(), StatusCode::OK);
    let tokens = crate::helpers::tokens(signed_in).await;

    let history: Value = app.get_with("/api/v1/users/me/login-history?limit=100", &tokens.access).await.json().await.unwrap();
    let outcomes: Vec<(Option<&str>, &str)> =
        history["items"].as_array().unwrap().iter().map(|i| (i["failure_reason"].as_str(), i["ip"].as_str().unwrap())).collect();
    assert_eq!(outcomes[0], (None, "203.0.113.5"));
    assert_eq!(outcomes[1..3], [(Some(history::Failure::RateLimited.as_str()), attacker); 2]);
    assert_eq!(outcomes[3..8], [(Some("wrong_password"), attacker); 5]);
}

#[tokio::test]
async fn a_success_clears_the_count_from_that_address_and_the_account_wide_limit_spans_addresses() {
    let app = app_with(&[
        ("AUTH_TRUSTED_PROXIES", "127.0.0.1"),
        ("AUTH_RATE_LIMIT_LOGIN_ACCOUNT_IP", "2/h"),
        ("AUTH_RATE_LIMIT_LOGIN_ACCOUNT", "1/2s burst 4"),
    ])
    .await;
    let owner = email();
    app.signup(&owner).await;
    // A typo, a success, then two typos again: the success started the address over.
    assert_eq!(login_from(&app, "203.0.113.9", &owner, "typo one!").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(login_from(&app, "203.0.113.9", &owner, PASSWORD).await.status(), StatusCode::OK);
    assert_eq!(login_from(&app, "203.0.113.9", &owner, "typo two!").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(login_from(&app, "203.0.113.9", &owner, "typo three").await.status(), StatusCode::UNAUTHORIZED);
    let third = login_from(&app, "203.0.113.9", &owner, "typo four").await;
    assert_problem(third, StatusCode::TOO_MANY_REQUESTS, "too_many_sign_in_attempts").await;

    // Failures from many addresses add up on the account: 4 at once, one per 2 s.
    let spread = email();
    app.signup(&spread).await;
    let mut ips = (1..).map(|i| format!("198.51.100.{i}"));
    assert_policy("login-account", 4, "too_many_sign_in_attempts", || {
        let ip = ips.next().unwrap();
        let app = &app;
        let spread = spread.clone();
        async move { login_from(app, &ip, &spread, "distributed guess").await }
    })
    .await;
}

#[tokio::test]
async fn successful_sign_ins_give_their_attempt_back_to_the_account_wide_limit() {
    // Two attempts an hour per account: without the refund the third sign-in is refused.
    let app = app_with(&[("AUTH_RATE_LIMIT_LOGIN_ACCOUNT", "2/h")]).await;
    let owner = email();
    app.signup(&owner).await;
    for attempt in 1..=5 {
        assert_eq!(app.login(&owner, PASSWORD).await.status(), StatusCode::OK, "successful sign-in {attempt}");
    }
    // Failures are not given back: two use up the hour, and then even the right password waits.
    for _ in 0..2 {
        assert_eq!(login_from(&app, "127.0.0.1", &owner, "wrong password!").await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_problem(app.login(&owner, PASSWORD).await, StatusCode::TOO_MANY_REQUESTS, "too_many_sign_in_attempts").await;
}

/// An app whose limits' Redis is down from the start (so on its in-process store), with
/// `login-account` at `6/h burst 3` (a burst refills in 30 minutes) and
/// `login-account-ip` at `4/h`, trusting `X-Forwarded-For` from loopback; with the
/// stopped server, which the test keeps (a restart would bring the limits back).
async fn app_with_the_limits_redis_down() -> (TestApp, RedisServer) {
    let mut limits = RedisServer::start();
    let url = limits.url();
    limits.stop();
    let app = app_with(&[
        ("AUTH_RATE_LIMIT_REDIS_URL", url.as_str()),
        ("AUTH_RATE_LIMIT_LOGIN_ACCOUNT", "6/h burst 3"),
        ("AUTH_RATE_LIMIT_LOGIN_ACCOUNT_IP", "4/h"),
        ("AUTH_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    assert_eq!(app.state.limits.limiter.backend(), Backend::Local);
    (app, limits)
}

/// While the limits' Redis is down, each instance counts sign-ins on its own, so N
/// instances allowed N times the account-wide limit of guesses. The sign-in history,
/// which every instance writes, then bounds them: with `login-account` at 6 an hour,
/// burst 3 (a burst refills in 30 minutes), two wrong passwords tried on this instance
/// and one recorded by another reach the burst, and even the right password is
/// refused until the oldest is 30 minutes old. A wrong password older than that does
/// not count, and a refused attempt is not charged to the in-process limits.
#[tokio::test]
async fn while_the_limits_redis_is_down_the_account_limit_holds_across_instances_through_the_history() {
    let (app, _limits) = app_with_the_limits_redis_down().await;
    let email = email();
    app.signup(&email).await;
    let user_id: Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = $1").bind(&email).fetch_one(&app.db).await.unwrap();
    let elsewhere = |ago_minutes: i32| {
        sqlx::query(
            "INSERT INTO login_history (id, attempted_at, user_id, ip, device, method, success, failure_reason)
             VALUES (gen_random_uuid(), now() - make_interval(mins => $2), $1, '198.51.100.52', 'web', 'password', false, 'wrong_password')",
        )
        .bind(user_id)
        .bind(ago_minutes)
        .execute(&app.db)
    };
    elsewhere(40).await.unwrap();
    for _ in 0..2 {
        assert_eq!(login_from(&app, "198.51.100.50", &email, "wrong password").await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login_from(&app, "198.51.100.51", &email, PASSWORD).await.status(), StatusCode::OK, "40 minutes back is past the burst's refill");
    elsewhere(0).await.unwrap();

    for _ in 0..3 {
        let refused = login_from(&app, "198.51.100.51", &email, PASSWORD).await;
        let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
        assert!((1700..=1800).contains(&retry_after), "until the oldest of the three is 30 minutes old: {retry_after}");
        assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "too_many_sign_in_attempts").await;
    }
    // The refusals charged nothing: this address has used one attempt of its 4 (a
    // success gives its attempt back), so all 4 are left once the history allows.
    sqlx::query("DELETE FROM login_history WHERE user_id = $1 AND failure_reason = 'wrong_password'").bind(user_id).execute(&app.db).await.unwrap();
    let answer = login_from(&app, "198.51.100.51", &email, "wrong password").await;
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&answer, "ratelimit").contains("\"login-account-ip\";r=3;"), "{}", header(&answer, "ratelimit"));
}

/// The limits can live in a Redis of their own (the deployment's never evicts):
/// whatever happens to the keys of `REDIS_URL` — an evicting Redis filled by OAuth
/// flows dropped them — the sign-in counters stay, and a guesser stays refused.
#[tokio::test]
async fn with_a_redis_of_their_own_the_sign_in_counters_survive_the_loss_of_the_shared_redis_keys() {
    let limits = RedisServer::start();
    let app = app_with(&[
        ("AUTH_RATE_LIMIT_REDIS_URL", limits.url().as_str()),
        ("AUTH_RATE_LIMIT_LOGIN_ACCOUNT_IP", "2/h"),
        ("AUTH_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let email = email();
    app.signup(&email).await;
    for _ in 0..2 {
        assert_eq!(login_from(&app, "198.51.100.40", &email, "wrong password").await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_problem(login_from(&app, "198.51.100.40", &email, "wrong password").await, StatusCode::TOO_MANY_REQUESTS, "too_many_sign_in_attempts")
        .await;
    let prefix = &app.settings.redis_key_prefix;
    assert!(limits.command("KEYS *").contains(&format!("{prefix}:rl:")), "the limits' own Redis holds the counts");
    // What an evicting shared Redis does at worst: every key of this instance gone.
    ratelimit::testing::delete_keys(&crate::helpers::redis_url(), prefix);
    assert_problem(login_from(&app, "198.51.100.40", &email, "wrong password").await, StatusCode::TOO_MANY_REQUESTS, "too_many_sign_in_attempts")
        .await;
}

#[tokio::test]
async fn when_redis_stops_mid_test_requests_are_served_by_the_in_process_limiter() {
    let mut redis = RedisServer::start();
    let app = app_with(&[
        ("REDIS_URL", redis.url().as_str()),
        // A tight deadline: the stop is noticed at the first check.
        ("AUTH_RATE_LIMIT_REDIS_TIMEOUT_MS", "5"),
        ("AUTH_RATE_LIMIT_REDIS_PROBE_INTERVAL_MS", "50"),
        ("AUTH_RATE_LIMIT_API_ANONYMOUS", "1/m burst 3"),
        ("AUTH_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let limiter = &app.state.limits.limiter;
    let app = &app;
    let jwks =
        |ip: &'static str| async move { app.client.get(app.url("/.well-known/jwks.json")).header("x-forwarded-for", ip).send().await.unwrap() };
    // A first contact may be slower than 5 ms (connecting, loading the script) and go
    // to the local store; once Redis answers in time, it is used.
    let start = tokio::time::Instant::now();
    while !(jwks("198.51.100.1").await.status() == StatusCode::OK
        && limiter.backend() == Backend::Redis
        && redis.command("KEYS *").contains(":rl:{ip:198.51.100.1}:api-ip"))
    {
        assert!(start.elapsed() < DEADLINE, "Redis never took the limits");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    redis.stop();
    // Served, not refused or failed because of Redis: the local limiter takes over
    // with the same policy, and enforces it.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(jwks("198.51.100.2").await.status());
    }
    assert_eq!(limiter.backend(), Backend::Local);
    assert!(limiter.fallbacks() >= 1);
    assert_eq!(statuses[..3], [StatusCode::OK; 3], "{statuses:?}");
    assert_eq!(statuses[3], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    // Signing up and in still work, limited locally (the revocation cache falls back to
    // PostgreSQL), and the new session's token is served.
    let email = email();
    let signup = app.post_json("/api/v1/auth/signup", &json!({"email": email, "password": PASSWORD})).await;
    assert_eq!(signup.status(), StatusCode::CREATED);
    let signed_in = login_from(app, "198.51.100.3", &email, PASSWORD).await;
    assert_eq!(signed_in.status(), StatusCode::OK);
    let tokens = crate::helpers::tokens(signed_in).await;
    assert_eq!(app.get_with("/api/v1/users/me", &tokens.access).await.status(), StatusCode::OK);

    redis.restart();
    let start = tokio::time::Instant::now();
    while limiter.backend() != Backend::Redis {
        assert!(start.elapsed() < DEADLINE, "the limiter never returned to Redis");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Checks go to Redis again (a check slower than 5 ms on this busy machine would
    // switch back for a while: poll with fresh addresses until one lands in Redis).
    for i in 10.. {
        let ip = format!("198.51.100.{i}");
        let response = app.client.get(app.url("/.well-known/jwks.json")).header("x-forwarded-for", &ip).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        if redis.command("KEYS *").contains(&format!(":rl:{{ip:{ip}}}:api-ip")) {
            break;
        }
        assert!(start.elapsed() < DEADLINE * 2, "checks never went back to Redis");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn limits_and_sign_in_rules_work_on_a_three_node_redis_cluster() {
    let cluster = RedisCluster::start();
    let nodes = cluster.urls().join(",");
    let app = app_with(&[
        ("AUTH_RATE_LIMIT_REDIS_CLUSTER_NODES", nodes.as_str()),
        ("AUTH_TRUSTED_PROXIES", "127.0.0.1"),
        ("AUTH_RATE_LIMIT_API_ANONYMOUS", "1/m burst 20"),
        ("AUTH_RATE_LIMIT_LOGIN_ACCOUNT_IP", "1/m burst 2"),
    ])
    .await;
    let owner = email();
    // Signups from many addresses: keys in many slots.
    for i in 0..12 {
        let signup = app
            .client
            .post(app.url("/api/v1/auth/signup"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .json(&json!({"email": if i == 0 { owner.clone() } else { email() }, "password": PASSWORD}));
        assert_eq!(signup.send().await.unwrap().status(), StatusCode::CREATED);
    }
    // Two keys of one account in one script call: one slot, no CROSSSLOT error.
    assert_eq!(login_from(&app, "203.0.113.20", &owner, "wrong guess!").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(login_from(&app, "203.0.113.20", &owner, "wrong guess!").await.status(), StatusCode::UNAUTHORIZED);
    let refused = login_from(&app, "203.0.113.20", &owner, "wrong guess!").await;
    assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "too_many_sign_in_attempts").await;
    assert_eq!(login_from(&app, "203.0.113.21", &owner, PASSWORD).await.status(), StatusCode::OK);

    assert_eq!(app.state.limits.limiter.backend(), Backend::Redis, "never fell back");
    let prefix = &app.settings.redis_key_prefix;
    let spread = cluster.keys_per_node(&format!("{prefix}:rl:*"));
    assert!(spread.iter().filter(|&&n| n > 0).count() >= 2, "keys on several nodes: {spread:?}");
}

/// Introspection counts per client id against `introspect-client`, not by address
/// against the general limit: each calling service has its own quota, shared by its
/// instances. A call without valid credentials counts by address against `api-ip`
/// like any anonymous request, so guessing a client secret is throttled.
#[tokio::test]
async fn introspection_counts_per_client_and_calls_without_valid_credentials_count_against_api_ip() {
    const BILLING_SECRET: &str = "billing-introspection-secret-0123456789";
    let clients = format!("{}:{},billing:{BILLING_SECRET}", crate::helpers::CLIENT_ID, crate::helpers::CLIENT_SECRET);
    let app = app_with(&[
        ("AUTH_RATE_LIMIT_API_ANONYMOUS", "1/h burst 3"),
        ("AUTH_RATE_LIMIT_INTROSPECT", "1/2s burst 2"),
        ("AUTH_INTROSPECTION_CLIENTS", &clients),
    ])
    .await;
    let movies = || app.introspect_as(crate::helpers::CLIENT_ID, crate::helpers::CLIENT_SECRET, "not-a-token");
    // The first two calls of `movies` spend its burst; billing's quota is untouched.
    for _ in 0..2 {
        let response = movies().await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(!header(&response, "ratelimit").contains("api-ip"), "{}", header(&response, "ratelimit"));
    }
    assert_eq!(movies().await.status(), StatusCode::TOO_MANY_REQUESTS);
    let billing = app.introspect_as("billing", BILLING_SECRET, "not-a-token").await;
    assert_eq!(billing.status(), StatusCode::OK, "another client's quota is its own");
    assert!(header(&billing, "ratelimit").starts_with("\"introspect-client\";r=1;"), "{}", header(&billing, "ratelimit"));
    // Refused, allowed again after the interval: the policy's own cycle.
    assert_policy("introspect-client", 1, "rate_limited", || async { app.introspect_as("billing", BILLING_SECRET, "not-a-token").await }).await;

    // Without valid credentials: by address, against api-ip (burst 3), answered 401.
    let wrong = app.introspect_as(crate::helpers::CLIENT_ID, "wrong-secret-wrong-secret-wrong-secret", "not-a-token").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&wrong, "ratelimit").starts_with("\"api-ip\";r=2;"), "{}", header(&wrong, "ratelimit"));
    for _ in 0..2 {
        let unknown = app.introspect_as("guess", "guess-guess-guess-guess-guess-guess-guess", "not-a-token").await;
        assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    }
    let anonymous = app.post_json("/api/v1/auth/introspect", &json!({"token": "not-a-token"})).await;
    assert!(header(&anonymous, "ratelimit").contains("\"api-ip\";r=0;"), "{}", header(&anonymous, "ratelimit"));
    assert_problem(anonymous, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // The clients' quotas are not the address's: a valid call still passes.
    let response = tokio::time::timeout(DEADLINE, async {
        loop {
            let response = movies().await;
            if response.status() != StatusCode::TOO_MANY_REQUESTS {
                break response;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("movies' quota comes back");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_failed_attempt_tells_nothing_of_others_attempts() {
    let app =
        app_with(&[("AUTH_TRUSTED_PROXIES", "127.0.0.1"), ("AUTH_RATE_LIMIT_LOGIN_ACCOUNT_IP", "5/15m"), ("AUTH_RATE_LIMIT_LOGIN_ACCOUNT", "50/h")])
            .await;
    let owner = email();
    app.signup(&owner).await;
    // The owner mistypes twice from home; a stranger then tries once from elsewhere.
    for _ in 0..2 {
        assert_eq!(login_from(&app, "203.0.113.20", &owner, "owner's typo").await.status(), StatusCode::UNAUTHORIZED);
    }
    let probe = login_from(&app, "198.51.100.20", &owner, "stranger's guess").await;
    let unknown = login_from(&app, "198.51.100.20", &email(), "stranger's guess").await;
    for answer in [&probe, &unknown] {
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
        let state = header(answer, "ratelimit");
        assert!(state.starts_with("\"login-account-ip\";r=4;t="), "{state}");
        assert!(!state.contains("\"login-account\""), "the account-wide count is the owner's business: {state}");
    }
}

#[tokio::test]
async fn a_password_change_guesses_the_current_password_only_as_often_as_a_sign_in() {
    let app =
        app_with(&[("AUTH_TRUSTED_PROXIES", "127.0.0.1"), ("AUTH_RATE_LIMIT_LOGIN_ACCOUNT_IP", "2/h"), ("AUTH_RATE_LIMIT_LOGIN_ACCOUNT", "3/h")])
            .await;
    let owner = email();
    app.signup(&owner).await;
    // Whoever holds a stolen access token, from several addresses.
    let stolen = crate::helpers::tokens(login_from(&app, "203.0.113.30", &owner, PASSWORD).await).await;
    let change = |ip: &'static str, current: &'static str| {
        app.client
            .put(app.url("/api/v1/users/me/password"))
            .bearer_auth(&stolen.access)
            .header("x-forwarded-for", ip)
            .json(&json!({"current_password": current, "new_password": "a brand new passphrase"}))
            .send()
    };
    for _ in 0..2 {
        assert_problem(change("198.51.100.31", "guess at home").await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    let from_there = change("198.51.100.31", "third guess").await.unwrap();
    assert_problem(from_there, StatusCode::TOO_MANY_REQUESTS, "too_many_sign_in_attempts").await;
    assert_problem(change("198.51.100.32", "guess elsewhere").await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    // Three guesses at the account: the fourth, even the right password, is not checked.
    let right = change("198.51.100.33", PASSWORD).await.unwrap();
    assert!(
        header(&right, "ratelimit").starts_with("\"login-account-ip\";r=2;t=0, \"login-account\";r=0;t=1200, "),
        "{}",
        header(&right, "ratelimit")
    );
    assert_problem(right, StatusCode::TOO_MANY_REQUESTS, "too_many_sign_in_attempts").await;
    assert_eq!(app.login(&owner, PASSWORD).await.status(), StatusCode::TOO_MANY_REQUESTS, "sign-in shares the count");
    // The owner sees every refused check in the history, with its address.
    let history: Value = app.get_with("/api/v1/users/me/login-history", &stolen.access).await.json().await.unwrap();
    let changes: Vec<(&str, &str)> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["method"] == "password_change")
        .map(|item| (item["ip"].as_str().unwrap(), item["failure_reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        changes,
        [
            ("198.51.100.33", "rate_limited"),
            ("198.51.100.32", "wrong_password"),
            ("198.51.100.31", "rate_limited"),
            ("198.51.100.31", "wrong_password"),
            ("198.51.100.31", "wrong_password"),
        ],
        "{history}"
    );
}

/// While the limits' Redis is down, a password change's wrong current passwords are
/// in the history that every instance reads, as sign-ins' are: with `login-account`
/// at burst 3, two guesses through a stolen token here and one wrong password at
/// another instance refuse the owner's sign-in, and the next check too.
#[tokio::test]
async fn while_the_limits_redis_is_down_a_password_changes_wrong_guesses_count_across_instances() {
    let (app, _limits) = app_with_the_limits_redis_down().await;
    let owner = email();
    app.signup(&owner).await;
    let stolen = crate::helpers::tokens(login_from(&app, "203.0.113.60", &owner, PASSWORD).await).await;
    let change = |current: &'static str| {
        app.client
            .put(app.url("/api/v1/users/me/password"))
            .bearer_auth(&stolen.access)
            .header("x-forwarded-for", "198.51.100.60")
            .json(&json!({"current_password": current, "new_password": "a brand new passphrase"}))
            .send()
    };
    for guess in ["first guess", "second guess"] {
        assert_problem(change(guess).await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    // In this instance's memory: 2 of 4 from that address, 2 of 3 at the account.
    assert_eq!(login_from(&app, "198.51.100.61", &owner, PASSWORD).await.status(), StatusCode::OK);
    // Another instance's wrong password.
    sqlx::query(
        "INSERT INTO login_history (id, user_id, ip, device, method, success, failure_reason)
         SELECT gen_random_uuid(), id, '198.51.100.62', 'web', 'password', false, 'wrong_password' FROM users WHERE email = $1",
    )
    .bind(&owner)
    .execute(&app.db)
    .await
    .unwrap();
    assert_problem(login_from(&app, "198.51.100.61", &owner, PASSWORD).await, StatusCode::TOO_MANY_REQUESTS, "too_many_sign_in_attempts").await;
    assert_problem(change(PASSWORD).await.unwrap(), StatusCode::TOO_MANY_REQUESTS, "too_many_sign_in_attempts").await;
}
