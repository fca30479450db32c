//! Genres.

use auth_client::Viewer;
use axum::extract::State;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::Path;
use crate::{
    access,
    catalog::genres::{self, Genre},
    error::{ApiError, Result},
    state::AppState,
};
use problem::Problem;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_genres)).routes(routes!(get_genre))
}

/// Every genre, by name, with the number of its films the viewer may see.
#[utoipa::path(get, path = "/api/v1/genres", tag = "genres", security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Genres", body = Vec<Genre>),
    ))]
async fn list_genres(State(state): State<AppState>, viewer: Viewer) -> Result<axum::Json<Vec<Genre>>> {
    let max_age = access::max_age_class(&viewer);
    Ok(axum::Json(state.cache.get_or_load(&format!("genres:{max_age}"), || genres::list(&state.db, max_age)).await?))
}

/// One genre, with the number of its films the viewer may see.
#[utoipa::path(get, path = "/api/v1/genres/{id}", tag = "genres", security((), ("bearer" = [])),
    params(("id" = Uuid, Path, description = "Genre id")),
    responses(
        (status = 200, description = "The genre", body = Genre),
        (status = 404, description = "No such genre", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_genre(State(state): State<AppState>, viewer: Viewer, Path(id): Path<Uuid>) -> Result<axum::Json<Genre>> {
    let max_age = access::max_age_class(&viewer);
    let genre = state.cache.get_or_load(&format!("genre:{}:{max_age}", id.simple()), || genres::get(&state.db, max_age, id)).await?;
    genre.map(axum::Json).ok_or(ApiError::NotFound("No genre with this id."))
}
