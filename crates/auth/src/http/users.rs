//! The caller's own account: profile and password.

use axum::{extract::State, http::StatusCode};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    auth::cache_revocation,
    extract::{AuthUser, ClientInfo, Json, Me, Query},
};
use crate::{
    domain::{BirthDate, Country, Email, Login, NewPassword, Region},
    error::{ApiError, Problem, Result},
    limits::sign_in::{AccountKey, SignInError},
    state::AppState,
    store::{
        history::{self, Cursor, Failure, LoginAttempt, Method},
        roles,
        sessions::{self, EndReason},
        users::{self, ProfileChange, User},
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_me, patch_me))
        .routes(routes!(change_password))
        .routes(routes!(my_permissions))
        .routes(routes!(my_login_history))
}

/// The caller's account.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, description = "The account", body = User),
    ))]
async fn get_me(Me(user): Me) -> Json<User> {
    Json(user)
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A partial update: absent fields stay as they are; `null` clears an optional field.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    /// Cannot be null: every account has an email.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = Email, max_length = 254, example = "viewer@example.com")]
    email: Option<Option<Email>>,
    /// 3 to 32 of latin letters, digits, `.`, `_`, `-`, starting with a letter or digit; null removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = r"^[A-Za-z0-9][A-Za-z0-9._\-]{2,31}$", example = "viewer_42")]
    login: Option<Option<Login>>,
    /// Not in the future, not before 1900; null removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<NaiveDate>)]
    birth_date: Option<Option<BirthDate>>,
    /// An assigned ISO 3166-1 alpha-2 code, any case; null removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = "^[A-Za-z]{2}$", example = "RU")]
    country: Option<Option<Country>>,
    /// 1 to 100 characters, no control characters; null removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$", max_length = 100, example = "Moscow")]
    region: Option<Option<Region>>,
}

/// Changes the caller's profile.
#[utoipa::path(patch, path = "/api/v1/users/me", tag = "users", security(("bearer" = [])), request_body = ProfilePatch,
    responses(
        (status = 200, description = "The updated account", body = User),
        (status = 409, description = "Email or login taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
    ))]
async fn patch_me(State(state): State<AppState>, user: AuthUser, Json(patch): Json<ProfilePatch>) -> Result<Json<User>> {
    let email = match patch.email {
        Some(None) => return Err(ApiError::field("email", "cannot be null")),
        other => other.flatten(),
    };
    let change = ProfileChange { email, login: patch.login, birth_date: patch.birth_date, country: patch.country, region: patch.region };
    let mut tx = state.db.begin().await?;
    let updated = users::update_profile(&mut tx, user.id(), change).await?.ok_or_else(ApiError::invalid_token)?;
    // The session that authorises the change (of the sign-in address, perhaps) must
    // still be live when it commits, as for a password change: see `sessions::hold_live`.
    if !sessions::hold_live(&mut tx, user.session_id()).await? {
        return Err(ApiError::invalid_token());
    }
    tx.commit().await?;
    state.profiles.forget(user.id()).await;
    Ok(Json(updated))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// Required when the account has a password; omitted to set the first password of
    /// an account created through a social provider.
    #[schema(value_type = Option<String>, format = Password)]
    current_password: Option<SecretString>,
    #[schema(value_type = String, format = Password, min_length = 8, max_length = 128)]
    new_password: SecretString,
}

/// Changes the caller's password, or sets the first one of an account that has none
/// (without `current_password`), and ends every other session. Checking
/// `current_password` counts as a sign-in attempt at the account (429
/// `too_many_sign_in_attempts` past the sign-in rules): whoever holds a stolen token
/// gets no more guesses at the password here than at sign-in.
#[utoipa::path(put, path = "/api/v1/users/me/password", tag = "users", security(("bearer" = [])), request_body = PasswordChange,
    responses(
        (status = 204, description = "Password changed or set; other sessions ended"),
        (status = 422, description = "Current password wrong, missing, or sent for an account without one; or the new one fails the policy", body = Problem, content_type = "application/problem+json"),
    ))]
