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
    /// Films of the genre that the viewer may see.
    pub film_count: i64,
}

/// `$1` is the viewer's age limit: the count never includes films the viewer may not see.
const SELECT: &str = "SELECT g.id, g.name,
        (SELECT count(*) FROM film_genres fg JOIN films f ON f.id = fg.film_id WHERE fg.genre_id = g.id AND f.age_class <= $1) AS film_count
   FROM genres g";

#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn list(db: &PgPool, max_age: u8) -> Result<Vec<Genre>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY g.name"))).bind(i16::from(max_age)).fetch_all(db).await?)
}

#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn get(db: &PgPool, max_age: u8, id: Uuid) -> Result<Option<Genre>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE g.id = $2"))).bind(i16::from(max_age)).bind(id).fetch_optional(db).await?)
}
