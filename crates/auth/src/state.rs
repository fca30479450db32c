//! The state every handler shares.

use std::{ops::Deref, sync::Arc, time::Duration};

use sqlx::PgPool;

use crate::{
    domain::PasswordHasher,
    store::{CacheFailures, Profiles, Revocations},
    tokens::AccessTokens,
};

/// Cheap to clone: axum clones the state for every request (and every `State`
/// extractor), so the shared parts live behind one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub db: PgPool,
    pub revocations: Revocations,
    /// Profiles of `GET /users/me`, cached in Redis.
    pub profiles: Profiles,
    /// Whether those two caches fail, so an outage is logged once, not per request.
    pub cache_failures: Arc<CacheFailures>,
    pub hasher: PasswordHasher,
    pub tokens: AccessTokens,
    pub refresh_ttl: Duration,
    /// No session outlives its sign-in by more (`TokenSettings::session_lifetime`).
    pub session_lifetime: Duration,
    /// The services allowed to introspect tokens.
    pub introspection_clients: crate::introspection_clients::IntrospectionClients,
    /// Request rate limits and the sign-in rules.
    pub limits: crate::limits::RateLimits,
    /// Social sign-in: enabled providers and the flows in progress.
    pub oauth: crate::oauth::OAuth,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
