//! The three scenarios: set-up (accounts, sessions), a warm-up, then a measured period.
//!
//! Each connection is one task with one request in flight. A request counts when it
//! completes inside the measured period; its latency is recorded when it succeeded.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::Context;
use hdrhistogram::Histogram;
use http::HeaderValue;
use hyper::body::Bytes;
use serde::Deserialize;
use serde_json::json;
use tokio::task::JoinSet;

use crate::{
    RunArgs,
    client::{self, Conn, Reply},
    procstat,
    record::ScenarioResult,
};

pub const PASSWORD: &str = "correct horse battery";
const SIGNUP: &str = "/api/v1/auth/signup";
const LOGIN: &str = "/api/v1/auth/login";
const REFRESH: &str = "/api/v1/auth/refresh";
const ME: &str = "/api/v1/users/me";
const READY: &str = "/health/ready";
const LIVE: &str = "/health/live";

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Login,
    Refresh,
    Me,
    Live,
    Film,
    Search,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Refresh => "refresh",
            Self::Me => "me",
            Self::Live => "live",
            Self::Film => "film",
            Self::Search => "search",
        }
    }
}

#[derive(Deserialize)]
struct TokenPair {
    access_token: String,
    refresh_token: String,
}

/// When measuring starts and when everything stops.
#[derive(Clone, Copy)]
struct Window {
    measure_from: Instant,
    end: Instant,
}

impl Window {
    /// The start time of the next request, or `None` once the run is over.
    fn next(&self) -> Option<Instant> {
        let now = Instant::now();
        (now < self.end).then_some(now)
    }
}

/// One connection's tally; merged at the end.
struct Tally {
    latencies_us: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    warmup_errors: u64,
    dead: bool,
}

enum Outcome {
    Ok,
    Failed(String),
}

impl Tally {
    fn new() -> Self {
        // 1 µs to 60 s at 3 significant figures.
        let latencies_us = Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
        Self { latencies_us, errors: BTreeMap::new(), warmup_errors: 0, dead: false }
    }

    fn finish(&mut self, window: &Window, started: Instant, outcome: &Outcome) {
        let finished = Instant::now();
        if finished > window.end {
            return;
        }
        match outcome {
            _ if finished < window.measure_from => {
                if matches!(outcome, Outcome::Failed(_)) {
                    self.warmup_errors += 1;
                }
            }
            Outcome::Ok => {
                let us = u64::try_from((finished - started).as_micros()).unwrap_or(u64::MAX).max(1);
                self.latencies_us.saturating_record(us);
            }
            Outcome::Failed(kind) => *self.errors.entry(kind.clone()).or_default() += 1,
        }
    }
}

fn outcome(reply: &anyhow::Result<Reply>) -> Outcome {
    match reply {
        Ok(r) if r.status.is_success() => Outcome::Ok,
        Ok(r) => Outcome::Failed(r.status.as_u16().to_string()),
        Err(_) => Outcome::Failed("transport".to_owned()),
    }
}

fn json_body(value: serde_json::Value) -> Bytes {
    Bytes::from(serde_json::to_vec(&value).expect("JSON values serialise"))
}

fn email(index: usize) -> String {
    format!("loadgen-{index}@bench.example.com")
}

/// Creates the account unless it exists already.
async fn sign_up(conn: &mut Conn, email: &str) -> anyhow::Result<()> {
    let reply = conn.send(client::post_json(SIGNUP, json_body(json!({"email": email, "password": PASSWORD})))).await?;
    match reply.status.as_u16() {
        201 | 409 => Ok(()),
        status => anyhow::bail!("sign-up of {email}: HTTP {status}: {}", String::from_utf8_lossy(&reply.body)),
    }
}

async fn log_in(conn: &mut Conn, email: &str) -> anyhow::Result<TokenPair> {
    let reply = conn.send(client::post_json(LOGIN, json_body(json!({"email": email, "password": PASSWORD})))).await?;
    anyhow::ensure!(reply.status == 200, "login of {email}: HTTP {}: {}", reply.status, String::from_utf8_lossy(&reply.body));
    serde_json::from_slice(&reply.body).context("login answer")
}

