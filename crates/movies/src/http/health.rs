//! Liveness and readiness probes.

use std::time::Duration;

use axum::{extract::State, http::StatusCode};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{error::ApiError, state::AppState};
use problem::Problem;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(live)).routes(routes!(ready))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    status: &'static str,
    /// `ok`; `degraded` while Auth is unreachable (tokens then accepted on their
    /// signature alone): as last seen by the JWKS refresh (every
    /// `MOVIES_AUTH_JWKS_REFRESH_SECONDS`, 300 s) or, within the breaker's open window,
    /// by signed-in requests, so without signed-in traffic it may lag an outage or a
    /// recovery by up to the refresh interval; `credentials_refused` while Auth's last
    /// answer to an introspection refused this service's client credentials (a
    /// configuration error; tokens are accepted on their signature alone, as when
    /// degraded). Informational, never a reason to be unready.
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<&'static str>,
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, description = "Alive", body = Health)))]
async fn live() -> axum::Json<Health> {
    axum::Json(Health { status: "ok", auth: None })
}

/// The catalogue database answers. Auth and Redis are not required: without them the
/// API degrades but serves.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "The database is down", body = Problem, content_type = "application/problem+json"),
    ))]
async fn ready(State(state): State<AppState>) -> Result<(StatusCode, axum::Json<Health>), ApiError> {
    let db = tokio::time::timeout(Duration::from_secs(1), sqlx::query("SELECT 1").execute(&state.db)).await;
    if !matches!(db, Ok(Ok(_))) {
        return Err(ApiError::Unavailable);
    }
    let auth = if state.auth.credentials_refused() {
        "credentials_refused"
    } else if state.auth.auth_reachable() {
        "ok"
    } else {
        "degraded"
    };
    Ok((StatusCode::OK, axum::Json(Health { status: "ok", auth: Some(auth) })))
}
