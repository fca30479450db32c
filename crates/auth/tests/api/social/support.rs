//! Local stand-ins for the providers, speaking each one's documented wire format
//! (docs/oauth.md), and helpers that walk a browser through a flow.
//!
//! A stand-in checks what a real provider checks: client credentials in the place
//! the provider expects them, the redirect address, and the PKCE verifier against the
//! challenge our authorize redirect carried. Only the exchanges a test mounts answer.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use url::Url;
use wiremock::{
    Match, Mock, MockServer, Request, Respond, ResponseTemplate,
    matchers::{header, method, path, query_param},
};

use crate::helpers::{DESKTOP_UA, TestApp};

pub const CLIENT_ID: &str = "cinema-test-client";
pub const CLIENT_SECRET: &str = "cinema-test-secret";
/// The front-end address on the allow-list of every test app.
pub const FRONTEND: &str = "http://127.0.0.1:3000/auth/done";
/// `AUTH_PUBLIC_URL` of every test app: what the callback address is built from.
pub const PUBLIC_URL: &str = "https://cinema.example";
pub const GOOGLE_KID: &str = "test-key-1";
pub const GOOGLE_KEY: &[u8] = include_bytes!("keys/google-test.pem");
pub const FORGER_KEY: &[u8] = include_bytes!("keys/forger.pem");

/// A browser: never follows redirects, so each hop can be checked.
pub fn browser() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().user_agent(DESKTOP_UA).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Yandex,
    Vk,
    Google,
    /// oauth.mail.ru
    Mailru,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Yandex => "yandex",
            Kind::Vk => "vk",
            Kind::Google => "google",
            Kind::Mailru => "mailru",
        }
    }
}

/// A person at a provider.
#[derive(Clone, Debug)]
pub struct Person {
    pub id: String,
    pub email: Option<String>,
    pub email_verified: bool,
}

impl Person {
    pub fn new(id: &str, email: &str) -> Self {
        Self { id: id.to_owned(), email: Some(email.to_owned()), email_verified: true }
    }
}

pub struct Stub {
    pub kind: Kind,
    pub server: MockServer,
}

