//! Films: lists, search and details.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    GenreRef, PageInfo, Paging, PersonRef,
    search_query::{Lexeme, Lexicon, SearchQuery},
};
use crate::error::Result;

/// A film in a list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow, PartialEq)]
pub struct FilmSummary {
    pub id: Uuid,
    pub title: String,
    pub release_date: Option<NaiveDate>,
    pub imdb_rating: Option<f32>,
    /// Russian age classification: 0, 6, 12, 16 or 18 (+).
    #[schema(example = 16)]
    pub age_class: i16,
    /// `free` or `subscription`.
    #[schema(example = "subscription")]
    pub access_tier: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FilmPage {
    pub items: Vec<FilmSummary>,
    pub page: PageInfo,
}

/// A film with everything the catalogue knows of it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct FilmDetail {
    pub id: Uuid,
    pub title: String,
    pub release_date: Option<NaiveDate>,
    pub imdb_rating: Option<f32>,
    pub imdb_votes: Option<i32>,
    pub rotten_tomatoes_rating: Option<i16>,
    /// The MPAA rating of the source data, from which `age_class` is derived.
    pub mpaa_rating: Option<String>,
    #[schema(example = 16)]
    pub age_class: i16,
    #[schema(example = "subscription")]
    pub access_tier: String,
    pub running_time_min: Option<i16>,
    pub distributor: Option<String>,
    pub source: Option<String>,
    pub creative_type: Option<String>,
    #[sqlx(json)]
    pub genres: Vec<GenreRef>,
    #[sqlx(json)]
    pub directors: Vec<PersonRef>,
}

/// Orders of a film list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    RatingDesc,
    RatingAsc,
    ReleaseDesc,
    ReleaseAsc,
    TitleAsc,
    TitleDesc,
}

impl Sort {
    pub const ALLOWED: &'static str = "-imdb_rating, imdb_rating, -release_date, release_date, title, -title";

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "-imdb_rating" => Self::RatingDesc,
            "imdb_rating" => Self::RatingAsc,
            "-release_date" => Self::ReleaseDesc,
            "release_date" => Self::ReleaseAsc,
            "title" => Self::TitleAsc,
            "-title" => Self::TitleDesc,
            _ => return None,
        })
    }

    pub fn key(self) -> &'static str {
        match self {
            Self::RatingDesc => "-imdb_rating",
            Self::RatingAsc => "imdb_rating",
            Self::ReleaseDesc => "-release_date",
            Self::ReleaseAsc => "release_date",
            Self::TitleAsc => "title",
            Self::TitleDesc => "-title",
        }
    }

    /// A fixed SQL fragment per variant: never built from input.
    fn order_by(self) -> &'static str {
        match self {
            Self::RatingDesc => "imdb_rating DESC NULLS LAST, id",
            Self::RatingAsc => "imdb_rating ASC NULLS LAST, id",
            Self::ReleaseDesc => "release_date DESC NULLS LAST, id",
            Self::ReleaseAsc => "release_date ASC NULLS LAST, id",
            Self::TitleAsc => "title ASC, id",
            Self::TitleDesc => "title DESC, id",
        }
    }
}

const SUMMARY: &str = "id, title, release_date, imdb_rating, age_class, access_tier";

#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn list(db: &PgPool, max_age: u8, genre: Option<Uuid>, sort: Sort, paging: Paging) -> Result<FilmPage> {
    let filter = "age_class <= $1 AND ($2::uuid IS NULL OR id IN (SELECT film_id FROM film_genres WHERE genre_id = $2))";
    let items: Vec<FilmSummary> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {SUMMARY} FROM films WHERE {filter} ORDER BY {} LIMIT $3 OFFSET $4", sort.order_by())))
            .bind(i16::from(max_age))
            .bind(genre)
            .bind(paging.limit())
            .bind(paging.offset())
            .fetch_all(db)
            .await?;
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM films WHERE {filter}")))
        .bind(i16::from(max_age))
        .bind(genre)
        .fetch_one(db)
        .await?;
    Ok(FilmPage { items, page: paging.info(total) })
}

