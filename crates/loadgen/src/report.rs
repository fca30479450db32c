//! Renders the JSON lines of one benchmark run as the Markdown tables of
//! `docs/benchmarks.md`, each target marked met or missed.

use std::{collections::BTreeMap, fmt::Write as _};

use crate::record::{HashResult, Record, ScenarioResult};

/// A measured period: its label, cores used per group, and the busiest other processes.
type Period<'a> = (&'a str, &'a BTreeMap<String, f64>, &'a [(String, f64)]);

const LOGIN_SHARE_OF_BOUND: f64 = 0.85;
const REFRESH_TARGET: f64 = 2_000.0;
const ME_TARGET: f64 = 10_000.0;
/// Movies: film detail with a subscriber's token, Auth up.
const FILM_TARGET: f64 = 10_000.0;
/// Movies: search with the cache off.
const SEARCH_TARGET: f64 = 2_000.0;
/// Film detail with Auth down (breaker open), as a share of film detail with Auth up;
/// traced as a share of untraced.
const DEGRADED_SHARE: f64 = 0.90;
const TRACED_SHARE: f64 = 0.90;
const RSS_TARGET_MIB: f64 = 100.0;
/// Cores used by one unrelated process above which a run is flagged as disturbed.
const OTHER_CPU_WARNING: f64 = 0.15;
/// Spread of the single-hash times (10th to 90th percentile, over the median) above
/// which the CPU's speed is taken to have varied. A steady host measures about 3 %.
const HASH_SPREAD_WARNING: f64 = 0.15;

