//! Sign-up, sign-in, refresh, sign-out and token introspection.

use axum::{
    extract::{FromRequest, Request, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::{AuthUser, ClientInfo, IntrospectionClient, Json};
use crate::{
    domain::{
        BirthDate, Country, Email, Login, NewPassword, Region,
        password::{Match, Stored},
    },
    error::{ApiError, Problem, Result},
    limits::sign_in::{AccountKey, SignInError},
    state::AppState,
    store::{
        CacheCall,
        history::{self, Failure, Method},
        sessions::{self, EndReason, Rotation},
        users::{self, NewUser, SignInIdentifier, User},
    },
    tokens::{access::Subject, refresh},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup))
        .routes(routes!(login))
        .routes(routes!(refresh_tokens))
        .routes(routes!(logout))
        .routes(routes!(logout_all))
        .routes(routes!(introspect))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    #[schema(value_type = String, format = Email, max_length = 254, example = "viewer@example.com")]
    email: Email,
    /// 8 to 128 characters; not the email, not a well-known password, not one character repeated.
    #[schema(value_type = String, format = Password, min_length = 8, max_length = 128)]
    password: SecretString,
    /// 3 to 32 of latin letters, digits, `.`, `_`, `-`, starting with a letter or digit.
    #[schema(value_type = Option<String>, pattern = r"^[A-Za-z0-9][A-Za-z0-9._\-]{2,31}$", example = "viewer_42")]
    login: Option<Login>,
    /// Not in the future, not before 1900.
    #[schema(value_type = Option<NaiveDate>)]
    birth_date: Option<BirthDate>,
    /// An assigned ISO 3166-1 alpha-2 code, any case (`ZZ` is refused).
    #[schema(value_type = Option<String>, pattern = "^[A-Za-z]{2}$", example = "RU")]
    country: Option<Country>,
    /// 1 to 100 characters, no control characters.
    #[schema(value_type = Option<String>, pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$", max_length = 100, example = "Moscow")]
    region: Option<Region>,
}

/// Creates an account with the `user` role.
#[utoipa::path(post, path = "/api/v1/auth/signup", tag = "auth", request_body = SignupRequest,
    responses(
        (status = 201, description = "Account created", body = User),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Email or login taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
    ))]
async fn signup(State(state): State<AppState>, Json(body): Json<SignupRequest>) -> Result<(StatusCode, Json<User>)> {
    let password = NewPassword::parse(&body.password, &body.email).map_err(|m| ApiError::field("password", m))?;
    let password_hash = state.hasher.hash(password.secret()).await?;
    let mut tx = state.db.begin().await?;
    let id = users::insert(
        &mut tx,
        NewUser {
            email: body.email,
            // Sign-up does not prove the address (docs/oauth.md, "Linking rules").
            email_verified: false,
            login: body.login,
            password_hash: Some(password_hash),
            birth_date: body.birth_date,
            country: body.country,
            region: body.region,
        },
    )
    .await??;
    let user = users::get(&mut *tx, id).await?.ok_or_else(|| anyhow::anyhow!("created user vanished"))?;
    tx.commit().await?;
    tracing::info!(user_id = %id, "account created");
    Ok((StatusCode::CREATED, Json(user)))
}

/// Sign-in by email or by login.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: Option<String>,
    login: Option<String>,
    password: SecretString,
}

/// Written by hand: exactly one of `email` and `login`, which derived schemas cannot say
/// (schema fuzzing found the derived one's example, with both, refused).
impl utoipa::PartialSchema for LoginRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let email = serde_json::json!({ "type": "string", "format": "email", "maxLength": 254, "example": "viewer@example.com" });
        let login = serde_json::json!({
            "description": "A login name, or an email.",
            "anyOf": [
                { "type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._\-]{2,31}$" },
                { "type": "string", "format": "email", "maxLength": 254 },
            ],
            "example": "viewer_42",
        });
        let password = serde_json::json!({ "type": "string", "format": "password" });
        let absent = serde_json::json!({ "type": "null" });
        let schema = serde_json::json!({
            "description": "Sign-in by email or by login: exactly one of the two (the other absent or null).",
            "oneOf": [
                {
                    "type": "object",
                    "required": ["email", "password"],
                    "properties": { "email": email, "login": absent, "password": password },
                    "additionalProperties": false,
                },
                {
                    "type": "object",
                    "required": ["login", "password"],
                    "properties": { "email": absent, "login": login, "password": password },
                    "additionalProperties": false,
                },
            ],
        });
        serde_json::from_value(schema).expect("the LoginRequest schema is a schema")
    }
}

impl utoipa::ToSchema for LoginRequest {}