impl Stub {
    pub async fn start(kind: Kind) -> Self {
        let server = MockServer::start().await;
        if kind == Kind::Google {
            let issuer = server.uri();
            Mock::given(method("GET"))
                .and(path("/.well-known/openid-configuration"))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                    "issuer": issuer,
                    "authorization_endpoint": format!("{issuer}/o/oauth2/v2/auth"),
                    "token_endpoint": format!("{issuer}/token"),
                    "userinfo_endpoint": format!("{issuer}/v1/userinfo"),
                    "jwks_uri": format!("{issuer}/oauth2/v3/certs"),
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "code_challenge_methods_supported": ["plain", "S256"],
                })))
                .mount(&server)
                .await;
            Mock::given(method("GET"))
                .and(path("/oauth2/v3/certs"))
                .respond_with(ResponseTemplate::new(200).set_body_json(jwks(GOOGLE_KEY, GOOGLE_KID)))
                .mount(&server)
                .await;
        }
        Self { kind, server }
    }

    /// The settings that point the app at this stand-in.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        let uri = self.server.uri();
        let at = |p: &str| format!("{uri}{p}");
        match self.kind {
            Kind::Yandex => vec![
                ("OAUTH_YANDEX_CLIENT_ID", CLIENT_ID.into()),
                ("OAUTH_YANDEX_CLIENT_SECRET", CLIENT_SECRET.into()),
                ("OAUTH_YANDEX_AUTH_URL", at("/authorize")),
                ("OAUTH_YANDEX_TOKEN_URL", at("/token")),
                ("OAUTH_YANDEX_USERINFO_URL", at("/info")),
            ],
            Kind::Vk => vec![
                ("OAUTH_VK_CLIENT_ID", CLIENT_ID.into()),
                ("OAUTH_VK_CLIENT_SECRET", CLIENT_SECRET.into()),
                ("OAUTH_VK_AUTH_URL", at("/authorize")),
                ("OAUTH_VK_TOKEN_URL", at("/oauth2/auth")),
                ("OAUTH_VK_USERINFO_URL", at("/oauth2/user_info")),
            ],
            Kind::Google => {
                vec![("OAUTH_GOOGLE_CLIENT_ID", CLIENT_ID.into()), ("OAUTH_GOOGLE_CLIENT_SECRET", CLIENT_SECRET.into()), ("OAUTH_GOOGLE_ISSUER", uri)]
            }
            Kind::Mailru => vec![
                ("OAUTH_MAILRU_CLIENT_ID", CLIENT_ID.into()),
                ("OAUTH_MAILRU_CLIENT_SECRET", CLIENT_SECRET.into()),
                ("OAUTH_MAILRU_AUTH_URL", at("/login")),
                ("OAUTH_MAILRU_TOKEN_URL", at("/token")),
                ("OAUTH_MAILRU_USERINFO_URL", at("/userinfo")),
            ],
        }
    }

    fn token_path(&self) -> &'static str {
        match self.kind {
            Kind::Vk => "/oauth2/auth",
            _ => "/token",
        }
    }

    /// Answers one code exchange for `code` with `response`, checking the client
    /// credentials and PKCE the provider documents.
    pub async fn token_answers(&self, flow: &Started, code: &str, response: ResponseTemplate) {
        let mock = Mock::given(method("POST"))
            .and(path(self.token_path()))
            .and(Form::has(&[("grant_type", "authorization_code"), ("code", code)]))
            .and(Pkce(flow.param("code_challenge")));
        let callback = flow.callback_url.clone();
        let mock = match self.kind {
            Kind::Yandex => mock.and(Form::has(&[("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)])),
            Kind::Vk => {
                mock.and(Form::has(&[("client_id", CLIENT_ID), ("redirect_uri", &callback), ("device_id", VK_DEVICE_ID)])).and(Form::present("state"))
            }
            Kind::Google => mock.and(Form::has(&[("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET), ("redirect_uri", &callback)])),
            Kind::Mailru => mock
                .and(header("authorization", format!("Basic {}", base64(&format!("{CLIENT_ID}:{CLIENT_SECRET}"))).as_str()))
                .and(Form::has(&[("redirect_uri", &callback)])),
        };
        mock.respond_with(response).up_to_n_times(1).expect(1).mount(&self.server).await;
    }

    /// The whole happy exchange for `person`: token, then user info (or the ID token).
    pub async fn expect_sign_in(&self, flow: &Started, code: &str, person: &Person) {
        let access_token = format!("at-{code}");
        match self.kind {
            Kind::Yandex => {
                let token = json!({"token_type": "bearer", "access_token": access_token, "expires_in": 31536000, "refresh_token": "rt"});
                self.token_answers(flow, code, ResponseTemplate::new(200).set_body_json(token)).await;
                let mut info = json!({
                    "id": person.id, "login": "ivan.petrov", "client_id": CLIENT_ID, "psuid": "1.AAA",
                    "first_name": "Ivan", "last_name": "Petrov", "display_name": "ivan.petrov", "real_name": "Ivan Petrov",
                    "sex": "male", "birthday": "1990-05-17",
                });
                if let Some(email) = &person.email {
                    info["default_email"] = json!(email);
                    info["emails"] = json!([email]);
                }
                Mock::given(method("GET"))
                    .and(path("/info"))
                    .and(query_param("format", "json"))
                    .and(header("authorization", format!("OAuth {access_token}").as_str()))
                    .respond_with(ResponseTemplate::new(200).set_body_json(info))
                    .up_to_n_times(1)
                    .expect(1)
                    .mount(&self.server)
                    .await;
            }
            Kind::Vk => {
                self.vk_token(flow, code, &access_token, person).await;
                self.vk_user_info(&access_token, person).await;
            }
            Kind::Google => {
                let claims = google_claims(&self.server.uri(), person, &flow.param("nonce"));
                let token = json!({"access_token": access_token, "expires_in": 3599, "token_type": "Bearer",
                    "scope": "openid email profile", "id_token": id_token(&claims, GOOGLE_KEY, GOOGLE_KID)});
                self.token_answers(flow, code, ResponseTemplate::new(200).set_body_json(token)).await;
            }
            Kind::Mailru => {
                let token = json!({"access_token": access_token, "refresh_token": "rt", "expires_in": 3600});
                self.token_answers(flow, code, ResponseTemplate::new(200).set_body_json(token)).await;
                let mut info = json!({
                    "id": person.id, "client_id": CLIENT_ID, "name": "Ivan Petrov", "first_name": "Ivan", "last_name": "Petrov",
                    "nickname": "ivan", "gender": "m", "birthday": "17.05.1990", "locale": "ru_RU", "image": "https://filin.mail.ru/pic",
                });
                if let Some(email) = &person.email {
                    info["email"] = json!(email);
                }
                Mock::given(method("GET"))
                    .and(path("/userinfo"))
                    .and(query_param("access_token", access_token.as_str()))
                    .respond_with(ResponseTemplate::new(200).set_body_json(info))
                    .up_to_n_times(1)
                    .expect(1)
                    .mount(&self.server)
                    .await;
            }
        }
    }

    async fn vk_token(&self, flow: &Started, code: &str, access_token: &str, person: &Person) {
        let user_id: u64 = person.id.parse().expect("VK ids are numbers");
        Mock::given(method("POST"))
            .and(path("/oauth2/auth"))
            .and(Form::has(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("client_id", CLIENT_ID),
                ("device_id", VK_DEVICE_ID),
                ("redirect_uri", &flow.callback_url),
            ]))
            .and(Form::present("state"))
            .and(Pkce(flow.param("code_challenge")))
            .respond_with(VkToken { access_token: access_token.to_owned(), user_id })
            .up_to_n_times(1)
            .expect(1)
            .mount(&self.server)
            .await;
    }

    async fn vk_user_info(&self, access_token: &str, person: &Person) {
        let mut user = json!({
            "user_id": person.id, "first_name": "Ivan", "last_name": "Petrov", "phone": "79*******00",
            "avatar": "https://sun.userapi.com/a.jpg", "sex": 2, "verified": false, "birthday": "17.05.1990",
        });
        if let Some(email) = &person.email {
            user["email"] = json!(email);
        }
        Mock::given(method("POST"))
            .and(path("/oauth2/user_info"))
            .and(Form::has(&[("client_id", CLIENT_ID), ("access_token", access_token)]))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "user": user })))
            .up_to_n_times(1)
            .expect(1)
            .mount(&self.server)
            .await;
    }

    /// Fails the test if any exchange reached the stand-in.
    pub async fn expect_no_exchange(&self) {
        Mock::given(method("POST")).respond_with(ResponseTemplate::new(500)).expect(0).mount(&self.server).await;
    }
}

pub const VK_DEVICE_ID: &str = "dev-5f8c0a7e";

/// VK ID's token answer echoes the `state` of the exchange request.
struct VkToken {
    access_token: String,
    user_id: u64,
}

impl Respond for VkToken {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let state = form(request).remove("state").unwrap_or_default();
        ResponseTemplate::new(200).set_body_json(json!({
            "access_token": self.access_token, "refresh_token": "rt", "id_token": "eyJ.x.y", "token_type": "Bearer",
            "expires_in": 3600, "user_id": self.user_id, "state": state, "scope": "vkid.personal_info email",
        }))
    }
}

fn form(request: &Request) -> HashMap<String, String> {
    url::form_urlencoded::parse(&request.body).into_owned().collect()
}

/// The form body has these pairs.
pub struct Form(Vec<(String, String)>, Vec<String>);

impl Form {
    pub fn has(pairs: &[(&str, &str)]) -> Self {
        Self(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), Vec::new())
    }

    pub fn present(name: &str) -> Self {
        Self(Vec::new(), vec![name.to_owned()])
    }
}

