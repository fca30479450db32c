//! The state every handler shares.

use std::time::Duration;

use sqlx::PgPool;

use crate::{domain::PasswordHasher, store::Revocations, tokens::AccessTokens};

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub revocations: Revocations,
    pub hasher: PasswordHasher,
    pub tokens: AccessTokens,
    pub refresh_ttl: Duration,
    /// Request rate limits and the sign-in rules.
    pub limits: std::sync::Arc<crate::limits::RateLimits>,
    /// Social sign-in: enabled providers and the flows in progress.
    pub oauth: std::sync::Arc<crate::oauth::OAuth>,
}
