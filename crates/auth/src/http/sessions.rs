//! The caller's live sessions (signed-in devices).

use axum::{extract::State, http::StatusCode};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    auth::cache_revocation,
    extract::{AuthUser, Json, Path},
};
use crate::{
    error::{ApiError, Problem, Result},
    state::AppState,
    store::sessions::{self, EndReason, SessionView},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_sessions)).routes(routes!(end_session))
}

/// The caller's live sessions, most recently used first.
#[utoipa::path(get, path = "/api/v1/auth/sessions", tag = "sessions", security(("bearer" = [])),
    responses(
        (status = 200, description = "Live sessions", body = Vec<SessionView>),
    ))]
async fn list_sessions(State(state): State<AppState>, user: AuthUser) -> Result<Json<Vec<SessionView>>> {
    Ok(Json(sessions::list_live(&state.db, user.id(), user.session_id()).await?))
}

/// Ends one of the caller's sessions.
#[utoipa::path(delete, path = "/api/v1/auth/sessions/{id}", tag = "sessions", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Session id")),
    responses(
        (status = 204, description = "Session ended"),
        (status = 404, description = "No such live session of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
    ))]
async fn end_session(State(state): State<AppState>, user: AuthUser, Path(id): Path<Uuid>) -> Result<StatusCode> {
    if !sessions::end_own(&state.db, user.id(), id, EndReason::Revoked).await? {
        return Err(ApiError::NotFound("No live session with this id belongs to you."));
    }
    cache_revocation(&state, &[id], None).await;
    Ok(StatusCode::NO_CONTENT)
}