impl LoginRequest {
    fn identifier(&self) -> Result<SignInIdentifier> {
        match (self.email.as_deref(), self.login.as_deref()) {
            (Some(email), None) => Email::lookup(email).map(SignInIdentifier::Email).map_err(|m| ApiError::field("email", m)),
            (None, Some(login)) if login.contains('@') => Email::lookup(login).map(SignInIdentifier::Email).map_err(|m| ApiError::field("login", m)),
            (None, Some(login)) => Login::parse(login).map(SignInIdentifier::Login).map_err(|m| ApiError::field("login", m)),
            (Some(_), Some(_)) => Err(ApiError::field("login", "send either email or login, not both")),
            (None, None) => Err(ApiError::field("email", "send email or login")),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TokenPair {
    access_token: String,
    refresh_token: String,
    #[schema(example = "Bearer")]
    token_type: &'static str,
    /// Lifetime of the access token in seconds.
    #[schema(example = 900)]
    expires_in: u64,
}

impl IntoResponse for TokenPair {
    fn into_response(self) -> Response {
        // RFC 6749 §5.1: token responses must not be cached.
        let mut response = axum::Json(self).into_response();
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

fn invalid_credentials() -> ApiError {
    ApiError::Unauthorized { code: "invalid_credentials", detail: "The email, login or password is incorrect." }
}

/// Signs in and opens a session. Unknown accounts and wrong passwords get the same
/// answer after the same work (the same Argon2 runs).
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = TokenPair),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong credentials", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
    ))]
async fn login(State(state): State<AppState>, ClientInfo(client): ClientInfo, Json(body): Json<LoginRequest>) -> Result<TokenPair, SignInError> {
    let identifier = body.identifier()?;
    let account = users::credentials(&state.db, &identifier).await?;
    // Counted before the password is checked; see limits::sign_in.
    let key = match (&account, &identifier) {
        (Some(a), _) => AccountKey::account(a.id),
        (None, SignInIdentifier::Email(email)) => AccountKey::unknown(email.as_ref(), &state.limits.identifier_secret),
        (None, SignInIdentifier::Login(login)) => AccountKey::unknown(login.as_ref(), &state.limits.identifier_secret),
    };
    let attempt = match state.limits.admit_sign_in(&state.db, &key, client.ip).await {
        Ok(attempt) => attempt,
        Err(verdict) => {
            let user_id = account.map(|a| a.id);
            history::record(&state.db, user_id, &client, Method::Password, Err(Failure::RateLimited)).await?;
            tracing::info!(user_id = user_id.map(tracing::field::display), reason = Failure::RateLimited.as_str(), "sign-in refused");
            return Err(SignInError::TooManyAttempts(verdict));
        }
    };
    let hash = account.as_ref().and_then(|a| a.password_hash.as_deref());
    let stored = account.as_ref().map_or(Stored::Normalised, users::Credentials::stored);
    let matched = state.hasher.verify_stored(&body.password, hash, stored).await?;
    let verified = matched.found();
    let failure = match &account {
        None => Some(Failure::UnknownAccount),
        Some(a) if a.password_hash.is_none() => Some(Failure::PasswordNotSet),
        Some(_) if !verified => Some(Failure::WrongPassword),
        Some(_) => None,
    };
    let user_id = account.as_ref().map(|a| a.id);
    if let Some(failure) = failure {
        history::record(&state.db, user_id, &client, Method::Password, Err(failure)).await?;
        tracing::info!(user_id = user_id.map(tracing::field::display), reason = failure.as_str(), "sign-in refused");
        return Err(attempt.failed(invalid_credentials()));
    }
    let user_id = user_id.ok_or_else(|| anyhow::anyhow!("verified sign-in without an account"))?;
    let pair = match try_open_session(&state, user_id, hash, &client, Method::Password).await? {
        Some(pair) => {
            if stored == Stored::MaybeUnnormalised
                && let Some(hash) = hash
            {
                renormalise(&state, user_id, hash, matched, &body.password);
            }
            Some(pair)
        }
        None => open_with_the_current_hash(&state, user_id, &body.password, &client).await?,
    };
    let Some(pair) = pair else {
        // The password was changed (or the account deleted) while this one was checked.
        history::record(&state.db, Some(user_id), &client, Method::Password, Err(Failure::WrongPassword)).await?;
        tracing::info!(%user_id, reason = Failure::WrongPassword.as_str(), "sign-in refused: the password changed meanwhile");
        return Err(attempt.failed(invalid_credentials()));
    };
    attempt.succeeded(&state.limits).await;
    tracing::info!(%user_id, "signed in");
    Ok(pair)
}

/// The hash a sign-in checked was replaced before its session opened: by a password
/// change, or by the background rehash of a hash from before normalisation after
/// another sign-in ([`renormalise`]). The password, already found right once, is checked
/// once more against the hash stored now, so the rehash refuses no one and a changed
/// password still refuses the old one. Reached only with a right password, so the
/// extra Argon2 run tells a guesser nothing.
async fn open_with_the_current_hash(
    state: &AppState,
    user_id: Uuid,
    password: &SecretString,
    client: &sessions::Client,
) -> Result<Option<TokenPair>> {
    let Some((hash, stored)) = users::password_hash(&state.db, user_id).await? else {
        return Ok(None);
    };
    if !state.hasher.verify_stored(password, Some(&hash), stored).await?.found() {
        return Ok(None);
    }
    try_open_session(state, user_id, Some(&hash), client, Method::Password).await
}

/// After a sign-in to an account whose hash may predate normalised passwords: in the
/// background, the hash is marked normalised (it matched the password in NFC), or
/// replaced by a hash of the password in NFC (it matched the password as sent), so
/// later sign-ins try one form only. Once per such account; a failure is logged and
/// tried again at the next sign-in.
fn renormalise(state: &AppState, user_id: Uuid, checked: &str, matched: Match, password: &SecretString) {
    let (state, checked, password) = (state.clone(), checked.to_owned(), password.clone());
    tokio::spawn(async move {
        let result = async {
            let nfc_hash = match matched {
                Match::AsSent => Some(state.hasher.hash(&password).await?),
                Match::Normalised | Match::No => None,
            };
            users::mark_password_normalised(&state.db, user_id, &checked, nfc_hash.as_deref()).await?;
            anyhow::Ok(())
        };
        if let Err(e) = result.await {
            tracing::warn!(%user_id, error = %format_args!("{e:#}"), "could not mark a password hash as normalised; tried again at the next sign-in");
        }
    });
}

/// Opens a session for a signed-in user, records the sign-in, and issues the first
/// token pair (one atomic statement: `sessions::open`).
pub async fn open_session(state: &AppState, user_id: Uuid, client: &sessions::Client, method: Method) -> Result<TokenPair> {
    try_open_session(state, user_id, None, client, method)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the signed-in account {user_id} no longer exists").into())
}

/// [`open_session`], or `None` when the account is gone or `verified_hash` is no
/// longer its password's hash.
async fn try_open_session(
    state: &AppState,
    user_id: Uuid,
    verified_hash: Option<&str>,
    client: &sessions::Client,
    method: Method,
) -> Result<Option<TokenPair>> {
    let refresh = refresh::generate();
    let expires_at = Utc::now() + state.refresh_ttl.min(state.session_lifetime);
    let Some((session_id, subject)) = sessions::open(&state.db, user_id, verified_hash, client, method, &refresh.hash, expires_at).await? else {
        return Ok(None);
    };
    issue_pair(state, subject, session_id, refresh.token).map(Some)
}

fn issue_pair(state: &AppState, subject: Subject, session_id: Uuid, refresh_token: String) -> Result<TokenPair> {
    let access = state.tokens.issue(subject, session_id)?;
    Ok(TokenPair { access_token: access.token, refresh_token, token_type: "Bearer", expires_in: state.tokens.ttl().as_secs() })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: String,
}

/// Exchanges a refresh token for a new pair. The presented token stops working;
/// presenting it again ends the whole session.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new token pair", body = TokenPair),
        (status = 401, description = "Invalid, expired or reused refresh token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
    ))]
