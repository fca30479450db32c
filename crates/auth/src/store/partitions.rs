//! SQL of the login history's partitions: pg_partman makes the coming months ahead of
//! the clock and drops the months past the retention (docs/partitioning.md).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

/// One monthly partition of `login_history`: rows with `from <= attempted_at < to`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Partition {
    pub name: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// What one maintenance run changed.
#[derive(Debug, Default)]
pub struct Maintenance {
    /// Partitions made ahead of the clock.
    pub created: Vec<Partition>,
    /// Partitions dropped because their whole month is older than the retention.
    pub dropped: Vec<Partition>,
    /// Expired months left for the next run: a query still reading them (or the whole
    /// table) held them past every attempt to drop them.
    pub drop_postponed: Vec<Partition>,
    /// Rows this run moved out of the default partition into their months (made for
    /// them): rows of a month that had no partition yet (a clock far off, or upkeep
    /// stopped for months). Left there, they made pg_partman's attaching of their month
    /// fail, and with it every later run, retention included.
    pub moved_from_default: i64,
    /// Rows still in the default partition after the run. There should be none.
    pub rows_in_default: bool,
}

/// How long the making of months waits for a lock (on the default partition, say,
/// behind a long read of it) before the run fails and the next one tries again. It
/// blocks no sign-in while it waits: attaching a month locks the table only against
/// other changes of its layout.
const MAKE_LOCK_TIMEOUT: &str = "3s";

/// How long a drop waits for the expired months, behind a query still reading one (an
/// export, a pg_dump). Sign-ins never touch them, but a history page locks every month
/// (its plan is pruned only as it runs), and it waits behind the months the drop holds
/// already while the drop waits for the next: short, as the table's wait.
const DROP_MONTH_LOCK_TIMEOUT: &str = "200ms";

/// How long a drop waits for the whole table once it holds the months. A drop locks
/// `login_history` against every statement, and each sign-in's insert queues behind a
/// drop waiting for that lock: this is the longest a sign-in can stall on upkeep. It is
/// under PostgreSQL's `deadlock_timeout` (1 s by default), so where a reader and the
/// drop wait on each other the drop gives up, not the reader.
const DROP_TABLE_LOCK_TIMEOUT: &str = "200ms";

/// Attempts to drop the expired months per run, a pause apart, before leaving them to
/// the next run.
const DROP_ATTEMPTS: u32 = 3;
const DROP_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// Makes the coming months' partitions, then drops the months whose end is more than
/// `retention_months` ago, in two transactions: a drop that cannot get its locks rolls
/// back only itself, never the coming months (which the sign-ins of next month need).
///
/// A drop detaches the month from the table and deletes its files at once: no row is
/// deleted one by one, nothing is left for VACUUM. It first locks the expired months
/// (waiting for readers of them blocks no sign-in), then the whole table for an
/// instant: it waits for that at most [`DROP_TABLE_LOCK_TIMEOUT`] and tries again a
/// little later, and after [`DROP_ATTEMPTS`] leaves the months to the next run.
pub async fn maintain(db: &PgPool, retention_months: u32) -> Result<Maintenance, sqlx::Error> {
    let mut tx = begin_upkeep(db).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("SET LOCAL lock_timeout = '{MAKE_LOCK_TIMEOUT}'"))).execute(&mut *tx).await?;
    let before = login_history_partitions(&mut tx).await?;
    // Written for pg_partman's own runs (its background worker, an operator's
    // `run_maintenance()`), so they keep the same retention as Auth's.
    sqlx::query("UPDATE partman.part_config SET retention = $1 WHERE parent_table = current_schema() || '.login_history'")
        .bind(format!("{retention_months} months"))
        .execute(&mut *tx)
        .await?;
    let moved_from_default: i64 =
        sqlx::query_scalar("SELECT partman.partition_data_time(current_schema() || '.login_history', p_batch_count := 1000, p_analyze := false)")
            .fetch_one(&mut *tx)
            .await?;
    // Months made for rows moved out of the default partition, which retention may drop
    // in this same run: listed here, or the run would not report them.
    let moved_into = login_history_partitions(&mut tx).await?;
    // This month and the `premake` coming ones, made if missing. Not by pg_partman's
    // run_maintenance, which counts the months it has made ahead up to its *last*
    // partition: one row dated years ahead (a clock far off), once moved into a month
    // of its own, stopped it making any month until then, and each month's first
    // sign-ins fell into the default partition. (It would also drop expired months in
    // the same transaction, which must not hold the coming months back.)
    sqlx::query(
        "SELECT partman.create_partition_time(c.parent_table,
                    ARRAY(SELECT date_trunc('month', now()) + make_interval(months => n) FROM generate_series(0, c.premake) AS n),
                    p_analyze := false)
           FROM partman.part_config c WHERE c.parent_table = current_schema() || '.login_history'",
    )
    .execute(&mut *tx)
    .await?;
    let made = login_history_partitions(&mut tx).await?;
    let rows_in_default: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM login_history_default)").fetch_one(&mut *tx).await?;
    tx.commit().await?;

    let mut attempt = 1;
    let drop_postponed = loop {
        match drop_expired(db, retention_months).await {
            Ok(()) => break Vec::new(),
            Err(e) if lock_not_granted(&e) && attempt < DROP_ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(DROP_RETRY_PAUSE).await;
            }
            Err(e) if lock_not_granted(&e) => break expired(&mut *db.acquire().await?, retention_months).await?,
            Err(e) => return Err(e),
        }
    };
    let after = login_history_partitions(&mut *db.acquire().await?).await?;
    let oldest_first = |mut partitions: Vec<Partition>| {
        partitions.sort_by_key(|p| p.from);
        partitions.dedup();
        partitions
    };
    let created = oldest_first(moved_into.iter().chain(&made).filter(|p| !before.contains(p)).cloned().collect());
    let dropped = oldest_first(before.iter().chain(&made).filter(|p| !after.contains(p)).cloned().collect());
    Ok(Maintenance { created, dropped, drop_postponed, moved_from_default, rows_in_default })
}

