//! The whole flow for every provider: authorize, callback, account created, signed in,
//! signed in again to the same account, recorded in the login history.

use auth::{
    domain::Email,
    oauth::{
        Identity, Provider,
        linking::{self, SignIn},
    },
    store::{
        social,
        users::{self, NewUser},
    },
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::support::*;
use crate::helpers::{PASSWORD, assert_problem, spawn_app, until_a_session_waits_for_a_lock};

/// Authorize carries what the provider requires; two sign-ins land in one account.
async fn sign_up_and_in_again(kind: Kind, person: Person, expect_authorize: &[(&str, &str)]) {
    let stub = Stub::start(kind).await;
    let app = app_with(&[&stub], vec![]).await;
    let provider = kind.name();

    let flow = authorize(&app, provider, None).await;
    let expected_auth_path = match kind {
        Kind::Yandex | Kind::Vk => "/authorize",
        Kind::Google => "/o/oauth2/v2/auth",
        Kind::Mailru => "/login",
    };
    assert_eq!(flow.location.path(), expected_auth_path);
    assert_eq!(flow.location.origin(), url::Url::parse(&stub.server.uri()).unwrap().origin());
    for (name, value) in [("response_type", "code"), ("client_id", CLIENT_ID), ("redirect_uri", flow.callback_url.as_str())]
        .into_iter()
        .chain(expect_authorize.iter().copied())
    {
        assert_eq!(flow.param(name), value, "authorize parameter {name} in {}", flow.location);
    }
    assert_eq!(flow.state().len(), 43);
    assert_eq!(flow.param("code_challenge").len(), 43, "PKCE S256 challenge");

    stub.expect_sign_in(&flow, "code-1", &person).await;
    let response = callback(&app, &flow, "code-1").await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.text().await);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let pair: Value = response.json().await.unwrap();
    assert_eq!(pair["token_type"], "Bearer");
    let access = pair["access_token"].as_str().unwrap();
    let me = me(&app, access).await;
    assert_eq!(me["email"], person.email.clone().unwrap().to_lowercase());
    assert_eq!(me["roles"], json!(["user"]));
    let user_id = me["id"].clone();

    // The account has no password: password sign-in is refused.
    assert_eq!(app.login(me["email"].as_str().unwrap(), PASSWORD).await.status(), StatusCode::UNAUTHORIZED);

    // Signed in again: the same account, found by the identity.
    let access = sign_in(&app, &stub, &person, "code-2").await;
    assert_eq!(super::support::me(&app, &access).await["id"], user_id);
    assert_eq!(user_count(&app).await, 1);
    assert_eq!(history_methods(&app, &access).await, [provider, "password:password_not_set", provider]);

    let linked: Value = app.get_with("/api/v1/users/me/social", &access).await.json().await.unwrap();
    assert_eq!(linked.as_array().unwrap().len(), 1);
    assert_eq!(linked[0]["provider"], provider);
    assert_eq!(linked[0]["provider_user_id"], person.id.as_str());
    assert_eq!(linked[0]["email"], person.email.clone().unwrap().to_lowercase());
    assert!(linked[0]["linked_at"].is_string());
}

#[tokio::test]
async fn yandex_id_signs_up_then_signs_in_to_the_same_account() {
    let person = Person::new("1130000012345678", "ivan.petrov@yandex.ru");
    sign_up_and_in_again(Kind::Yandex, person, &[("code_challenge_method", "S256")]).await;
}

#[tokio::test]
async fn vk_id_signs_up_then_signs_in_to_the_same_account() {
    let person = Person::new("1234567", "Ivan.Petrov@vk.example");
    sign_up_and_in_again(Kind::Vk, person, &[("code_challenge_method", "s256"), ("scope", "vkid.personal_info email")]).await;
}

#[tokio::test]
async fn google_signs_up_then_signs_in_to_the_same_account() {
    let person = Person::new("110169484474386276334", "ivan.petrov@gmail.com");
    sign_up_and_in_again(Kind::Google, person, &[("code_challenge_method", "S256"), ("scope", "openid email profile")]).await;
}

