//! Database bootstrap (create the database when it is missing, connect, migrate), and
//! what a failed database call means for the answer, shared so the services agree.

use std::time::Duration;

use anyhow::Context;
use sqlx::{
    ConnectOptions, Connection, Executor, PgConnection, PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
};

/// Parses a database URL; the error never echoes the URL (it may hold a password).
pub fn connect_options(variable: &str, url: &str, application: &str) -> anyhow::Result<PgConnectOptions> {
    let options: PgConnectOptions = url.parse().map_err(|_| anyhow::anyhow!("{variable}: not a valid PostgreSQL URL"))?;
    Ok(options.application_name(application).log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500)))
}

/// A pooled connection idle at least this long is checked with a round trip before use.
/// One that PostgreSQL ended within this time of its last use is handed out unchecked:
/// its request fails (a 503) and sqlx drops it. While the database is down requests
/// fail anyway; after it is back that takes an outage of under a second.
const IDLE_BEFORE_CHECK: Duration = Duration::from_secs(1);

/// What to do when the database of the URL does not exist.
#[derive(Debug, Clone, Copy)]
pub enum IfMissing<'a> {
    /// Make it: the services and their `migrate` command.
    Create,
    /// Stop with an error naming the variable: one-off administrative commands, so a
    /// mistyped URL does not hand them a new, empty database to work on (an admin
    /// created where no service looks, or upkeep that reports nothing to do). They
    /// apply no migration either: a database that lacks some of this release's stops
    /// them with a line naming `<service> migrate`. Changing the schema is for a
    /// deployment's migrate step (or the service's start), not for whichever release's
    /// binary an operator happens to run a command with.
    Refuse { variable: &'a str, service: &'a str },
}

/// Creates the database when it does not exist (or refuses, by `if_missing`), connects
/// a pool and applies `migrator` (or, for [`IfMissing::Refuse`], checks that it has
/// been applied).
///
/// Migrations in the database that `migrator` does not know are a newer release's,
/// applied during a rolling upgrade: they are logged and tolerated, so an instance of
/// the older release can still start (sqlx refuses them by default, "migration … was
/// previously applied but is missing in the resolved migrations"). That is safe as long
/// as each release's migrations are ones the previous release still runs on (add a
/// column, backfill, then constrain, in separate releases).
///
/// `before_migrating` runs on the migrating connection, given the versions applied,
/// before any migration (not for [`IfMissing::Refuse`]): a service's checks of what its
/// migrations need, to say what is wrong in its own words.
pub async fn connect_and_migrate(
    options: PgConnectOptions,
    max_connections: u32,
    migrator: &Migrator,
    if_missing: IfMissing<'_>,
    before_migrating: impl AsyncFnOnce(&mut PgConnection, &[i64]) -> anyhow::Result<()>,
) -> anyhow::Result<PgPool> {
    match if_missing {
        IfMissing::Create => ensure_database(&options).await?,
        IfMissing::Refuse { variable, service } => {
            let name = options.get_database().unwrap_or("postgres");
            if !database_exists(&options).await? {
                anyhow::bail!("{variable}: the database \"{name}\" does not exist; start {service} or run `{service} migrate` to make it");
            }
        }
    }
    // On a connection of their own, with no statement timeout: a migration rewriting
    // a large table may take long, and the pool's options may set one.
    let mut migrating = PgConnection::connect_with(&options).await.context("connecting to PostgreSQL")?;
    migrating.execute("SET statement_timeout = 0").await?;
    let applied = applied_migrations(&mut migrating).await?;
    let newer: Vec<i64> = applied.iter().copied().filter(|v| !migrator.version_exists(*v)).collect();
    if !newer.is_empty() {
        tracing::warn!(
            migrations = ?newer,
            "the database schema is newer than this binary: it has migrations of a later release (a rolling upgrade?); running on it"
        );
    }
    match if_missing {
        IfMissing::Create => {
            before_migrating(&mut migrating, &applied).await?;
            let mut tolerant = Migrator::with_migrations(migrator.iter().cloned().collect());
            tolerant.set_ignore_missing(true);
            tolerant.run(&mut migrating).await.context("applying migrations")?;
        }
        IfMissing::Refuse { service, .. } => {
            let lacking: Vec<i64> =
                migrator.iter().filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version)).map(|m| m.version).collect();
            if let Some(first) = lacking.first() {
                anyhow::bail!(
                    "the database lacks {} migration(s) of this release (from {first}); run `{service} migrate` with this release first",
                    lacking.len()
                );
            }
        }
    }
    migrating.close().await?;
    let pool = pool_options(max_connections, IDLE_BEFORE_CHECK).connect_with(options).await.context("connecting to PostgreSQL")?;
    Ok(pool)
}

/// The pool's settings. sqlx pings every connection it takes back and drops one that
/// fails; by default it pings again before handing one out, so each query through the
/// pool costs three round trips, the second check on a connection usually idle for
/// microseconds. Here only a connection idle for `idle_before_check` or longer is
/// checked before use (sqlx's documented pattern), which still catches a database
/// restarted, or a connection cut, while it sat in the pool (docs/faults.md).
fn pool_options(max_connections: u32, idle_before_check: Duration) -> PgPoolOptions {
    PgPoolOptions::new().max_connections(max_connections).acquire_timeout(Duration::from_secs(3)).test_before_acquire(false).before_acquire(
        move |connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= idle_before_check {
                    connection.ping().await?;
                }
                Ok(true)
            })
        },
    )
}

