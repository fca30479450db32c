//! Genres.

use axum::extract::State;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::Path;
use crate::{
    catalog::genres::{self, Genre},
    error::{ApiError, Result},
    state::AppState,
};
use problem::Problem;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_genres)).routes(routes!(get_genre))
}

/// Every genre, by name.
#[utoipa::path(get, path = "/api/v1/genres", tag = "genres", responses((status = 200, description = "Genres", body = Vec<Genre>)))]
async fn list_genres(State(state): State<AppState>) -> Result<axum::Json<Vec<Genre>>> {
    Ok(axum::Json(state.cache.get_or_load("genres", || genres::list(&state.db)).await?))
}

/// One genre.
#[utoipa::path(get, path = "/api/v1/genres/{id}", tag = "genres",
    params(("id" = Uuid, Path, description = "Genre id")),
    responses(
        (status = 200, description = "The genre", body = Genre),
        (status = 404, description = "No such genre", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_genre(State(state): State<AppState>, Path(id): Path<Uuid>) -> Result<axum::Json<Genre>> {
    let genre = state.cache.get_or_load(&format!("genre:{}", id.simple()), || genres::get(&state.db, id)).await?;
    genre.map(axum::Json).ok_or(ApiError::NotFound("No genre with this id."))
}