async fn refresh_tokens(State(state): State<AppState>, ClientInfo(client): ClientInfo, Json(body): Json<RefreshRequest>) -> Result<TokenPair> {
    let invalid = || ApiError::Unauthorized { code: "invalid_refresh_token", detail: "The refresh token is invalid, expired or revoked." };
    if body.refresh_token.is_empty() || body.refresh_token.len() > 128 {
        return Err(invalid());
    }
    let next = refresh::generate();
    let expires_at = Utc::now() + state.refresh_ttl;
    let rotating = sessions::Rotating {
        presented_hash: &refresh::hash(&body.refresh_token),
        next_hash: &next.hash,
        expires_at,
        lifetime: state.session_lifetime,
    };
    match sessions::rotate(&state.db, &rotating, &client).await? {
        Rotation::Rotated { session_id, subject } => issue_pair(&state, subject, session_id, next.token),
        Rotation::Reused { session_id } => {
            tracing::warn!(%session_id, "refresh token reused; session ended");
            cache_revocation(&state, &[session_id], None).await;
            Err(ApiError::Unauthorized {
                code: "refresh_token_reused",
                detail: "This refresh token was already used; the session has been ended. Sign in again.",
            })
        }
        Rotation::Invalid => Err(invalid()),
    }
}

/// Writes revocations to the Redis cache. PostgreSQL already holds them, so a failure
/// here only delays their effect by at most the live-cache TTL.
pub async fn cache_revocation(state: &AppState, sessions: &[Uuid], token: Option<(Uuid, i64)>) {
    match state.revocations.revoke(sessions, token).await {
        Ok(()) => state.cache_failures.succeeded(CacheCall::RevocationWrite),
        Err(e) => state.cache_failures.failed(CacheCall::RevocationWrite, &e),
    }
}

