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
    /// whitespace, no NUL.
    #[param(example = "godfater")]
    query: String,
}

/// The longest search query, in characters (Unicode code points, as JSON Schema's
/// `maxLength` counts them), whitespace around the words included.
const QUERY_MAX_CHARS: usize = 200;

/// The search words, as both searches take them. The query as sent must be 1 to 200
/// characters, not only whitespace, without NUL: exactly what the contract's `maxLength`
/// and `pattern` say ([`SearchQueryDoc`]). Whitespace is Unicode's `White_Space`
/// (`char::is_whitespace`, what `str::trim` removes). The length was counted after the
/// trim, and `\s` of the pattern is another set than Rust's, so the two disagreed (a
/// 202-character query, U+0085, U+FEFF).
pub(crate) fn search_text(raw: &str) -> Result<String> {
    if raw.chars().count() > QUERY_MAX_CHARS {
        return Err(ApiError::field("query", "must be 1 to 200 characters"));
    }
    // PostgreSQL cannot take it in a text parameter: it was a 500 (found by schema fuzzing).
    if raw.contains('\0') {
        return Err(ApiError::field("query", "must not contain NUL characters"));
    }
    let text = raw.trim();
    if text.is_empty() {
        return Err(ApiError::field("query", "must be 1 to 200 characters, not only whitespace"));
    }
    Ok(text.to_owned())
}

/// The contract's `pattern` of the search query: no NUL, and a character that is
/// neither NUL nor whitespace. It lists the whitespace characters one by one, from
/// `char::is_whitespace` itself, instead of writing `\s`, which means another set in
/// each dialect: ECMAScript's (JSON Schema's) holds U+FEFF and not U+0085, Python's
/// (schemathesis) holds U+001C to U+001F. `\uXXXX` reads the same in all of them.
pub fn query_pattern() -> String {
    let mut class = String::from("\\u0000");
    let mut chars = ('\0'..=char::MAX).filter(|c| c.is_whitespace()).peekable();
    while let Some(first) = chars.next() {
        let mut last = first;
        while let Some(&next) = chars.peek().filter(|n| u32::from(**n) == u32::from(last) + 1) {
            last = next;
            chars.next();
        }
        class.push_str(&format!("\\u{:04X}", u32::from(first)));
        if last != first {
            class.push_str(&format!("-\\u{:04X}", u32::from(last)));
        }
    }
    format!("^[^\\u0000]*[^{class}][^\\u0000]*$")
}

/// Writes the search query's `maxLength` and `pattern` into the contract, for both
/// searches, from what [`search_text`] checks (an attribute of the parameter could
/// only hold a copy of it).
pub struct SearchQueryDoc;

impl utoipa::Modify for SearchQueryDoc {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, schema::Schema};
        for path in ["/api/v1/films/search", "/api/v1/persons/search"] {
            let operation = openapi.paths.paths.get_mut(path).and_then(|item| item.get.as_mut()).expect("the search is documented");
            for parameter in operation.parameters.iter_mut().flatten() {
                if let RefOr::T(parameter) = parameter
                    && parameter.name == "query"
                    && let Some(RefOr::T(Schema::Object(schema))) = parameter.schema.as_mut()
                {
                    schema.max_length = Some(QUERY_MAX_CHARS);
                    schema.pattern = Some(query_pattern());
                }
            }
        }
    }
}

/// Full-text search of titles, tolerant of typos, among the films the viewer may see.
#[utoipa::path(get, path = "/api/v1/films/search", tag = "films", params(SearchParams, PageParams), security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Best matches first", body = FilmPage),
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

/// One film. Above the viewer's age class: 401 `sign_in_required` to an anonymous
/// viewer (signing in may allow it), 403 `age_restricted` to a signed-in one.
#[utoipa::path(get, path = "/api/v1/films/{id}", tag = "films", security((), ("bearer" = [])),
    params(("id" = Uuid, Path, description = "Film id")),
    responses(
        (status = 200, description = "The film", body = FilmDetail),
        (status = 401, description = "Anonymous and above the age class of viewers not signed in (`sign_in_required`: signing in may allow it), or an invalid, expired or revoked token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Above the signed-in viewer's age class (`age_restricted`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such film", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_film(State(state): State<AppState>, viewer: Viewer, Path(id): Path<Uuid>) -> Result<axum::Json<FilmDetail>> {
    let film = film(&state, id).await?;
    access::check_age(&viewer, film.age_class)?;
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
        (status = 401, description = "Anonymous, and a subscription film or one above the age class of viewers not signed in (`sign_in_required`), or an invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "No subscription (`subscription_required`), or above the signed-in viewer's age class (`age_restricted`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such film", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
    ))]
async fn stream_film(State(state): State<AppState>, viewer: Viewer, Path(id): Path<Uuid>) -> Result<axum::Json<PlaybackDescriptor>> {
    let film = film(&state, id).await?;
    access::check_stream(&viewer, film.age_class, &film.access_tier)?;
    let signed = state.playback.sign(&UrlSigner::manifest_path(film.id));
    Ok(axum::Json(PlaybackDescriptor {
        film_id: film.id,
        manifest_url: signed.url,
        protocol: "hls",
        access_tier: film.access_tier,
        expires_at: signed.expires_at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The class of characters the pattern requires one character outside of, read
    /// from its text as a regex engine reads it: `\uXXXX`, or `\uXXXX-\uXXXX` ranges.
    fn refused_class(pattern: &str) -> Vec<(u32, u32)> {
        let inner = pattern.strip_prefix(r"^[^\u0000]*[^").unwrap().strip_suffix(r"][^\u0000]*$").unwrap();
        let code = |text: &str| u32::from_str_radix(text.strip_prefix(r"\u").unwrap(), 16).unwrap();
        let mut ranges = Vec::new();
        let mut rest = inner;
        while !rest.is_empty() {
            let first = code(&rest[..6]);
            rest = &rest[6..];
            let last = match rest.strip_prefix('-') {
                Some(after) => {
                    rest = &after[6..];
                    code(&after[..6])
                }
                None => first,
            };
            ranges.push((first, last));
        }
        ranges
    }

    /// Schema fuzzing sends what the contract allows: U+0085 was valid to it and 422
    /// here, U+FEFF invalid to it and 200 here.
    #[test]
    fn the_contract_pattern_refuses_exactly_the_characters_the_search_refuses_alone() {
        let pattern = query_pattern();
        assert_eq!(pattern, r"^[^\u0000]*[^\u0000\u0009-\u000D\u0020\u0085\u00A0\u1680\u2000-\u200A\u2028-\u2029\u202F\u205F\u3000][^\u0000]*$");
        let class = refused_class(&pattern);
        for c in '\0'..=char::MAX {
            let in_class = class.iter().any(|&(first, last)| (first..=last).contains(&u32::from(c)));
            assert_eq!(search_text(&c.to_string()).is_err(), in_class, "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn the_query_length_is_counted_as_sent() {
        let a = |n| "a".repeat(n);
        assert!(search_text(&a(200)).is_ok());
        assert!(search_text(&format!(" {}", a(199))).is_ok());
        assert!(search_text(&"é".repeat(200)).is_ok(), "characters, not bytes");
        assert!(search_text(&a(201)).is_err());
        assert!(search_text(&format!(" {} ", a(200))).is_err(), "202 characters, spaces included");
        assert_eq!(search_text(" matrix\u{3000}").unwrap(), "matrix");
        assert!(search_text("\u{feff}").is_ok(), "not whitespace to Unicode nor to the contract");
    }
}