impl Match for Form {
    fn matches(&self, request: &Request) -> bool {
        let body = form(request);
        self.0.iter().all(|(k, v)| body.get(k) == Some(v)) && self.1.iter().all(|k| body.get(k).is_some_and(|v| !v.is_empty()))
    }
}

/// The form's `code_verifier` hashes (S256) to the challenge sent at authorize.
pub struct Pkce(pub String);

impl Match for Pkce {
    fn matches(&self, request: &Request) -> bool {
        use sha2::Digest;
        let Some(verifier) = form(request).remove("code_verifier") else { return false };
        let ok_chars = verifier.chars().all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c));
        let digest = sha2::Sha256::digest(verifier.as_bytes());
        ok_chars && (43..=128).contains(&verifier.len()) && base64url(&digest) == self.0
    }
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The public half of a test key as a JWKS.
pub fn jwks(private_pem: &[u8], kid: &str) -> Value {
    let key = EncodingKey::from_rsa_pem(private_pem).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
    json!({ "keys": [jwk] })
}

/// Google's ID token claims for `person`, valid for our client, this issuer and nonce.
pub fn google_claims(issuer: &str, person: &Person, nonce: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "iss": issuer, "azp": CLIENT_ID, "aud": CLIENT_ID, "sub": person.id,
        "at_hash": "HK6E_P6Dh8Y93mRNtsDB1Q", "name": "Ivan Petrov", "given_name": "Ivan", "family_name": "Petrov",
        "locale": "ru", "iat": now, "exp": now + 3600, "nonce": nonce,
    });
    if let Some(email) = &person.email {
        claims["email"] = json!(email);
        claims["email_verified"] = json!(person.email_verified);
    }
    claims
}

pub fn id_token(claims: &Value, private_pem: &[u8], kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_pem(private_pem).unwrap()).unwrap()
}

/// A flow started at `/authorize`, as the browser sees it.
pub struct Started {
    pub provider: &'static str,
    /// The provider address the browser was sent to.
    pub location: Url,
    /// `__Host-oauth_browser=…`, to send back on the callback.
    pub cookie: String,
    pub callback_url: String,
}

impl Started {
    pub fn param(&self, name: &str) -> String {
        self.location.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap_or_default()
    }

    pub fn state(&self) -> String {
        self.param("state")
    }
}

