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
    /// Readiness only: `ok`, or `degraded` while Redis is unreachable. Auth then serves
    /// from PostgreSQL alone (revocations included) and limits each instance on its
    /// own; only social sign-in is unavailable. Informational, never a reason to be
    /// unready: taking every instance out of service for a Redis outage would turn a
    /// degraded cache into a site-wide sign-in outage.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "ok")]
    redis: Option<&'static str>,
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, description = "Alive", body = Health)))]
async fn live() -> Json<Health> {
    Json(Health { status: "ok", redis: None })
}

/// PostgreSQL answers. Redis is reported, not required (see `redis`).
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "PostgreSQL is down", body = Problem, content_type = "application/problem+json"),
    ))]
async fn ready(State(state): State<AppState>) -> Result<(StatusCode, Json<Health>)> {
    let db = tokio::time::timeout(CHECK_TIMEOUT, sqlx::query("SELECT 1").execute(&state.db)).await;
    if !matches!(db, Ok(Ok(_))) {
        return Err(ApiError::Unavailable("PostgreSQL is not answering."));
    }
    let redis = tokio::time::timeout(CHECK_TIMEOUT, state.revocations.ping()).await;
    let redis = if matches!(redis, Ok(Ok(()))) { "ok" } else { "degraded" };
    Ok((StatusCode::OK, Json(Health { status: "ok", redis: Some(redis) })))
}
