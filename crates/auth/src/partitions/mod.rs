//! Partitioning of accounts and login history (docs/partitioning.md): the settings of
//! the login history's upkeep and the periodic task that runs it. The SQL is in
//! `store::partitions`; the benchmark that measures the scheme is a crate of its own,
//! `crates/partition-bench`, kept out of the service's binary.

use std::time::Duration;

use platform::env::{ConfigError, Env};
use sqlx::PgPool;

use crate::store::{
    partitions::{self, Maintenance},
    sessions::{self, Purged},
};

#[derive(Debug, Clone)]
pub struct PartitionSettings {
    /// Months of login history kept: a month is dropped once its end is this long ago.
    pub login_history_retention_months: u32,
    /// How often the service makes coming partitions and drops expired ones (and
    /// purges dead sessions: `sessions::purge`).
    pub maintenance_interval: Duration,
    /// How long an ended or expired session is kept before it is deleted.
    pub ended_session_retention: Duration,
}

impl PartitionSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            login_history_retention_months: retention_months(env)?,
            maintenance_interval: env.seconds("AUTH_PARTITION_MAINTENANCE_INTERVAL_SECONDS", 3600)?,
            ended_session_retention: Duration::from_secs(
                env.positive_at_most("AUTH_ENDED_SESSION_RETENTION_DAYS", 30, MAX_ENDED_SESSION_RETENTION_DAYS)? * 86_400,
            ),
        })
    }
}

/// The longest retention, 100 years: pg_partman subtracts it from the clock, and far
/// larger values (100,000 months) fell outside PostgreSQL's timestamps, failing every run.
const MAX_RETENTION_MONTHS: u32 = 1200;

fn retention_months(env: &Env) -> Result<u32, ConfigError> {
    let name = "AUTH_LOGIN_HISTORY_RETENTION_MONTHS";
    let months = env.parse_positive(name, 12)?;
    if months > MAX_RETENTION_MONTHS {
        return Err(ConfigError { name: name.into(), reason: format!("must be at most {MAX_RETENTION_MONTHS} (100 years)") });
    }
    Ok(months)
}

/// The longest an ended session is kept: ten years.
const MAX_ENDED_SESSION_RETENTION_DAYS: u64 = 3660;

/// Deletes dead sessions and expired refresh tokens (`sessions::purge`), logged.
pub async fn purge_sessions(db: &PgPool, settings: &PartitionSettings) -> Result<Purged, anyhow::Error> {
    let purged = sessions::purge(db, settings.ended_session_retention).await?;
    if purged != Purged::default() {
        tracing::info!(sessions = purged.sessions, refresh_tokens = purged.refresh_tokens, "deleted dead sessions and expired refresh tokens");
    }
    Ok(purged)
}

/// The migration that partitions the tables and creates pg_partman.
const PARTITIONING_MIGRATION: i64 = 20261125000020;

/// Before that migration runs: stops with one line saying what to do where it would
/// fail on pg_partman with a message that does not say (the migration cannot be changed
/// now that databases have applied it). It creates the extension in schema `partman`
/// and calls it there, so one a DBA made elsewhere (a plain `CREATE EXTENSION
/// pg_partman` puts it in `public`) failed with "function partman.create_parent(…)
/// does not exist", and a role that may not create it got a bare "permission denied to
/// create extension".
/// `applied`: the versions of the migrations the database has.
pub async fn check_pg_partman(db: &mut sqlx::PgConnection, applied: &[i64]) -> anyhow::Result<()> {
    let migrated = applied.contains(&PARTITIONING_MIGRATION);
    let (available, schema, database, role): (bool, Option<String>, String, String) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_partman'),
                (SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_partman'),
                current_database()::text, current_user::text",
    )
    .fetch_one(&mut *db)
    .await?;
    const CREATE: &str = "CREATE SCHEMA IF NOT EXISTS partman; CREATE EXTENSION pg_partman SCHEMA partman;";
    match schema.as_deref() {
        _ if migrated => Ok(()),
        Some("partman") => Ok(()),
        Some(other) => anyhow::bail!(
            "pg_partman is installed in schema \"{other}\" of database \"{database}\", and Auth's migrations need it in schema \"partman\": \
             if nothing else uses it there, a superuser runs `DROP EXTENSION pg_partman; {CREATE}` in that database, then `auth migrate` again (docs/partitioning.md)"
        ),
        None if !available => anyhow::bail!(
            "the PostgreSQL extension pg_partman is not installed on this server: install the package postgresql-<major version>-partman \
             (scripts/services.sh does), then `auth migrate` again (docs/partitioning.md)"
        ),
        None => {
            // Tried and rolled back rather than judged from the role: managed services
            // let roles that are no superuser create it (rds_superuser, say).
            let mut trial = sqlx::Connection::begin(&mut *db).await?;
            let created = sqlx::raw_sql(CREATE).execute(&mut *trial).await;
            trial.rollback().await?;
            match created {
                Err(e) if e.as_database_error().and_then(|e| e.code()).as_deref() == Some("42501") => anyhow::bail!(
                    "pg_partman is not created in database \"{database}\", and role \"{role}\" may not create it (it is not a trusted extension): \
                     a superuser runs `{CREATE}` in that database once, then `auth migrate` again (docs/partitioning.md)"
                ),
                // Any other failure is the migration's to report, as it would have.
                _ => Ok(()),
            }
        }
    }
}