#[tokio::test]
async fn mailru_signs_up_then_signs_in_to_the_same_account() {
    let person = Person::new("15410773191172635989", "ivan.petrov@mail.ru");
    sign_up_and_in_again(Kind::Mailru, person, &[("code_challenge_method", "S256"), ("scope", "userinfo")]).await;
}

#[tokio::test]
async fn new_accounts_get_the_providers_birth_date() {
    let stub = Stub::start(Kind::Yandex).await;
    let app = app_with(&[&stub], vec![]).await;
    let access = sign_in(&app, &stub, &Person::new("77", "born@yandex.ru"), "c").await;
    assert_eq!(me(&app, &access).await["birth_date"], "1990-05-17");
}

#[tokio::test]
async fn google_authorize_sends_a_fresh_nonce() {
    let google = Stub::start(Kind::Google).await;
    let app = app_with(&[&google], vec![]).await;
    let flow = authorize(&app, "google", None).await;
    assert_eq!(flow.param("nonce").len(), 43);
    assert_ne!(flow.param("nonce"), flow.state());
}

/// Through VK ID, a Mail.ru sign-in is recorded as `mailru`, and the person is the VK
/// ID account it is: linked as `vk`. Linked as `mailru`, VK ID's user ids were mistaken
/// for oauth.mail.ru's own, another id space: VK ID user 9988776 signed in to the
/// account that oauth.mail.ru user 9988776 had made before the switch.
#[tokio::test]
async fn mailru_through_vk_id_is_recorded_as_mailru_and_linked_as_the_vk_id_account_it_is() {
    let vk = Stub::start(Kind::Vk).await;
    let app = app_with(&[&vk], vec![("OAUTH_MAILRU_VIA_VKID", "true".into())]).await;
    // An account linked through oauth.mail.ru before the switch, with the same number.
    let earlier: Value = app.signup("earlier@mail.ru").await;
    sqlx::query("INSERT INTO social_accounts (provider, subject, user_id) VALUES ('mailru', '9988776', $1)")
        .bind(uuid::Uuid::parse_str(earlier["id"].as_str().unwrap()).unwrap())
        .execute(&app.db)
        .await
        .unwrap();
    let flow = authorize(&app, "mailru", None).await;
    assert_eq!(flow.location.path(), "/authorize");
    assert_eq!(flow.param("provider"), "mail_ru");
    assert_eq!(flow.param("code_challenge_method"), "s256");
    assert_eq!(flow.callback_url, format!("{PUBLIC_URL}/api/v1/oauth/mailru/callback"));
    assert_eq!(flow.param("redirect_uri"), flow.callback_url);

    let person = Person::new("9988776", "ivan@mail.ru");
    vk.expect_sign_in(&flow, "mr-code", &person).await;
    let response = callback(&app, &flow, "mr-code").await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.text().await);
    let access = crate::helpers::tokens(response).await.access;
    assert_eq!(history_methods(&app, &access).await, ["mailru"]);
    let me: Value = app.get_with("/api/v1/users/me", &access).await.json().await.unwrap();
    assert_eq!(me["email"], "ivan@mail.ru", "signed in to another person's account");
    let linked: Value = app.get_with("/api/v1/users/me/social", &access).await.json().await.unwrap();
    assert_eq!(linked[0]["provider"], "vk");
}

