//! The caller's own account: profile and password.

use axum::{extract::State, http::StatusCode};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    auth::cache_revocation,
    extract::{AuthUser, Json},
};
use crate::{
    domain::{BirthDate, Country, Email, Login, NewPassword, Region},
    error::{ApiError, Problem, Result},
    state::AppState,
    store::{
        sessions::{self, EndReason},
        users::{self, ProfileChange, User},
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_me, patch_me)).routes(routes!(change_password))
}

/// The caller's account.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, description = "The account", body = User),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_me(State(state): State<AppState>, user: AuthUser) -> Result<Json<User>> {
    users::get(&state.db, user.id()).await?.map(Json).ok_or_else(ApiError::invalid_token)
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
    #[schema(value_type = Option<String>)]
    email: Option<Option<Email>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    login: Option<Option<Login>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<NaiveDate>)]
    birth_date: Option<Option<BirthDate>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    country: Option<Option<Country>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    region: Option<Option<Region>>,
}

/// Changes the caller's profile.
#[utoipa::path(patch, path = "/api/v1/users/me", tag = "users", security(("bearer" = [])), request_body = ProfilePatch,
    responses(
        (status = 200, description = "The updated account", body = User),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Email or login taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
    ))]
async fn patch_me(State(state): State<AppState>, user: AuthUser, Json(patch): Json<ProfilePatch>) -> Result<Json<User>> {
    let email = match patch.email {
        Some(None) => return Err(ApiError::field("email", "cannot be null")),
        other => other.flatten(),
    };
    let change = ProfileChange {
        email,
        login: patch.login,
        birth_date: patch.birth_date,
        country: patch.country,
        region: patch.region,
    };
    users::update_profile(&state.db, user.id(), change).await?.map(Json).ok_or_else(ApiError::invalid_token)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    #[schema(value_type = String, format = Password)]
    current_password: SecretString,
    #[schema(value_type = String, format = Password, min_length = 8, max_length = 128)]
    new_password: SecretString,
}

/// Changes the caller's password and ends every other session.
#[utoipa::path(put, path = "/api/v1/users/me/password", tag = "users", security(("bearer" = [])), request_body = PasswordChange,
    responses(
        (status = 204, description = "Password changed; other sessions ended"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Wrong current password, or the new one fails the policy", body = Problem, content_type = "application/problem+json"),
    ))]
async fn change_password(State(state): State<AppState>, user: AuthUser, Json(body): Json<PasswordChange>) -> Result<StatusCode> {
    let account = users::get(&state.db, user.id()).await?.ok_or_else(ApiError::invalid_token)?;
    let email = Email::parse(&account.email).map_err(|e| anyhow::anyhow!("stored email invalid: {e}"))?;
    let new_password = NewPassword::parse(&body.new_password, &email).map_err(|m| ApiError::field("new_password", m))?;
    let current_hash = users::password_hash(&state.db, user.id()).await?;
    if !state.hasher.verify(&body.current_password, current_hash.as_deref()).await? {
        return Err(ApiError::field("current_password", "is incorrect"));
    }
    let hash = state.hasher.hash(new_password.secret()).await?;
    let mut tx = state.db.begin().await?;
    users::set_password_hash(&mut *tx, user.id(), &hash).await?;
    let ended = sessions::end_all(&mut *tx, user.id(), Some(user.session_id()), EndReason::PasswordChanged).await?;
    tx.commit().await?;
    cache_revocation(&state, &ended, None).await;
    tracing::info!(user_id = %user.id(), ended = ended.len(), "password changed");
    Ok(StatusCode::NO_CONTENT)
}
