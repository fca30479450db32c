//! Building and running the movies API.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use auth_client::{AuthClient, CredentialCheck};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::{cache::Cache, config::Settings, http, state::AppState};

/// Trigram word similarity above which a title or name matches a search.
pub const SEARCH_SIMILARITY_THRESHOLD: &str = "0.5";

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    /// The operations listener and its router, when one is set (`platform::ops`).
    ops: Option<(TcpListener, axum::Router)>,
    state: AppState,
    shutdown_timeout: Duration,
    max_connections: platform::connections::ConnectionCap,
}

impl Application {
    /// Connects, migrates and binds. Auth need not be up, nor accept this service's
    /// introspection credentials ([`check_auth_credentials`]): the keys are fetched in
    /// the background, and the site is served meanwhile.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        // The metrics recorder before anything can record: without it a metric is
        // dropped, and a rate limiter that finds its Redis down below (`warm_up`) would
        // fall back uncounted, `ratelimit_fallback_active` at 0 until Redis came back.
        platform::metrics::install();
        let auth_config = settings.auth_client()?;
        let auth = AuthClient::new(auth_config.clone()).context("AUTH_URL or a MOVIES_AUTH_* setting")?;
        check_auth_credentials(&auth, &auth_config.credential_settings).await;
        let db = connect_and_migrate(settings).await?;
        auth.spawn_key_refresh();
        let limits = crate::limits::RateLimits::new(&settings.rate_limits, &settings.redis_url, &settings.redis_key_prefix)?;
        // Before serving: the first requests would otherwise fall back to the in-process
        // limits while the connection opens.
        limits.limiter.warm_up(Duration::from_secs(2)).await;
        let playback = std::sync::Arc::new(crate::playback::UrlSigner::from_settings(&settings.stream));
        let state = AppState { db, cache: cache(settings)?, auth, limits: std::sync::Arc::new(limits), playback };
        let listener = platform::ops::bind(settings.listen, "MOVIES_LISTEN").await?;
        let ops_listener = platform::ops::bind_optional(settings.ops_listen, "MOVIES_OPS_LISTEN").await?;
        let routers = http::router(state.clone(), settings.http(), ops_listener.is_some());
        Ok(Self {
            listener,
            router: routers.api,
            ops: ops_listener.zip(routers.ops),
            state,
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

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(platform::server::signal()).await
    }

    /// Serves until `shutdown` resolves; then stops accepting, gives the requests in
    /// flight up to `MOVIES_SHUTDOWN_TIMEOUT_SECONDS` to finish and closes the pool.
    /// (The caller flushes the spans: `platform::service::run`.)
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let served = platform::ops::serve((self.listener, self.router), self.ops, shutdown, self.shutdown_timeout, self.max_connections).await;
        platform::server::close_pool(&self.state.db, Duration::from_secs(2)).await;
        served?;
        Ok(())
    }
}

/// Asks Auth whether it accepts the introspection credentials, and says so at start. A
/// refusal is an error in the log naming the settings, and readiness reports
/// `credentials_refused` at once; the service starts all the same, serving signed-in
/// viewers on their token's signature: Auth's list of clients can change under a fleet
/// (a rotation done in the wrong order, an entry dropped), and a refusal that stopped
/// every start would take the catalogue down instance by instance for a fault of
/// Auth's configuration. An Auth that does not answer is a warning.
async fn check_auth_credentials(auth: &AuthClient, settings: &str) {
    match auth.check_credentials().await {
        CredentialCheck::Accepted => tracing::info!("Auth accepts this service's introspection credentials"),
        CredentialCheck::Refused => tracing::error!(
            "Auth refused this service's introspection credentials (401) at start: check {settings} against Auth's AUTH_INTROSPECTION_CLIENTS; \
             signed-in requests are served on their token's signature, revocations unseen, until Auth accepts them"
        ),
        CredentialCheck::Unanswered(why) => tracing::warn!(
            error = %why,
            "could not check the introspection credentials with Auth; starting anyway, and signed-in requests are served on their token's signature until Auth answers"
        ),
    }
}

pub async fn connect_and_migrate(settings: &Settings) -> anyhow::Result<PgPool> {
    let options = platform::db::connect_options("MOVIES_DATABASE_URL", settings.database_url.expose_secret(), "movies")?
        // Typo tolerance of search: pg_trgm's default word similarity threshold (0.6)
        // misses one wrong letter in a short word ("spilberg" scores 0.58).
        .options([
            ("pg_trgm.word_similarity_threshold", SEARCH_SIMILARITY_THRESHOLD),
            // No JIT compilation: search's plan was costed high (PostgreSQL counted
            // 1,000 rows for each regexp_split_to_table of the query's words, split in
            // SQL until 2026-11-27), past the JIT thresholds, and compiling took about
            // 400 ms of CPU for a statement that runs in 1 ms: uncached search fell from
            // about 2,000 to 5 per second, with 503s (docs/benchmarks.md). None of the
            // catalogue's statements reads enough rows for JIT to pay.
            ("jit", "off"),
        ]);
    platform::db::connect_and_migrate(options, settings.database_max_connections, &MIGRATOR, platform::db::IfMissing::Create, async |_, _| Ok(()))
        .await
}

pub fn cache(settings: &Settings) -> anyhow::Result<Cache> {
    let client = redis::Client::open(settings.redis_url.expose_secret()).map_err(|_| anyhow::anyhow!("REDIS_URL: not a valid Redis URL"))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(settings.cache_timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(2));
    let redis = ConnectionManager::new_lazy_with_config(client, config).context("configuring Redis")?;
    Ok(Cache::new(redis, &settings.redis_key_prefix, settings.cache_ttl, settings.cache_timeout))
}

#[cfg(test)]
mod tests {
    /// Movies' pooled connections to Auth go idle before Auth would close them.
    #[test]
    fn idle_connections_to_auth_are_dropped_before_auth_closes_them() {
        assert!(auth_client::POOL_IDLE_TIMEOUT < platform::server::HEADER_READ_TIMEOUT);
    }
}
