use auth_client::AuthClient;
use axum::extract::FromRef;
use sqlx::PgPool;

use crate::cache::Cache;

#[derive(Clone, FromRef)]
pub struct AppState {
    pub db: PgPool,
    pub cache: Cache,
    pub auth: AuthClient,
    pub limits: std::sync::Arc<crate::limits::RateLimits>,
    pub playback: std::sync::Arc<crate::playback::UrlSigner>,
}