/// Ends the current session: its access and refresh tokens stop working.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out"),
    ))]
async fn logout(State(state): State<AppState>, user: AuthUser) -> Result<StatusCode> {
    sessions::end(&state.db, user.session_id(), EndReason::Logout).await?;
    cache_revocation(&state, &[user.session_id()], Some((user.claims.jti, user.claims.exp))).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends every session of the caller, on every device.
#[utoipa::path(post, path = "/api/v1/auth/logout-all", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out everywhere"),
    ))]
async fn logout_all(State(state): State<AppState>, user: AuthUser) -> Result<StatusCode> {
    let ended = sessions::end_all(&state.db, user.id(), None, EndReason::LogoutAll).await?;
    cache_revocation(&state, &ended, Some((user.claims.jti, user.claims.exp))).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
pub struct IntrospectionRequest {
    token: String,
    /// Accepted for RFC 7662 compatibility; only access tokens are introspected.
    #[allow(dead_code)]
    token_type_hint: Option<String>,
}

/// RFC 7662 introspection response. Only `active` is present when the token is not active.
#[derive(Serialize, ToSchema, Default)]
pub struct Introspection {
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<Uuid>,
    /// The user's roles now, which may differ from those in the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    roles: Option<Vec<String>>,
    /// The user's age class now (0, 6, 12, 16 or 18), from the birth date held now, on
    /// today's UTC calendar day, as the token's `age_class` is computed at issue: it
    /// differs from the token's when the birth date changed since. `null` when no birth
    /// date is known; present on every active answer, so that a client can tell "no
    /// birth date" from an older Auth that does not say (absent: keep the token's).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u8>, example = 16, minimum = 0, maximum = 18)]
    age_class: Option<Option<u8>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
}

/// The body of an introspection request, as JSON or as the RFC 7662 form.
pub struct IntrospectionBody(IntrospectionRequest);

impl<S: Send + Sync> FromRequest<S> for IntrospectionBody {
    type Rejection = ApiError;

    async fn from_request(mut req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            // Media types are case-insensitive (RFC 9110 §8.3.1); parameters may follow.
            .and_then(|ct| ct.split(';').next())
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
        if is_form {
            // axum's `Form` matches the media type case-sensitively: given it as written.
            req.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
            let axum::Form(body) =
                axum::Form::<IntrospectionRequest>::from_request(req, state).await.map_err(|e| crate::error::form_rejection(e, "token"))?;
            Ok(Self(body))
        } else {
            let Json(body) = Json::<IntrospectionRequest>::from_request(req, state).await?;
            Ok(Self(body))
        }
    }
}

/// Authoritative token check for other services: signature, expiry, revocation, and
/// the user's current roles and age class.
///
/// Only for services registered in `AUTH_INTROSPECTION_CLIENTS`, which authenticate
/// with their client id and secret as HTTP Basic credentials (RFC 7662 §2.1, RFC 6749
/// §2.3.1). Each client's calls count against its own quota.
#[utoipa::path(post, path = "/api/v1/auth/introspect", tag = "auth", security(("introspection_client" = [])),
    request_body(content(
        (IntrospectionRequest = "application/json"),
        (IntrospectionRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Whether the token is active, and its claims", body = Introspection),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No, malformed or wrong client credentials (`invalid_client`), with `WWW-Authenticate: Basic realm=\"introspection\"`. The same answer for an unknown client id and a wrong secret.", body = Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Basic realm=\"introspection\"`"))),
        (status = 422, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
    ))]
async fn introspect(
    State(state): State<AppState>,
    IntrospectionClient(_client): IntrospectionClient,
    IntrospectionBody(body): IntrospectionBody,
) -> Result<Json<Introspection>> {
    let inactive = || Json(Introspection::default());
    let Some(claims) = state.tokens.verify(&body.token) else { return Ok(inactive()) };
    // PostgreSQL alone: every revocation ends a session there (a denylisted `jti` always
    // comes with its session ended), and the answer carries the roles held now, which
    // only PostgreSQL knows. A Redis lookup first would add a round trip and nothing else.
    let Some(user) = sessions::live_user(&state.db, claims.sid, claims.sub).await? else { return Ok(inactive()) };
    let age_class = user.birth_date.map(|birth| crate::domain::profile::age_class(birth, chrono::Utc::now().date_naive()));
    Ok(Json(Introspection {
        active: true,
        sub: Some(claims.sub),
        sid: Some(claims.sid),
        jti: Some(claims.jti),
        roles: Some(user.roles),
        age_class: Some(age_class),
        exp: Some(claims.exp),
        iat: Some(claims.iat),
        iss: Some(claims.iss),
        aud: Some(claims.aud),
        token_type: Some("Bearer"),
    }))
}
