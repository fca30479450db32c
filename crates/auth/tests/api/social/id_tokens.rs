//! Google's ID token is verified: signature by a published key, `iss`, `aud`, `exp`,
//! `nonce`. A token failing any of them is 502 `invalid_id_token`, and nothing is created.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use super::support::*;
use crate::helpers::{PASSWORD, assert_problem};

fn token_response(id_token: String) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"access_token": "at", "token_type": "Bearer", "expires_in": 3599, "id_token": id_token}))
}

#[tokio::test]
async fn id_tokens_that_do_not_verify_are_refused() {
    let stub = Stub::start(Kind::Google).await;
    let app = app_with(&[&stub], vec![]).await;
    let issuer = stub.server.uri();
    let person = Person::new("1001", "victim@gmail.com");
    let now = chrono::Utc::now().timestamp();

    type Forge = Box<dyn Fn(Value) -> String>;
    let signed = |edit: fn(&mut Value, i64)| -> Forge {
        Box::new(move |mut claims| {
            edit(&mut claims, now);
            id_token(&claims, GOOGLE_KEY, GOOGLE_KID)
        })
    };
    let cases: Vec<(&str, Forge)> = vec![
        ("wrong nonce", signed(|c, _| c["nonce"] = json!("not-the-nonce-we-sent"))),
        ("no nonce", signed(|c, _| drop(c.as_object_mut().unwrap().remove("nonce")))),
        ("wrong audience", signed(|c, _| c["aud"] = json!("another-client"))),
        (
            "expired",
            signed(|c, now| {
                c["iat"] = json!(now - 7200);
                c["exp"] = json!(now - 3600);
            }),
        ),
        ("wrong issuer", signed(|c, _| c["iss"] = json!("https://accounts.evil.example"))),
        ("azp of another client", signed(|c, _| c["azp"] = json!("another-client"))),
        ("no exp", signed(|c, _| drop(c.as_object_mut().unwrap().remove("exp")))),
        // jsonwebtoken ignores `iat` among required claims, and accepts any `aud` list
        // that includes us, and an `iss` array that includes the issuer.
        ("no iat", signed(|c, _| drop(c.as_object_mut().unwrap().remove("iat")))),
        ("iat not a number", signed(|c, _| c["iat"] = json!("yesterday"))),
        ("iat in the future", signed(|c, now| c["iat"] = json!(now + 3600))),
        ("another audience besides us", signed(|c, _| c["aud"] = json!([c["aud"].clone(), json!("another-client")]))),
        (
            "another audience besides us, azp ours",
            signed(|c, _| {
                c["azp"] = c["aud"].clone();
                c["aud"] = json!([c["aud"].clone(), json!("another-client")]);
            }),
        ),
        ("issuer in an array", signed(|c, _| c["iss"] = json!(["https://accounts.evil.example", c["iss"].clone()]))),
        // Signed by a key that is not published, under the published key's id.
        ("bad signature", Box::new(|claims| id_token(&claims, FORGER_KEY, GOOGLE_KID))),
        ("unknown key id", Box::new(|claims| id_token(&claims, FORGER_KEY, "forger-key"))),
        // A valid token whose payload was changed after signing.
        (
            "tampered payload",
            Box::new(|claims| {
                let token = id_token(&claims, GOOGLE_KEY, GOOGLE_KID);
                let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
                let mut payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
                payload["sub"] = json!("someone-else");
                parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
                parts.join(".")
            }),
        ),
        (
            "alg none",
            Box::new(|claims| {
                let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"test-key-1"}"#);
                format!("{header}.{}.", URL_SAFE_NO_PAD.encode(claims.to_string()))
            }),
        ),
        // HS256 keyed with the public key, the classic algorithm confusion.
        (
            "hs256",
            Box::new(|claims| {
                let mut header = Header::new(Algorithm::HS256);
                header.kid = Some(GOOGLE_KID.to_owned());
                let secret = jwks(GOOGLE_KEY, GOOGLE_KID)["keys"][0]["n"].as_str().unwrap().to_owned();
                jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
            }),
        ),
        ("not a jwt", Box::new(|_| "not.a.jwt".to_owned())),
    ];
    for (i, (case, forge)) in cases.iter().enumerate() {
        let flow = authorize(&app, "google", None).await;
        let code = format!("code-{i}");
        let claims = google_claims(&issuer, &person, &flow.param("nonce"));
        stub.token_answers(&flow, &code, token_response(forge(claims))).await;
        let response = callback(&app, &flow, &code).await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{case}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "invalid_id_token", "{case}: {problem}");
    }
    assert_eq!(user_count(&app).await, 0);
    assert_eq!(social_count(&app).await, 0);

    // The same flow with an honest token works, so the cases above failed for their reason.
    let access = sign_in(&app, &stub, &person, "honest").await;
    assert_eq!(me(&app, &access).await["email"], "victim@gmail.com");
}