/// Signs up `count` accounts, concurrently (the service queues the hashing).
async fn sign_up_all(args: &RunArgs, count: usize) -> anyhow::Result<()> {
    let mut tasks = JoinSet::new();
    for index in 0..count {
        let addr = args.addr;
        tasks.spawn(async move { sign_up(&mut Conn::new(addr), &email(index)).await });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

pub async fn run(kind: Kind, args: &RunArgs) -> anyhow::Result<ScenarioResult> {
    let accounts = match kind {
        Kind::Refresh => args.connections.min(args.accounts),
        Kind::Live | Kind::Film | Kind::Search => 0,
        Kind::Login | Kind::Me => args.accounts,
    };
    // Film and search: paths made from the catalogue's top films, cycled through.
    let catalogue_paths: std::sync::Arc<Vec<String>> = std::sync::Arc::new(match kind {
        Kind::Film => top_films(args.addr).await?.into_iter().map(|(id, _)| format!("/api/v1/films/{id}")).collect(),
        Kind::Search => search_paths(&top_films(args.addr).await?),
        _ => Vec::new(),
    });
    let bearer = args.bearer.as_deref().map(|t| HeaderValue::from_str(&format!("Bearer {t}"))).transpose()?;
    sign_up_all(args, accounts).await?;

    // Per connection: its socket and, for refresh and me, a session made in set-up.
    let mut sessions: Vec<(usize, Conn, Option<TokenPair>)> = Vec::with_capacity(args.connections);
    let mut logins = JoinSet::new();
    for index in 0..args.connections {
        let addr = args.addr;
        let needs_session = match kind {
            Kind::Login | Kind::Live | Kind::Film | Kind::Search => false,
            Kind::Refresh => true,
            // A few users' tokens, shared round-robin, as many clients of few users would.
            Kind::Me => index < accounts,
        };
        logins.spawn(async move {
            let mut conn = Conn::new(addr);
            let pair = if needs_session { Some(log_in(&mut conn, &email(index % accounts)).await?) } else { None };
            anyhow::Ok((index, conn, pair))
        });
    }
    while let Some(done) = logins.join_next().await {
        sessions.push(done??);
    }
    sessions.sort_by_key(|(index, ..)| *index);
    let access: Vec<HeaderValue> = sessions
        .iter()
        .filter_map(|(_, _, pair)| pair.as_ref())
        .map(|p| HeaderValue::from_str(&format!("Bearer {}", p.access_token)))
        .collect::<Result<_, _>>()?;

    let start = Instant::now();
    let window = Window { measure_from: start + args.warmup(), end: start + args.warmup() + args.duration() };
    let sampler = tokio::spawn(sample_cpu(window, args.watch()));

    let mut workers = JoinSet::new();
    for (index, mut conn, pair) in sessions {
        let mut tally = Tally::new();
        match kind {
            Kind::Login => {
                let body = json_body(json!({"email": email(index % accounts), "password": PASSWORD}));
                workers.spawn(async move {
                    while let Some(started) = window.next() {
                        let reply = conn.send(client::post_json(LOGIN, body.clone())).await;
                        tally.finish(&window, started, &outcome(&reply));
                    }
                    tally
                });
            }
            Kind::Refresh => {
                let mut token = pair.expect("refresh connections have a session").refresh_token;
                workers.spawn(async move {
                    while let Some(started) = window.next() {
                        let reply = conn.send(client::post_json(REFRESH, json_body(json!({"refresh_token": token})))).await;
                        let mut result = outcome(&reply);
                        // The next request must present the token this answer issued.
                        let next = match (&result, &reply) {
                            (Outcome::Ok, Ok(r)) => serde_json::from_slice::<TokenPair>(&r.body).ok(),
                            _ => None,
                        };
                        if matches!(result, Outcome::Ok) && next.is_none() {
                            result = Outcome::Failed("unparsable 200".to_owned());
                        }
                        tally.finish(&window, started, &result);
                        match next {
                            Some(pair) => token = pair.refresh_token,
                            None => {
                                // The chain is broken (or its state unknown): stop
                                // rather than log in again, which would add hashing.
                                tally.dead = true;
                                break;
                            }
                        }
                    }
                    tally
                });
            }
            Kind::Live => {
                workers.spawn(async move {
                    while let Some(started) = window.next() {
                        let reply = conn.send(client::get(LIVE)).await;
                        tally.finish(&window, started, &outcome(&reply));
                    }
                    tally
                });
            }
            Kind::Film | Kind::Search => {
                let paths = catalogue_paths.clone();
                let bearer = bearer.clone();
                // Connections start at different places of the list.
                let mut next = index * 7;
                workers.spawn(async move {
                    while let Some(started) = window.next() {
                        let path = &paths[next % paths.len()];
                        next += 1;
                        let request = match &bearer {
                            Some(authorization) => client::get_with_bearer(path, authorization),
                            None => client::get(path),
                        };
                        let reply = conn.send(request).await;
                        tally.finish(&window, started, &outcome(&reply));
                    }
                    tally
                });
            }
            Kind::Me => {
                let authorization = access[index % access.len()].clone();
                workers.spawn(async move {
                    while let Some(started) = window.next() {
                        let reply = conn.send(client::get_with_bearer(ME, &authorization)).await;
                        tally.finish(&window, started, &outcome(&reply));
                    }
                    tally
                });
            }
        }
    }

    let mut total = Tally::new();
    let mut dead_connections = 0;
    while let Some(done) = workers.join_next().await {
        let tally = done?;
        total.latencies_us.add(&tally.latencies_us)?;
        for (kind, n) in tally.errors {
            *total.errors.entry(kind).or_default() += n;
        }
        total.warmup_errors += tally.warmup_errors;
        dead_connections += usize::from(tally.dead);
    }
    let cpu = sampler.await?;
    let measured_s = (window.end - window.measure_from).as_secs_f64();
    let h = &total.latencies_us;
    let pid = if matches!(kind, Kind::Film | Kind::Search) { args.movies_pid } else { args.auth_pid };
    Ok(ScenarioResult {
        scenario: args.label.clone().unwrap_or_else(|| kind.name().to_owned()),
        service: if matches!(kind, Kind::Film | Kind::Search) { "movies" } else { "auth" }.to_owned(),
        connections: args.connections,
        accounts,
        threads: args.threads,
        warmup_s: args.warmup,
        measured_s,
        requests: h.len(),
        rps: h.len() as f64 / measured_s,
        p50_us: h.value_at_quantile(0.50),
        p90_us: h.value_at_quantile(0.90),
        p99_us: h.value_at_quantile(0.99),
        max_us: h.max(),
        errors: total.errors.values().sum(),
        error_kinds: total.errors,
        warmup_errors: total.warmup_errors,
        dead_connections,
        cpu_cores: cpu.as_ref().map(|c| c.groups.clone()).unwrap_or_default(),
        cpu_other_processes: cpu.map(|c| c.others).unwrap_or_default(),
        vm_hwm_kib: pid.and_then(|pid| procstat::status_kib(pid, "VmHWM")),
        vm_rss_kib: pid.and_then(|pid| procstat::status_kib(pid, "VmRSS")),
    })
}

#[derive(Deserialize)]
struct FilmPage {
    items: Vec<FilmSummary>,
}

#[derive(Deserialize)]
struct FilmSummary {
    id: String,
    title: String,
}

/// The 200 best-rated films: (id, title).
async fn top_films(addr: SocketAddr) -> anyhow::Result<Vec<(String, String)>> {
    let mut conn = Conn::new(addr);
    let mut films = Vec::new();
    for page in 1..=4 {
        let path = format!("/api/v1/films?sort=-imdb_rating&page%5Bsize%5D=50&page%5Bnumber%5D={page}");
        let reply = conn.send(client::get(&path)).await?;
        anyhow::ensure!(reply.status == 200, "{path}: HTTP {}: {}", reply.status, String::from_utf8_lossy(&reply.body));
        let page: FilmPage = serde_json::from_slice(&reply.body).context("film page")?;
        films.extend(page.items.into_iter().map(|f| (f.id, f.title)));
    }
    anyhow::ensure!(!films.is_empty(), "the catalogue is empty: load it first (`movies load-demo`)");
    Ok(films)
}

/// Searches for the words of the titles (letters only, 4 or more), and for every
/// third word a misspelling (a letter typed twice), which only the trigram match finds.
fn search_paths(films: &[(String, String)]) -> Vec<String> {
    let mut words: Vec<String> = films
        .iter()
        .flat_map(|(_, title)| title.split_whitespace())
        .map(|w| w.trim_matches(|c: char| !c.is_ascii_alphabetic()).to_ascii_lowercase())
        .filter(|w| w.len() >= 4 && w.chars().all(|c| c.is_ascii_alphabetic()))
        .collect();
    words.sort();
    words.dedup();
    let mut paths = Vec::with_capacity(words.len() * 4 / 3);
    for (i, word) in words.iter().enumerate() {
        paths.push(format!("/api/v1/films/search?query={word}"));
        if i % 3 == 0 {
            paths.push(format!("/api/v1/films/search?query={}{}", &word[..3], &word[2..]));
        }
    }
    paths
}

/// Signs up a viewer (born 1990, so every age class is open), has the admin grant it
/// the `subscriber` role, and returns the viewer's access token.
pub async fn subscriber(addr: SocketAddr, admin_email: &str, admin_password: &str) -> anyhow::Result<String> {
    let mut conn = Conn::new(addr);
    let email = format!("loadgen-subscriber-{}@bench.example.com", std::process::id());
    let reply = conn.send(client::post_json(SIGNUP, json_body(json!({"email": email, "password": PASSWORD, "birth_date": "1990-01-01"})))).await?;
    anyhow::ensure!(reply.status == 201, "sign-up of {email}: HTTP {}: {}", reply.status, String::from_utf8_lossy(&reply.body));
    let user: serde_json::Value = serde_json::from_slice(&reply.body)?;
    let id = user["id"].as_str().context("the sign-up answer has no id")?;
    let reply = conn.send(client::post_json(LOGIN, json_body(json!({"email": admin_email, "password": admin_password})))).await?;
    anyhow::ensure!(reply.status == 200, "admin login: HTTP {}: {}", reply.status, String::from_utf8_lossy(&reply.body));
    let admin: TokenPair = serde_json::from_slice(&reply.body)?;
    let authorization = HeaderValue::from_str(&format!("Bearer {}", admin.access_token))?;
    let path = format!("/api/v1/users/{id}/roles");
    let reply = conn.send(client::post_json_with_bearer(&path, json_body(json!({"role": "subscriber"})), &authorization)).await?;
    anyhow::ensure!(reply.status.is_success(), "granting subscriber: HTTP {}: {}", reply.status, String::from_utf8_lossy(&reply.body));
    Ok(log_in(&mut conn, &email).await?.access_token)
}

/// Polls the readiness probe until it answers 200.
pub async fn wait_ready(addr: SocketAddr, timeout: Duration, pid: Option<u32>) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut conn = Conn::new(addr);
    loop {
        let last = match conn.send(client::get(READY)).await {
            Ok(reply) if reply.status == 200 => return Ok(()),
            Ok(reply) => format!("HTTP {}: {}", reply.status, String::from_utf8_lossy(&reply.body)),
            Err(e) => format!("{e:#}"),
        };
        if let Some(pid) = pid.filter(|pid| !procstat::is_running(*pid)) {
            anyhow::bail!("the service (pid {pid}) exited before it was ready; last probe: {last}");
        }
        if Instant::now() >= deadline {
            anyhow::bail!("{addr} not ready after {timeout:?}; last probe: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// CPU split over exactly the measured period.
async fn sample_cpu(window: Window, watch: procstat::Watch) -> Option<procstat::CpuSplit> {
    // Reading /proc takes milliseconds: off the runtime that drives the connections.
    let snapshot = || {
        let watch = watch.clone();
        async move { tokio::task::spawn_blocking(move || procstat::snapshot(&watch)).await.ok().flatten() }
    };
    tokio::time::sleep_until(window.measure_from.into()).await;
    let before = snapshot().await;
    tokio::time::sleep_until(window.end.into()).await;
    let after = snapshot().await;
    Some(procstat::cores_used(&before?, &after?))
}