/// The versions of the migrations applied successfully; none before the first run.
async fn applied_migrations(db: &mut PgConnection) -> anyhow::Result<Vec<i64>> {
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text").fetch_one(&mut *db).await?;
    if table.is_none() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version").fetch_all(&mut *db).await?)
}

async fn database_exists(options: &PgConnectOptions) -> anyhow::Result<bool> {
    let name = options.get_database().unwrap_or("postgres");
    let mut admin = PgConnection::connect_with(&options.clone().database("postgres")).await.context("connecting to PostgreSQL")?;
    let exists = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)").bind(name).fetch_one(&mut admin).await?;
    admin.close().await?;
    Ok(exists)
}

pub async fn ensure_database(options: &PgConnectOptions) -> anyhow::Result<()> {
    let name = options.get_database().unwrap_or("postgres").to_owned();
    let mut admin = PgConnection::connect_with(&options.clone().database("postgres")).await.context("connecting to PostgreSQL")?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)").bind(&name).fetch_one(&mut admin).await?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}"))).await {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // Created concurrently by another instance: 42P04 when it had committed
            // before this statement began, 23505 (on pg_database's unique index of
            // names) when both were under way at once, as when instances start together.
            Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {}
            Err(e) => return Err(e).context("creating the database"),
        }
    }
    admin.close().await?;
    Ok(())
}

/// Database errors that are the database's state, not a bug: each service answers them
/// with a retryable status instead of a 500. One classification for every service, so a
/// PostgreSQL restart or failover is answered the same way by all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseFailure {
    /// Unreachable, shutting down or starting up, out of connections or resources, or
    /// the connection lost mid-statement (a stop or crash of PostgreSQL ends every
    /// connection with 57P01 or 57P02, or just closes it; so does a failover).
    Unavailable,
    /// Cancelled by the statement timeout (or by an operator), or waited past `lock_timeout`.
    TooSlow,
    /// Aborted for a deadlock or a serialization failure with a concurrent transaction:
    /// the request may succeed if sent again.
    Contended,
}

impl DatabaseFailure {
    /// `None` for every other error: a bug or a broken invariant, worth a 500.
    pub fn of(e: &sqlx::Error) -> Option<Self> {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => {
                Some(Self::Unavailable)
            }
            sqlx::Error::Database(db) => {
                let code = db.code()?;
                // Class 08: connection exception; class 53: insufficient resources
                // (too many connections, out of memory or disk); 57P01-57P03: admin
                // shutdown, crash shutdown, cannot connect now.
                if code.starts_with("08") || code.starts_with("53") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03") {
                    Some(Self::Unavailable)
                } else if matches!(code.as_ref(), "57014" | "55P03") {
                    // query_canceled, lock_not_available.
                    Some(Self::TooSlow)
                } else if matches!(code.as_ref(), "40P01" | "40001") {
                    // deadlock_detected, serialization_failure.
                    Some(Self::Contended)
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn server() -> PgConnectOptions {
        let url = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        connect_options("TEST_DATABASE_URL", &url, "platform-db-test").unwrap()
    }

    /// A pool of one connection, and that connection's backend, ended by another
    /// connection while it sits idle in the pool.
    async fn pool_whose_idle_connection_was_ended(idle_before_check: Duration) -> (PgPool, i32) {
        let pool = pool_options(1, idle_before_check).connect_with(server()).await.unwrap();
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&pool).await.unwrap();
        // The pool takes the connection back (and pings it) in a task of its own.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.num_idle() == 0 {
            assert!(Instant::now() < deadline, "the connection never went back to the pool");
            tokio::task::yield_now().await;
        }
        let mut admin = PgConnection::connect_with(&server()).await.unwrap();
        let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1, 10000)").bind(pid).fetch_one(&mut admin).await.unwrap();
        assert!(ended, "backend {pid} still there after 10 s");
        (pool, pid)
    }

    /// Instances started at once on a fresh server all create the database: all but
    /// the first failed with a unique violation of pg_database's index of names.
    #[tokio::test]
    async fn several_instances_creating_one_new_database_at_once_all_succeed() {
        let name = format!(
            "platform_test_{}_{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        );
        let options = server().database(&name);
        let creations: Vec<_> = (0..4)
            .map(|_| {
                let options = options.clone();
                tokio::spawn(async move { ensure_database(&options).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for creation in creations {
            outcomes.push(creation.await.unwrap());
        }
        let mut admin = PgConnection::connect_with(&server()).await.unwrap();
        admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))).await.unwrap();
        for outcome in outcomes {
            outcome.unwrap();
        }
    }

    #[tokio::test]
    async fn a_connection_ended_while_idle_is_checked_and_replaced_before_use() {
        let (pool, ended) = pool_whose_idle_connection_was_ended(Duration::ZERO).await;
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&pool).await.expect("a fresh connection");
        assert_ne!(pid, ended);
    }

    /// The other side of the check: a connection idle for less than the threshold is
    /// handed out as it is. Its query fails, and the pool drops it.
    #[tokio::test]
    async fn a_connection_idle_for_less_than_the_threshold_is_used_unchecked_then_dropped_when_it_fails() {
        let (pool, ended) = pool_whose_idle_connection_was_ended(Duration::from_secs(3600)).await;
        let unchecked = sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()").fetch_one(&pool).await;
        assert!(unchecked.is_err(), "the ended connection answered: {unchecked:?}");
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&pool).await.expect("a fresh connection");
        assert_ne!(pid, ended);
    }
}
