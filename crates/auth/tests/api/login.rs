use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{PASSWORD, assert_problem, spawn_app, tokens};

#[tokio::test]
async fn login_by_email_returns_a_bearer_token_pair() {
    let app = spawn_app().await;
    app.signup("ann@example.com").await;
    let response = app.login("ANN@example.com", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["access_token"].as_str().unwrap().split('.').count(), 3);
    // 256 random bits, base64url without padding.
    assert_eq!(body["refresh_token"].as_str().unwrap().len(), 43);
}

#[tokio::test]
async fn login_by_login_name_works_whatever_its_case() {
    let app = spawn_app().await;
    let signup = app.post_json("/api/v1/auth/signup", &json!({"email": "ann@example.com", "password": PASSWORD, "login": "AnnLee"})).await;
    assert_eq!(signup.status(), StatusCode::CREATED);
    let response = app.post_json("/api/v1/auth/login", &json!({"login": "annlee", "password": PASSWORD})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app.post_json("/api/v1/auth/login", &json!({"login": "ann@example.com", "password": PASSWORD})).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn wrong_password_and_unknown_account_get_the_same_401_after_the_same_work() {
    let app = spawn_app().await;
    app.signup("ann@example.com").await;

    // Argon2 runs completed by the hashing threads, not calls: a run skipped shows.
    // Passwords sent decomposed too: one run each, not two (only a hash from before
    // normalisation is tried as sent).
    for password in ["not the password", "not the passe\u{301}"] {
        let before = app.state.hasher.verifications();
        let wrong = app.login("ann@example.com", password).await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.state.hasher.verifications() - before, 1, "one Argon2 run for a wrong password: {password:?}");
        let before = app.state.hasher.verifications();
        let unknown = app.login("nobody@example.com", password).await;
        assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.state.hasher.verifications() - before, 1, "one Argon2 run (of a dummy hash) for an unknown account: {password:?}");
    }
    let wrong = app.login("ann@example.com", "not the password").await;
    let unknown = app.login("nobody@example.com", "not the password").await;

    assert_eq!(wrong.headers()["www-authenticate"], "Bearer");
    let wrong = assert_problem(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let unknown = assert_problem(unknown, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    assert_eq!(wrong, unknown);
}

#[tokio::test]
async fn login_needs_exactly_one_identifier() {
    let app = spawn_app().await;
    for body in [
        json!({"password": PASSWORD}),
        json!({"email": "a@example.com", "login": "ann", "password": PASSWORD}),
        json!({"email": "not an email", "password": PASSWORD}),
        // PostgreSQL's text holds no NUL: looked up, it was a 500.
        json!({"email": "a\u{0}b@example.com", "password": PASSWORD}),
        json!({"login": "a\u{0}b@example.com", "password": PASSWORD}),
    ] {
        let response = app.post_json("/api/v1/auth/login", &body).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
}

#[tokio::test]
async fn each_login_opens_its_own_session() {
    let app = spawn_app().await;
    app.signup("ann@example.com").await;
    let first = tokens(app.login("ann@example.com", PASSWORD).await).await;
    let second = tokens(app.login("ann@example.com", PASSWORD).await).await;
    let sid = |t: &str| app.state.tokens.verify(t).unwrap().sid;
    assert_ne!(sid(&first.access), sid(&second.access));
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions WHERE ended_at IS NULL").fetch_one(&app.db).await.unwrap();
    assert_eq!(live, 2);
}

#[tokio::test]
async fn the_access_token_carries_the_age_class_only_when_the_birth_date_is_known() {
    let app = spawn_app().await;
    let teen_birth = (chrono::Utc::now().date_naive() - chrono::Days::new(365 * 13 + 10)).to_string();
    let signup = app.post_json("/api/v1/auth/signup", &json!({"email": "teen@example.com", "password": PASSWORD, "birth_date": teen_birth})).await;
    assert_eq!(signup.status(), StatusCode::CREATED);
    let teen = app.sign_in("teen@example.com").await;
    assert_eq!(app.state.tokens.verify(&teen.access).unwrap().age_class, Some(12));
    let (_, unknown) = app.signed_in_user().await;
    assert_eq!(app.state.tokens.verify(&unknown.access).unwrap().age_class, None);
    let payload = unknown.access.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: serde_json::Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert!(claims.get("age_class").is_none());
    // The class follows the birth date at the next refresh.
    let user_id = app.state.tokens.verify(&unknown.access).unwrap().sub;
    sqlx::query("UPDATE users SET birth_date = '1980-01-01' WHERE id = $1").bind(user_id).execute(&app.db).await.unwrap();
    let refreshed = tokens(app.refresh(&unknown.refresh).await).await;
    assert_eq!(app.state.tokens.verify(&refreshed.access).unwrap().age_class, Some(18));
}

/// ASVS V2.1.2 to V2.1.4: any printable characters, 64 and 128 long included, are
/// kept whole: the exact password signs in; one character fewer or more does not.
#[tokio::test]
async fn long_and_unicode_passwords_sign_in_exactly_and_are_never_truncated() {
    let app = spawn_app().await;
    let passwords = [
        ("sixty-four", "a quiet evening with a long film ".repeat(2)[..64].to_owned()),
        ("max", "x".repeat(120) + "12345678"),
        ("cyrillic", "пароль для кино и сериалов".to_owned()),
        ("emoji", "🎬🍿🎞️ popcorn 🎥".to_owned()),
    ];
    for (i, (what, password)) in passwords.iter().enumerate() {
        let email = format!("viewer{i}@example.com");
        let signup = app.post_json("/api/v1/auth/signup", &json!({"email": email, "password": password})).await;
        assert_eq!(signup.status(), StatusCode::CREATED, "{what}");
        assert_eq!(app.login(&email, password).await.status(), StatusCode::OK, "{what}");
        let mut shorter = password.clone();
        shorter.pop();
        for wrong in [shorter, format!("{password}!")] {
            let response = app.login(&email, &wrong).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}: {wrong:?} signed in");
        }
    }
    assert_eq!(passwords[0].1.chars().count(), 64);
    assert_eq!(passwords[1].1.chars().count(), 128);
    let too_long = app.post_json("/api/v1/auth/signup", &json!({"email": "long@example.com", "password": "x".repeat(121) + "12345678"})).await;
    let problem = assert_problem(too_long, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(crate::helpers::error_fields(&problem), ["password"]);
}

/// An account whose address an older, laxer rule accepted (a fullwidth letter here,
/// refused at sign-up since) still signs in with it, and the admin search finds it:
/// looking an account up applies no rule for new addresses.
#[tokio::test]
async fn an_address_accepted_before_a_rule_still_signs_in() {
    let app = spawn_app().await;
    app.signup("carol@example.com").await;
    let older = "\u{ff43}arol@example.com";
    let refused = app.post_json("/api/v1/auth/signup", &json!({"email": older, "password": PASSWORD})).await;
    assert_problem(refused, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    // As an account made before the rule holds it.
    for table in ["users", "user_emails"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {table} SET email = $1 WHERE email = 'carol@example.com'")))
            .bind(older)
            .execute(&app.db)
            .await
            .unwrap();
    }
    assert_eq!(app.login(older, PASSWORD).await.status(), StatusCode::OK);
    let by_login_field = app.post_json("/api/v1/auth/login", &json!({"login": older, "password": PASSWORD})).await;
    assert_eq!(by_login_field.status(), StatusCode::OK);
    let (_, admin) = app.signed_in_with_role("admin").await;
    let found: Vec<serde_json::Value> =
        app.send(reqwest::Method::POST, "/api/v1/users/search", Some(&admin.access), Some(json!({"email": older}))).await.json().await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["email"], older);
}

/// A hash made before passwords were normalised, of a password a client sent
/// decomposed (`e` + U+0301), in PHC form, as the service made them then.
fn hash_of_the_bytes_as_sent(password: &str) -> String {
    use base64::{Engine as _, engine::general_purpose::STANDARD_NO_PAD};
    let salt = *b"0123456789abcdef";
    let mut out = [0u8; 32];
    argon2::Argon2::default().hash_password_into(password.as_bytes(), &salt, &mut out).unwrap();
    format!("$argon2id$v=19$m=19456,t=2,p=1${}${}", STANDARD_NO_PAD.encode(salt), STANDARD_NO_PAD.encode(out))
}

/// Only an account whose hash may predate normalised passwords has the password as sent
/// tried after its NFC form (every other decomposed guess would cost two hashes); its
/// first sign-in replaces the hash by one of the password in NFC, in the background,
/// and from then on both forms sign in with one hash each.
#[tokio::test]
async fn only_a_hash_from_before_normalisation_is_tried_as_sent_and_its_first_sign_in_renormalises_it() {
    let app = spawn_app().await;
    app.signup("ann@example.com").await;
    let stored = || async {
        sqlx::query_as::<_, (String, bool)>("SELECT password_hash, password_unnormalised FROM users WHERE email = 'ann@example.com'")
            .fetch_one(&app.db)
            .await
            .unwrap()
    };
    assert!(!stored().await.1, "a hash made now is of the password in NFC");
    let (decomposed, composed) = ("cafe\u{301} cafe\u{301} cafe\u{301}", "caf\u{e9} caf\u{e9} caf\u{e9}");
    let legacy = hash_of_the_bytes_as_sent(decomposed);
    sqlx::query("UPDATE users SET password_hash = $1 WHERE email = 'ann@example.com'").bind(&legacy).execute(&app.db).await.unwrap();
    assert_eq!(app.login("ann@example.com", decomposed).await.status(), StatusCode::UNAUTHORIZED, "marked normalised: tried in NFC only");

    sqlx::query("UPDATE users SET password_unnormalised = true WHERE email = 'ann@example.com'").execute(&app.db).await.unwrap();
    assert_eq!(app.login("ann@example.com", composed).await.status(), StatusCode::UNAUTHORIZED, "the hash is of the decomposed bytes");
    assert_eq!(app.login("ann@example.com", decomposed).await.status(), StatusCode::OK);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (hash, unnormalised) = loop {
        let (hash, unnormalised) = stored().await;
        if !unnormalised {
            break (hash, unnormalised);
        }
        assert!(std::time::Instant::now() < deadline, "the hash was not renormalised within 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(!unnormalised);
    assert_ne!(hash, legacy, "rehashed");
    assert_eq!(app.login("ann@example.com", composed).await.status(), StatusCode::OK);
    assert_eq!(app.login("ann@example.com", decomposed).await.status(), StatusCode::OK);
}

/// A sign-in checked against a legacy hash while another sign-in's background rehash
/// replaces it (here, the replacement is committed once the sign-in waits for the
/// account's row) is checked again against the new hash and signs in; it used to be
/// refused once and counted as a failed attempt. A password really changed meanwhile
/// still refuses it, and opens no session.
#[tokio::test]
async fn a_sign_in_racing_the_rehash_of_its_legacy_hash_signs_in_and_one_racing_a_change_does_not() {
    let app = spawn_app().await;
    let (decomposed, composed) = ("cafe\u{301} cafe\u{301} cafe\u{301}", "caf\u{e9} caf\u{e9} caf\u{e9}");
    let race = |email: &'static str, replacement: String| {
        let app = &app;
        async move {
            app.signup(email).await;
            sqlx::query("UPDATE users SET password_hash = $1, password_unnormalised = true WHERE email = $2")
                .bind(hash_of_the_bytes_as_sent(decomposed))
                .bind(email)
                .execute(&app.db)
                .await
                .unwrap();
            let mut replace = app.db.begin().await.unwrap();
            sqlx::query("UPDATE users SET password_hash = $1, password_unnormalised = false WHERE email = $2")
                .bind(replacement)
                .bind(email)
                .execute(&mut *replace)
                .await
                .unwrap();
            let commit_when_the_sign_in_waits = async {
                crate::helpers::until_a_session_waits_for_a_lock(&app.db).await;
                replace.commit().await.unwrap();
            };
            let (response, ()) = tokio::join!(app.login(email, decomposed), commit_when_the_sign_in_waits);
            let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.email = $1")
                .bind(email)
                .fetch_one(&app.db)
                .await
                .unwrap();
            (response.status(), sessions)
        }
    };
    assert_eq!(race("rehashed@example.com", hash_of_the_bytes_as_sent(composed)).await, (StatusCode::OK, 1), "refused by its own rehash");
    assert_eq!(
        race("changed@example.com", hash_of_the_bytes_as_sent("another password entirely")).await,
        (StatusCode::UNAUTHORIZED, 0),
        "signed in with a replaced password"
    );
}

/// While some account holds a hash from before normalisation, its second run must not
/// tell it apart: a wrong password not in NFC costs two runs for it, for an account made
/// since, and for an unknown one. Once none remain, one run each.
#[tokio::test]
async fn while_hashes_from_before_normalisation_remain_every_account_costs_the_same() {
    let app = spawn_app().await;
    app.signup("old@example.com").await;
    app.signup("new@example.com").await;
    sqlx::query("UPDATE users SET password_unnormalised = true WHERE email = 'old@example.com'").execute(&app.db).await.unwrap();
    auth::store::users::note_unnormalised_hashes(&app.db, &app.state.hasher).await;
    let runs = |email: &'static str, expected: u64| {
        let app = &app;
        async move {
            let before = app.state.hasher.verifications();
            assert_eq!(app.login(email, "not the passe\u{301}").await.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(app.state.hasher.verifications() - before, expected, "{email}");
        }
    };
    for email in ["old@example.com", "new@example.com", "nobody@example.com"] {
        runs(email, 2).await;
    }
    sqlx::query("UPDATE users SET password_unnormalised = false").execute(&app.db).await.unwrap();
    auth::store::users::note_unnormalised_hashes(&app.db, &app.state.hasher).await;
    for email in ["old@example.com", "new@example.com", "nobody@example.com"] {
        runs(email, 1).await;
    }
}