#[tokio::test]
async fn an_unverified_email_never_links_to_the_existing_account() {
    let (stub, yandex) = (Stub::start(Kind::Google).await, Stub::start(Kind::Yandex).await);
    let app = app_with(&[&stub, &yandex], vec![]).await;
    // An account whose address Yandex proved: a verified email would link to it.
    let owner_access = sign_in(&app, &yandex, &Person::new("ya-1", "owner@gmail.com"), "first").await;
    let mut impostor = Person::new("2002", "Owner@gmail.com");
    impostor.email_verified = false;

    let flow = authorize(&app, "google", None).await;
    stub.expect_sign_in(&flow, "c", &impostor).await;
    let problem = assert_problem(callback(&app, &flow, "c").await, StatusCode::CONFLICT, "email_taken").await;
    assert!(problem["detail"].as_str().unwrap().contains("link the provider from your profile"), "{problem}");
    assert_eq!(social_count(&app).await, 1);
    assert_eq!(user_count(&app).await, 1);
    // The owner's account is untouched.
    let linked: Value = app.get_with("/api/v1/users/me/social", &owner_access).await.json().await.unwrap();
    assert_eq!(linked.as_array().unwrap().len(), 1, "{linked}");
}

#[tokio::test]
async fn a_verified_email_links_to_an_account_whose_address_a_provider_proved() {
    let (stub, yandex) = (Stub::start(Kind::Google).await, Stub::start(Kind::Yandex).await);
    let app = app_with(&[&stub, &yandex], vec![]).await;
    let first = sign_in(&app, &yandex, &Person::new("ya-1", "owner@gmail.com"), "first").await;
    let access = sign_in(&app, &stub, &Person::new("3003", "OWNER@gmail.com"), "c").await;
    assert_eq!(me(&app, &access).await["id"], me(&app, &first).await["id"]);
    assert_eq!(user_count(&app).await, 1);
    assert_eq!(social_count(&app).await, 2);
    assert_eq!(history_methods(&app, &access).await, ["google", "yandex"], "newest first");
}

#[tokio::test]
async fn a_password_sign_up_does_not_prove_its_address() {
    let stub = Stub::start(Kind::Google).await;
    let app = app_with(&[&stub], vec![]).await;
    // Whoever signs up first with an address and a password does not get the sign-in
    // of the address's owner at a provider, nor the owner theirs.
    app.signup("owner@gmail.com").await;
    let flow = authorize(&app, "google", None).await;
    stub.expect_sign_in(&flow, "c", &Person::new("3003", "owner@gmail.com")).await;
    assert_problem(callback(&app, &flow, "c").await, StatusCode::CONFLICT, "email_taken").await;
    assert_eq!(social_count(&app).await, 0);
    assert_eq!(user_count(&app).await, 1);
    assert_eq!(app.login("owner@gmail.com", PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_account_made_from_an_unverified_email_is_not_linked_by_that_email() {
    let (stub, yandex) = (Stub::start(Kind::Google).await, Stub::start(Kind::Yandex).await);
    let app = app_with(&[&stub, &yandex], vec![]).await;
    // Someone puts the victim's address on their account at a provider that does not vouch for it.
    let mut attacker = Person::new("6666", "victim@yandex.ru");
    attacker.email_verified = false;
    let attacker_access = sign_in(&app, &stub, &attacker, "c").await;
    assert_eq!(me(&app, &attacker_access).await["email"], "victim@yandex.ru");
    // The address's owner, whose provider vouches for it, is not let into that account.
    let flow = authorize(&app, "yandex", None).await;
    yandex.expect_sign_in(&flow, "owner", &Person::new("ya-1", "victim@yandex.ru")).await;
    assert_problem(callback(&app, &flow, "owner").await, StatusCode::CONFLICT, "email_taken").await;
    assert_eq!(social_count(&app).await, 1);
    let linked: Value = app.get_with("/api/v1/users/me/social", &attacker_access).await.json().await.unwrap();
    assert_eq!(linked.as_array().unwrap().len(), 1, "{linked}");
}

#[tokio::test]
async fn a_changed_email_is_not_proven_by_the_old_one() {
    let (stub, yandex) = (Stub::start(Kind::Google).await, Stub::start(Kind::Yandex).await);
    let app = app_with(&[&stub, &yandex], vec![]).await;
    let access = sign_in(&app, &yandex, &Person::new("ya-1", "first@yandex.ru"), "first").await;
    let response =
        app.client.patch(app.url("/api/v1/users/me")).bearer_auth(&access).json(&json!({"email": "second@gmail.com"})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let flow = authorize(&app, "google", None).await;
    stub.expect_sign_in(&flow, "c", &Person::new("3003", "second@gmail.com")).await;
    assert_problem(callback(&app, &flow, "c").await, StatusCode::CONFLICT, "email_taken").await;
    assert_eq!(social_count(&app).await, 1);
}

#[tokio::test]
async fn an_unverified_email_of_nobody_creates_an_account() {
    let stub = Stub::start(Kind::Google).await;
    let app = app_with(&[&stub], vec![]).await;
    let mut person = Person::new("4004", "fresh@example.com");
    person.email_verified = false;
    let access = sign_in(&app, &stub, &person, "c").await;
    assert_eq!(me(&app, &access).await["email"], "fresh@example.com");
}
