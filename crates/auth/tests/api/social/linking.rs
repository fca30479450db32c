//! Linking from a signed-in account, unlinking, and the first password of an account
//! created through a provider.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::support::*;
use crate::helpers::{PASSWORD, TestApp, assert_problem, error_fields};

/// Starts linking `provider` for the holder of `access`.
async fn start_link(app: &TestApp, provider: &'static str, access: &str) -> Started {
    let response = browser().post(app.url(&format!("/api/v1/users/me/social/{provider}"))).bearer_auth(access).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    started(provider, response).await
}

/// A new user of `app` links through the Mail.ru button, asking to return to the front
/// end, and `stub` (the provider behind the button) signs `person` in: the callback's
/// answer, and the user's tokens.
async fn link_through_the_mailru_button_to_the_front_end(app: &TestApp, stub: &Stub, person: &Person) -> (reqwest::Response, crate::helpers::Tokens) {
    let (_, tokens) = app.signed_in_user().await;
    let response = browser()
        .post(app.url("/api/v1/users/me/social/mailru"))
        .query(&[("redirect_uri", FRONTEND)])
        .bearer_auth(&tokens.access)
        .send()
        .await
        .unwrap();
    let flow = started("mailru", response).await;
    stub.expect_sign_in(&flow, "c", person).await;
    (callback(app, &flow, "c").await, tokens)
}

async fn linked(app: &TestApp, access: &str) -> Value {
    app.get_with("/api/v1/users/me/social", access).await.json().await.unwrap()
}

async fn unlink(app: &TestApp, provider: &str, access: &str) -> reqwest::Response {
    app.send(Method::DELETE, &format!("/api/v1/users/me/social/{provider}"), Some(access), None).await
}

async fn set_password(app: &TestApp, access: &str, body: Value) -> reqwest::Response {
    app.client.put(app.url("/api/v1/users/me/password")).bearer_auth(access).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn a_signed_in_user_links_an_account_and_then_signs_in_with_it() {
    let stub = Stub::start(Kind::Yandex).await;
    let app = app_with(&[&stub], vec![]).await;
    let (email, tokens) = app.signed_in_user().await;
    let person = Person::new("5550001", "someone.else@yandex.ru");

    let flow = start_link(&app, "yandex", &tokens.access).await;
    assert_eq!(flow.param("redirect_uri"), flow.callback_url);
    stub.expect_sign_in(&flow, "link", &person).await;
    let response = callback(&app, &flow, "link").await;
    assert_eq!(response.status(), StatusCode::OK);
    let account: Value = response.json().await.unwrap();
    assert_eq!(account["provider"], "yandex");
    assert_eq!(account["provider_user_id"], "5550001");
    assert_eq!(linked(&app, &tokens.access).await, json!([account]));

    // Sign-in through Yandex lands in the password account, whatever the emails.
    let access = sign_in(&app, &stub, &person, "after").await;
    assert_eq!(me(&app, &access).await["email"], email.as_str());
    assert_eq!(user_count(&app).await, 1);

    // Linking the same identity again is a no-op.
    let flow = start_link(&app, "yandex", &tokens.access).await;
    stub.expect_sign_in(&flow, "again", &person).await;
    assert_eq!(callback(&app, &flow, "again").await.status(), StatusCode::OK);
    assert_eq!(social_count(&app).await, 1);
}

#[tokio::test]
async fn linking_can_return_to_the_front_end() {
    let stub = Stub::start(Kind::Mailru).await;
    let app = app_with(&[&stub], vec![]).await;
    let (response, tokens) = link_through_the_mailru_button_to_the_front_end(&app, &stub, &Person::new("909", "x@mail.ru")).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()["location"], format!("{FRONTEND}?linked=mailru").as_str());
    assert_eq!(linked(&app, &tokens.access).await.as_array().unwrap().len(), 1);
}