async fn change_password(
    State(state): State<AppState>,
    user: AuthUser,
    ClientInfo(client): ClientInfo,
    Json(body): Json<PasswordChange>,
) -> Result<StatusCode, SignInError> {
    let account = users::get(&state.db, user.id()).await?.ok_or_else(ApiError::invalid_token)?;
    let email = Email::stored(account.email.clone());
    let new_password = NewPassword::parse(&body.new_password, &email).map_err(|m| ApiError::field("new_password", m))?;
    let current_hash = users::password_hash(&state.db, user.id()).await?;
    match (&current_hash, &body.current_password) {
        (Some(_), None) => return Err(ApiError::field("current_password", "is required").into()),
        (None, Some(_)) => return Err(ApiError::field("current_password", "must be omitted: the account has no password yet").into()),
        (Some((hash, stored)), Some(current)) => {
            // Refusals are recorded in the history, as sign-ins' are: the owner sees
            // them, and they count there while the limits' Redis is down.
            let attempt = match state.limits.admit_sign_in(&state.db, &AccountKey::account(user.id()), client.ip).await {
                Ok(attempt) => attempt,
                Err(verdict) => {
                    history::record(&state.db, Some(user.id()), &client, Method::PasswordChange, Err(Failure::RateLimited)).await?;
                    tracing::info!(user_id = %user.id(), reason = Failure::RateLimited.as_str(), "password change refused");
                    return Err(SignInError::TooManyAttempts(verdict));
                }
            };
            if !state.hasher.verify_stored(current, Some(hash.as_str()), *stored).await?.found() {
                history::record(&state.db, Some(user.id()), &client, Method::PasswordChange, Err(Failure::WrongPassword)).await?;
                tracing::info!(user_id = %user.id(), reason = Failure::WrongPassword.as_str(), "password change refused");
                return Err(attempt.failed(ApiError::field("current_password", "is incorrect")));
            }
            attempt.succeeded(&state.limits).await;
        }
        (None, None) => {}
    }
    let hash = state.hasher.hash(new_password.secret()).await?;
    let mut tx = state.db.begin().await?;
    // Only over the hash just checked: a change that came first wins, and this one,
    // checked against a replaced password, is refused.
    if !users::set_password_hash(&mut *tx, user.id(), current_hash.as_ref().map(|(hash, _)| hash.as_str()), &hash).await? {
        return Err(match current_hash {
            Some(_) => ApiError::field("current_password", "is incorrect: the password was changed meanwhile"),
            // Another request set one meanwhile: from now on, it is needed.
            None => ApiError::field("current_password", "is required"),
        }
        .into());
    }
    // The session that authorises the change must still be live when it commits: the
    // owner may have ended it (logout-all, or from another session) while the
    // passwords were hashed. See `sessions::hold_live`.
    if !sessions::hold_live(&mut tx, user.session_id()).await? {
        return Err(ApiError::invalid_token().into());
    }
    let ended = sessions::end_all(&mut *tx, user.id(), Some(user.session_id()), EndReason::PasswordChanged).await?;
    tx.commit().await?;
    cache_revocation(&state, &ended, None).await;
    // `updated_at` moved.
    state.profiles.forget(user.id()).await;
    tracing::info!(user_id = %user.id(), ended = ended.len(), "password changed");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct Permissions {
    #[schema(example = json!(["user"]))]
    roles: Vec<String>,
    /// The union of the permissions of the roles, as they are now.
    #[schema(example = json!(["films.watch.free", "profile.manage"]))]
    permissions: Vec<String>,
}

/// The caller's effective permissions.
#[utoipa::path(get, path = "/api/v1/users/me/permissions", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, description = "Roles and permissions", body = Permissions),
    ))]
async fn my_permissions(State(state): State<AppState>, user: AuthUser) -> Result<Json<Permissions>> {
    let roles = users::role_names(&state.db, user.id()).await?;
    let permissions = roles::permissions_of(&state.db, user.id()).await?;
    Ok(Json(Permissions { roles, permissions }))
}

const HISTORY_PAGE_DEFAULT: u16 = 20;
const HISTORY_PAGE_MAX: u16 = 100;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u16>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct HistoryPage {
    items: Vec<LoginAttempt>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// The caller's sign-in attempts, newest first, by keyset pagination.
#[utoipa::path(get, path = "/api/v1/users/me/login-history", tag = "users", security(("bearer" = [])), params(HistoryQuery),
    responses(
        (status = 200, description = "A page of sign-in attempts", body = HistoryPage),
        (status = 422, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
    ))]
async fn my_login_history(State(state): State<AppState>, user: AuthUser, Query(query): Query<HistoryQuery>) -> Result<Json<HistoryPage>> {
    let limit = query.limit.unwrap_or(HISTORY_PAGE_DEFAULT);
    if !(1..=HISTORY_PAGE_MAX).contains(&limit) {
        return Err(ApiError::field("limit", format!("must be 1 to {HISTORY_PAGE_MAX}")));
    }
    let cursor = query
        .cursor
        .as_deref()
        .map(|c| Cursor::parse(c).ok_or_else(|| ApiError::field("cursor", "is not a cursor this API returned")))
        .transpose()?;
    let (items, next) = history::page(&state.db, user.id(), cursor, limit).await?;
    Ok(Json(HistoryPage { items, next_cursor: next.map(|c| c.encode()) }))
}
