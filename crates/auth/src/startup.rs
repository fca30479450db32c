//! Building and running the application: database, Redis, keys, router, server.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use platform::db::IfMissing;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::{
    config::Settings,
    domain::PasswordHasher,
    http,
    limits::sign_in::IdentifierSecret,
    state::AppState,
    store::{Profiles, Revocations},
    tokens::{AccessTokens, KeyRing},
};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    /// The operations listener and its router, when one is set (`platform::ops`).
    ops: Option<(TcpListener, axum::Router)>,
    state: AppState,
    partitions: crate::partitions::PartitionSettings,
    shutdown_timeout: Duration,
    max_connections: platform::connections::ConnectionCap,
}

impl Application {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        // The metrics recorder before anything can record: without it a metric is
        // dropped, and a rate limiter that finds its Redis down below (`warm_up`) would
        // fall back uncounted, `ratelimit_fallback_active` at 0 until Redis came back.
        platform::metrics::install();
        // The keys first: a missing key file stops start-up before any database is made.
        let keys = Arc::new(KeyRing::load(&settings.tokens)?);
        let db = connect_and_migrate(settings).await?;
        if settings.introspection_clients.is_empty() {
            tracing::warn!(
                "{} is empty: no service may introspect tokens, and every call to POST /api/v1/auth/introspect is refused with 401",
                crate::introspection_clients::VARIABLE
            );
        } else {
            let clients: Vec<&str> = settings.introspection_clients.ids().map(|id| id.as_str()).collect();
            tracing::info!(?clients, "introspection clients registered");
        }
        let redis = connect_redis(settings).await?;
        let identifier_secret = IdentifierSecret::new(keys.derived_secret(IdentifierSecret::PURPOSE));
        let state = AppState::new(crate::state::Shared {
            db,
            revocations: Revocations::new(redis.clone(), &settings.redis_key_prefix, settings.tokens.access_ttl),
            profiles: Profiles::new(redis.clone(), &settings.redis_key_prefix),
            cache_failures: Default::default(),
            hasher: PasswordHasher::new(settings.password_hash_concurrency)?,
            tokens: AccessTokens::new(keys, &settings.tokens),
            refresh_ttl: settings.tokens.refresh_ttl,
            session_lifetime: settings.tokens.session_lifetime,
            introspection_clients: settings.introspection_clients.clone(),
            limits: crate::limits::RateLimits::new(&settings.rate_limits, &settings.redis_url, &settings.redis_key_prefix, identifier_secret)?,
            oauth: crate::oauth::OAuth::new(&settings.oauth, redis, &settings.redis_key_prefix)?,
        });
        // Before serving: the first requests would otherwise fall back to the in-process
        // limits while the connection opens.
        state.limits.limiter.warm_up(Duration::from_secs(2)).await;
        crate::store::users::note_unnormalised_hashes(&state.db, &state.hasher).await;
        let listener = platform::ops::bind(settings.listen, "AUTH_LISTEN").await?;
        let ops_listener = platform::ops::bind_optional(settings.ops_listen, "AUTH_OPS_LISTEN").await?;
        let routers = http::router(state.clone(), settings.http(), settings.body_limit_bytes, ops_listener.is_some());
        Ok(Self {
            listener,
            router: routers.api,
            ops: ops_listener.zip(routers.ops),
            state,
            partitions: settings.partitions.clone(),
            shutdown_timeout: settings.shutdown_timeout,
            max_connections: settings.max_connections,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The operations listener's address, when one is set.
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops.as_ref().map(|(listener, _)| listener.local_addr().expect("a bound listener has an address"))
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGINT or SIGTERM, then finishes the requests in flight.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(platform::server::signal()).await
    }

    /// Serves until `shutdown` resolves; then stops accepting, gives the requests in
    /// flight up to `AUTH_SHUTDOWN_TIMEOUT_SECONDS` to finish and closes the pool.
    /// (The caller flushes the spans: `platform::service::run`.)
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        // Login history partitions ahead of the clock, expired months dropped.
        let maintenance = tokio::spawn(crate::partitions::run_periodically(self.state.db.clone(), self.partitions));
        let served = platform::ops::serve((self.listener, self.router), self.ops, shutdown, self.shutdown_timeout, self.max_connections).await;
        maintenance.abort();
        platform::server::close_pool(&self.state.db, Duration::from_secs(2)).await;
        served?;
        Ok(())
    }
}

/// Creates the database when it does not exist, then applies the migrations. The
/// pool's statements are cancelled past `AUTH_DATABASE_STATEMENT_TIMEOUT_MS`, so a
/// slow or locked database fails requests within it rather than holding connections
/// (the migrations run without it).
pub async fn connect_and_migrate(settings: &Settings) -> anyhow::Result<PgPool> {
    connect(settings, IfMissing::Create).await
}

/// [`connect_and_migrate`] for one-off administrative commands, without migrating: a
/// database that does not exist is an error naming `AUTH_DATABASE_URL`, not a new empty
/// one, and one that lacks migrations of this release is an error naming `auth migrate`.
pub async fn connect_existing(settings: &Settings) -> anyhow::Result<PgPool> {
    connect(settings, IfMissing::Refuse { variable: "AUTH_DATABASE_URL", service: "auth" }).await
}

async fn connect(settings: &Settings, if_missing: IfMissing<'_>) -> anyhow::Result<PgPool> {
    let timeout_ms = settings.database_statement_timeout.as_millis().to_string();
    let options = database_options(settings)?.options([("statement_timeout", timeout_ms.as_str())]);
    platform::db::connect_and_migrate(options, settings.database_max_connections, &MIGRATOR, if_missing, crate::partitions::check_pg_partman).await
}

/// How Auth connects to PostgreSQL.
///
/// Prepared statements keep one plan made for any value (`force_generic_plan`). By
/// default PostgreSQL plans anew for each execution whenever it judges a generic plan
/// dearer, and with partitioned tables it always does: it prices every partition of
/// `users`, not the one that pruning at run time leaves. Every lookup by id or email
/// then pays a planning several times longer than its execution (docs/partitioning.md).
/// Auth's statements are key lookups, for which one plan fits every value.
pub fn database_options(settings: &Settings) -> anyhow::Result<sqlx::postgres::PgConnectOptions> {
    Ok(platform::db::connect_options("AUTH_DATABASE_URL", settings.database_url.expose_secret(), "auth")?
        .options([("plan_cache_mode", "force_generic_plan")]))
}

async fn connect_redis(settings: &Settings) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(settings.redis_url.expose_secret()).map_err(|_| anyhow::anyhow!("REDIS_URL: not a valid Redis URL"))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(500)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    // Start even when Redis is down: the revocation cache falls back to PostgreSQL.
    ConnectionManager::new_lazy_with_config(client, config).context("configuring Redis")
}