/// One maintenance run with the configured retention, logged.
pub async fn maintain(db: &PgPool, settings: &PartitionSettings) -> Result<Maintenance, sqlx::Error> {
    let outcome = partitions::maintain(db, settings.login_history_retention_months).await?;
    for p in &outcome.created {
        tracing::info!(partition = %p.name, from = %p.from, to = %p.to, "login history partition created");
    }
    for p in &outcome.dropped {
        tracing::info!(partition = %p.name, from = %p.from, to = %p.to, "login history partition dropped (retention)");
    }
    if !outcome.drop_postponed.is_empty() {
        let months = outcome.drop_postponed.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ");
        tracing::warn!(
            partitions = %months,
            "expired login history partitions not dropped: a query held them, or the table, through every attempt; the next run tries again"
        );
    }
    if outcome.moved_from_default > 0 {
        tracing::warn!(
            rows = outcome.moved_from_default,
            "login history rows moved from login_history_default into their months: a month had no partition (clock far off, or upkeep stopped)"
        );
    }
    if outcome.rows_in_default {
        tracing::warn!("login history rows in login_history_default: outside every monthly partition; see docs/partitioning.md");
    }
    Ok(outcome)
}

/// Runs maintenance now, then every `maintenance_interval`, until dropped. Several
/// instances may run it: pg_partman's locks serialise them (a run waits for the one
/// before) and a late run finds nothing to do. A failed run (say, a lock not granted in
/// time) is logged and retried at the next tick; with four months made ahead, that
/// leaves months of slack.
pub async fn run_periodically(db: PgPool, settings: PartitionSettings) {
    let mut ticks = tokio::time::interval(settings.maintenance_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        tracing::debug!("upkeep run starting");
        if let Err(e) = maintain(&db, &settings).await {
            tracing::warn!(error = %e, "login history partition maintenance failed; retrying at the next run");
        }
        if let Err(e) = purge_sessions(&db, &settings).await {
            tracing::warn!(error = format_args!("{e:#}"), "purging dead sessions failed; retrying at the next run");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<PartitionSettings, ConfigError> {
        let lookup = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
        PartitionSettings::from_env(&Env::new(&lookup))
    }

    #[test]
    fn retention_defaults_to_a_year_and_must_be_positive() {
        let s = with(&[]).unwrap();
        assert_eq!((s.login_history_retention_months, s.maintenance_interval), (12, Duration::from_secs(3600)));
        assert_eq!(with(&[("AUTH_LOGIN_HISTORY_RETENTION_MONTHS", "3")]).unwrap().login_history_retention_months, 3);
        let err = with(&[("AUTH_LOGIN_HISTORY_RETENTION_MONTHS", "0")]).unwrap_err();
        assert_eq!(err.to_string(), "AUTH_LOGIN_HISTORY_RETENTION_MONTHS: must be greater than zero");
        assert_eq!(with(&[("AUTH_LOGIN_HISTORY_RETENTION_MONTHS", "1200")]).unwrap().login_history_retention_months, 1200);
        let err = with(&[("AUTH_LOGIN_HISTORY_RETENTION_MONTHS", "100000")]).unwrap_err();
        assert_eq!(err.to_string(), "AUTH_LOGIN_HISTORY_RETENTION_MONTHS: must be at most 1200 (100 years)");
    }
}
