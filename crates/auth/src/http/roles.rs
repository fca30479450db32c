//! Roles and their permissions; who holds which role. Admins only.

use axum::{extract::State, http::StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::{Authorized, Json, ManageRoles, Path, ReadUsers};
use crate::{
    domain::{Email, Permission, RoleName, role::permission_set},
    error::{ApiError, Problem, Result},
    state::AppState,
    store::{
        roles::{self, Role, RoleChange},
        users::{self, User},
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_roles, create_role))
        .routes(routes!(get_role, update_role, delete_role))
        .routes(routes!(user_roles, grant_role))
        .routes(routes!(revoke_role))
        .routes(routes!(find_users))
}

fn description(raw: Option<String>) -> Result<Option<String>> {
    match raw {
        Some(d) if d.chars().count() > 500 => Err(ApiError::field("description", "must be at most 500 characters")),
        // PostgreSQL cannot store it: it was a 500 (found by schema fuzzing).
        Some(d) if d.contains('\0') => Err(ApiError::field("description", "must not contain NUL characters")),
        other => Ok(other),
    }
}

/// A role name as sent, checked before it reaches the database: one with a NUL was a
/// 500 (found by schema fuzzing). No role has a name that does not parse, or one with
/// spaces around it.
fn role_name(raw: &str) -> Option<RoleName> {
    RoleName::parse(raw).ok().filter(|name| name.as_ref() == raw)
}

fn permissions(raw: Vec<Permission>) -> Result<Vec<String>> {
    permission_set(raw).map_err(|m| ApiError::field("permissions", m))
}