pub fn render(jsonl: &str) -> anyhow::Result<String> {
    let mut hash: Option<HashResult> = None;
    let mut scenarios: Vec<ScenarioResult> = Vec::new();
    for line in jsonl.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str(line)? {
            Record::Hash(h) => hash = Some(h),
            Record::Scenario(s) => scenarios.push(s),
        }
    }
    let mut out = String::new();
    let mut verdicts: Vec<String> = Vec::new();

    out.push_str("### Results\n\n");
    out.push_str("| Scenario | Connections | Requests/s | p50 | p99 | Errors | Target | Met? |\n");
    out.push_str("|---|--:|--:|--:|--:|--:|---|---|\n");
    for s in &scenarios {
        let (label, target, met, detail) = judge(s, hash.as_ref(), &scenarios);
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} | {} | {target} | {} |",
            s.connections,
            rate(s.rps),
            latency(s.p50_us),
            latency(s.p99_us),
            s.errors,
            mark(met, &detail),
        );
        if met == Some(false) || (met.is_none() && s.scenario != "live") {
            verdicts.push(format!("**Missed: {}.** {detail}.", s.scenario));
        }
    }
    let peak_kib = scenarios.iter().filter(|s| s.service == "auth").filter_map(|s| s.vm_hwm_kib).max();
    if let Some(kib) = peak_kib {
        let mib = kib as f64 / 1024.0;
        let met = mib < RSS_TARGET_MIB;
        let detail = format!("{mib:.1} MiB");
        let _ = writeln!(
            out,
            "| Peak RSS of `auth` (VmHWM) over the whole run | | | | | | < {RSS_TARGET_MIB:.0} MiB | {} |",
            mark(Some(met), &detail)
        );
        if !met {
            verdicts.push(format!("**Missed: peak RSS.** {detail}, above the {RSS_TARGET_MIB:.0} MiB target."));
        }
    } else {
        verdicts.push("**Not measured: peak RSS** (no service pid given).".to_owned());
    }
    if let Some(kib) = scenarios.iter().filter(|s| s.service == "movies").filter_map(|s| s.vm_hwm_kib).max() {
        let _ = writeln!(out, "| Peak RSS of `movies` (VmHWM) over its scenarios | | | | | | none | n/a ({:.1} MiB) |", kib as f64 / 1024.0);
    }

    if let Some(h) = &hash {
        out.push_str("\n#### The Argon2 bound on logins\n\n");
        out.push_str("| Quantity | Value |\n|---|--:|\n");
        let _ = writeln!(
            out,
            "| One Argon2id verification (m={} KiB, t={}, p={}) by the service's routine (reused buffer), one thread, median of {} | {:.1} ms (min {:.1}, max {:.1}) |",
            h.memory_kib, h.iterations, h.lanes, h.samples, h.median_ms, h.min_ms, h.max_ms
        );
        if let Some(crate_call) = h.crate_call_median_ms {
            let _ = writeln!(out, "| For comparison: the `argon2` crate's `verify_password` (allocates and zeroes 19 MiB per call), median | {crate_call:.1} ms |");
        }
        let _ = writeln!(out, "| Spread: 10th to 90th percentile | {:.1} to {:.1} ms |", h.p10_ms, h.p90_ms);
        let _ = writeln!(out, "| Cores | {} |", h.cores);
        let _ = writeln!(out, "| Bound = cores ÷ median | {:.1} logins/s |", h.bound_per_s);
        if let Some(parallel) = h.parallel_per_s {
            let _ = writeln!(
                out,
                "| Every core hashing at once (the service's threads, nothing else running), verifications/s | {parallel:.1} = {:.1} % of the bound |",
                100.0 * parallel / h.bound_per_s
            );
        }
        let _ = writeln!(out, "| Target = {:.0} % of the bound | {:.1} logins/s |", LOGIN_SHARE_OF_BOUND * 100.0, LOGIN_SHARE_OF_BOUND * h.bound_per_s);
        if let Some(login) = scenarios.iter().find(|s| s.scenario == "login") {
            let _ = writeln!(out, "| Measured | {:.1} logins/s = {:.1} % of the bound |", login.rps, 100.0 * login.rps / h.bound_per_s);
            if let Some(parallel) = h.parallel_per_s {
                let _ = writeln!(out, "| Measured against every core hashing at once | {:.1} % |", 100.0 * login.rps / parallel);
            }
        }
        let spread = (h.p90_ms - h.p10_ms) / h.median_ms;
        if spread > HASH_SPREAD_WARNING {
            verdicts.push(format!(
                "**Noisy host:** identical single-threaded hashes took {:.1} to {:.1} ms (10th to 90th percentile, median {:.1}): the virtual CPU's speed varied during the run, \
                 which usually means the host is busy. Absolute rates of this run are low; the login ratio, measured in the same run, is less affected.",
                h.p10_ms, h.p90_ms, h.median_ms
            ));
        }
    } else {
        verdicts.push("**Not measured: the Argon2 bound** (no `hash` line), so the login target cannot be judged.".to_owned());
    }

    // Every measured period: the Argon2 timing, then each scenario.
    let mut periods: Vec<Period> = Vec::new();
    if let Some(h) = hash.as_ref().filter(|h| !h.cpu_cores.is_empty()) {
        periods.push(("Argon2 timing (loadgen = the hashing)", &h.cpu_cores, &h.cpu_other_processes));
    }
    for s in &scenarios {
        periods.push((&s.scenario, &s.cpu_cores, &s.cpu_other_processes));
    }
    out.push_str("\n#### CPU during each measured period\n\n");
    out.push_str("Cores used by each process group; with idle and steal (time the hypervisor gave to other machines) they add up to the number of cores. PostgreSQL counts the server's own processes and the backends of the benchmark's database; \"other\" is everything else, including short-lived processes and backends of other databases.\n\n");
    out.push_str("| Period | auth | movies | PostgreSQL | Redis | loadgen | other | idle | steal | busiest other processes |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|---|\n");
    for (label, cores, others) in &periods {
        let c = |k: &str| cores.get(k).map_or_else(|| "–".to_owned(), |v| format!("{v:.2}"));
        let others = if others.is_empty() {
            "none".to_owned()
        } else {
            others.iter().map(|(name, cores)| format!("`{name}` {cores:.2}")).collect::<Vec<_>>().join(", ")
        };
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {others} |",
            c("auth"),
            c("movies"),
            c("postgres"),
            c("redis"),
            c("loadgen"),
            c("other"),
            c("idle"),
            c("steal")
        );
    }

    out.push_str("\n#### Detail\n\n");
    out.push_str("| Scenario | Requests measured | Seconds | p90 | max | Errors by kind | Warm-up errors | Stopped connections | RSS of the service after (VmRSS) |\n");
    out.push_str("|---|--:|--:|--:|--:|---|--:|--:|--:|\n");
    for s in &scenarios {
        let kinds = if s.error_kinds.is_empty() {
            "none".to_owned()
        } else {
            s.error_kinds.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ")
        };
        let rss = s.vm_rss_kib.map_or_else(|| "–".to_owned(), |k| format!("{}: {:.1} MiB", s.service, k as f64 / 1024.0));
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {} | {} | {kinds} | {} | {} | {rss} |",
            s.scenario,
            s.requests,
            s.measured_s,
            latency(s.p90_us),
            latency(s.max_us),
            s.warmup_errors,
            s.dead_connections
        );
    }

    let disturbance = |cores: &BTreeMap<String, f64>| cores.get("other").unwrap_or(&0.0) + cores.get("steal").unwrap_or(&0.0);
    let disturbed: Vec<String> = periods
        .iter()
        .filter(|(_, cores, _)| disturbance(cores) >= OTHER_CPU_WARNING)
        .map(|(label, cores, others)| {
            let names = others.iter().take(3).map(|(name, _)| format!("`{name}`")).collect::<Vec<_>>().join(", ");
            let label = label.split(" (").next().unwrap_or(label);
            format!("{label}: {:.2} cores{}", disturbance(cores), if names.is_empty() { String::new() } else { format!(" ({names})") })
        })
        .collect();
    if !disturbed.is_empty() {
        verdicts.push(format!(
            "**Disturbed:** other work on the machine took CPU during {}; the affected figures are pessimistic.",
            disturbed.join("; ")
        ));
    }

    out.push_str("\n#### Verdict\n\n");
    if verdicts.is_empty() {
        out.push_str("Every target was met in this run.\n");
    } else {
        for v in verdicts {
            let _ = writeln!(out, "- {v}");
        }
    }
    Ok(out)
}