/// The words of a query, as PostgreSQL alone can answer for them: whether each is a
/// stop word ("the", "a", "in": `to_tsvector` of it is empty; the index holds none of
/// them), and, for the words to find, the title words like it: same first letter and a
/// length within two (`title_words_initial_length_idx` finds these few candidates),
/// then trigram word similarity (`<%`, `pg_trgm.word_similarity_threshold`). A stop word
/// gets no look-alikes: the title words like it ("then", "thin") would have had to
/// match in its place. One statement for all the words; none when there are none.
///
/// The arrays are read through sub-SELECTs (InitPlans), which hide their values from
/// the planner, as [`search_matches!`] does: see there why.
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
async fn lexicon(db: &mut PgConnection, query: &SearchQuery) -> Result<Lexicon> {
    let (words, look_alikes) = query.words();
    if words.is_empty() {
        return Ok(Lexicon::new());
    }
    let rows: Vec<(String, bool, Vec<String>)> = sqlx::query_as(
        "SELECT u.word, l.lexical,
                CASE WHEN u.look_alikes AND l.lexical THEN
                  ARRAY(SELECT d.word FROM title_words d
                         WHERE left(d.word, 1) = left(u.word, 1)
                           AND length(d.word) BETWEEN length(u.word) - 2 AND length(u.word) + 2
                           AND u.word <% d.word)
                ELSE '{}' END
           FROM unnest((SELECT $1::text[]), (SELECT $2::bool[])) AS u(word, look_alikes),
                LATERAL (SELECT to_tsvector('english', u.word) <> ''::tsvector AS lexical) AS l",
    )
    .bind(&words)
    .bind(&look_alikes)
    .fetch_all(&mut *db)
    .await?;
    Ok(rows.into_iter().map(|(word, lexical, look_alikes)| (word, Lexeme { lexical, look_alikes })).collect())
}

/// The CTE of film search: `q.tolerant` is the typo-tolerant query, `$3`, written by
/// [`SearchQuery::tolerant`]; `q.typed` the query as typed, `$2`, read by
/// `websearch_to_tsquery`.
///
/// A text without lexemes (`%`, only stop words) gives no query at all (NULL), never an
/// empty one: PostgreSQL answers an empty text-search query with a NOTICE, which sqlx
/// logs at INFO, a log line any client could write per request. `$3` is NULL then, and
/// for the typed query `to_tsvector` of the same text decides it without a notice,
/// before `websearch_to_tsquery` is called.
///
/// Both queries are sub-SELECTs (InitPlans), computed once per execution and unknown to
/// the planner. Were the planner to see them, a plan made for the values at hand would
/// be costed below the generic plan, and PostgreSQL would plan the statement again at
/// every search (`plan_cache_mode = auto`), which took as long as running it (on the
/// demo catalogue, through psql: 0.28 ms per films statement against 0.15, 0.31 per
/// words' statement against 0.24); hidden, both cost the same, and the generic plan is
/// kept after the fifth run (`searches_plan_their_statements_once_per_connection`).
macro_rules! search_matches {
    () => {
        "WITH q AS (
                SELECT (SELECT CASE WHEN to_tsvector('english', $2) <> ''::tsvector THEN websearch_to_tsquery('english', $2) END) AS typed,
                       (SELECT to_tsquery('english', $3)) AS tolerant
              )"
    };
}

/// The films a search finds, given the CTE of `search_matches!`: those the viewer may
/// see whose title matches the tolerant query, or is the query itself (any case), so
/// that a title made only of stop words ("Up", "Once"), whose tsvector is empty, is
/// still found by its name (an index on `lower(title)` answers it).
macro_rules! search_filter {
    () => {
        "f.age_class <= $1 AND (f.search @@ q.tolerant OR lower(f.title) = lower($2))"
    };
}

