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
    /// Rows this run moved out of the default partition into their months (made for
    /// them): rows of a month that had no partition yet (a clock far off, or upkeep
    /// stopped for months). Left there, they made pg_partman's attaching of their month
    /// fail, and with it every later run, retention included.
    pub moved_from_default: i64,
    /// Rows still in the default partition after the run. There should be none.
    pub rows_in_default: bool,
}

/// Makes the coming months' partitions and drops the months whose end is more than
/// `retention_months` ago, as one transaction.
///
/// A drop detaches the month from the table and deletes its files at once: no row is
/// deleted one by one, nothing is left for VACUUM. It holds a lock on the whole table
/// for that instant, so it waits at most `lock_timeout` behind a long query and the
/// next run tries again, rather than queueing sign-ins behind it.
pub async fn maintain(db: &PgPool, retention_months: u32) -> Result<Maintenance, sqlx::Error> {
    let mut tx = db.begin().await?;
    // Month bounds are in UTC, as in the migration that made the first partitions.
    sqlx::query("SET LOCAL TIME ZONE 'UTC'").execute(&mut *tx).await?;
    sqlx::query("SET LOCAL lock_timeout = '3s'").execute(&mut *tx).await?;
    // Upkeep, not a request: the pool's statement timeout does not bound it (moving
    // rows out of the default partition may take long); lock_timeout bounds its waits.
    sqlx::query("SET LOCAL statement_timeout = 0").execute(&mut *tx).await?;
    // pg_partman skips a run while another session holds its locks. Wait for that
    // run instead (these locks are re-entrant for ours), so a run asked for is a run done.
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtext('pg_partman run_maintenance')),
                pg_advisory_xact_lock(hashtext('pg_partman drop_partition_time'))",
    )
    .execute(&mut *tx)
    .await?;
    let before = login_history_partitions(&mut tx).await?;
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
    sqlx::query("SELECT partman.run_maintenance(p_parent_table := current_schema() || '.login_history')").execute(&mut *tx).await?;
    // This month and the `premake` coming ones, made if missing. pg_partman counts the
    // months it has made ahead up to its *last* partition, so one row dated years ahead
    // (a clock far off), once moved into a month of its own, stopped it making any
    // month until then: each month's first sign-ins fell into the default partition.
    sqlx::query(
        "SELECT partman.create_partition_time(c.parent_table,
                    ARRAY(SELECT date_trunc('month', now()) + make_interval(months => n) FROM generate_series(0, c.premake) AS n),
                    p_analyze := false)
           FROM partman.part_config c WHERE c.parent_table = current_schema() || '.login_history'",
    )
    .execute(&mut *tx)
    .await?;
    let after = login_history_partitions(&mut tx).await?;
    let rows_in_default: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM login_history_default)").fetch_one(&mut *tx).await?;
    tx.commit().await?;
    let oldest_first = |mut partitions: Vec<Partition>| {
        partitions.sort_by_key(|p| p.from);
        partitions.dedup();
        partitions
    };
    let created = oldest_first(moved_into.iter().chain(&after).filter(|p| !before.contains(p)).cloned().collect());
    let dropped = oldest_first(before.iter().chain(&moved_into).filter(|p| !after.contains(p)).cloned().collect());
    Ok(Maintenance { created, dropped, moved_from_default, rows_in_default })
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
