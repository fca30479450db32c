//! Reading query plans: which tables and partitions a statement read, how, and
//! whether it sorted, from `EXPLAIN (ANALYZE, FORMAT JSON)`.

use serde_json::Value;
use sqlx::PgConnection;

/// One scan of a table or partition in a plan.
#[derive(Debug)]
pub struct Scan {
    pub relation: String,
    /// The index read: the scan's own, or its bitmap's.
    pub index: Option<String>,
    /// False for a partition pruned while the statement ran ("never executed").
    pub executed: bool,
    /// Below a Sort node: its rows were sorted rather than read in index order.
    pub sorted: bool,
    /// A condition checked on each row the scan fetched, after the index: rows it
    /// removed were read for nothing.
    pub filter: Option<String>,
}

#[derive(Clone, Copy, Debug)]
pub enum PlanMode {
    /// Planned for the values given, as PostgreSQL does for the first executions of a
    /// prepared statement.
    Custom,
    /// Planned once for any value, as PostgreSQL may do for later executions: pruning
    /// then happens when the statement runs.
    Generic,
}

/// Prepares `sql` as the service does, runs it with `args` (SQL literals) under
/// `EXPLAIN ANALYZE` in the given plan mode, and returns its scans.
pub async fn scans_of(db: &mut PgConnection, sql: &str, args: &str, mode: PlanMode) -> Vec<Scan> {
    let mode = match mode {
        PlanMode::Custom => "force_custom_plan",
        PlanMode::Generic => "force_generic_plan",
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET plan_cache_mode = {mode}; PREPARE under_test AS {sql}"))).execute(&mut *db).await.unwrap();
    let plan: Value = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, FORMAT JSON) EXECUTE under_test({args})"
    )))
    .fetch_one(&mut *db)
    .await
    .unwrap();
    sqlx::raw_sql("DEALLOCATE under_test; RESET plan_cache_mode").execute(&mut *db).await.unwrap();
    let mut scans = Vec::new();
    collect(&plan[0]["Plan"], false, &mut scans);
    scans
}

fn collect(node: &Value, sorted: bool, scans: &mut Vec<Scan>) {
    let kind = node["Node Type"].as_str().unwrap_or_default();
    let sorted = sorted || kind == "Sort" || kind == "Incremental Sort";
    if let Some(relation) = node["Relation Name"].as_str() {
        scans.push(Scan {
            relation: relation.to_owned(),
            index: node["Index Name"].as_str().or_else(|| bitmap_index(node)).map(str::to_owned),
            executed: node["Actual Loops"].as_u64().is_none_or(|loops| loops > 0),
            sorted,
            filter: node["Filter"].as_str().map(str::to_owned),
        });
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        collect(child, sorted, scans);
    }
}

/// The index a bitmap heap scan's bitmap comes from (one, for the statements tested).
fn bitmap_index(node: &Value) -> Option<&str> {
    node["Plans"].as_array()?.iter().find_map(|child| child["Index Name"].as_str().or_else(|| bitmap_index(child)))
}

/// The partitions of `table` (named `<table>_p…`) that a plan actually read.
pub fn partitions_read<'a>(scans: &'a [Scan], table: &str) -> Vec<&'a str> {
    let prefix = format!("{table}_p");
    scans.iter().filter(|s| s.executed && s.relation.starts_with(&prefix)).map(|s| s.relation.as_str()).collect()
}