/// Under `OAUTH_MAILRU_VIA_VKID` the Mail.ru button links a VK ID identity: the front
/// end hears the provider that was stored, as the list shows it.
#[tokio::test]
async fn linking_through_the_mailru_button_via_vk_id_reports_the_vk_link_it_made() {
    let vk = Stub::start(Kind::Vk).await;
    let app = app_with(&[&vk], vec![("OAUTH_MAILRU_VIA_VKID", "true".into())]).await;
    let (response, tokens) = link_through_the_mailru_button_to_the_front_end(&app, &vk, &Person::new("4242", "x@mail.ru")).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()["location"], format!("{FRONTEND}?linked=vk").as_str());
    assert_eq!(linked(&app, &tokens.access).await[0]["provider"], "vk");
}

#[tokio::test]
async fn an_identity_owned_by_someone_else_cannot_be_linked() {
    let stub = Stub::start(Kind::Vk).await;
    let app = app_with(&[&stub], vec![]).await;
    let owner = Person::new("31337", "owner@vk.example");
    let owners_access = sign_in(&app, &stub, &owner, "owner").await;

    let (_, intruder) = app.signed_in_user().await;
    let flow = start_link(&app, "vk", &intruder.access).await;
    stub.expect_sign_in(&flow, "steal", &owner).await;
    assert_problem(callback(&app, &flow, "steal").await, StatusCode::CONFLICT, "social_account_taken").await;
    assert_eq!(linked(&app, &intruder.access).await, json!([]));
    assert_eq!(linked(&app, &owners_access).await[0]["provider_user_id"], "31337");
}

#[tokio::test]
async fn a_second_account_of_the_same_provider_is_refused() {
    let stub = Stub::start(Kind::Google).await;
    let app = app_with(&[&stub], vec![]).await;
    let (_, tokens) = app.signed_in_user().await;
    for (i, id) in ["g-1", "g-2"].into_iter().enumerate() {
        let flow = start_link(&app, "google", &tokens.access).await;
        let code = format!("c{i}");
        stub.expect_sign_in(&flow, &code, &Person::new(id, &format!("{id}@gmail.com"))).await;
        let response = callback(&app, &flow, &code).await;
        if i == 0 {
            assert_eq!(response.status(), StatusCode::OK);
        } else {
            assert_problem(response, StatusCode::CONFLICT, "provider_already_linked").await;
        }
    }
    assert_eq!(social_count(&app).await, 1);
}

#[tokio::test]
async fn linking_needs_the_session_that_started_it_to_be_alive() {
    let stub = Stub::start(Kind::Yandex).await;
    let app = app_with(&[&stub], vec![]).await;
    let (_, tokens) = app.signed_in_user().await;
    let flow = start_link(&app, "yandex", &tokens.access).await;
    assert_eq!(app.post_with("/api/v1/auth/logout", &tokens.access).await.status(), StatusCode::NO_CONTENT);
    stub.expect_sign_in(&flow, "c", &Person::new("1", "a@yandex.ru")).await;
    assert_problem(callback(&app, &flow, "c").await, StatusCode::UNAUTHORIZED, "invalid_token").await;
    assert_eq!(social_count(&app).await, 0);
}

