//! Liveness and readiness probes.

use std::time::Duration;

use axum::{extract::State, http::StatusCode};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Json;
use crate::{
    error::{ApiError, Problem, Result},
    state::AppState,
};

const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(live)).routes(routes!(ready))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, description = "Alive", body = Health)))]
async fn live() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// PostgreSQL and Redis both answer.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "A dependency is down", body = Problem, content_type = "application/problem+json"),
    ))]
async fn ready(State(state): State<AppState>) -> Result<(StatusCode, Json<Health>)> {
    let db = tokio::time::timeout(CHECK_TIMEOUT, sqlx::query("SELECT 1").execute(&state.db)).await;
    if !matches!(db, Ok(Ok(_))) {
        return Err(ApiError::Unavailable("PostgreSQL is not answering."));
    }
    let redis = tokio::time::timeout(CHECK_TIMEOUT, state.revocations.ping()).await;
    if !matches!(redis, Ok(Ok(()))) {
        return Err(ApiError::Unavailable("Redis is not answering."));
    }
    Ok((StatusCode::OK, Json(Health { status: "ok" })))
}
