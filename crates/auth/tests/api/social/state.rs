//! The state: missing, forged, replayed, expired, for another provider or from
//! another browser → 400 `invalid_state`, before any exchange with the provider.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::support::*;
use crate::helpers::assert_problem;

async fn assert_invalid_state(response: reqwest::Response) {
    assert_problem(response, StatusCode::BAD_REQUEST, "invalid_state").await;
}

#[tokio::test]
async fn a_missing_or_forged_state_is_refused_without_an_exchange() {
    let stub = Stub::start(Kind::Yandex).await;
    stub.expect_no_exchange().await;
    let app = app_with(&[&stub], vec![]).await;
    let flow = authorize(&app, "yandex", None).await;
    let code = || ("code", "c".to_owned());
    // Missing.
    assert_invalid_state(callback_with(&app, "yandex", &[code()], Some(&flow.cookie)).await).await;
    assert_invalid_state(callback_with(&app, "yandex", &[code(), ("state", String::new())], Some(&flow.cookie)).await).await;
    // Forged: well-formed, never issued; and junk.
    let forged = "A".repeat(43);
    assert_invalid_state(callback_with(&app, "yandex", &[code(), ("state", forged)], Some(&flow.cookie)).await).await;
    assert_invalid_state(callback_with(&app, "yandex", &[code(), ("state", "x".repeat(5000))], Some(&flow.cookie)).await).await;
    assert_eq!(user_count(&app).await, 0);
}

#[tokio::test]
async fn a_state_works_once() {
    let stub = Stub::start(Kind::Yandex).await;
    let app = app_with(&[&stub], vec![]).await;
    let flow = authorize(&app, "yandex", None).await;
    stub.expect_sign_in(&flow, "once", &Person::new("1", "once@yandex.ru")).await;
    assert_eq!(callback(&app, &flow, "once").await.status(), StatusCode::OK);
    // Replayed, even with a fresh code: refused before the provider is asked (the
    // token stand-in answers one exchange only and fails the test on a second).
    assert_invalid_state(callback(&app, &flow, "once").await).await;
    assert_invalid_state(callback(&app, &flow, "other").await).await;
    assert_eq!(user_count(&app).await, 1);
}

#[tokio::test]
async fn an_expired_state_is_refused() {
    let stub = Stub::start(Kind::Yandex).await;
    stub.expect_no_exchange().await;
    let app = app_with(&[&stub], vec![("OAUTH_STATE_TTL_SECONDS", "1".into())]).await;
    let flow = authorize(&app, "yandex", None).await;
    assert!(app.state.oauth.flows.is_pending(&flow.state()).await.unwrap());
    // Wait for Redis to expire it, with a deadline.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.state.oauth.flows.is_pending(&flow.state()).await.unwrap() {
        assert!(Instant::now() < deadline, "the state did not expire");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_invalid_state(callback(&app, &flow, "late").await).await;
    assert_eq!(user_count(&app).await, 0);
}

#[tokio::test]
async fn a_state_is_bound_to_its_provider() {
    let (yandex, vk) = (Stub::start(Kind::Yandex).await, Stub::start(Kind::Vk).await);
    yandex.expect_no_exchange().await;
    vk.expect_no_exchange().await;
    let app = app_with(&[&yandex, &vk], vec![]).await;
    let flow = authorize(&app, "yandex", None).await;
    let query = [("code", "c".to_owned()), ("state", flow.state()), ("device_id", VK_DEVICE_ID.to_owned())];
    assert_invalid_state(callback_with(&app, "vk", &query, Some(&flow.cookie)).await).await;
    // And it was consumed by the attempt.
    assert!(!app.state.oauth.flows.is_pending(&flow.state()).await.unwrap());
}

#[tokio::test]
async fn a_state_is_bound_to_the_browser_that_started_the_flow() {
    let stub = Stub::start(Kind::Yandex).await;
    stub.expect_no_exchange().await;
    let app = app_with(&[&stub], vec![]).await;
    // An attacker starts a flow and sends its callback link to a victim, whose
    // browser has no cookie, or a cookie of its own.
    let attackers = authorize(&app, "yandex", None).await;
    let victims = authorize(&app, "yandex", None).await;
    assert_ne!(attackers.cookie, victims.cookie);
    let query = |flow: &Started| [("code", "c".to_owned()), ("state", flow.state())];
    assert_invalid_state(callback_with(&app, "yandex", &query(&attackers), None).await).await;
    assert_invalid_state(callback_with(&app, "yandex", &query(&victims), Some(&attackers.cookie)).await).await;
    assert_eq!(user_count(&app).await, 0);
}