#[tokio::test]
async fn linking_requires_a_valid_token_and_an_enabled_provider() {
    let stub = Stub::start(Kind::Yandex).await;
    let app = app_with(&[&stub], vec![]).await;
    let response = browser().post(app.url("/api/v1/users/me/social/yandex")).send().await.unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let (_, tokens) = app.signed_in_user().await;
    let response = browser().post(app.url("/api/v1/users/me/social/vk")).bearer_auth(&tokens.access).send().await.unwrap();
    assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = browser()
        .post(app.url("/api/v1/users/me/social/yandex"))
        .query(&[("redirect_uri", "https://evil.example/")])
        .bearer_auth(&tokens.access)
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test]
async fn the_last_way_to_sign_in_cannot_be_unlinked_until_a_password_is_set() {
    let stub = Stub::start(Kind::Yandex).await;
    let app = app_with(&[&stub], vec![]).await;
    let access = sign_in(&app, &stub, &Person::new("8080", "only.social@yandex.ru"), "c").await;

    assert_problem(unlink(&app, "yandex", &access).await, StatusCode::CONFLICT, "last_sign_in_method").await;
    assert_eq!(social_count(&app).await, 1);
    assert_problem(unlink(&app, "google", &access).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_problem(unlink(&app, "facebook", &access).await, StatusCode::NOT_FOUND, "not_found").await;

    // No password yet: the first one is set without `current_password`, and sending
    // one is a mistake worth naming.
    let problem = assert_problem(
        set_password(&app, &access, json!({"current_password": "anything at all", "new_password": PASSWORD})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(error_fields(&problem), ["current_password"]);
    assert_eq!(set_password(&app, &access, json!({"new_password": PASSWORD})).await.status(), StatusCode::NO_CONTENT);
    // Exactly once: now the current password is required.
    let problem = assert_problem(
        set_password(&app, &access, json!({"new_password": "another good passphrase"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(error_fields(&problem), ["current_password"]);

    assert_eq!(unlink(&app, "yandex", &access).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(linked(&app, &access).await, json!([]));
    assert_eq!(app.login("only.social@yandex.ru", PASSWORD).await.status(), StatusCode::OK);
    // Unlinked: signing in through Yandex again finds the account by its verified email.
    let again = sign_in(&app, &stub, &Person::new("8080", "only.social@yandex.ru"), "back").await;
    assert_eq!(me(&app, &again).await["email"], "only.social@yandex.ru");
    assert_eq!(user_count(&app).await, 1);
}

#[tokio::test]
async fn with_two_identities_one_can_go_but_not_the_other() {
    let (yandex, vk) = (Stub::start(Kind::Yandex).await, Stub::start(Kind::Vk).await);
    let app = app_with(&[&yandex, &vk], vec![]).await;
    let access = sign_in(&app, &yandex, &Person::new("1", "two@yandex.ru"), "c").await;
    let flow = start_link(&app, "vk", &access).await;
    vk.expect_sign_in(&flow, "v", &Person::new("2", "two@vk.example")).await;
    assert_eq!(callback(&app, &flow, "v").await.status(), StatusCode::OK);

    assert_eq!(unlink(&app, "yandex", &access).await.status(), StatusCode::NO_CONTENT);
    assert_problem(unlink(&app, "vk", &access).await, StatusCode::CONFLICT, "last_sign_in_method").await;
    assert_eq!(linked(&app, &access).await[0]["provider"], "vk");
}

/// Links `person` of `stub`'s provider to the holder of `access`.
async fn link(app: &TestApp, stub: &Stub, person: &Person, code: &str, access: &str) {
    let flow = start_link(app, stub.kind.name(), access).await;
    stub.expect_sign_in(&flow, code, person).await;
    let response = callback(app, &flow, code).await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.text().await);
}

/// After the switch to `OAUTH_MAILRU_VIA_VKID` the Mail.ru button signs in VK ID
/// identities, and a `mailru` row from oauth.mail.ru is never looked up again: it is no
/// way in, and the account's VK ID identity is its last one.
#[tokio::test]
async fn a_mailru_identity_is_no_way_in_once_mailru_goes_through_vk_id() {
    let (mailru, vk) = (Stub::start(Kind::Mailru).await, Stub::start(Kind::Vk).await);
    let database = shared_database();
    let before = app_on(&database, &[&mailru, &vk], vec![]).await;
    let access = sign_in(&before, &mailru, &Person::new("555000", "legacy@mail.ru"), "m").await;
    let person = Person::new("777001", "legacy@vk.example");
    link(&before, &vk, &person, "v", &access).await;

    let after = app_on(&database, &[&vk], vec![("OAUTH_MAILRU_VIA_VKID", "true".into())]).await;
    let access = sign_in(&after, &vk, &person, "after").await;
    assert_problem(unlink(&after, "vk", &access).await, StatusCode::CONFLICT, "last_sign_in_method").await;
    // The dead identity may go; the live one still may not.
    assert_eq!(unlink(&after, "mailru", &access).await.status(), StatusCode::NO_CONTENT);
    assert_problem(unlink(&after, "vk", &access).await, StatusCode::CONFLICT, "last_sign_in_method").await;
    assert_eq!(linked(&after, &access).await[0]["provider"], "vk");
    // Still linked and signing in with Mail.ru through VK ID: the VK ID identity counts.
    let flow = authorize(&after, "mailru", None).await;
    vk.expect_sign_in(&flow, "via", &person).await;
    assert_eq!(callback(&after, &flow, "via").await.status(), StatusCode::OK);
}

/// An identity of a provider the deployment no longer enables signs no one in.
#[tokio::test]
async fn an_identity_of_a_disabled_provider_is_no_way_in() {
    let (yandex, vk) = (Stub::start(Kind::Yandex).await, Stub::start(Kind::Vk).await);
    let database = shared_database();
    let before = app_on(&database, &[&yandex, &vk], vec![]).await;
    let access = sign_in(&before, &yandex, &Person::new("1", "gone@yandex.ru"), "y").await;
    let person = Person::new("2", "gone@vk.example");
    link(&before, &vk, &person, "v", &access).await;

    let after = app_on(&database, &[&vk], vec![]).await;
    let access = sign_in(&after, &vk, &person, "after").await;
    assert_problem(unlink(&after, "vk", &access).await, StatusCode::CONFLICT, "last_sign_in_method").await;
    assert_eq!(linked(&after, &access).await.as_array().unwrap().len(), 2);
    // The disabled provider's identity can still be unlinked.
    assert_eq!(unlink(&after, "yandex", &access).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(linked(&after, &access).await[0]["provider"], "vk");
}

#[tokio::test]
async fn concurrent_unlinks_of_the_last_two_identities_leave_one() {
    let (yandex, vk) = (Stub::start(Kind::Yandex).await, Stub::start(Kind::Vk).await);
    let app = app_with(&[&yandex, &vk], vec![]).await;
    let access = sign_in(&app, &yandex, &Person::new("1", "race@yandex.ru"), "c").await;
    let flow = start_link(&app, "vk", &access).await;
    vk.expect_sign_in(&flow, "v", &Person::new("2", "race@vk.example")).await;
    assert_eq!(callback(&app, &flow, "v").await.status(), StatusCode::OK);

    let (a, b) = tokio::join!(unlink(&app, "yandex", &access), unlink(&app, "vk", &access));
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::NO_CONTENT, StatusCode::CONFLICT]);
    assert_eq!(social_count(&app).await, 1);
}

#[tokio::test]
async fn a_password_account_may_unlink_its_only_identity() {
    let stub = Stub::start(Kind::Google).await;
    let app = app_with(&[&stub], vec![]).await;
    let (_, tokens) = app.signed_in_user().await;
    let flow = start_link(&app, "google", &tokens.access).await;
    stub.expect_sign_in(&flow, "c", &Person::new("g", "g@gmail.com")).await;
    assert_eq!(callback(&app, &flow, "c").await.status(), StatusCode::OK);
    assert_eq!(unlink(&app, "google", &tokens.access).await.status(), StatusCode::NO_CONTENT);
    assert_problem(unlink(&app, "google", &tokens.access).await, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn linking_a_verified_identity_of_the_accounts_address_proves_it() {
    let (google, yandex) = (Stub::start(Kind::Google).await, Stub::start(Kind::Yandex).await);
    let app = app_with(&[&google, &yandex], vec![]).await;
    let owner = app.signup("owner@yandex.ru").await;
    let owners_google = Person::new("g-1", "owner@yandex.ru");
    // A sign-up proves nothing, so Google's verified address does not link yet.
    let flow = authorize(&app, "google", None).await;
    google.expect_sign_in(&flow, "before", &owners_google).await;
    assert_problem(callback(&app, &flow, "before").await, StatusCode::CONFLICT, "email_taken").await;
    // Signed in with the password, the owner links Yandex, which vouches for the same address.
    let tokens = app.sign_in("owner@yandex.ru").await;
    let flow = start_link(&app, "yandex", &tokens.access).await;
    yandex.expect_sign_in(&flow, "link", &Person::new("ya-1", "owner@yandex.ru")).await;
    assert_eq!(callback(&app, &flow, "link").await.status(), StatusCode::OK);
    // Now the address is proven, and Google's verified sign-in links to the account.
    let access = sign_in(&app, &google, &owners_google, "after").await;
    assert_eq!(me(&app, &access).await["id"], owner["id"]);
    assert_eq!(user_count(&app).await, 1);
    assert_eq!(social_count(&app).await, 2);
}