/// Every role, by name.
#[utoipa::path(get, path = "/api/v1/roles", tag = "roles", security(("bearer" = [])),
    responses(
        (status = 200, description = "Roles", body = Vec<Role>),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_roles(State(state): State<AppState>, _: Authorized<ManageRoles>) -> Result<Json<Vec<Role>>> {
    Ok(Json(roles::list(&state.db).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    name: RoleName,
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\x00]*$")]
    description: Option<String>,
    #[serde(default)]
    #[schema(max_items = 100, example = json!(["comments.moderate"]))]
    permissions: Vec<Permission>,
}

/// Creates a role.
#[utoipa::path(post, path = "/api/v1/roles", tag = "roles", security(("bearer" = [])), request_body = NewRole,
    responses(
        (status = 201, description = "Created", body = Role,
            headers(("Location" = String, description = "The new role's URL: `/api/v1/roles/{id}`"))),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Name taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_role(
    State(state): State<AppState>,
    _: Authorized<ManageRoles>,
    Json(body): Json<NewRole>,
) -> Result<(StatusCode, [(axum::http::HeaderName, String); 1], Json<Role>)> {
    let description = description(body.description)?.unwrap_or_default();
    let permissions = permissions(body.permissions)?;
    let role = roles::create(&state.db, &body.name, &description, &permissions).await?;
    tracing::info!(role = %role.name, "role created");
    // RFC 9110 §15.3.2: a 201 names the resource it created.
    let location = format!("/api/v1/roles/{}", role.id);
    Ok((StatusCode::CREATED, [(axum::http::header::LOCATION, location)], Json(role)))
}

/// One role.
#[utoipa::path(get, path = "/api/v1/roles/{id}", tag = "roles", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Role id")),
    responses(
        (status = 200, description = "The role", body = Role),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such role", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_role(State(state): State<AppState>, _: Authorized<ManageRoles>, Path(id): Path<Uuid>) -> Result<Json<Role>> {
    Ok(Json(roles::get(&state.db, id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolePatch {
    name: Option<RoleName>,
    #[schema(max_length = 500, pattern = r"^[^\x00]*$")]
    description: Option<String>,
    /// Replaces the whole set.
    #[schema(max_items = 100)]
    permissions: Option<Vec<Permission>>,
}

/// Changes a role. Built-in roles keep their names.
#[utoipa::path(patch, path = "/api/v1/roles/{id}", tag = "roles", security(("bearer" = [])), request_body = RolePatch,
    params(("id" = Uuid, Path, description = "Role id")),
    responses(
        (status = 200, description = "The updated role", body = Role),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such role", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Name taken, renaming a built-in role, or taking `roles.manage` from the built-in admin role (`admin_role_needs_roles_manage`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_role(
    State(state): State<AppState>,
    _: Authorized<ManageRoles>,
    Path(id): Path<Uuid>,
    Json(body): Json<RolePatch>,
) -> Result<Json<Role>> {
    let change =
        RoleChange { name: body.name, description: description(body.description)?, permissions: body.permissions.map(permissions).transpose()? };
    let renamed = change.name.is_some();
    let role = roles::update(&state.db, id, change).await?;
    if renamed {
        // Cached profiles show role names.
        state.profiles.forget_all().await;
    }
    Ok(Json(role))
}

/// Deletes a role and takes it from everyone who holds it. Built-in roles stay.
#[utoipa::path(delete, path = "/api/v1/roles/{id}", tag = "roles", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Role id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such role", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A built-in role", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_role(State(state): State<AppState>, _: Authorized<ManageRoles>, Path(id): Path<Uuid>) -> Result<StatusCode> {
    roles::delete(&state.db, id).await?;
    state.profiles.forget_all().await;
    Ok(StatusCode::NO_CONTENT)
}

async fn existing_user(state: &AppState, id: Uuid) -> Result<()> {
    if roles::user_exists(&state.db, id).await? { Ok(()) } else { Err(ApiError::NotFound("No user with this id.")) }
}

/// The roles a user holds.
#[utoipa::path(get, path = "/api/v1/users/{id}/roles", tag = "roles", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "The user's roles", body = Vec<Role>),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
    ))]
async fn user_roles(State(state): State<AppState>, _: Authorized<ManageRoles>, Path(id): Path<Uuid>) -> Result<Json<Vec<Role>>> {
    existing_user(&state, id).await?;
    Ok(Json(roles::of_user(&state.db, id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleGrant {
    /// Role name.
    #[schema(value_type = RoleName, example = "subscriber")]
    role: String,
}

/// Grants a role by name. Granting one the user already holds is not an error. The
/// user's next access token (at the next refresh) carries it; introspection shows it at once.
#[utoipa::path(post, path = "/api/v1/users/{id}/roles", tag = "roles", security(("bearer" = [])), request_body = RoleGrant,
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "The user's roles now", body = Vec<Role>),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`too_many_roles`: the user holds 32 roles already, the most one may hold (each goes into the access token)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No such role, or the id is not a UUID", body = Problem, content_type = "application/problem+json"),
    ))]
async fn grant_role(
    State(state): State<AppState>,
    admin: Authorized<ManageRoles>,
    Path(id): Path<Uuid>,
    Json(body): Json<RoleGrant>,
) -> Result<Json<Vec<Role>>> {
    existing_user(&state, id).await?;
    let Some(role) = role_name(&body.role) else { return Err(ApiError::field("role", "no role has this name")) };
    let grant = users::grant_role_within_limit(&state.db, id, role.as_ref()).await?.ok_or(ApiError::NotFound("No user with this id."))?;
    match grant {
        users::Grant::NoSuchRole => return Err(ApiError::field("role", "no role has this name")),
        users::Grant::TooManyRoles => {
            return Err(ApiError::Conflict {
                code: "too_many_roles",
                detail: "The user holds 32 roles, the most one may hold: every role goes into the access token, which must stay small. Take one away first.",
            });
        }
        users::Grant::AlreadyHeld => {}
        users::Grant::Granted => {
            tracing::info!(user_id = %id, role = %body.role, by = %admin.0.id(), "role granted");
            state.profiles.forget(id).await;
        }
    }
    Ok(Json(roles::of_user(&state.db, id).await?))
}

/// Takes a role from a user; taking one the user does not hold is not an error.
#[utoipa::path(delete, path = "/api/v1/users/{id}/roles/{name}", tag = "roles", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id"), ("name" = RoleName, Path, description = "Role name")),
    responses(
        (status = 204, description = "The user does not hold the role"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user or role", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`last_admin`: taking the admin role from its last holder", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
    ))]
async fn revoke_role(State(state): State<AppState>, admin: Authorized<ManageRoles>, Path((id, role)): Path<(Uuid, String)>) -> Result<StatusCode> {
    existing_user(&state, id).await?;
    let no_such_role = || ApiError::NotFound("No role has this name.");
    let name = role_name(&role).ok_or_else(no_such_role)?;
    let role_id = roles::role_id_by_name(&state.db, name.as_ref()).await?.ok_or_else(no_such_role)?;
    roles::revoke(&state.db, id, role_id).await?;
    state.profiles.forget(id).await;
    tracing::info!(user_id = %id, %role, by = %admin.0.id(), "role revoked");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserSearch {
    /// Exact email, any case.
    #[schema(example = "viewer@example.com", format = Email, max_length = 254)]
    email: String,
}

/// Finds a user by email, for support. The address goes in the body, never the URL,
/// which proxies, access logs and browser histories keep (ASVS V13.1.3).
#[utoipa::path(post, path = "/api/v1/users/search", tag = "roles", security(("bearer" = [])), request_body = UserSearch,
    responses(
        (status = 200, description = "The matching users: none or one", body = Vec<User>),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not allowed to read users", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing or malformed email", body = Problem, content_type = "application/problem+json"),
    ))]
async fn find_users(State(state): State<AppState>, _: Authorized<ReadUsers>, Json(search): Json<UserSearch>) -> Result<Json<Vec<User>>> {
    let email = Email::lookup(&search.email).map_err(|m| ApiError::field("email", m))?;
    Ok(Json(users::find_by_email(&state.db, &email).await?.into_iter().collect()))
}
