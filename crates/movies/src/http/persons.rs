//! Persons and their films.

use auth_client::Viewer;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    extract::{Path, Query},
    paging::PageParams,
};
use crate::{
    access,
    catalog::{
        films::{self, FilmSummary},
        persons::{self, Person, PersonPage},
    },
    error::{ApiError, Result},
    state::AppState,
};
use problem::Problem;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(search_persons)).routes(routes!(get_person)).routes(routes!(person_films))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PersonSearch {
    /// Part of the name; misspellings are tolerated. 1 to 200 characters, not only
    /// whitespace, no NUL.
    #[param(example = "spielberg")]
    query: String,
}

/// People by name, best matches first, each with the number of their films the viewer
/// may see. People all of whose films are hidden from the viewer (by age class) are left out.
#[utoipa::path(get, path = "/api/v1/persons/search", tag = "persons", security((), ("bearer" = [])), params(PersonSearch, PageParams),
    responses(
        (status = 200, description = "Matching people", body = PersonPage),
        (status = 422, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
    ))]
async fn search_persons(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(search): Query<PersonSearch>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<PersonPage>> {
    let text = super::films::search_text(&search.query)?;
    let paging = page.paging()?;
    let max_age = access::max_age_class(&viewer);
    let key = format!("persons:{max_age}:{}:{}:{}", paging.number, paging.size, text.to_lowercase());
    Ok(axum::Json(state.cache.get_or_load(&key, || persons::search(&state.db, max_age, &text, paging)).await?))
}

async fn person(state: &AppState, max_age: u8, id: Uuid) -> Result<Person> {
    state
        .cache
        .get_or_load(&format!("person:{}:{max_age}", id.simple()), || persons::get(&state.db, max_age, id))
        .await?
        .ok_or(ApiError::NotFound("No person with this id."))
}

/// One person, with the number of their films the viewer may see; 404 when every film
/// of theirs is hidden from the viewer (by age class).
#[utoipa::path(get, path = "/api/v1/persons/{id}", tag = "persons", security((), ("bearer" = [])),
    params(("id" = Uuid, Path, description = "Person id")),
    responses(
        (status = 200, description = "The person", body = Person),
        (status = 404, description = "No such person, or none of their films may be seen by the viewer", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_person(State(state): State<AppState>, viewer: Viewer, Path(id): Path<Uuid>) -> Result<axum::Json<Person>> {
    Ok(axum::Json(person(&state, access::max_age_class(&viewer), id).await?))
}

/// The person's films that the viewer may see, newest first.
#[utoipa::path(get, path = "/api/v1/persons/{id}/film", tag = "persons", security((), ("bearer" = [])),
    params(("id" = Uuid, Path, description = "Person id")),
    responses(
        (status = 200, description = "Films", body = Vec<FilmSummary>),
        (status = 404, description = "No such person, or none of their films may be seen by the viewer", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
    ))]
async fn person_films(State(state): State<AppState>, viewer: Viewer, Path(id): Path<Uuid>) -> Result<axum::Json<Vec<FilmSummary>>> {
    let max_age = access::max_age_class(&viewer);
    person(&state, max_age, id).await?;
    let key = format!("person-films:{}:{max_age}", id.simple());
    Ok(axum::Json(state.cache.get_or_load(&key, || films::by_person(&state.db, max_age, id)).await?))
}
