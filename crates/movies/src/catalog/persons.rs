//! Persons: directors (and, with richer data, actors and writers).

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{PageInfo, Paging};
use crate::error::Result;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Person {
    pub id: Uuid,
    pub full_name: String,
    /// What the person did: `director`, …
    pub roles: Vec<String>,
    /// Films of the person that the viewer may see.
    pub film_count: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PersonPage {
    pub items: Vec<Person>,
    pub page: PageInfo,
}

/// A [`Person`]; `max_age` names the parameter holding the viewer's age limit, so
/// neither the roles nor the count include films the viewer may not see.
fn select(max_age: &str) -> String {
    format!(
        "SELECT p.id, p.full_name,
            ARRAY(SELECT DISTINCT fp.role FROM film_persons fp JOIN films f ON f.id = fp.film_id
                   WHERE fp.person_id = p.id AND f.age_class <= {max_age} ORDER BY 1) AS roles,
            (SELECT count(DISTINCT fp.film_id) FROM film_persons fp JOIN films f ON f.id = fp.film_id
              WHERE fp.person_id = p.id AND f.age_class <= {max_age}) AS film_count
       FROM persons p"
    )
}

/// Whether the person `p` is shown to a viewer whose age limit is in `max_age`: not
/// when every film of theirs is hidden from the viewer, whose lists and search would
/// otherwise name the people of films they may not see (a person without films hides
/// nothing).
fn shown(max_age: &str) -> String {
    format!(
        "(EXISTS (SELECT 1 FROM film_persons fp JOIN films f ON f.id = fp.film_id
                   WHERE fp.person_id = p.id AND f.age_class <= {max_age})
          OR NOT EXISTS (SELECT 1 FROM film_persons fp WHERE fp.person_id = p.id))"
    )
}

#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn get(db: &PgPool, max_age: u8, id: Uuid) -> Result<Option<Person>> {
    let sql = format!("{} WHERE p.id = $1 AND {}", select("$2"), shown("$2"));
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(i16::from(max_age)).fetch_optional(db).await?)
}

/// Name search, tolerant of typos (trigram word similarity) and word order (full text).
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn search(db: &PgPool, max_age: u8, query: &str, paging: Paging) -> Result<PersonPage> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        person: Person,
        total: i64,
    }
    // `$1` the query, `$2` the viewer's age limit. A query without lexemes (`%`) is no
    // text-search query (NULL), never an empty one, which PostgreSQL answers with a
    // NOTICE that sqlx logs at INFO: a log line per request (see `films::search`).
    let hits = format!(
        "WITH hits AS (
            SELECT p.id, word_similarity(lower($1), lower(p.full_name)) AS sim
              FROM persons p
             WHERE (lower($1) <% lower(p.full_name)
                    OR to_tsvector('simple', p.full_name)
                       @@ CASE WHEN to_tsvector('simple', $1) <> ''::tsvector THEN plainto_tsquery('simple', $1) END)
               AND {}
         )",
        shown("$2")
    );
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{hits}, page AS (
            SELECT id, sim, count(*) OVER () AS total FROM hits ORDER BY sim DESC, id LIMIT $3 OFFSET $4
         )
         SELECT x.*, page.total FROM page JOIN ({}) x ON x.id = page.id ORDER BY page.sim DESC, page.id",
        select("$2")
    )))
    .bind(query)
    .bind(i16::from(max_age))
    .bind(paging.limit())
    .bind(paging.offset())
    .fetch_all(db)
    .await?;
    let total = match rows.first() {
        Some(row) => row.total,
        // Past the last page the window count has no row to ride on: count apart.
        None if paging.offset() > 0 => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("{hits} SELECT count(*) FROM hits")))
                .bind(query)
                .bind(i16::from(max_age))
                .fetch_one(db)
                .await?
        }
        None => 0,
    };
    Ok(PersonPage { items: rows.into_iter().map(|r| r.person).collect(), page: paging.info(total) })
}
