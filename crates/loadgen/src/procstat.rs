//! CPU time per process group and the service's memory high-water mark, from /proc.
//!
//! The load generator shares the machine with the service, PostgreSQL and Redis; the
//! split of CPU between them during the measured period shows which one limits.

use std::collections::{BTreeMap, HashMap};

/// CPU ticks (USER_HZ) of every process, grouped, plus the machine's totals.
pub struct CpuSnapshot {
    /// Sum over all CPUs of all states; of idle + iowait; of time stolen by the hypervisor.
    total: u64,
    idle: u64,
    steal: u64,
    cpus: usize,
    /// pid → (group, name, utime + stime)
    processes: HashMap<u32, (&'static str, String, u64)>,
}

/// Which processes belong to the system under test.
#[derive(Clone, Default)]
pub struct Watch {
    pub auth_pid: Option<u32>,
    pub movies_pid: Option<u32>,
    /// The services' databases, comma-separated: PostgreSQL backends serving other
    /// databases count as "other", since other work on the machine may use the server.
    pub pg_database: Option<String>,
}

/// The machine's CPU ticks (USER_HZ) from /proc/stat: all states summed over all CPUs,
/// idle + iowait, stolen by the hypervisor, and the number of CPUs.
#[derive(Clone, Copy, Default)]
pub struct MachineTicks {
    pub total: u64,
    pub idle: u64,
    pub steal: u64,
    pub cpus: usize,
}

pub fn machine_ticks() -> Option<MachineTicks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut lines = stat.lines();
    let totals: Vec<u64> = lines.next()?.split_whitespace().skip(1).take(8).filter_map(|v| v.parse().ok()).collect();
    if totals.len() < 8 {
        return None;
    }
    let cpus = lines.filter(|l| l.starts_with("cpu")).count().max(1);
    Some(MachineTicks { total: totals.iter().sum(), idle: totals[3] + totals[4], steal: totals[7], cpus })
}

/// utime + stime of one process.
pub fn process_ticks(pid: u32) -> Option<u64> {
    parse_process_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?).map(|(_, ticks)| ticks)
}

/// The name and utime + stime of a `/proc/<pid>/stat` line.
fn parse_process_stat(stat: &str) -> Option<(&str, u64)> {
    // The name is in parentheses and may itself contain spaces or parentheses.
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // Fields 14 and 15 of proc(5), counted from the state (field 3) here.
    let ticks = fields.get(11)?.parse::<u64>().unwrap_or(0) + fields.get(12)?.parse::<u64>().unwrap_or(0);
    Some((&stat[open + 1..close], ticks))
}

pub fn snapshot(watch: &Watch) -> Option<CpuSnapshot> {
    let machine = machine_ticks()?;
    let own_pid = std::process::id();
    let mut processes = HashMap::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some((comm, ticks)) = parse_process_stat(&stat) else { continue };
        let group = if Some(pid) == watch.auth_pid {
            "auth"
        } else if Some(pid) == watch.movies_pid {
            "movies"
        } else if pid == own_pid {
            "loadgen"
        } else if comm == "postgres" {
            if serves_other_database(pid, watch.pg_database.as_deref()) { "other" } else { "postgres" }
        } else if comm.starts_with("redis-server") {
            "redis"
        } else {
            "other"
        };
        processes.insert(pid, (group, comm.to_owned(), ticks));
    }
    Some(CpuSnapshot { total: machine.total, idle: machine.idle, steal: machine.steal, cpus: machine.cpus, processes })
}

pub struct CpuSplit {
    /// Cores used per group, idle included, so they add up to the number of CPUs.
    pub groups: BTreeMap<String, f64>,
    /// The busiest processes of the "other" group, by name: what else was running.
    pub others: Vec<(String, f64)>,
}

/// The CPU split between two snapshots. Processes that started in between count
/// from their start. "other" is the machine's busy time left after the named
/// groups, so it includes processes that exited in between (such as compilers).
pub fn cores_used(before: &CpuSnapshot, after: &CpuSnapshot) -> CpuSplit {
    let elapsed_per_cpu = after.total.saturating_sub(before.total) as f64 / after.cpus as f64;
    let mut groups = BTreeMap::new();
    let mut others: BTreeMap<&str, f64> = BTreeMap::new();
    if elapsed_per_cpu > 0.0 {
        for (pid, (group, name, ticks)) in &after.processes {
            let earlier = before.processes.get(pid).map_or(0, |(.., t)| *t);
            let cores = ticks.saturating_sub(earlier) as f64 / elapsed_per_cpu;
            if *group == "other" {
                *others.entry(name).or_insert(0.0) += cores;
            } else {
                *groups.entry((*group).to_owned()).or_insert(0.0) += cores;
            }
        }
        let idle = after.idle.saturating_sub(before.idle) as f64 / elapsed_per_cpu;
        let steal = after.steal.saturating_sub(before.steal) as f64 / elapsed_per_cpu;
        let named: f64 = groups.values().sum();
        groups.insert("other".to_owned(), (after.cpus as f64 - idle - steal - named).max(0.0));
        groups.insert("idle".to_owned(), idle);
        groups.insert("steal".to_owned(), steal);
    }
    let mut others: Vec<(String, f64)> =
        others.into_iter().filter(|(_, cores)| *cores >= 0.01).map(|(name, cores)| (name.to_owned(), cores)).collect();
    others.sort_by(|a, b| b.1.total_cmp(&a.1));
    others.truncate(5);
    CpuSplit { groups, others }
}

/// A `kB` line of /proc/<pid>/status, such as `VmHWM` (peak resident set).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?.split_whitespace().next()?.parse().ok()
}

/// Whether the process exists and has not exited (a zombie has exited).
pub fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rfind(')').and_then(|close| stat[close + 1..].split_whitespace().next().map(|s| s != "Z")))
        .unwrap_or(false)
}

/// Whether a PostgreSQL process is a backend of a database other than `ours`. Its
/// title reads `postgres: [<cluster>: ]<user> <database> <client> <state>`; the
/// server's own processes (`postgres: 15/main: walwriter`, ...) serve every database
/// and count as ours, autovacuum workers by the database they clean.
fn serves_other_database(pid: u32, ours: Option<&str>) -> bool {
    let Some(ours) = ours else { return false };
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let title = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    ours.split(',').all(|database| classify_title(&title, database))
}

fn classify_title(title: &str, ours: &str) -> bool {
    let Some(rest) = title.strip_prefix("postgres: ") else { return false };
    // Debian names its clusters (`15/main`), and the name prefixes every title.
    let rest = match rest.split_once(": ") {
        Some((cluster, after)) if !cluster.contains(' ') => after,
        _ => rest,
    };
    match rest.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["autovacuum", "worker", database, ..] => *database != ours,
        ["checkpointer" | "walwriter" | "archiver" | "startup" | "walreceiver", ..]
        | ["background" | "autovacuum" | "logical" | "parallel" | "stats", ..] => false,
        [_user, database, _client, ..] => *database != ours,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn postgres_titles_name_their_database() {
        let other = |title: &str| super::classify_title(title, "auth_bench");
        assert!(!other("postgres: 15/main: postgres auth_bench 127.0.0.1(43526) idle"));
        assert!(other("postgres: 15/main: postgres auth_test_1 127.0.0.1(43526) SELECT"));
        assert!(!other("postgres: 15/main: checkpointer"));
        assert!(!other("postgres: 15/main: background writer"));
        assert!(other("postgres: 15/main: autovacuum worker movies"));
        assert!(!other("postgres: postgres auth_bench [local] idle"));
    }
}