#[tokio::test]
async fn only_enabled_providers_are_listed_and_served() {
    let app = spawn_app().await;
    let list: Value = app.client.get(app.url("/api/v1/oauth/providers")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list, json!({"providers": []}));
    let response = browser().get(app.url("/api/v1/oauth/yandex/authorize")).send().await.unwrap();
    assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;

    let (yandex, google) = (Stub::start(Kind::Yandex).await, Stub::start(Kind::Google).await);
    let app = app_with(&[&yandex, &google], vec![]).await;
    let list: Value = app.client.get(app.url("/api/v1/oauth/providers")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        list,
        json!({"providers": [
            {"provider": "yandex", "name": "Yandex ID", "authorize_url": "/api/v1/oauth/yandex/authorize"},
            {"provider": "google", "name": "Google", "authorize_url": "/api/v1/oauth/google/authorize"},
        ]})
    );
    for path in ["/api/v1/oauth/vk/authorize", "/api/v1/oauth/facebook/authorize", "/api/v1/oauth/mailru/callback?code=x&state=y"] {
        assert_problem(browser().get(app.url(path)).send().await.unwrap(), StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test]
async fn a_front_end_gets_a_one_time_login_code_never_tokens() {
    let stub = Stub::start(Kind::Yandex).await;
    let app = app_with(&[&stub], vec![]).await;
    let flow = authorize(&app, "yandex", Some(FRONTEND)).await;
    stub.expect_sign_in(&flow, "fe-code", &Person::new("42", "fe@yandex.ru")).await;
    let response = callback(&app, &flow, "fe-code").await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(FRONTEND), "{location}");
    let params: Vec<(String, String)> = location.query_pairs().into_owned().collect();
    assert_eq!(params.len(), 1, "only the login code: {location}");
    assert_eq!(params[0].0, "login_code");
    assert!(!location.as_str().contains("token"), "{location}");

    let response = exchange(&app, &params[0].1, Some(&flow.cookie)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let access = crate::helpers::tokens(response).await.access;
    assert_eq!(me(&app, &access).await["email"], "fe@yandex.ru");
    assert_eq!(history_methods(&app, &access).await, ["yandex"]);

    // A login code works once.
    assert_problem(exchange(&app, &params[0].1, Some(&flow.cookie)).await, StatusCode::BAD_REQUEST, "invalid_login_code").await;
    assert_problem(exchange(&app, "made-up", Some(&flow.cookie)).await, StatusCode::BAD_REQUEST, "invalid_login_code").await;
}

/// The flow cookie's Max-Age counts from authorize: someone who finishes at the provider
/// near the end of the state's lifetime would lose the cookie before their 60 s login
/// code, and the exchange would fail. The callback sets it again to outlive the code.
#[tokio::test]
async fn the_callback_renews_the_browser_cookie_to_outlive_the_login_code() {
    let stub = Stub::start(Kind::Yandex).await;
    let app = app_with(&[&stub], vec![("OAUTH_STATE_TTL_SECONDS", "10".into())]).await;
    let flow = authorize(&app, "yandex", Some(FRONTEND)).await;
    stub.expect_sign_in(&flow, "late", &Person::new("43", "late@yandex.ru")).await;
    let response = callback(&app, &flow, "late").await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let set_cookie = response.headers().get("set-cookie").expect("the callback sets the cookie again").to_str().unwrap().to_owned();
    let attributes: Vec<&str> = set_cookie.split("; ").collect();
    assert_eq!(attributes[0], flow.cookie, "the same binding: {set_cookie}");
    for expected in ["Path=/", "HttpOnly", "SameSite=Lax", "Secure"] {
        assert!(attributes.contains(&expected), "{expected} missing: {set_cookie}");
    }
    let max_age: u64 = attributes.iter().find_map(|a| a.strip_prefix("Max-Age=")).expect("a Max-Age").parse().unwrap();
    assert!(max_age >= 60, "the cookie ends before the 60 s login code: {set_cookie}");
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let code = location.query_pairs().find(|(k, _)| k == "login_code").unwrap().1.into_owned();
    assert_eq!(exchange(&app, &code, Some(attributes[0])).await.status(), StatusCode::OK);
}

/// `POST /api/v1/oauth/exchange`, with or without a browser cookie.
async fn exchange(app: &crate::helpers::TestApp, code: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut request = app.client.post(app.url("/api/v1/oauth/exchange")).json(&json!({"login_code": code}));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.unwrap()
}

/// An attacker who finishes a flow of their own and plants its login code in a
/// victim's front end (login CSRF) gets nothing: the code is bound to the attacker's
/// browser, and spent by the victim's try.
#[tokio::test]
async fn a_login_code_only_works_in_the_browser_that_ran_the_flow() {
    let stub = Stub::start(Kind::Yandex).await;
    let app = app_with(&[&stub], vec![]).await;
    let code_of = |response: reqwest::Response| {
        assert_eq!(response.status(), StatusCode::FOUND);
        let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
        location.query_pairs().find(|(k, _)| k == "login_code").unwrap().1.into_owned()
    };
    let attackers = authorize(&app, "yandex", Some(FRONTEND)).await;
    stub.expect_sign_in(&attackers, "a", &Person::new("66", "mallory@yandex.ru")).await;
    let planted = code_of(callback(&app, &attackers, "a").await);
    let victims_browser = authorize(&app, "yandex", None).await;

    assert_problem(exchange(&app, &planted, None).await, StatusCode::BAD_REQUEST, "invalid_login_code").await;
    // Spent by that try: not even the attacker's browser can use it now.
    assert_problem(exchange(&app, &planted, Some(&attackers.cookie)).await, StatusCode::BAD_REQUEST, "invalid_login_code").await;

    let second = authorize(&app, "yandex", Some(FRONTEND)).await;
    stub.expect_sign_in(&second, "b", &Person::new("66", "mallory@yandex.ru")).await;
    let planted = code_of(callback(&app, &second, "b").await);
    assert_ne!(victims_browser.cookie, second.cookie);
    assert_problem(exchange(&app, &planted, Some(&victims_browser.cookie)).await, StatusCode::BAD_REQUEST, "invalid_login_code").await;
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions").fetch_one(&app.db).await.unwrap();
    assert_eq!(sessions, 0, "no session was opened");
}

#[tokio::test]
async fn a_front_end_address_must_be_on_the_allow_list() {
    let stub = Stub::start(Kind::Yandex).await;
    let app = app_with(&[&stub], vec![]).await;
    #[rustfmt::skip]
    let bad_addresses = ["https://evil.example/auth/done", "http://127.0.0.1:3000/auth/done/../x", "http://127.0.0.1:3000/auth/done#x", "not a url", "http://127.0.0.1:3000/auth/donex"];
    for bad in bad_addresses {
        let response = browser().get(app.url("/api/v1/oauth/yandex/authorize")).query(&[("redirect_uri", bad)]).send().await.unwrap();
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(crate::helpers::error_fields(&problem), ["redirect_uri"], "{bad}");
    }
}

/// Two first sign-ins of one person at once (two tabs, a double click on the consent
/// screen): the one that creates the account second finds its email taken by the first,
/// which has created the account and linked the identity meanwhile. It tries again and
/// signs in to that account, rather than answer 409 `email_taken`. The first is played
/// by hand, its transaction held open until the second waits on its email.
#[tokio::test]
async fn a_first_sign_in_that_loses_the_race_to_create_the_account_signs_in_to_the_winners() {
    let app = spawn_app().await;
    let email = Email::parse("racer@yandex.ru").unwrap();
    let identity = Identity {
        provider: Provider::Yandex,
        subject: "racer-1".into(),
        email: Some(email.clone()),
        email_verified: true,
        display_name: None,
        birth_date: None,
    };
    let mut first = app.db.begin().await.unwrap();
    let new = NewUser { email, email_verified: true, login: None, password_hash: None, birth_date: None, country: None, region: None };
    let winner = users::insert(&mut first, new).await.unwrap().unwrap();
    let second = tokio::spawn({
        let (db, identity) = (app.db.clone(), identity.clone());
        async move { linking::sign_in(&db, &identity).await }
    });
    until_a_session_waits_for_a_lock(&app.db).await;
    assert!(social::insert(&mut first, winner, &identity, true).await.unwrap().is_ok(), "the identity was free");
    first.commit().await.unwrap();
    let outcome = second.await.unwrap();
    assert!(matches!(outcome, Ok(SignIn::Linked(id)) if id == winner), "{outcome:?}");
    assert_eq!((user_count(&app).await, social_count(&app).await), (1, 1));
}