/// Label, target text, whether met (None: cannot be judged), and a one-line detail.
fn judge(s: &ScenarioResult, hash: Option<&HashResult>, all: &[ScenarioResult]) -> (String, String, Option<bool>, String) {
    let errors = if s.errors > 0 { format!(", with {} errors", s.errors) } else { String::new() };
    match s.scenario.as_str() {
        "login" => {
            let label = "login: `POST /api/v1/auth/login`".to_owned();
            match hash {
                Some(h) => {
                    let target = LOGIN_SHARE_OF_BOUND * h.bound_per_s;
                    let share = 100.0 * s.rps / h.bound_per_s;
                    let met = s.rps >= target && s.errors == 0;
                    (
                        label,
                        format!("≥ {:.0} % of the bound {:.1}/s, i.e. ≥ {target:.1}/s", LOGIN_SHARE_OF_BOUND * 100.0, h.bound_per_s),
                        Some(met),
                        format!("{:.1} logins/s = {share:.1} % of the bound{errors}", s.rps),
                    )
                }
                None => (label, "≥ 85 % of the Argon2 bound".to_owned(), None, "bound not measured".to_owned()),
            }
        }
        "refresh" => fixed("refresh: `POST /api/v1/auth/refresh` (rotating)", s, REFRESH_TARGET, &errors),
        "me" => fixed("`GET /api/v1/users/me` (bearer)", s, ME_TARGET, &errors),
        "film" => fixed("movies: `GET /api/v1/films/{id}` (subscriber's bearer, Auth up)", s, FILM_TARGET, &errors),
        "search" => fixed("movies: `GET /api/v1/films/search` (cache off)", s, SEARCH_TARGET, &errors),
        "film-auth-down" => share("movies: film detail with Auth down (breaker open)", s, all, "film", DEGRADED_SHARE, &errors),
        "me-traced" => share("`GET /api/v1/users/me`, tracing on (all sampled, exported)", s, all, "me", TRACED_SHARE, &errors),
        "film-traced" => share("movies: film detail, both services traced (all sampled, exported)", s, all, "film", TRACED_SHARE, &errors),
        "live" => (
            "baseline: `GET /health/live` (no storage, no crypto)".to_owned(),
            "none: the ceiling of HTTP + load generator".to_owned(),
            None,
            "for comparison".to_owned(),
        ),
        other => (other.to_owned(), "–".to_owned(), None, "no target".to_owned()),
    }
}

fn fixed(label: &str, s: &ScenarioResult, target: f64, errors: &str) -> (String, String, Option<bool>, String) {
    let met = s.rps >= target && s.errors == 0;
    let detail = format!("{} requests/s = {:.0} % of the {} target{errors}", rate(s.rps), 100.0 * s.rps / target, rate(target));
    (label.to_owned(), format!("≥ {}/s", rate(target)), Some(met), detail)
}

/// A run judged against another of the same report: at least `fraction` of its rate.
fn share(label: &str, s: &ScenarioResult, all: &[ScenarioResult], base: &str, fraction: f64, errors: &str) -> (String, String, Option<bool>, String) {
    let target = format!("≥ {:.0} % of `{base}`", fraction * 100.0);
    match all.iter().find(|b| b.scenario == base && b.rps > 0.0) {
        Some(b) => {
            let ratio = s.rps / b.rps;
            let met = ratio >= fraction && s.errors == 0;
            (label.to_owned(), target, Some(met), format!("{} requests/s = {:.1} % of `{base}` ({}/s){errors}", rate(s.rps), 100.0 * ratio, rate(b.rps)))
        }
        None => (label.to_owned(), target, None, format!("`{base}` not measured in this run")),
    }
}

fn mark(met: Option<bool>, detail: &str) -> String {
    match met {
        Some(true) => format!("yes ({detail})"),
        Some(false) => format!("**NO** ({detail})"),
        None => format!("n/a ({detail})"),
    }
}

/// Requests per second: one decimal below 100, whole numbers with separators above.
fn rate(value: f64) -> String {
    if value < 100.0 {
        return format!("{value:.1}");
    }
    let digits = format!("{:.0}", value);
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    grouped
}

fn latency(us: u64) -> String {
    match us {
        0..1_000 => format!("{us} µs"),
        1_000..100_000 => format!("{:.2} ms", us as f64 / 1e3),
        _ => format!("{:.0} ms", us as f64 / 1e3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_latencies_read_naturally() {
        assert_eq!(rate(37.94), "37.9");
        assert_eq!(rate(10_512.4), "10,512");
        assert_eq!(rate(2_000.0), "2,000");
        assert_eq!(rate(512.0), "512");
        assert_eq!(latency(850), "850 µs");
        assert_eq!(latency(1_234), "1.23 ms");
        assert_eq!(latency(421_000), "421 ms");
    }
}
