//! Genres.

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::Result;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Genre {
    pub id: Uuid,
    pub name: String,
    /// Films of the genre in the whole catalogue.
    pub film_count: i64,
}

const SELECT: &str = "SELECT g.id, g.name, (SELECT count(*) FROM film_genres fg WHERE fg.genre_id = g.id) AS film_count FROM genres g";

#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn list(db: &PgPool) -> Result<Vec<Genre>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY g.name"))).fetch_all(db).await?)
}

#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn get(db: &PgPool, id: Uuid) -> Result<Option<Genre>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE g.id = $1"))).bind(id).fetch_optional(db).await?)
}
