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
/// Change of the single-hash median between the timings before and after the login
/// scenario above which the host is taken to have changed speed across it.
const HASH_DRIFT_WARNING: f64 = 0.10;
/// Change of an untraced rate between its runs before and after the traced ones above
/// which the report says so.
const BASELINE_DRIFT_WARNING: f64 = 0.10;

/// The login bound as the report uses it: from the one timing before the service
/// starts, or, when the run also timed the hash again right after the login scenario,
/// from the mean of the two medians (the host's speed can drift within minutes on a
/// shared machine; the mean is the best estimate of it during the scenario).
struct Bound<'a> {
    timings: &'a [HashResult],
    median_ms: f64,
    per_s: f64,
    parallel_per_s: Option<f64>,
}

impl<'a> Bound<'a> {
    fn of(timings: &'a [HashResult]) -> Option<Self> {
        let first = timings.first()?;
        let timings = &timings[..timings.len().min(2)];
        let n = timings.len() as f64;
        let median_ms = timings.iter().map(|h| h.median_ms).sum::<f64>() / n;
        let parallel: Vec<f64> = timings.iter().filter_map(|h| h.parallel_per_s).collect();
        let parallel_per_s = (parallel.len() == timings.len()).then(|| parallel.iter().sum::<f64>() / n);
        Some(Self { timings, median_ms, per_s: first.cores as f64 * 1000.0 / median_ms, parallel_per_s })
    }

    /// Relative change of the median from the first timing to the second.
    fn drift(&self) -> Option<f64> {
        match self.timings {
            [before, after] => Some((after.median_ms - before.median_ms) / before.median_ms),
            _ => None,
        }
    }
}

