//! Forged and altered access tokens are all refused with 401 invalid_token.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{
    SigningKey,
    pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app};

/// The claims of a valid token of a live session, to be re-signed by the attacker.
async fn genuine_claims(app: &TestApp) -> (Value, String) {
    let (_, tokens) = app.signed_in_user().await;
    let payload = tokens.access.split('.').nth(1).unwrap();
    (serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap(), tokens.access)
}

fn kid(app: &TestApp) -> String {
    app.state.tokens.keys().signing().0.to_owned()
}

fn our_key(app: &TestApp) -> SigningKey {
    SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&app.key_file).unwrap()).unwrap()
}

fn sign_ed(key: &SigningKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    let der = key.to_pkcs8_der().unwrap();
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap()
}

async fn assert_refused(app: &TestApp, token: &str) {
    let response = app.get_with("/api/v1/users/me", token).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    assert_eq!(app.introspect(token).await, json!({"active": false}));
}

#[tokio::test]
async fn a_genuine_token_is_accepted_so_the_refusals_below_mean_something() {
    let app = spawn_app().await;
    let (claims, genuine) = genuine_claims(&app).await;
    assert_eq!(app.get_with("/api/v1/users/me", &genuine).await.status(), StatusCode::OK);
    // Re-signing the same claims with our own key is accepted too.
    let resigned = sign_ed(&our_key(&app), &kid(&app), &claims);
    assert_eq!(app.get_with("/api/v1/users/me", &resigned).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_token_signed_by_another_key_is_refused() {
    let app = spawn_app().await;
    let (claims, _) = genuine_claims(&app).await;
    let attacker = SigningKey::generate(&mut rand::rngs::OsRng);
    assert_refused(&app, &sign_ed(&attacker, &kid(&app), &claims)).await;
}

#[tokio::test]
async fn an_alg_none_token_is_refused() {
    let app = spawn_app().await;
    let (claims, _) = genuine_claims(&app).await;
    for alg in ["none", "None", "NONE"] {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "typ": "JWT", "kid": kid(&app)}).to_string());
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        assert_refused(&app, &format!("{header}.{payload}.")).await;
    }
}

#[tokio::test]
async fn an_hs256_token_keyed_with_our_public_key_is_refused() {
    let app = spawn_app().await;
    let (claims, _) = genuine_claims(&app).await;
    let public = our_key(&app).verifying_key();
    let jwks: Value = app.client.get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let secrets: Vec<Vec<u8>> = vec![
        public.to_public_key_pem(LineEnding::LF).unwrap().into_bytes(),
        public.as_bytes().to_vec(),
        jwks["keys"][0]["x"].as_str().unwrap().as_bytes().to_vec(),
        jwks.to_string().into_bytes(),
    ];
    for secret in secrets {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid(&app));
        let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret)).unwrap();
        assert_refused(&app, &token).await;
    }
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let app = spawn_app().await;
    let (mut claims, _) = genuine_claims(&app).await;
    let now = chrono::Utc::now().timestamp();
    claims["iat"] = json!(now - 1000);
    claims["exp"] = json!(now - 1);
    assert_refused(&app, &sign_ed(&our_key(&app), &kid(&app), &claims)).await;
}

/// RFC 7519 §4.1.4: not on or after `exp`. jsonwebtoken's own check (`exp < now`)
/// accepted a token for the whole second of its `exp`.
#[tokio::test]
async fn a_token_is_refused_from_the_second_of_its_exp() {
    let app = spawn_app().await;
    let (mut claims, _) = genuine_claims(&app).await;
    let now = chrono::Utc::now().timestamp();
    claims["iat"] = json!(now - 1000);
    claims["exp"] = json!(now);
    assert_refused(&app, &sign_ed(&our_key(&app), &kid(&app), &claims)).await;
}

/// RFC 7519 §4.1.5: not before `nbf`. Auth's tokens carry none; one that does is held
/// to it.
#[tokio::test]
async fn a_token_before_its_nbf_is_refused() {
    let app = spawn_app().await;
    let (mut claims, _) = genuine_claims(&app).await;
    claims["nbf"] = json!(chrono::Utc::now().timestamp() + 600);
    assert_refused(&app, &sign_ed(&our_key(&app), &kid(&app), &claims)).await;
}

/// RFC 7515 §4.1.11: a header naming critical extensions Auth does not understand
/// (any) is refused, even signed by our key.
#[tokio::test]
async fn a_token_with_critical_header_extensions_is_refused() {
    let app = spawn_app().await;
    let (claims, _) = genuine_claims(&app).await;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid(&app));
    header.crit = Some(vec!["exp-ext".into()]);
    let der = our_key(&app).to_pkcs8_der().unwrap();
    let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap();
    assert_refused(&app, &token).await;
}

#[tokio::test]
async fn a_tampered_payload_is_refused() {
    let app = spawn_app().await;
    let (mut claims, genuine) = genuine_claims(&app).await;
    claims["roles"] = json!(["admin"]);
    let mut parts: Vec<String> = genuine.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    assert_refused(&app, &parts.join(".")).await;
}

#[tokio::test]
async fn tokens_for_another_audience_or_issuer_or_without_a_kid_are_refused() {
    let app = spawn_app().await;
    let (claims, _) = genuine_claims(&app).await;
    let key = our_key(&app);
    for (field, value) in [("aud", "another-service"), ("iss", "evil-issuer")] {
        let mut forged = claims.clone();
        forged[field] = json!(value);
        assert_refused(&app, &sign_ed(&key, &kid(&app), &forged)).await;
    }
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = None;
    let der = key.to_pkcs8_der().unwrap();
    let no_kid = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap();
    assert_refused(&app, &no_kid).await;
}

#[tokio::test]
async fn garbage_bearer_values_are_refused() {
    let app = spawn_app().await;
    for garbage in ["x", "a.b.c", "eyJhbGciOiJFZERTQSJ9..", &"A".repeat(5000)] {
        let response = app.get_with("/api/v1/users/me", garbage).await;
        assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
}