/// Reads a started flow off a 302 (authorize) or a 200 `{authorization_url}` (link).
pub async fn started(provider: &'static str, response: Response) -> Started {
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    let attributes: Vec<&str> = cookie.split("; ").collect();
    // AUTH_PUBLIC_URL is https in tests: a `__Host-` cookie, which only a secure origin
    // can set (Secure, Path=/, no Domain).
    assert!(attributes[0].starts_with("__Host-oauth_browser="), "{cookie}");
    for expected in ["HttpOnly", "SameSite=Lax", "Path=/", "Secure"] {
        assert!(attributes.contains(&expected), "{expected} missing: {cookie}");
    }
    assert!(!cookie.to_ascii_lowercase().contains("domain="), "{cookie}");
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let location = if response.status() == StatusCode::FOUND {
        response.headers()["location"].to_str().unwrap().to_owned()
    } else {
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["authorization_url"].as_str().unwrap().to_owned()
    };
    Started { provider, location: Url::parse(&location).unwrap(), cookie, callback_url: format!("{PUBLIC_URL}/api/v1/oauth/{provider}/callback") }
}

pub async fn authorize(app: &TestApp, provider: &'static str, redirect_uri: Option<&str>) -> Started {
    let mut url = Url::parse(&app.url(&format!("/api/v1/oauth/{provider}/authorize"))).unwrap();
    if let Some(r) = redirect_uri {
        url.query_pairs_mut().append_pair("redirect_uri", r);
    }
    let response = browser().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND, "{:?}", response.text().await);
    started(provider, response).await
}

/// The provider's redirect back to our callback, from the browser that started the flow.
pub async fn callback(app: &TestApp, flow: &Started, code: &str) -> Response {
    let mut query = vec![("code", code.to_owned()), ("state", flow.state())];
    // VK ID (also Mail.ru through it) adds the device id to its redirect.
    if flow.param("code_challenge_method") == "s256" {
        query.push(("device_id", VK_DEVICE_ID.to_owned()));
    }
    callback_with(app, flow.provider, &query, Some(&flow.cookie)).await
}

pub async fn callback_with(app: &TestApp, provider: &str, query: &[(&str, String)], cookie: Option<&str>) -> Response {
    let mut request = browser().get(app.url(&format!("/api/v1/oauth/{provider}/callback"))).query(query);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.unwrap()
}

/// A full sign-in; returns the access token.
pub async fn sign_in(app: &TestApp, stub: &Stub, person: &Person, code: &str) -> String {
    let flow = authorize(app, stub.kind.name(), None).await;
    stub.expect_sign_in(&flow, code, person).await;
    let response = callback(app, &flow, code).await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.text().await);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

pub async fn user_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&app.db).await.unwrap()
}

pub async fn social_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM social_accounts").fetch_one(&app.db).await.unwrap()
}

pub async fn me(app: &TestApp, access: &str) -> Value {
    let response = app.get_with("/api/v1/users/me", access).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// An app with these stand-ins enabled, `AUTH_PUBLIC_URL` and the front-end allow-list set.
pub async fn app_with(stubs: &[&Stub], extra: Vec<(&'static str, String)>) -> TestApp {
    spawn(None, stubs, extra).await
}

/// A fresh name for a database that two apps of one test share (`app_on`).
pub fn shared_database() -> String {
    format!("auth_test_{}", uuid::Uuid::new_v4().simple())
}

/// Like `app_with`, on `database`, which another app of the test may use too: the same
/// accounts under other settings, as after a restart. The first app to end drops it.
pub async fn app_on(database: &str, stubs: &[&Stub], extra: Vec<(&'static str, String)>) -> TestApp {
    spawn(Some(database.to_owned()), stubs, extra).await
}

async fn spawn(database: Option<String>, stubs: &[&Stub], extra: Vec<(&'static str, String)>) -> TestApp {
    let mut vars = vec![("AUTH_PUBLIC_URL", PUBLIC_URL.to_owned()), ("OAUTH_FRONTEND_REDIRECT_URIS", format!("https://other.example/x,{FRONTEND}"))];
    for stub in stubs {
        vars.extend(stub.vars());
    }
    vars.extend(extra);
    crate::helpers::spawn_app_with(crate::helpers::Options { extra_vars: vars, database, ..Default::default() }).await
}

/// The user's login history, newest first, as `method` or `method:failure_reason`.
pub async fn history_methods(app: &TestApp, access: &str) -> Vec<String> {
    let page: Value = app.get_with("/api/v1/users/me/login-history", access).await.json().await.unwrap();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| match i["failure_reason"].as_str() {
            None => i["method"].as_str().unwrap().to_owned(),
            Some(reason) => format!("{}:{reason}", i["method"].as_str().unwrap()),
        })
        .collect()
}
