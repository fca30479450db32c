//! Database bootstrap: create the database when it is missing, connect, migrate.

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

/// Creates the database when it does not exist, connects a pool and applies `migrator`.
pub async fn connect_and_migrate(options: PgConnectOptions, max_connections: u32, migrator: &Migrator) -> anyhow::Result<PgPool> {
    ensure_database(&options).await?;
    // On a connection of their own, with no statement timeout: a migration rewriting
    // a large table may take long, and the pool's options may set one.
    let mut migrating = PgConnection::connect_with(&options).await.context("connecting to PostgreSQL")?;
    migrating.execute("SET statement_timeout = 0").await?;
    migrator.run(&mut migrating).await.context("applying migrations")?;
    migrating.close().await?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_with(options)
        .await
        .context("connecting to PostgreSQL")?;
    Ok(pool)
}

pub async fn ensure_database(options: &PgConnectOptions) -> anyhow::Result<()> {
    let name = options.get_database().unwrap_or("postgres").to_owned();
    let mut admin = PgConnection::connect_with(&options.clone().database("postgres")).await.context("connecting to PostgreSQL")?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&mut admin)
        .await?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}"))).await {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // Created concurrently by another instance.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e).context("creating the database"),
        }
    }
    admin.close().await?;
    Ok(())
}