pub fn render(jsonl: &str) -> anyhow::Result<String> {
    let mut hashes: Vec<HashResult> = Vec::new();
    let mut scenarios: Vec<ScenarioResult> = Vec::new();
    for line in jsonl.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str(line)? {
            Record::Hash(h) => hashes.push(h),
            Record::Scenario(s) => scenarios.push(s),
        }
    }
    let bound = Bound::of(&hashes);
    let mut out = String::new();
    let mut verdicts: Vec<String> = Vec::new();

    out.push_str("### Results\n\n");
    out.push_str("| Scenario | Connections | Requests/s | p50 | p99 | Errors | Target | Met? |\n");
    out.push_str("|---|--:|--:|--:|--:|--:|---|---|\n");
    for s in &scenarios {
        let (label, target, met, detail) = judge(s, bound.as_ref(), &scenarios);
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
        let _ =
            writeln!(out, "| Peak RSS of `auth` (VmHWM) over the whole run | | | | | | < {RSS_TARGET_MIB:.0} MiB | {} |", mark(Some(met), &detail));
        if !met {
            verdicts.push(format!("**Missed: peak RSS.** {detail}, above the {RSS_TARGET_MIB:.0} MiB target."));
        }
    } else {
        verdicts.push("**Not measured: peak RSS** (no service pid given).".to_owned());
    }
    if let Some(kib) = scenarios.iter().filter(|s| s.service == "movies").filter_map(|s| s.vm_hwm_kib).max() {
        let _ = writeln!(out, "| Peak RSS of `movies` (VmHWM) over its scenarios | | | | | | none | n/a ({:.1} MiB) |", kib as f64 / 1024.0);
    }

    if let Some(bound) = &bound {
        out.push_str("\n#### The Argon2 bound on logins\n\n");
        let columns: Vec<&str> = match bound.timings.len() {
            1 => vec!["Value"],
            _ => vec!["Before the service started", "After the login scenario"],
        };
        let _ = writeln!(out, "| Quantity | {} |\n|---|{}", columns.join(" | "), "--:|".repeat(columns.len()));
        let row = |out: &mut String, quantity: &str, cell: &dyn Fn(&HashResult) -> String| {
            let cells: Vec<String> = bound.timings.iter().map(cell).collect();
            let _ = writeln!(out, "| {quantity} | {} |", cells.join(" | "));
        };
        let h = &bound.timings[0];
        row(
            &mut out,
            &format!(
                "One Argon2id verification (m={} KiB, t={}, p={}) by the service's routine (reused buffer), one thread, median of {}",
                h.memory_kib, h.iterations, h.lanes, h.samples
            ),
            &|h| format!("{:.1} ms (min {:.1}, max {:.1})", h.median_ms, h.min_ms, h.max_ms),
        );
        if bound.timings.iter().all(|h| h.crate_call_median_ms.is_some()) {
            row(&mut out, "For comparison: the `argon2` crate's `verify_password` (allocates and zeroes 19 MiB per call), median", &|h| {
                format!("{:.1} ms", h.crate_call_median_ms.unwrap_or_default())
            });
        }
        row(&mut out, "Spread: 10th to 90th percentile", &|h| format!("{:.1} to {:.1} ms", h.p10_ms, h.p90_ms));
        if bound.parallel_per_s.is_some() {
            row(&mut out, "Every core hashing at once (the service's threads, nothing else running), verifications/s", &|h| {
                let parallel = h.parallel_per_s.unwrap_or_default();
                format!("{parallel:.1} = {:.1} % of cores ÷ this median", 100.0 * parallel / h.bound_per_s)
            });
        }
        let span = if bound.timings.len() > 1 { " (one value for the run)" } else { "" };
        let _ = writeln!(out, "\n| The bound{span} | Value |\n|---|--:|");
        if bound.timings.len() > 1 {
            let _ = writeln!(out, "| Single-hash time: mean of the two medians | {:.1} ms |", bound.median_ms);
        }
        let _ = writeln!(out, "| Cores | {} |", h.cores);
        let _ = writeln!(out, "| Bound = cores ÷ single-hash time | {:.1} logins/s |", bound.per_s);
        if let Some(parallel) = bound.parallel_per_s {
            let _ = writeln!(
                out,
                "| Every core hashing at once{} | {parallel:.1}/s = {:.1} % of the bound |",
                if bound.timings.len() > 1 { ", mean" } else { "" },
                100.0 * parallel / bound.per_s
            );
        }
        let _ = writeln!(out, "| Target = {:.0} % of the bound | {:.1} logins/s |", LOGIN_SHARE_OF_BOUND * 100.0, LOGIN_SHARE_OF_BOUND * bound.per_s);
        if let Some(login) = scenarios.iter().find(|s| s.scenario == "login") {
            let _ = writeln!(out, "| Measured | {:.1} logins/s = {:.1} % of the bound |", login.rps, 100.0 * login.rps / bound.per_s);
            if let Some(parallel) = bound.parallel_per_s {
                let _ = writeln!(out, "| Measured against every core hashing at once | {:.1} % |", 100.0 * login.rps / parallel);
            }
        }
        // One verdict for every timing whose spread is too wide.
        let noisy: Vec<String> = bound
            .timings
            .iter()
            .enumerate()
            .filter(|(_, h)| (h.p90_ms - h.p10_ms) / h.median_ms > HASH_SPREAD_WARNING)
            .map(|(index, h)| {
                let when = match (bound.timings.len(), index) {
                    (1, _) => "",
                    (_, 0) => " before the service started",
                    _ => " after the login scenario",
                };
                format!("{:.1} to {:.1} ms{when} (median {:.1})", h.p10_ms, h.p90_ms, h.median_ms)
            })
            .collect();
        if !noisy.is_empty() {
            verdicts.push(format!(
                "**Noisy host:** identical single-threaded hashes took {} (10th to 90th percentile): the virtual CPU's speed varied during the run, \
                 which usually means the host is busy. Absolute rates of this run are low; the login ratio, measured in the same run, is less affected.",
                noisy.join(" and ")
            ));
        }
        if let Some(drift) = bound.drift().filter(|d| d.abs() > HASH_DRIFT_WARNING) {
            verdicts.push(format!(
                "**Host speed drifted:** the single-hash median changed by {:+.0} % between the timings before and after the login scenario ({:.1} → {:.1} ms). \
                 The bound uses their mean; the login ratio is uncertain by about that much.",
                100.0 * drift,
                bound.timings[0].median_ms,
                bound.timings[1].median_ms
            ));
        }
    } else {
        verdicts.push("**Not measured: the Argon2 bound** (no `hash` line), so the login target cannot be judged.".to_owned());
    }

    // Every measured period: the Argon2 timing, then each scenario.
    let mut periods: Vec<Period> = Vec::new();
    for (index, h) in hashes.iter().enumerate().filter(|(_, h)| !h.cpu_cores.is_empty()) {
        let label = if index == 0 { "Argon2 timing (loadgen = the hashing)" } else { "Argon2 timing after login (loadgen = the hashing)" };
        periods.push((label, &h.cpu_cores, &h.cpu_other_processes));
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
fn judge(s: &ScenarioResult, bound: Option<&Bound>, all: &[ScenarioResult]) -> (String, String, Option<bool>, String) {
    let errors = if s.errors > 0 { format!(", with {} errors", s.errors) } else { String::new() };
    match s.scenario.as_str() {
        "login" => {
            let label = "login: `POST /api/v1/auth/login`".to_owned();
            match bound {
                Some(b) => {
                    let target = LOGIN_SHARE_OF_BOUND * b.per_s;
                    let share = 100.0 * s.rps / b.per_s;
                    let met = s.rps >= target && s.errors == 0;
                    let drift = match b.drift() {
                        Some(d) if d.abs() > HASH_DRIFT_WARNING => format!("; the host's speed drifted {:+.0} % across it", 100.0 * d),
                        _ => String::new(),
                    };
                    (
                        label,
                        format!("≥ {:.0} % of the bound {:.1}/s, i.e. ≥ {target:.1}/s", LOGIN_SHARE_OF_BOUND * 100.0, b.per_s),
                        Some(met),
                        format!("{:.1} logins/s = {share:.1} % of the bound{drift}{errors}", s.rps),
                    )
                }
                None => (label, "≥ 85 % of the Argon2 bound".to_owned(), None, "bound not measured".to_owned()),
            }
        }
        "refresh" => fixed("refresh: `POST /api/v1/auth/refresh` (rotating)", s, REFRESH_TARGET, &errors),
        "me" => fixed("`GET /api/v1/users/me` (bearer)", s, ME_TARGET, &errors),
        "film" => fixed("movies: `GET /api/v1/films/{id}` (subscriber's bearer, Auth up)", s, FILM_TARGET, &errors),
        "me-again" => fixed("`GET /api/v1/users/me` again, untraced, after the traced runs", s, ME_TARGET, &errors),
        "film-again" => fixed("movies: film detail again, untraced, after the traced runs", s, FILM_TARGET, &errors),
        "search" => fixed("movies: `GET /api/v1/films/search` (cache off)", s, SEARCH_TARGET, &errors),
        "film-auth-down" => share("movies: film detail with Auth down (breaker open)", s, all, "film", DEGRADED_SHARE, &errors),
        "me-traced" => traced("`GET /api/v1/users/me`, tracing on (all sampled, exported)", s, all, "me", &errors),
        "film-traced" => traced("movies: film detail, both services traced (all sampled, exported)", s, all, "film", &errors),
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
            (
                label.to_owned(),
                target,
                Some(met),
                format!("{} requests/s = {:.1} % of `{base}` ({}/s){errors}", rate(s.rps), 100.0 * ratio, rate(b.rps)),
            )
        }
        None => (label.to_owned(), target, None, format!("`{base}` not measured in this run")),
    }
}