/// Full-text search on titles, tolerant of typos. Each word of the query stands for
/// itself or any word of a title like it (same first letter, length within two, and
/// trigram word similarity, against `title_words`), all words but stop words must match
/// (English stemming, through the tsvector's GIN index), but for `or` (either side
/// suffices) and `-word` (titles without it, matched exactly), or the whole title is the
/// query. The query is read in Rust ([`SearchQuery`]), PostgreSQL answers for its words
/// ([`lexicon`]), and the tolerant query is written in Rust and passed to the films'
/// statement. A film whose title is the query ranks first, then films matching the
/// query as typed, then by text rank, by how close the title is to the query, and by
/// rating.
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn search(db: &PgPool, max_age: u8, query: &str, paging: Paging) -> Result<FilmPage> {
    let parsed = SearchQuery::parse(query);
    // One connection for both statements: taking it from the pool twice cost a tenth of
    // uncached search's throughput (2,900 against 3,150/s, docs/benchmarks.md), as much
    // as passing the words into one statement would have saved.
    let mut db = db.acquire().await?;
    let tolerant = parsed.tolerant(&lexicon(&mut db, &parsed).await?);
    let rows: Vec<(FilmSummary, i64)> = sqlx::query_as::<_, FilmSummaryWithTotal>(concat!(
        search_matches!(),
        "         SELECT f.id, f.title, f.release_date, f.imdb_rating, f.age_class, f.access_tier, count(*) OVER () AS total
           FROM films f, q
          WHERE ",
        search_filter!(),
        "
          ORDER BY lower(f.title) = lower($2) DESC, coalesce(f.search @@ q.typed, false) DESC, coalesce(ts_rank(f.search, q.typed), 0) DESC, word_similarity(lower($2), lower(f.title)) DESC,
                   f.imdb_rating DESC NULLS LAST, f.id
          LIMIT $4 OFFSET $5",
    ))
    .bind(i16::from(max_age))
    .bind(query)
    .bind(tolerant.as_deref())
    .bind(paging.limit())
    .bind(paging.offset())
    .fetch_all(&mut *db)
    .await?
    .into_iter()
    .map(|r| (r.film, r.total))
    .collect();
    let total = match rows.first() {
        Some((_, total)) => *total,
        // Past the last page the window count has no row to ride on: count apart.
        None if paging.offset() > 0 => {
            sqlx::query_scalar(concat!(search_matches!(), " SELECT count(*) FROM films f, q WHERE ", search_filter!()))
                .bind(i16::from(max_age))
                .bind(query)
                .bind(tolerant.as_deref())
                .fetch_one(&mut *db)
                .await?
        }
        None => 0,
    };
    Ok(FilmPage { items: rows.into_iter().map(|(f, _)| f).collect(), page: paging.info(total) })
}

#[derive(sqlx::FromRow)]
struct FilmSummaryWithTotal {
    #[sqlx(flatten)]
    film: FilmSummary,
    total: i64,
}

#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn get(db: &PgPool, id: Uuid) -> Result<Option<FilmDetail>> {
    Ok(sqlx::query_as(
        "SELECT f.id, f.title, f.release_date, f.imdb_rating, f.imdb_votes, f.rotten_tomatoes AS rotten_tomatoes_rating,
                f.mpaa_rating, f.age_class, f.access_tier, f.running_time_min, f.distributor, f.source, f.creative_type,
                COALESCE((SELECT json_agg(json_build_object('id', g.id, 'name', g.name) ORDER BY g.name)
                            FROM film_genres fg JOIN genres g ON g.id = fg.genre_id WHERE fg.film_id = f.id), '[]') AS genres,
                COALESCE((SELECT json_agg(json_build_object('id', p.id, 'full_name', p.full_name) ORDER BY p.full_name)
                            FROM film_persons fp JOIN persons p ON p.id = fp.person_id
                           WHERE fp.film_id = f.id AND fp.role = 'director'), '[]') AS directors
           FROM films f WHERE f.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?)
}

/// Films of a person, newest first, that the viewer may see.
#[tracing::instrument(level = "info", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn by_person(db: &PgPool, max_age: u8, person: Uuid) -> Result<Vec<FilmSummary>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SUMMARY} FROM films WHERE age_class <= $1 AND id IN (SELECT film_id FROM film_persons WHERE person_id = $2)
          ORDER BY release_date DESC NULLS LAST, id"
    )))
    .bind(i16::from(max_age))
    .bind(person)
    .fetch_all(db)
    .await?)
}
