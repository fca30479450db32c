//! Films: list, search, details and streaming.

use auth_client::Viewer;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    extract::{Path, Query},
    paging::PageParams,
};
use crate::{
    access,
    catalog::films::{self, FilmDetail, FilmPage, Sort},
    error::{ApiError, Result},
    playback::UrlSigner,
    state::AppState,
};
use problem::Problem;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_films)).routes(routes!(search_films)).routes(routes!(get_film)).routes(routes!(stream_film))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// One of `-imdb_rating` (default), `imdb_rating`, `-release_date`, `release_date`, `title`, `-title`.
    #[param(inline, value_type = Option<FilmSort>)]
    sort: Option<String>,
    /// Only films of this genre (its id).
    genre: Option<Uuid>,
}

/// The orders of the film list, as a schema: an enum (schema fuzzing found `sort`
/// documented as any string while the list refuses all but these).
pub struct FilmSort;

impl utoipa::PartialSchema for FilmSort {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let orders = ["-imdb_rating", "imdb_rating", "-release_date", "release_date", "title", "-title"];
        debug_assert!(orders.iter().all(|o| Sort::parse(o).is_some()));
        utoipa::openapi::schema::ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::String).enum_values(Some(orders)).into()
    }
}

impl utoipa::ToSchema for FilmSort {}

/// Films the viewer may see, sorted and paged.
#[utoipa::path(get, path = "/api/v1/films", tag = "films", params(ListParams, PageParams), security((), ("bearer" = [])),
    responses(
        (status = 200, description = "A page of films", body = FilmPage),
        (status = 401, description = "Invalid, expired or revoked token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_films(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(params): Query<ListParams>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<FilmPage>> {
    let sort = match params.sort.as_deref() {
        None => Sort::RatingDesc,
        Some(raw) => Sort::parse(raw).ok_or_else(|| ApiError::field("sort", format!("must be one of {}", Sort::ALLOWED)))?,
    };
    let paging = page.paging()?;
    let max_age = access::max_age_class(&viewer);
    let genre_key = params.genre.map_or_else(|| "all".to_owned(), |g| g.simple().to_string());
    let key = format!("films:{max_age}:{genre_key}:{}:{}:{}", sort.key(), paging.number, paging.size);
    let page = state.cache.get_or_load(&key, || films::list(&state.db, max_age, params.genre, sort, paging)).await?;
    Ok(axum::Json(page))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Words of the title; misspellings are tolerated. 1 to 200 characters, not only
    /// spaces, no NUL.
    #[param(example = "godfater", pattern = r"^[^\x00]*[^\s\x00][^\x00]*$", max_length = 200)]
    query: String,
}

/// The search words, as both searches take them.
pub(crate) fn search_text(raw: &str) -> Result<String> {
    let text = raw.trim();
    if text.is_empty() || text.chars().count() > 200 {
        return Err(ApiError::field("query", "must be 1 to 200 characters"));
    }
    // PostgreSQL cannot take it in a text parameter: it was a 500 (found by schema fuzzing).
    if text.contains('\0') {
        return Err(ApiError::field("query", "must not contain NUL characters"));
    }
    Ok(text.to_owned())
}

/// Full-text search of titles, tolerant of typos, among the films the viewer may see.
#[utoipa::path(get, path = "/api/v1/films/search", tag = "films", params(SearchParams, PageParams), security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Best matches first", body = FilmPage),
        (status = 401, description = "Invalid, expired or revoked token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
    ))]
async fn search_films(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(params): Query<SearchParams>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<FilmPage>> {
    let text = search_text(&params.query)?;
    let paging = page.paging()?;
    let max_age = access::max_age_class(&viewer);
    let key = format!("search:{max_age}:{}:{}:{}", paging.number, paging.size, text.to_lowercase());
    let page = state.cache.get_or_load(&key, || films::search(&state.db, max_age, &text, paging)).await?;
    Ok(axum::Json(page))
}

async fn film(state: &AppState, id: Uuid) -> Result<FilmDetail> {
    state.cache.get_or_load(&format!("film:{}", id.simple()), || films::get(&state.db, id)).await?.ok_or(ApiError::NotFound("No film with this id."))
}

/// One film. 403 when it is above the viewer's age class.
#[utoipa::path(get, path = "/api/v1/films/{id}", tag = "films", security((), ("bearer" = [])),
    params(("id" = Uuid, Path, description = "Film id")),
    responses(
        (status = 200, description = "The film", body = FilmDetail),
        (status = 401, description = "Invalid, expired or revoked token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Above the viewer's age class", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such film", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_film(State(state): State<AppState>, viewer: Viewer, Path(id): Path<Uuid>) -> Result<axum::Json<FilmDetail>> {
    let film = film(&state, id).await?;
    access::check_age(&viewer, film.age_class as u8)?;
    Ok(axum::Json(film))
}

/// Where and how to play a film.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlaybackDescriptor {
    pub film_id: Uuid,
    /// HLS master playlist of the film: a path on this site, signed for a limited time.
    /// The media server checks `expires` (Unix seconds) and `sig`: a missing or wrong
    /// signature, or any other part of the URL changed, is 403; a URL past its
    /// `expires` is 410. Use it exactly as given.
    #[schema(example = "/media/films/3f1c2d4e5a6b47c8a9d0e1f2a3b4c5d6/master.m3u8?expires=1767225600&sig=5XPm8jwnslJjpdpZwgUwJA")]
    pub manifest_url: String,
    #[schema(example = "hls")]
    pub protocol: &'static str,
    pub access_tier: String,
    /// When `manifest_url` stops being served: the `expires` it carries, in whole
    /// seconds (by default 10 minutes after this answer). Ask again for a fresh URL.
    #[schema(example = "2026-01-01T00:00:00Z")]
    pub expires_at: DateTime<Utc>,
}

/// A playback descriptor for a viewer entitled to the film: anonymous viewers may
/// play free films, subscription films need the `subscriber` role; never above the
/// viewer's age class. The manifest URL is signed and expires (10 minutes by default).
#[utoipa::path(get, path = "/api/v1/films/{id}/stream", tag = "films", security((), ("bearer" = [])),
    params(("id" = Uuid, Path, description = "Film id")),
    responses(
        (status = 200, description = "How to play it", body = PlaybackDescriptor),
        (status = 401, description = "Sign in with a subscription, or an invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "No subscription, or above the viewer's age class", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such film", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
    ))]
async fn stream_film(State(state): State<AppState>, viewer: Viewer, Path(id): Path<Uuid>) -> Result<axum::Json<PlaybackDescriptor>> {
    let film = film(&state, id).await?;
    access::check_stream(&viewer, film.age_class as u8, &film.access_tier)?;
    let signed = state.playback.sign(&UrlSigner::manifest_path(film.id));
    Ok(axum::Json(PlaybackDescriptor {
        film_id: film.id,
        manifest_url: signed.url,
        protocol: "hls",
        access_tier: film.access_tier,
        expires_at: signed.expires_at,
    }))
}