/// A traced run against the untraced `base`: against the mean of `base` and
/// `{base}-again` when the run measured it again after the traced runs, as the host's
/// speed can drift in the minutes between them; the detail names both, and the drift
/// when it is larger than [`BASELINE_DRIFT_WARNING`].
fn traced(label: &str, s: &ScenarioResult, all: &[ScenarioResult], base: &str, errors: &str) -> (String, String, Option<bool>, String) {
    let rate_of = |name: &str| all.iter().find(|b| b.scenario == name && b.rps > 0.0).map(|b| b.rps);
    let (Some(before), Some(after)) = (rate_of(base), rate_of(&format!("{base}-again"))) else {
        return share(label, s, all, base, TRACED_SHARE, errors);
    };
    let baseline = (before + after) / 2.0;
    let ratio = s.rps / baseline;
    let drift = after / before - 1.0;
    let drift = if drift.abs() > BASELINE_DRIFT_WARNING {
        format!("; the untraced rate changed {:+.0} % between them", 100.0 * drift)
    } else {
        String::new()
    };
    (
        label.to_owned(),
        format!("≥ {:.0} % of untraced `{base}`", TRACED_SHARE * 100.0),
        Some(ratio >= TRACED_SHARE && s.errors == 0),
        format!(
            "{} requests/s = {:.1} % of untraced `{base}`, the mean of {}/s before and {}/s after{drift}{errors}",
            rate(s.rps),
            100.0 * ratio,
            rate(before),
            rate(after)
        ),
    )
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

    fn timing(median_ms: f64, parallel_per_s: f64) -> HashResult {
        serde_json::from_value(serde_json::json!({
            "cores": 2, "samples": 30, "memory_kib": 19456, "iterations": 2, "lanes": 1,
            "median_ms": median_ms, "min_ms": median_ms, "max_ms": median_ms,
            "parallel_per_s": parallel_per_s, "bound_per_s": 2000.0 / median_ms,
        }))
        .unwrap()
    }

    #[test]
    fn the_bound_is_set_by_the_mean_of_the_timings_around_the_logins() {
        let one = [timing(10.0, 180.0)];
        let bound = Bound::of(&one).unwrap();
        assert_eq!((bound.per_s, bound.parallel_per_s, bound.drift()), (200.0, Some(180.0), None));

        let two = [timing(10.0, 180.0), timing(15.0, 120.0)];
        let bound = Bound::of(&two).unwrap();
        assert_eq!(bound.median_ms, 12.5);
        assert_eq!(bound.per_s, 160.0);
        assert_eq!(bound.parallel_per_s, Some(150.0));
        assert_eq!(bound.drift(), Some(0.5));
        assert!(Bound::of(&[]).is_none());
    }

    #[test]
    fn a_drifting_host_is_flagged_in_the_verdict() {
        let mut lines: Vec<String> =
            [timing(10.0, 180.0), timing(12.0, 160.0)].into_iter().map(|h| serde_json::to_string(&Record::Hash(h)).unwrap()).collect();
        let report = render(&lines.join("\n")).unwrap();
        assert!(report.contains("**Host speed drifted:** the single-hash median changed by +20 %"), "{report}");
        assert!(report.contains("| Bound = cores ÷ single-hash time | 181.8 logins/s |"), "{report}");
        assert!(report.contains("| 180.0 = 90.0 % of cores ÷ this median | 160.0 = 96.0 % of cores ÷ this median |"), "{report}");
        lines.pop();
        assert!(!render(&lines.join("\n")).unwrap().contains("drifted"));
    }

    #[test]
    fn a_noisy_host_gets_one_verdict_naming_each_noisy_timing() {
        let spread = |median_ms: f64, p10_ms: f64, p90_ms: f64| HashResult { p10_ms, p90_ms, ..timing(median_ms, 180.0) };
        let render_of = |timings: Vec<HashResult>| {
            let lines: Vec<String> = timings.into_iter().map(|h| serde_json::to_string(&Record::Hash(h)).unwrap()).collect();
            render(&lines.join("\n")).unwrap()
        };
        let both = render_of(vec![spread(14.3, 13.9, 17.7), spread(15.1, 13.8, 19.6)]);
        assert_eq!(both.matches("**Noisy host:**").count(), 1, "{both}");
        assert!(
            both.contains("took 13.9 to 17.7 ms before the service started (median 14.3) and 13.8 to 19.6 ms after the login scenario (median 15.1)"),
            "{both}"
        );
        let after_only = render_of(vec![spread(14.3, 14.0, 14.6), spread(15.1, 13.8, 19.6)]);
        assert!(after_only.contains("took 13.8 to 19.6 ms after the login scenario (median 15.1) (10th"), "{after_only}");
        assert!(!render_of(vec![spread(14.3, 14.0, 14.6)]).contains("Noisy"));
    }

    fn scenario(name: &str, rps: f64) -> String {
        let s: ScenarioResult = serde_json::from_value(serde_json::json!({
            "scenario": name, "service": "auth", "connections": 64, "accounts": 4, "threads": 1,
            "warmup_s": 3.0, "measured_s": 10.0, "requests": (rps * 10.0) as u64, "rps": rps,
            "p50_us": 4000, "p90_us": 6000, "p99_us": 8000, "max_us": 9000, "errors": 0,
            "error_kinds": {}, "warmup_errors": 0, "dead_connections": 0, "cpu_cores": {},
        }))
        .unwrap();
        serde_json::to_string(&Record::Scenario(s)).unwrap()
    }

    #[test]
    fn a_traced_run_is_judged_against_the_mean_of_its_untraced_runs_around_it() {
        // 9,000 is 75 % of the first baseline but 90 % of the mean of both.
        let both = render(&[scenario("me", 12_000.0), scenario("me-traced", 9_000.0), scenario("me-again", 8_000.0)].join("\n")).unwrap();
        assert!(
            both.contains(
                "| yes (9,000 requests/s = 90.0 % of untraced `me`, the mean of 12,000/s before and 8,000/s after; \
                 the untraced rate changed -33 % between them) |"
            ),
            "{both}"
        );
        assert!(both.contains("| `GET /api/v1/users/me` again, untraced, after the traced runs | 64 | 8,000 |"), "{both}");
        // Without the second baseline, the first alone judges, as before.
        let one = render(&[scenario("me", 12_000.0), scenario("me-traced", 9_000.0)].join("\n")).unwrap();
        assert!(one.contains("| **NO** (9,000 requests/s = 75.0 % of `me` (12,000/s)) |"), "{one}");
        // A steady host: no drift is mentioned.
        let steady = render(&[scenario("film", 12_000.0), scenario("film-traced", 11_000.0), scenario("film-again", 11_800.0)].join("\n")).unwrap();
        assert!(steady.contains("= 92.4 % of untraced `film`, the mean of 12,000/s before and 11,800/s after) |"), "{steady}");
    }

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
