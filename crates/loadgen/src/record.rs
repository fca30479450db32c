//! The JSON lines the load generator prints, one per run, read back by `report`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Hash(HashResult),
    Scenario(ScenarioResult),
}

#[derive(Serialize, Deserialize)]
pub struct HashResult {
    pub cores: usize,
    pub samples: usize,
    pub memory_kib: u32,
    pub iterations: u32,
    pub lanes: u32,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// 10th and 90th percentiles: their spread shows whether the CPU ran at one speed.
    #[serde(default)]
    pub p10_ms: f64,
    #[serde(default)]
    pub p90_ms: f64,
    /// Median of the `argon2` crate's own `verify_password` (it allocates and zeroes
    /// its memory on every call), timed alongside for comparison.
    #[serde(default)]
    pub crate_call_median_ms: Option<f64>,
    /// Verifications per second with every core hashing at once (the service's threads).
    #[serde(default)]
    pub parallel_per_s: Option<f64>,
    /// cores / median: the most logins per second the hashing allows.
    pub bound_per_s: f64,
    /// Cores used per process group while timing; "loadgen" is the hashing itself.
    #[serde(default)]
    pub cpu_cores: BTreeMap<String, f64>,
    #[serde(default)]
    pub cpu_other_processes: Vec<(String, f64)>,
}

#[derive(Serialize, Deserialize)]
pub struct ScenarioResult {
    /// The run's label: the scenario's name unless `--label` gave another.
    pub scenario: String,
    /// The service under test: `auth` or `movies`.
    #[serde(default = "auth")]
    pub service: String,
    pub connections: usize,
    pub accounts: usize,
    pub threads: usize,
    pub warmup_s: f64,
    /// The measured period as it actually ran.
    pub measured_s: f64,
    /// Successful (2xx) answers completed within the measured period.
    pub requests: u64,
    pub rps: f64,
    /// Latency of the successful requests, in microseconds.
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Non-2xx answers and transport errors within the measured period, by kind.
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    pub warmup_errors: u64,
    /// Refresh only: connections whose token chain broke on an error and stopped.
    pub dead_connections: usize,
    /// Cores used per process group during the measured period (idle included).
    pub cpu_cores: BTreeMap<String, f64>,
    /// The busiest other processes by name, in cores: anything else competing.
    #[serde(default)]
    pub cpu_other_processes: Vec<(String, f64)>,
    /// Peak and current resident memory of the service under test.
    #[serde(alias = "auth_vm_hwm_kib")]
    pub vm_hwm_kib: Option<u64>,
    #[serde(alias = "auth_vm_rss_kib")]
    pub vm_rss_kib: Option<u64>,
}

fn auth() -> String {
    "auth".to_owned()
}

pub fn print(record: &Record) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(record)?);
    Ok(())
}
