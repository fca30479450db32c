//! SQL for roles, their permissions and their grants to users.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    domain::RoleName,
    error::{ApiError, Result, ResultExt},
};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct Role {
    pub id: Uuid,
    #[schema(example = "subscriber")]
    pub name: String,
    pub description: String,
    #[schema(example = json!(["films.watch.subscription"]))]
    pub permissions: Vec<String>,
    /// Built-in roles (`user`, `subscriber`, `admin`) cannot be renamed or deleted.
    pub built_in: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub struct RoleChange {
    pub name: Option<RoleName>,
    pub description: Option<String>,
    pub permissions: Option<Vec<String>>,
}

const COLUMNS: &str = "id, name, description, permissions, built_in, created_at, updated_at";

fn role_exists() -> ApiError {
    ApiError::Conflict { code: "role_exists", detail: "A role with this name already exists." }
}

fn built_in() -> ApiError {
    ApiError::Conflict { code: "built_in_role", detail: "Built-in roles cannot be renamed or deleted." }
}

/// The built-in role that `create-superuser` grants; it always carries this permission,
/// and someone always holds it, so the role system can never lock every admin out.
pub const ADMIN: &str = "admin";
pub const MANAGE_ROLES: &str = "roles.manage";

fn admin_keeps_managing() -> ApiError {
    ApiError::Conflict {
        code: "admin_role_needs_roles_manage",
        detail: "The built-in admin role keeps the roles.manage permission: without it nobody could manage roles.",
    }
}

fn last_admin() -> ApiError {
    ApiError::Conflict { code: "last_admin", detail: "This is the last admin; grant the admin role to someone else first." }
}

fn no_such_role() -> ApiError {
    ApiError::NotFound("No role with this id.")
}

#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn list(db: &PgPool) -> Result<Vec<Role>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM roles ORDER BY name"))).fetch_all(db).await?)
}

#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn get(db: &PgPool, id: Uuid) -> Result<Role> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM roles WHERE id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await?
        .ok_or_else(no_such_role)
}

#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn create(db: &PgPool, name: &RoleName, description: &str, permissions: &[String]) -> Result<Role> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("INSERT INTO roles (id, name, description, permissions) VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}")))
        .bind(Uuid::now_v7())
        .bind(name.as_ref())
        .bind(description)
        .bind(permissions)
        .fetch_one(db)
        .await
        .on_constraints(&[("roles_name_key", role_exists)])
}

#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn update(db: &PgPool, id: Uuid, change: RoleChange) -> Result<Role> {
    let mut tx = db.begin().await?;
    let current: Role = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM roles WHERE id = $1 FOR UPDATE")))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(no_such_role)?;
    if current.built_in && change.name.as_ref().is_some_and(|n| n.as_ref() != current.name) {
        return Err(built_in());
    }
    if current.built_in && current.name == ADMIN && change.permissions.as_ref().is_some_and(|p| !p.iter().any(|p| p == MANAGE_ROLES)) {
        return Err(admin_keeps_managing());
    }
    let role = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE roles SET name = COALESCE($2, name), description = COALESCE($3, description),
                permissions = COALESCE($4, permissions), updated_at = now()
          WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(change.name.as_ref().map(AsRef::as_ref))
    .bind(change.description)
    .bind(change.permissions)
    .fetch_one(&mut *tx)
    .await
    .on_constraints(&[("roles_name_key", role_exists)])?;
    tx.commit().await?;
    Ok(role)
}

#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn delete(db: &PgPool, id: Uuid) -> Result<()> {
    let built_in_role: Option<bool> = sqlx::query_scalar(
        "WITH target AS (SELECT id, built_in FROM roles WHERE id = $1),
              deleted AS (DELETE FROM roles WHERE id = (SELECT id FROM target WHERE NOT built_in) RETURNING id)
         SELECT built_in FROM target",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    match built_in_role {
        None => Err(no_such_role()),
        Some(true) => Err(built_in()),
        Some(false) => Ok(()),
    }
}

/// The roles granted to a user, by name.
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn of_user(db: impl PgExecutor<'_>, user_id: Uuid) -> Result<Vec<Role>> {
    Ok(sqlx::query_as(
        "SELECT r.id, r.name, r.description, r.permissions, r.built_in, r.created_at, r.updated_at
           FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = $1 ORDER BY r.name",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?)
}

#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn user_exists(db: impl PgExecutor<'_>, user_id: Uuid) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)").bind(user_id).fetch_one(db).await?)
}

#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn role_id_by_name(db: impl PgExecutor<'_>, name: &str) -> Result<Option<Uuid>> {
    Ok(sqlx::query_scalar("SELECT id FROM roles WHERE name = $1").bind(name).fetch_optional(db).await?)
}

/// Revokes a role by name; revoking one the user does not have is not an error.
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn revoke(db: &PgPool, user_id: Uuid, role_id: Uuid) -> Result<()> {
    let mut tx = db.begin().await?;
    // Locking the role serialises revocations of it: two admins taking the role from
    // each other at once cannot both see the other one remain.
    let name: Option<String> = sqlx::query_scalar("SELECT name FROM roles WHERE id = $1 FOR UPDATE").bind(role_id).fetch_optional(&mut *tx).await?;
    let Some(name) = name else { return Err(no_such_role()) };
    sqlx::query("DELETE FROM user_roles WHERE user_id = $1 AND role_id = $2").bind(user_id).bind(role_id).execute(&mut *tx).await?;
    if name == ADMIN {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM user_roles WHERE role_id = $1").bind(role_id).fetch_one(&mut *tx).await?;
        if left == 0 {
            return Err(last_admin());
        }
    }
    tx.commit().await?;
    Ok(())
}

/// The union of the permissions of a user's roles, sorted.
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn permissions_of(db: impl PgExecutor<'_>, user_id: Uuid) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT p FROM user_roles ur JOIN roles r ON r.id = ur.role_id, unnest(r.permissions) AS p
          WHERE ur.user_id = $1 ORDER BY p",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?)
}