/// A sibling subdomain, or a forged answer over plain HTTP, can plant an `oauth_browser`
/// cookie holding the attacker's own binding; the victim's browser then finishing the
/// attacker's flow would sign the victim in as the attacker. Over HTTPS only the
/// `__Host-` cookie, which neither can set, binds a flow.
#[tokio::test]
async fn a_planted_cookie_without_the_host_prefix_does_not_bind() {
    let stub = Stub::start(Kind::Yandex).await;
    stub.expect_no_exchange().await;
    let app = app_with(&[&stub], vec![]).await;
    let attackers = authorize(&app, "yandex", None).await;
    let planted = attackers.cookie.strip_prefix("__Host-").expect("a __Host- cookie");
    let query = [("code", "c".to_owned()), ("state", attackers.state())];
    assert_invalid_state(callback_with(&app, "yandex", &query, Some(planted)).await).await;
    assert_eq!(user_count(&app).await, 0);
}

/// Over plain HTTP (development) a browser would drop a `__Host-` cookie: the flow
/// cookie is the plain one, on the API's path, without `Secure`, and it binds.
#[tokio::test]
async fn over_plain_http_the_flow_cookie_has_no_prefix_and_binds() {
    let stub = Stub::start(Kind::Yandex).await;
    let app = app_with(&[&stub], vec![("AUTH_PUBLIC_URL", "http://localhost:8000".into())]).await;
    let authorize = |cookie: Option<String>| {
        let mut request = browser().get(app.url("/api/v1/oauth/yandex/authorize"));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::FOUND);
            let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
            let attributes: Vec<&str> = set_cookie.split("; ").collect();
            assert!(attributes[0].starts_with("oauth_browser="), "{set_cookie}");
            assert!(attributes.contains(&"Path=/api/v1") && attributes.contains(&"HttpOnly") && !attributes.contains(&"Secure"), "{set_cookie}");
            Started {
                provider: "yandex",
                location: url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap(),
                cookie: attributes[0].to_owned(),
                callback_url: "http://localhost:8000/api/v1/oauth/yandex/callback".into(),
            }
        }
    };
    let first = authorize(None).await;
    let query = [("code", "c".to_owned()), ("state", first.state())];
    assert_invalid_state(callback_with(&app, "yandex", &query, None).await).await;
    let second = authorize(Some(first.cookie.clone())).await;
    assert_eq!(second.cookie, first.cookie);
    stub.expect_sign_in(&second, "plain", &Person::new("44", "plain@yandex.ru")).await;
    assert_eq!(callback(&app, &second, "plain").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_browser_keeps_one_binding_across_parallel_flows() {
    let stub = Stub::start(Kind::Yandex).await;
    let app = app_with(&[&stub], vec![]).await;
    let first = authorize(&app, "yandex", None).await;
    // A second tab: the browser sends its cookie and gets the same one back.
    let response = browser().get(app.url("/api/v1/oauth/yandex/authorize")).header("cookie", &first.cookie).send().await.unwrap();
    let second = started("yandex", response).await;
    assert_eq!(second.cookie, first.cookie);
    stub.expect_sign_in(&first, "tab-1", &Person::new("5", "tabs@yandex.ru")).await;
    assert_eq!(callback(&app, &first, "tab-1").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn starting_a_link_keeps_the_browsers_binding() {
    let stub = Stub::start(Kind::Yandex).await;
    let app = app_with(&[&stub], vec![]).await;
    let (_, tokens) = app.signed_in_user().await;
    let sign_in = authorize(&app, "yandex", None).await;
    // Another tab starts linking; the browser sends its cookie there too and keeps it,
    // so the sign-in under way in the first tab still finishes.
    let response =
        browser().post(app.url("/api/v1/users/me/social/yandex")).bearer_auth(&tokens.access).header("cookie", &sign_in.cookie).send().await.unwrap();
    let link = started("yandex", response).await;
    assert_eq!(link.cookie, sign_in.cookie);
    stub.expect_sign_in(&sign_in, "tab-1", &Person::new("6", "tabs@yandex.ru")).await;
    assert_eq!(callback(&app, &sign_in, "tab-1").await.status(), StatusCode::OK);
}