/// A transaction for upkeep, holding pg_partman's locks. pg_partman skips a run while
/// another session holds them; this waits for that run instead (the locks are
/// re-entrant for ours), so a run asked for is a run done, and a second instance's run
/// (or cron's) queues behind the first rather than failing: `lock_timeout` is off for
/// that wait, since it would bound it too (it applies to advisory locks).
async fn begin_upkeep(db: &PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = db.begin().await?;
    // Month bounds are in UTC, as in the migration that made the first partitions.
    sqlx::query("SET LOCAL TIME ZONE 'UTC'").execute(&mut *tx).await?;
    // Upkeep, not a request: the pool's statement timeout does not bound it (moving
    // rows out of the default partition may take long); lock timeouts bound its waits.
    sqlx::query("SET LOCAL statement_timeout = 0").execute(&mut *tx).await?;
    sqlx::query("SET LOCAL lock_timeout = 0").execute(&mut *tx).await?;
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtext('pg_partman run_maintenance')),
                pg_advisory_xact_lock(hashtext('pg_partman drop_partition_time'))",
    )
    .execute(&mut *tx)
    .await?;
    Ok(tx)
}

/// One attempt to drop the expired months, in a transaction of its own.
async fn drop_expired(db: &PgPool, retention_months: u32) -> Result<(), sqlx::Error> {
    let mut tx = begin_upkeep(db).await?;
    let expired = expired(&mut tx, retention_months).await?;
    if expired.is_empty() {
        return tx.commit().await;
    }
    // The months (and the default partition, which a drop locks to update its bounds)
    // before the table: a reader of an old month then holds up only this run, while the
    // table stays open to sign-ins. (DROP TABLE would lock the table first, then wait
    // for the month with the table locked.) Then the table alone (ONLY: not every
    // month), by this statement rather than within pg_partman, which reports a lock
    // timeout as an error of its own.
    sqlx::query(sqlx::AssertSqlSafe(format!("SET LOCAL lock_timeout = '{DROP_MONTH_LOCK_TIMEOUT}'"))).execute(&mut *tx).await?;
    let names = expired.iter().map(|p| format!("\"{}\"", p.name.replace('"', "\"\""))).collect::<Vec<_>>().join(", ");
    sqlx::query(sqlx::AssertSqlSafe(format!("LOCK TABLE {names}, login_history_default IN ACCESS EXCLUSIVE MODE"))).execute(&mut *tx).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("SET LOCAL lock_timeout = '{DROP_TABLE_LOCK_TIMEOUT}'"))).execute(&mut *tx).await?;
    sqlx::query("LOCK TABLE ONLY login_history IN ACCESS EXCLUSIVE MODE").execute(&mut *tx).await?;
    sqlx::query("SELECT partman.drop_partition_time(current_schema() || '.login_history', p_retention := $1::interval)")
        .bind(format!("{retention_months} months"))
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// The months whose end is more than `retention_months` ago: pg_partman's rule.
async fn expired(db: &mut PgConnection, retention_months: u32) -> Result<Vec<Partition>, sqlx::Error> {
    let limit: DateTime<Utc> = sqlx::query_scalar("SELECT now() - make_interval(months => $1)")
        .bind(i32::try_from(retention_months).unwrap_or(i32::MAX))
        .fetch_one(&mut *db)
        .await?;
    Ok(login_history_partitions(db).await?.into_iter().filter(|p| p.to < limit).collect())
}

/// A lock not granted in time (55P03), or a deadlock PostgreSQL broke by aborting us
/// (40P01): a concurrent query, worth another attempt later. pg_partman re-raises
/// either, from a lock it takes itself, as a plain exception (P0001) with the message.
fn lock_not_granted(e: &sqlx::Error) -> bool {
    let Some(e) = e.as_database_error() else { return false };
    match e.code().as_deref() {
        Some("55P03" | "40P01") => true,
        Some("P0001") => e.message().contains("canceling statement due to lock timeout") || e.message().contains("deadlock detected"),
        _ => false,
    }
}

/// The monthly partitions of `login_history`, oldest first (not the default one).
pub async fn login_history_partitions(db: &mut PgConnection) -> Result<Vec<Partition>, sqlx::Error> {
    sqlx::query_as(
        r"SELECT c.relname::text AS name, bounds[1]::timestamptz AS from, bounds[2]::timestamptz AS to
            FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid,
                 regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)') AS bounds
           WHERE i.inhparent = 'login_history'::regclass AND bounds IS NOT NULL
           ORDER BY 2",
    )
    .fetch_all(db)
    .await
}
