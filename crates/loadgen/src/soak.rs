//! The soak run (`scripts/soak.sh`): Auth and Movies under a mixed, realistic load for
//! many minutes, watching for server errors and for memory that keeps growing.
//!
//! **Load model: open loop.** A fixed pool of virtual users (one account, one session
//! and one keep-alive Movies connection each; Auth requests share a smaller pool of
//! Auth connections) issue requests at Poisson arrival times whose total rate is
//! `--rate`. A user whose answer is late does not wait for the next arrival to be
//! drawn: it sends the overdue request as soon as it can, and the latency counted
//! "from schedule" runs from the intended send time, so a stalled service shows in the
//! figures instead of slowing the load down (no coordinated omission). The service
//! time (send to last byte) is recorded too.
//!
//! **The mix**, per arrival of a user: refresh when its access token is near expiry
//! or after `--refresh-every` requests (rotating: the next refresh presents the token
//! of the previous answer); otherwise, with probability `--sign-in-rate / --rate`, sign
//! out and in again (Argon2id: kept to a few per second in total); otherwise one of the
//! weighted catalogue or account requests of [`MIX`]. A separate task signs in to a
//! dedicated account with a wrong password at `--wrong-password-rate`: 401 while the
//! per-account limits allow the attempt, 429 once they refuse it; both are expected.
//!
//! Every `--sample` seconds: the resident set (`VmRSS`) and CPU of both services and
//! the throughput, errors and p99 of the interval. The memory verdict compares the
//! resident set just after the warm-up with the end of the run.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use http::HeaderValue;
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::{sync::Semaphore, task::JoinSet};

use crate::{
    client::{self, Conn, Reply},
    procstat::{self, MachineTicks as Ticks, machine_ticks, process_ticks},
};

const PASSWORD: &str = "correct horse battery";
const WRONG_PASSWORD: &str = "not the right password";
const SIGNUP: &str = "/api/v1/auth/signup";
const LOGIN: &str = "/api/v1/auth/login";
const REFRESH: &str = "/api/v1/auth/refresh";
const LOGOUT: &str = "/api/v1/auth/logout";
const ME: &str = "/api/v1/users/me";
const SESSIONS: &str = "/api/v1/auth/sessions";
const FILMS: &str = "/api/v1/films";
const GENRES: &str = "/api/v1/genres";
const PERSONS: &str = "/api/v1/persons";
/// Refresh once this share of the access token's lifetime has passed.
const REFRESH_AT: f64 = 0.8;

#[derive(Args, Clone)]
pub struct SoakArgs {
    /// Address of the Auth service.
    #[arg(long)]
    pub auth_addr: Option<SocketAddr>,
    /// Address of the Movies service.
    #[arg(long)]
    pub movies_addr: Option<SocketAddr>,
    /// Process id of Auth, for its resident set and CPU over time.
    #[arg(long)]
    pub auth_pid: Option<u32>,
    /// Process id of Movies, for its resident set and CPU over time.
    #[arg(long)]
    pub movies_pid: Option<u32>,
    /// Seconds of load (set-up not included).
    #[arg(long, default_value_t = 600.0)]
    pub duration: f64,
    /// Seconds of load before the memory baseline; default 20 % of the duration.
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Seconds between two samples of memory, CPU and throughput.
    #[arg(long, default_value_t = 10.0)]
    pub sample: f64,
    /// Virtual users: one account, one session and one Movies connection each.
    #[arg(long, default_value_t = 32)]
    pub users: usize,
    /// Keep-alive connections to Auth, shared by the users.
    #[arg(long, default_value_t = 8)]
    pub auth_connections: usize,
    /// Requests per second of all users together (Poisson arrivals).
    #[arg(long, default_value_t = 400.0)]
    pub rate: f64,
    /// Sign-outs followed by a sign-in (Argon2id) per second, all users together.
    #[arg(long, default_value_t = 2.0)]
    pub sign_in_rate: f64,
    /// Sign-ins with a wrong password per second, to one dedicated account.
    #[arg(long, default_value_t = 0.2)]
    pub wrong_password_rate: f64,
    /// A user refreshes its tokens after this many of its requests (or near expiry).
    #[arg(long, default_value_t = 100)]
    pub refresh_every: u64,
    /// Memory growth after the warm-up still counted as none, in MiB ...
    #[arg(long, default_value_t = 5.0)]
    pub tolerance_mib: f64,
    /// ... or in percent of the baseline, whichever is larger.
    #[arg(long, default_value_t = 5.0)]
    pub tolerance_pct: f64,
    /// Seed of the random mix, for a repeatable sequence of choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Runtime worker threads of the load generator itself.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Render the JSON line of an earlier soak run as Markdown instead of running.
    #[arg(long)]
    pub render: Option<PathBuf>,
}

pub fn run(args: SoakArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.render {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let line = text.lines().rev().find(|l| !l.trim().is_empty()).context("no soak result in the file")?;
        let result: SoakResult = serde_json::from_str(line).context("not a soak result")?;
        print!("{}", render(&result));
        return Ok(());
    }
    let auth = args.auth_addr.context("--auth-addr is required")?;
    let movies = args.movies_addr.context("--movies-addr is required")?;
    anyhow::ensure!(args.users > 0 && args.auth_connections > 0 && args.threads > 0, "counts must be positive");
    anyhow::ensure!(args.duration > 0.0 && args.sample > 0.0 && args.rate > 0.0, "durations and the rate must be positive");
    anyhow::ensure!(args.sign_in_rate >= 0.0 && args.wrong_password_rate >= 0.0, "rates must not be negative");
    anyhow::ensure!(args.sign_in_rate < args.rate, "--sign-in-rate is a share of --rate");
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()?
    };
    let result = runtime.block_on(soak(&args, auth, movies))?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

// ---------------------------------------------------------------------------------
// Operations and the mix

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Op {
    FilmsList,
    FilmDetail,
    FilmSearch,
    FilmSearchTypo,
    FilmStream,
    Genres,
    PersonSearch,
    PersonFilms,
    Me,
    Sessions,
    Refresh,
    Logout,
    Login,
    LoginWrongPassword,
}

impl Op {
    const ALL: [Op; 14] = [
        Op::FilmsList,
        Op::FilmDetail,
        Op::FilmSearch,
        Op::FilmSearchTypo,
        Op::FilmStream,
        Op::Genres,
        Op::PersonSearch,
        Op::PersonFilms,
        Op::Me,
        Op::Sessions,
        Op::Refresh,
        Op::Logout,
        Op::Login,
        Op::LoginWrongPassword,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::FilmsList => "films_list",
            Op::FilmDetail => "film_detail",
            Op::FilmSearch => "film_search",
            Op::FilmSearchTypo => "film_search_typo",
            Op::FilmStream => "film_stream",
            Op::Genres => "genres",
            Op::PersonSearch => "person_search",
            Op::PersonFilms => "person_films",
            Op::Me => "me",
            Op::Sessions => "sessions",
            Op::Refresh => "refresh",
            Op::Logout => "logout",
            Op::Login => "login",
            Op::LoginWrongPassword => "login_wrong_password",
        }
    }

    fn service(self) -> &'static str {
        match self {
            Op::Me | Op::Sessions | Op::Refresh | Op::Logout | Op::Login | Op::LoginWrongPassword => "auth",
            _ => "movies",
        }
    }

    /// The request, as the report describes it.
    fn describe(self) -> &'static str {
        match self {
            Op::FilmsList => "`GET /api/v1/films?sort=…[&genre=…]&page[number]=…&page[size]=…` (6 orders, a genre in 40 %, early pages likelier)",
            Op::FilmDetail => "`GET /api/v1/films/{id}`, a film the viewer may see",
            Op::FilmSearch => "`GET /api/v1/films/search?query=…`, one or two words of real titles",
            Op::FilmSearchTypo => "the same with one word misspelt (letter dropped, doubled, swapped or replaced)",
            Op::FilmStream => "`GET /api/v1/films/{id}/stream`, a free film",
            Op::Genres => "`GET /api/v1/genres`",
            Op::PersonSearch => "`GET /api/v1/persons/search?query=…`, a director's surname, misspelt in 30 %",
            Op::PersonFilms => "`GET /api/v1/persons/{id}/film`",
            Op::Me => "Auth `GET /api/v1/users/me`",
            Op::Sessions => "Auth `GET /api/v1/auth/sessions`",
            Op::Refresh => "Auth `POST /api/v1/auth/refresh`, rotating",
            Op::Logout => "Auth `POST /api/v1/auth/logout` before signing in again",
            Op::Login => "Auth `POST /api/v1/auth/login` (Argon2id)",
            Op::LoginWrongPassword => "Auth `POST /api/v1/auth/login`, wrong password, dedicated account (401 or 429 expected)",
        }
    }

    /// Non-2xx answers that are the correct answer to this request.
    fn expected(self) -> &'static [u16] {
        match self {
            // 401 while the per-account sign-in limits allow the attempt, then 429.
            Op::LoginWrongPassword => &[401, 429],
            _ => &[],
        }
    }
}

/// Weights of the requests a user makes when it neither refreshes nor signs in again.
/// Every catalogue request carries the user's bearer token.
const MIX: [(Op, u32); 10] = [
    (Op::FilmsList, 24),
    (Op::FilmDetail, 24),
    (Op::FilmSearch, 11),
    (Op::FilmSearchTypo, 5),
    (Op::FilmStream, 6),
    (Op::Genres, 6),
    (Op::PersonSearch, 5),
    (Op::PersonFilms, 4),
    (Op::Me, 8),
    (Op::Sessions, 2),
];

// ---------------------------------------------------------------------------------
// Small helpers: randomness, encoding

/// SplitMix64: enough randomness for choosing requests, without a dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        let mut rng = Self(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        rng.next_u64();
        rng
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        ((self.unit() * n as f64) as usize).min(n.saturating_sub(1))
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Exponential with the given mean: the gaps between Poisson arrivals.
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}

/// Percent-encodes everything but the unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// One typo, as people make them: a letter dropped, doubled, swapped with the next,
/// or replaced by its neighbour in the alphabet.
fn misspell(word: &str, rng: &mut Rng) -> String {
    let mut chars: Vec<char> = word.chars().collect();
    if chars.len() < 4 {
        return word.to_owned();
    }
    // Not the first letter: people rarely get it wrong.
    let at = 1 + rng.below(chars.len() - 2);
    match rng.below(4) {
        0 => {
            chars.remove(at);
        }
        1 => chars.insert(at, chars[at]),
        2 => chars.swap(at, at + 1),
        _ => {
            let c = chars[at];
            chars[at] = if c.is_ascii_lowercase() { (((c as u8 - b'a' + 1) % 26) + b'a') as char } else { 'e' };
        }
    }
    chars.into_iter().collect()
}

fn json_body(value: serde_json::Value) -> Bytes {
    Bytes::from(serde_json::to_vec(&value).expect("JSON values serialise"))
}

fn email(index: usize) -> String {
    format!("soak-{index}@soak.example.com")
}

const WRONG_PASSWORD_EMAIL: &str = "soak-wrong-password@soak.example.com";

fn bearer(token: &str) -> anyhow::Result<HeaderValue> {
    Ok(HeaderValue::from_str(&format!("Bearer {token}"))?)
}

// ---------------------------------------------------------------------------------
// Connections to Auth, shared

/// A few keep-alive Auth connections shared by all users, one request on each at a time.
struct AuthPool {
    conns: Mutex<Vec<Conn>>,
    permits: Semaphore,
}

impl AuthPool {
    fn new(addr: SocketAddr, size: usize) -> Self {
        Self { conns: Mutex::new((0..size).map(|_| Conn::new(addr)).collect()), permits: Semaphore::new(size) }
    }

    /// Sends on a free connection; also returns when the request actually went out
    /// (after waiting for a connection), for the service time.
    async fn send(&self, request: http::Request<client::Body>) -> (anyhow::Result<Reply>, Instant) {
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        let mut conn = self.conns.lock().expect("not poisoned").pop().expect("a permit guarantees a connection");
        let sent = Instant::now();
        let reply = conn.send(request).await;
        self.conns.lock().expect("not poisoned").push(conn);
        (reply, sent)
    }
}

// ---------------------------------------------------------------------------------
// Tallies

fn histogram() -> Histogram<u64> {
    // 1 µs to 120 s at 3 significant figures.
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

struct OpTally {
    /// Answers that were right: 2xx, or an expected refusal.
    answered: u64,
    expected: BTreeMap<u16, u64>,
    /// Unexpected answers by status, and transport failures.
    errors: BTreeMap<String, u64>,
    /// Send to last byte, of right answers.
    service_us: Histogram<u64>,
    /// Intended send time to last byte, of right answers.
    scheduled_us: Histogram<u64>,
}

impl OpTally {
    fn new() -> Self {
        Self { answered: 0, expected: BTreeMap::new(), errors: BTreeMap::new(), service_us: histogram(), scheduled_us: histogram() }
    }
}

struct Interval {
    started: Instant,
    requests: u64,
    errors: u64,
    server_errors: u64,
    service_us: Histogram<u64>,
}

impl Interval {
    fn new(started: Instant) -> Self {
        Self { started, requests: 0, errors: 0, server_errors: 0, service_us: histogram() }
    }
}

struct Stats {
    ops: BTreeMap<Op, OpTally>,
    interval: Interval,
}

#[derive(PartialEq, Eq)]
enum Class {
    Ok,
    Expected,
    Error,
}

/// Everything the tasks share: the tallies, behind one lock that is only ever held
/// for a few histogram updates.
struct Recorder {
    stats: Mutex<Stats>,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

impl Recorder {
    fn record(&self, op: Op, scheduled: Instant, sent: Instant, reply: &anyhow::Result<Reply>) -> Class {
        let done = Instant::now();
        let (class, key, server_error) = match reply {
            Ok(r) if r.status.is_success() => (Class::Ok, None, false),
            Ok(r) if op.expected().contains(&r.status.as_u16()) => (Class::Expected, None, false),
            Ok(r) => (Class::Error, Some(r.status.as_u16().to_string()), r.status.is_server_error()),
            Err(_) => (Class::Error, Some("transport".to_owned()), false),
        };
        let mut stats = self.stats.lock().expect("not poisoned");
        let tally = stats.ops.entry(op).or_insert_with(OpTally::new);
        match (&class, key) {
            (Class::Error, Some(key)) => *tally.errors.entry(key).or_default() += 1,
            _ => {
                tally.answered += 1;
                if class == Class::Expected {
                    let status = reply.as_ref().map(|r| r.status.as_u16()).unwrap_or_default();
                    *tally.expected.entry(status).or_default() += 1;
                }
                tally.service_us.saturating_record(micros(done - sent));
                tally.scheduled_us.saturating_record(micros(done - scheduled));
            }
        }
        let interval = &mut stats.interval;
        interval.requests += 1;
        if class == Class::Error {
            interval.errors += 1;
            interval.server_errors += u64::from(server_error);
        } else {
            interval.service_us.saturating_record(micros(done - sent));
        }
        class
    }

    fn take_interval(&self, now: Instant) -> Interval {
        std::mem::replace(&mut self.stats.lock().expect("not poisoned").interval, Interval::new(now))
    }
}

// ---------------------------------------------------------------------------------
// Set-up: accounts, sessions, what there is to browse

#[derive(Deserialize)]
struct TokenPair {
    access_token: String,
    refresh_token: String,
    expires_in: u64,
}

struct Session {
    bearer: HeaderValue,
    refresh: String,
    issued: Instant,
    ttl: Duration,
}

impl Session {
    fn from_reply(reply: &Reply) -> anyhow::Result<Self> {
        let pair: TokenPair = serde_json::from_slice(&reply.body).context("a token pair")?;
        Ok(Self {
            bearer: bearer(&pair.access_token)?,
            refresh: pair.refresh_token,
            issued: Instant::now(),
            ttl: Duration::from_secs(pair.expires_in),
        })
    }

    fn near_expiry(&self) -> bool {
        self.issued.elapsed().as_secs_f64() >= self.ttl.as_secs_f64() * REFRESH_AT
    }
}

#[derive(Deserialize)]
struct FilmSummary {
    id: String,
    title: String,
    access_tier: String,
}

#[derive(Deserialize)]
struct FilmPage {
    items: Vec<FilmSummary>,
}

#[derive(Deserialize)]
struct Genre {
    id: String,
}

#[derive(Deserialize)]
struct PersonRef {
    id: String,
    full_name: String,
}

#[derive(Deserialize)]
struct FilmDetail {
    directors: Vec<PersonRef>,
}

/// What the users browse, read from the catalogue itself during set-up.
struct Catalogue {
    /// Films the users may see (their age class allows them), and the free ones.
    films: Vec<String>,
    free_films: Vec<String>,
    genres: Vec<String>,
    /// Words of four letters or more from the titles, lower case.
    words: Vec<String>,
    /// Directors: id and surname.
    persons: Vec<(String, String)>,
}

async fn sign_up(pool: &AuthPool, email: &str) -> anyhow::Result<()> {
    let (reply, _) = pool.send(client::post_json(SIGNUP, json_body(json!({"email": email, "password": PASSWORD})))).await;
    let reply = reply?;
    match reply.status.as_u16() {
        201 | 409 => Ok(()),
        status => anyhow::bail!("sign-up of {email}: HTTP {status}: {}", String::from_utf8_lossy(&reply.body)),
    }
}

async fn log_in(pool: &AuthPool, email: &str) -> anyhow::Result<Session> {
    let (reply, _) = pool.send(client::post_json(LOGIN, json_body(json!({"email": email, "password": PASSWORD})))).await;
    let reply = reply?;
    anyhow::ensure!(reply.status == 200, "login of {email}: HTTP {}: {}", reply.status, String::from_utf8_lossy(&reply.body));
    Session::from_reply(&reply)
}

async fn get_json<T: serde::de::DeserializeOwned>(conn: &mut Conn, path: &str, auth: &HeaderValue) -> anyhow::Result<T> {
    let reply = conn.send(client::get_with_bearer(path, auth)).await?;
    anyhow::ensure!(reply.status == 200, "GET {path}: HTTP {}: {}", reply.status, String::from_utf8_lossy(&reply.body));
    serde_json::from_slice(&reply.body).with_context(|| format!("the answer to GET {path}"))
}

async fn read_catalogue(movies: SocketAddr, auth: &HeaderValue, rng: &mut Rng) -> anyhow::Result<Catalogue> {
    let mut conn = Conn::new(movies);
    let genres: Vec<Genre> = get_json(&mut conn, GENRES, auth).await?;
    let mut films = Vec::new();
    let mut free_films = Vec::new();
    let mut words = std::collections::BTreeSet::new();
    for page in 1..=101 {
        let path = format!("{FILMS}?sort=title&page%5Bnumber%5D={page}&page%5Bsize%5D=100");
        let batch: FilmPage = get_json(&mut conn, &path, auth).await?;
        if batch.items.is_empty() {
            break;
        }
        for film in batch.items {
            for word in film.title.split(|c: char| !c.is_alphanumeric()) {
                if word.chars().count() >= 4 && word.chars().all(|c| c.is_ascii_alphabetic()) {
                    words.insert(word.to_lowercase());
                }
            }
            if film.access_tier == "free" {
                free_films.push(film.id.clone());
            }
            films.push(film.id);
        }
    }
    anyhow::ensure!(!films.is_empty(), "the catalogue is empty: load it first (movies load-demo)");
    anyhow::ensure!(!free_films.is_empty() && !words.is_empty() && !genres.is_empty(), "the catalogue lacks free films, titles or genres");
    // Directors, from the details of a couple of hundred films (many name none).
    let mut persons = BTreeMap::new();
    for _ in 0..200 {
        let id = rng.pick(&films).clone();
        let detail: FilmDetail = get_json(&mut conn, &format!("{FILMS}/{id}"), auth).await?;
        for p in detail.directors {
            if let Some(surname) = p.full_name.split_whitespace().last().filter(|s| s.chars().count() >= 3) {
                persons.insert(p.id, surname.to_owned());
            }
        }
    }
    anyhow::ensure!(!persons.is_empty(), "no film of the catalogue names its director");
    Ok(Catalogue {
        films,
        free_films,
        genres: genres.into_iter().map(|g| g.id).collect(),
        words: words.into_iter().collect(),
        persons: persons.into_iter().collect(),
    })
}

// ---------------------------------------------------------------------------------
// The run

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

struct Shared {
    recorder: Recorder,
    auth: AuthPool,
    catalogue: Catalogue,
    window: Window,
    /// Mean gap between two arrivals of one user, in seconds.
    mean_gap: f64,
    sign_in_share: f64,
    refresh_every: u64,
}

struct User {
    email: String,
    movies: Conn,
    session: Option<Session>,
    since_refresh: u64,
    rng: Rng,
}

impl User {
    async fn step(&mut self, shared: &Shared, scheduled: Instant) {
        let Some(session) = &self.session else {
            // Signed out (a failed refresh or sign-in): sign in before anything else.
            self.sign_in(shared, scheduled).await;
            return;
        };
        if session.near_expiry() || self.since_refresh >= shared.refresh_every {
            self.refresh(shared, scheduled).await;
            return;
        }
        if self.rng.chance(shared.sign_in_share) {
            let request = client::post_json_with_bearer(LOGOUT, Bytes::new(), &session.bearer);
            let (reply, sent) = shared.auth.send(request).await;
            shared.recorder.record(Op::Logout, scheduled, sent, &reply);
            self.session = None;
            self.sign_in(shared, Instant::now()).await;
            return;
        }
        self.since_refresh += 1;
        let total: u32 = MIX.iter().map(|(_, w)| w).sum();
        let mut roll = self.rng.below(total as usize) as u32;
        let op = MIX
            .iter()
            .find(|(_, w)| {
                if roll < *w {
                    true
                } else {
                    roll -= w;
                    false
                }
            })
            .map_or(Op::Genres, |(op, _)| *op);
        let c = &shared.catalogue;
        let path = match op {
            Op::FilmsList => {
                let sort = *self.rng.pick(&["-imdb_rating", "imdb_rating", "-release_date", "release_date", "title", "-title"]);
                // Most viewers stay on the first pages.
                let page = 1 + (self.rng.exp(1.5) as u32).min(19);
                let size = *self.rng.pick(&[20, 50, 50, 100]);
                let mut path = format!("{FILMS}?sort={}&page%5Bnumber%5D={page}&page%5Bsize%5D={size}", encode(sort));
                if self.rng.chance(0.4) {
                    let _ = write!(path, "&genre={}", self.rng.pick(&c.genres));
                }
                path
            }
            Op::FilmDetail => format!("{FILMS}/{}", self.rng.pick(&c.films)),
            Op::FilmStream => format!("{FILMS}/{}/stream", self.rng.pick(&c.free_films)),
            Op::FilmSearch | Op::FilmSearchTypo => {
                let mut words = vec![self.rng.pick(&c.words).clone()];
                if self.rng.chance(0.3) {
                    words.push(self.rng.pick(&c.words).clone());
                }
                if op == Op::FilmSearchTypo {
                    words[0] = misspell(&words[0], &mut self.rng);
                }
                format!("{FILMS}/search?query={}", encode(&words.join(" ")))
            }
            Op::Genres => GENRES.to_owned(),
            Op::PersonSearch => {
                let (_, surname) = self.rng.pick(&c.persons);
                let query = if self.rng.chance(0.3) { misspell(surname, &mut self.rng) } else { surname.clone() };
                format!("{PERSONS}/search?query={}", encode(&query))
            }
            Op::PersonFilms => format!("{PERSONS}/{}/film", self.rng.pick(&c.persons).0),
            Op::Me => ME.to_owned(),
            Op::Sessions => SESSIONS.to_owned(),
            _ => unreachable!("not in the mix"),
        };
        let request = client::get_with_bearer(&path, &session.bearer);
        if op.service() == "auth" {
            let (reply, sent) = shared.auth.send(request).await;
            shared.recorder.record(op, scheduled, sent, &reply);
        } else {
            let sent = Instant::now();
            let reply = self.movies.send(request).await;
            shared.recorder.record(op, scheduled, sent, &reply);
        }
    }

    async fn sign_in(&mut self, shared: &Shared, scheduled: Instant) {
        let body = json_body(json!({"email": self.email, "password": PASSWORD}));
        let (reply, sent) = shared.auth.send(client::post_json(LOGIN, body)).await;
        if shared.recorder.record(Op::Login, scheduled, sent, &reply) == Class::Ok {
            self.session = reply.ok().and_then(|r| Session::from_reply(&r).ok());
            self.since_refresh = 0;
        }
    }

    async fn refresh(&mut self, shared: &Shared, scheduled: Instant) {
        let token = self.session.as_ref().map(|s| s.refresh.clone()).unwrap_or_default();
        let (reply, sent) = shared.auth.send(client::post_json(REFRESH, json_body(json!({"refresh_token": token})))).await;
        let class = shared.recorder.record(Op::Refresh, scheduled, sent, &reply);
        // The chain goes on with the token of this answer; a broken chain means signing
        // in again at the next arrival.
        self.session = if class == Class::Ok { reply.ok().and_then(|r| Session::from_reply(&r).ok()) } else { None };
        self.since_refresh = 0;
    }
}

async fn user_loop(mut user: User, shared: Arc<Shared>) {
    let window = shared.window;
    // Each user's first arrival is drawn like the others, so they do not start in step.
    let mut next = window.start + Duration::from_secs_f64(user.rng.exp(shared.mean_gap));
    while next < window.end {
        tokio::time::sleep_until(next.into()).await;
        user.step(&shared, next).await;
        next += Duration::from_secs_f64(user.rng.exp(shared.mean_gap));
    }
    // Sign out at the end, as users do; not timed.
    if let Some(session) = user.session {
        let _ = shared.auth.send(client::post_json_with_bearer(LOGOUT, Bytes::new(), &session.bearer)).await;
    }
}

async fn wrong_password_loop(shared: Arc<Shared>, rate: f64, seed: u64) {
    if rate <= 0.0 {
        return;
    }
    let mut rng = Rng::new(seed, u64::MAX);
    let window = shared.window;
    let body = json_body(json!({"email": WRONG_PASSWORD_EMAIL, "password": WRONG_PASSWORD}));
    let mut next = window.start + Duration::from_secs_f64(rng.exp(1.0 / rate));
    while next < window.end {
        tokio::time::sleep_until(next.into()).await;
        let (reply, sent) = shared.auth.send(client::post_json(LOGIN, body.clone())).await;
        shared.recorder.record(Op::LoginWrongPassword, next, sent, &reply);
        next += Duration::from_secs_f64(rng.exp(1.0 / rate));
    }
}

// ---------------------------------------------------------------------------------
// Sampling /proc

#[derive(Clone, Copy)]
struct ProcReading {
    machine: Option<Ticks>,
    auth: Option<u64>,
    movies: Option<u64>,
}

fn read_proc(args: &SoakArgs) -> ProcReading {
    ProcReading { machine: machine_ticks(), auth: args.auth_pid.and_then(process_ticks), movies: args.movies_pid.and_then(process_ticks) }
}

/// Cores used between two readings: (auth, movies, the whole machine).
fn cores(before: &ProcReading, after: &ProcReading) -> (Option<f64>, Option<f64>, Option<f64>) {
    let (Some(m0), Some(m1)) = (before.machine, after.machine) else { return (None, None, None) };
    let per_cpu = m1.total.saturating_sub(m0.total) as f64 / m1.cpus as f64;
    if per_cpu <= 0.0 {
        return (None, None, None);
    }
    let of = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?) as f64 / per_cpu);
    let busy = m1.cpus as f64 - m1.idle.saturating_sub(m0.idle) as f64 / per_cpu;
    (of(before.auth, after.auth), of(before.movies, after.movies), Some(busy.max(0.0)))
}

fn rss(pid: Option<u32>) -> Option<u64> {
    procstat::status_kib(pid?, "VmRSS")
}

async fn sampler(shared: Arc<Shared>, args: SoakArgs, start_reading: ProcReading) -> Vec<Sample> {
    let window = shared.window;
    let every = Duration::from_secs_f64(args.sample);
    let mut samples = Vec::new();
    let mut last = start_reading;
    let mut tick = window.start;
    loop {
        tick = (tick + every).min(window.end);
        tokio::time::sleep_until(tick.into()).await;
        let now = Instant::now();
        let interval = shared.recorder.take_interval(now);
        let reading = read_proc(&args);
        let (auth_cores, movies_cores, busy_cores) = cores(&last, &reading);
        last = reading;
        let seconds = (now - interval.started).as_secs_f64().max(1e-9);
        samples.push(Sample {
            t_s: (now - window.start).as_secs_f64(),
            interval_s: seconds,
            requests: interval.requests,
            rps: interval.requests as f64 / seconds,
            errors: interval.errors,
            server_errors: interval.server_errors,
            p99_us: (!interval.service_us.is_empty()).then(|| interval.service_us.value_at_quantile(0.99)),
            auth_rss_kib: rss(args.auth_pid),
            movies_rss_kib: rss(args.movies_pid),
            auth_cores,
            movies_cores,
            busy_cores,
        });
        if tick >= window.end {
            return samples;
        }
    }
}

// ---------------------------------------------------------------------------------
// The result

#[derive(Serialize, Deserialize)]
pub struct SoakResult {
    pub kind: String,
    pub config: Config,
    pub setup: Setup,
    /// Seconds from the start of the load until the last request finished.
    pub elapsed_s: f64,
    pub operations: Vec<OpResult>,
    pub total: OpResult,
    pub server_errors: u64,
    /// Unexpected non-2xx answers other than 5xx, and transport failures.
    pub other_errors: u64,
    pub series: Vec<Sample>,
    pub memory: Vec<Memory>,
}

#[derive(Serialize, Deserialize)]
pub struct Config {
    pub users: usize,
    pub auth_connections: usize,
    pub rate: f64,
    pub sign_in_rate: f64,
    pub wrong_password_rate: f64,
    pub refresh_every: u64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub sample_s: f64,
    pub tolerance_mib: f64,
    pub tolerance_pct: f64,
    pub threads: usize,
    pub seed: u64,
    /// Cores of the machine.
    pub cpus: usize,
    /// The access tokens' lifetime as Auth announced it.
    pub access_ttl_s: u64,
    /// The weights of the mix, by operation.
    pub mix: Vec<(String, u32)>,
}

#[derive(Serialize, Deserialize)]
pub struct Setup {
    pub seconds: f64,
    pub accounts: usize,
    pub films: usize,
    pub free_films: usize,
    pub genres: usize,
    pub title_words: usize,
    pub directors: usize,
}

#[derive(Serialize, Deserialize)]
pub struct OpResult {
    pub name: String,
    pub service: String,
    /// Every request that completed: right answers and errors.
    pub requests: u64,
    pub rps: f64,
    /// Right answers: 2xx, and the expected refusals.
    pub answered: u64,
    /// Expected non-2xx answers, by status.
    pub expected: BTreeMap<String, u64>,
    /// Unexpected answers by status, and transport failures.
    pub errors: BTreeMap<String, u64>,
    /// Service time (send to last byte) of the right answers, microseconds.
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// From the intended send time of the open-loop schedule.
    pub scheduled_p99_us: u64,
    pub scheduled_p999_us: u64,
}

#[derive(Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the load started, at the end of the interval.
    pub t_s: f64,
    pub interval_s: f64,
    pub requests: u64,
    pub rps: f64,
    pub errors: u64,
    pub server_errors: u64,
    pub p99_us: Option<u64>,
    pub auth_rss_kib: Option<u64>,
    pub movies_rss_kib: Option<u64>,
    pub auth_cores: Option<f64>,
    pub movies_cores: Option<f64>,
    pub busy_cores: Option<f64>,
}

#[derive(Serialize, Deserialize)]
pub struct Memory {
    pub service: String,
    /// Resident set before any load (after set-up).
    pub idle_kib: u64,
    /// Highest resident set sampled in the window that follows the warm-up ...
    pub baseline_kib: u64,
    /// ... and in the window that ends the run.
    pub end_kib: u64,
    pub window_s: f64,
    pub growth_kib: i64,
    pub growth_pct: f64,
    /// Least-squares slope of the samples after the warm-up.
    pub slope_mib_per_hour: f64,
    /// Peak resident set of the process's whole life (VmHWM).
    pub peak_kib: Option<u64>,
    pub tolerance_kib: u64,
    pub no_growth: bool,
    /// Requests of the service after the warm-up: a leak of more than
    /// tolerance / requests bytes per request would have exceeded the tolerance.
    pub requests_after_warmup: u64,
}

fn op_result(name: &str, service: &str, tally: &OpTally, elapsed_s: f64) -> OpResult {
    let errors: u64 = tally.errors.values().sum();
    let requests = tally.answered + errors;
    let q = |h: &Histogram<u64>, q: f64| if h.is_empty() { 0 } else { h.value_at_quantile(q) };
    OpResult {
        name: name.to_owned(),
        service: service.to_owned(),
        requests,
        rps: requests as f64 / elapsed_s,
        answered: tally.answered,
        expected: tally.expected.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
        errors: tally.errors.clone(),
        p50_us: q(&tally.service_us, 0.50),
        p99_us: q(&tally.service_us, 0.99),
        p999_us: q(&tally.service_us, 0.999),
        max_us: tally.service_us.max(),
        scheduled_p99_us: q(&tally.scheduled_us, 0.99),
        scheduled_p999_us: q(&tally.scheduled_us, 0.999),
    }
}

// One caller, which holds each of these as a separate measurement of the run.
#[allow(clippy::too_many_arguments)]
fn memory_verdict(
    service: &str,
    idle_kib: Option<u64>,
    pid: Option<u32>,
    rss_of: impl Fn(&Sample) -> Option<u64>,
    series: &[Sample],
    args: &SoakArgs,
    warmup_s: f64,
    requests_after_warmup: u64,
) -> Option<Memory> {
    let points: Vec<(f64, u64)> = series.iter().filter_map(|s| Some((s.t_s, rss_of(s)?))).collect();
    let end_t = points.last()?.0;
    // A minute, or a tenth of the run when it is short, and never less than one sample.
    let window_s = (args.duration / 10.0).clamp(args.sample, 60.0f64.max(args.sample));
    let after: Vec<(f64, u64)> = points.iter().copied().filter(|(t, _)| *t >= warmup_s - 1e-6).collect();
    let baseline = after.iter().filter(|(t, _)| *t <= after.first().map_or(0.0, |f| f.0) + window_s - 1e-6).map(|(_, r)| *r).max()?;
    let end = after.iter().filter(|(t, _)| *t > end_t - window_s + 1e-6).map(|(_, r)| *r).max()?;
    let growth = end as i64 - baseline as i64;
    let tolerance_kib = ((args.tolerance_mib * 1024.0).max(baseline as f64 * args.tolerance_pct / 100.0)) as u64;
    // Least squares over the samples after the warm-up, in MiB per hour.
    let n = after.len() as f64;
    let slope = if after.len() >= 2 {
        let mt = after.iter().map(|(t, _)| t).sum::<f64>() / n;
        let mr = after.iter().map(|(_, r)| *r as f64).sum::<f64>() / n;
        let cov: f64 = after.iter().map(|(t, r)| (t - mt) * (*r as f64 - mr)).sum();
        let var: f64 = after.iter().map(|(t, _)| (t - mt).powi(2)).sum();
        if var > 0.0 { cov / var / 1024.0 * 3600.0 } else { 0.0 }
    } else {
        0.0
    };
    Some(Memory {
        service: service.to_owned(),
        idle_kib: idle_kib.unwrap_or(0),
        baseline_kib: baseline,
        end_kib: end,
        window_s,
        growth_kib: growth,
        growth_pct: growth as f64 * 100.0 / baseline.max(1) as f64,
        slope_mib_per_hour: slope,
        peak_kib: pid.and_then(|pid| procstat::status_kib(pid, "VmHWM")),
        tolerance_kib,
        no_growth: growth <= tolerance_kib as i64,
        requests_after_warmup,
    })
}

async fn soak(args: &SoakArgs, auth: SocketAddr, movies: SocketAddr) -> anyhow::Result<SoakResult> {
    let setup_started = Instant::now();
    let pool = AuthPool::new(auth, args.auth_connections);
    let mut rng = Rng::new(args.seed, 0);

    // Accounts: one per user and the target of the wrong passwords. Sign-ups and the
    // first sign-ins go out together; Auth queues the hashing.
    let pool = Arc::new(pool);
    let mut tasks = JoinSet::new();
    for index in 0..args.users {
        let pool = pool.clone();
        tasks.spawn(async move {
            sign_up(&pool, &email(index)).await?;
            anyhow::Ok((index, log_in(&pool, &email(index)).await?))
        });
    }
    sign_up(&pool, WRONG_PASSWORD_EMAIL).await?;
    let mut sessions: Vec<(usize, Session)> = Vec::with_capacity(args.users);
    while let Some(done) = tasks.join_next().await {
        sessions.push(done??);
    }
    sessions.sort_by_key(|(index, _)| *index);
    let access_ttl_s = sessions[0].1.ttl.as_secs();
    let catalogue = read_catalogue(movies, &sessions[0].1.bearer, &mut rng).await?;
    let setup = Setup {
        seconds: setup_started.elapsed().as_secs_f64(),
        accounts: args.users + 1,
        films: catalogue.films.len(),
        free_films: catalogue.free_films.len(),
        genres: catalogue.genres.len(),
        title_words: catalogue.words.len(),
        directors: catalogue.persons.len(),
    };
    eprintln!(
        "soak: set-up done in {:.1}s: {} accounts, {} films ({} free), {} genres, {} title words, {} directors",
        setup.seconds, setup.accounts, setup.films, setup.free_films, setup.genres, setup.title_words, setup.directors
    );

    let idle_auth = rss(args.auth_pid);
    let idle_movies = rss(args.movies_pid);
    let start = Instant::now();
    let window = Window { start, end: start + Duration::from_secs_f64(args.duration) };
    let warmup_s = args.warmup.unwrap_or(args.duration * 0.2).clamp(0.0, args.duration);
    let pool = Arc::into_inner(pool).context("the set-up tasks are done")?;
    let shared = Arc::new(Shared {
        recorder: Recorder { stats: Mutex::new(Stats { ops: BTreeMap::new(), interval: Interval::new(start) }) },
        auth: pool,
        catalogue,
        window,
        mean_gap: args.users as f64 / args.rate,
        sign_in_share: args.sign_in_rate / args.rate,
        refresh_every: args.refresh_every.max(1),
    });
    let sampling = tokio::spawn(sampler(shared.clone(), args.clone(), read_proc(args)));
    let mut users = JoinSet::new();
    for (index, session) in sessions {
        let user = User {
            email: email(index),
            movies: Conn::new(movies),
            session: Some(session),
            since_refresh: 0,
            rng: Rng::new(args.seed, index as u64 + 1),
        };
        users.spawn(user_loop(user, shared.clone()));
    }
    users.spawn(wrong_password_loop(shared.clone(), args.wrong_password_rate, args.seed));
    eprintln!("soak: {} users, {:.0} requests/s for {:.0}s (memory baseline after {:.0}s)", args.users, args.rate, args.duration, warmup_s);
    while let Some(done) = users.join_next().await {
        done?;
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    let series = sampling.await?;

    let stats = shared.recorder.stats.lock().expect("not poisoned");
    let mut operations = Vec::new();
    let mut total = OpTally::new();
    let mut per_service_after_warmup: BTreeMap<&str, u64> = BTreeMap::new();
    for op in Op::ALL {
        let Some(tally) = stats.ops.get(&op) else { continue };
        operations.push(op_result(op.name(), op.service(), tally, elapsed_s));
        total.answered += tally.answered;
        for (k, n) in &tally.expected {
            *total.expected.entry(*k).or_default() += n;
        }
        for (k, n) in &tally.errors {
            *total.errors.entry(k.clone()).or_default() += n;
        }
        total.service_us.add(&tally.service_us)?;
        total.scheduled_us.add(&tally.scheduled_us)?;
    }
    drop(stats);
    // Requests per service after the warm-up, estimated from the interval counts and
    // the services' shares of the whole run.
    let after_warmup: u64 = series.iter().filter(|s| s.t_s - s.interval_s >= warmup_s - 1e-6).map(|s| s.requests).sum();
    let all: u64 = operations.iter().map(|o| o.requests).sum::<u64>().max(1);
    for o in &operations {
        *per_service_after_warmup.entry(if o.service == "auth" { "auth" } else { "movies" }).or_default() += o.requests;
    }
    let share = |service: &str| (after_warmup as f64 * *per_service_after_warmup.get(service).unwrap_or(&0) as f64 / all as f64) as u64;
    let server_errors: u64 = total.errors.iter().filter(|(k, _)| k.starts_with('5')).map(|(_, n)| n).sum();
    let other_errors: u64 = total.errors.values().sum::<u64>() - server_errors;
    let memory = [
        memory_verdict("auth", idle_auth, args.auth_pid, |s| s.auth_rss_kib, &series, args, warmup_s, share("auth")),
        memory_verdict("movies", idle_movies, args.movies_pid, |s| s.movies_rss_kib, &series, args, warmup_s, share("movies")),
    ]
    .into_iter()
    .flatten()
    .collect();
    Ok(SoakResult {
        kind: "soak".to_owned(),
        config: Config {
            users: args.users,
            auth_connections: args.auth_connections,
            rate: args.rate,
            sign_in_rate: args.sign_in_rate,
            wrong_password_rate: args.wrong_password_rate,
            refresh_every: args.refresh_every,
            duration_s: args.duration,
            warmup_s,
            sample_s: args.sample,
            tolerance_mib: args.tolerance_mib,
            tolerance_pct: args.tolerance_pct,
            threads: args.threads,
            seed: args.seed,
            cpus: machine_ticks().map_or(0, |t| t.cpus),
            access_ttl_s,
            mix: MIX.iter().map(|(op, w)| (op.name().to_owned(), *w)).collect(),
        },
        setup,
        elapsed_s,
        total: op_result("all", "both", &total, elapsed_s),
        operations,
        server_errors,
        other_errors,
        series,
        memory,
    })
}

// ---------------------------------------------------------------------------------
// Markdown

fn ms(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "0".to_owned();
    }
    map.iter().map(|(k, n)| format!("{n} × {k}")).collect::<Vec<_>>().join(", ")
}

fn verdict(met: bool) -> &'static str {
    if met { "**met**" } else { "**NOT MET**" }
}

pub fn render(r: &SoakResult) -> String {
    let mut out = String::new();
    let c = &r.config;
    let total_requests = r.total.requests;
    let _ = writeln!(out, "### Verdict\n");
    let _ = writeln!(out, "| Target | Result | Verdict |\n|---|---|---|");
    let _ =
        writeln!(out, "| Zero 5xx over the whole run | {} 5xx in {} requests | {} |", r.server_errors, total_requests, verdict(r.server_errors == 0));
    for m in &r.memory {
        let _ = writeln!(
            out,
            "| {} resident set: no growth after the warm-up (tolerance {} MiB) | {} → {} MiB ({:+.1} MiB, {:+.1} %); trend {:+.1} MiB/h | {} |",
            title(&m.service),
            mib(m.tolerance_kib),
            mib(m.baseline_kib),
            mib(m.end_kib),
            m.growth_kib as f64 / 1024.0,
            m.growth_pct,
            m.slope_mib_per_hour,
            verdict(m.no_growth)
        );
    }
    let _ = writeln!(
        out,
        "| Other errors: unexpected 4xx, transport failures (reported, no target) | {} | {} |",
        counts(&r.total.errors.iter().filter(|(k, _)| !k.starts_with('5')).map(|(k, n)| (k.clone(), *n)).collect()),
        if r.other_errors == 0 { "none" } else { "see below" }
    );
    if r.memory.is_empty() {
        let _ = writeln!(out, "\nNo process ids were given: memory was not watched.");
    }

    let _ = writeln!(
        out,
        "\n### Throughput and latency per operation\n\nOver the whole load period ({:.0} s, the warm-up included). Latencies are those of the \
         right answers (2xx, or the expected refusal), in ms: service time from sending the request to its last byte, and \
         in the last column from the moment the open-loop schedule meant to send it (what a user would have waited, \
         queueing in the load generator included).\n",
        r.elapsed_s
    );
    let _ = writeln!(
        out,
        "| Operation | Service | Requests | Req/s | p50 | p99 | p99.9 | Max | p99.9 from schedule | Expected refusals | Errors |\n|---|---|--:|--:|--:|--:|--:|--:|--:|---|---|"
    );
    for o in r.operations.iter().chain(std::iter::once(&r.total)) {
        let bold = |s: String| if o.name == "all" { format!("**{s}**") } else { s };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            bold(o.name.clone()),
            o.service,
            bold(o.requests.to_string()),
            bold(format!("{:.1}", o.rps)),
            ms(o.p50_us),
            bold(ms(o.p99_us)),
            bold(ms(o.p999_us)),
            ms(o.max_us),
            ms(o.scheduled_p999_us),
            if o.expected.is_empty() { "–".to_owned() } else { counts(&o.expected) },
            counts(&o.errors),
        );
    }

    let _ = writeln!(out, "\n### Memory and throughput over time\n");
    let every = (60.0 / c.sample_s).round().max(1.0) as usize;
    let _ = writeln!(
        out,
        "One row per {} (per sample: {} s). Req/s and errors over the row's span; p99 is the worst sampled interval's; \
         resident set (VmRSS) at the end of the span; CPU in cores, averaged over the span (\"machine\" is every process, the \
         load generator, PostgreSQL, Redis and anything else included, out of {} cores).\n",
        if every == 1 { format!("sample ({} s)", c.sample_s) } else { "minute".to_owned() },
        c.sample_s,
        c.cpus,
    );
    let _ = writeln!(
        out,
        "| Time | Req/s | p99 ms | Errors (5xx) | Auth RSS MiB | Movies RSS MiB | Auth CPU | Movies CPU | Machine CPU |\n|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    );
    let mut idle_row = |label: &str, auth: Option<u64>, movies: Option<u64>| {
        let _ = writeln!(out, "| {label} | – | – | – | {} | {} | – | – | – |", auth.map_or("–".to_owned(), mib), movies.map_or("–".to_owned(), mib));
    };
    let idle = |service: &str| r.memory.iter().find(|m| m.service == service).map(|m| m.idle_kib).filter(|k| *k > 0);
    idle_row("before load", idle("auth"), idle("movies"));
    for chunk in r.series.chunks(every) {
        let last = chunk.last().expect("chunks are not empty");
        let seconds: f64 = chunk.iter().map(|s| s.interval_s).sum();
        let requests: u64 = chunk.iter().map(|s| s.requests).sum();
        let errors: u64 = chunk.iter().map(|s| s.errors).sum();
        let server: u64 = chunk.iter().map(|s| s.server_errors).sum();
        let p99 = chunk.iter().filter_map(|s| s.p99_us).max();
        let avg = |f: fn(&Sample) -> Option<f64>| {
            let v: Vec<(f64, f64)> = chunk.iter().filter_map(|s| Some((f(s)?, s.interval_s))).collect();
            let weight: f64 = v.iter().map(|(_, w)| w).sum();
            if v.is_empty() || weight <= 0.0 { "–".to_owned() } else { format!("{:.2}", v.iter().map(|(x, w)| x * w).sum::<f64>() / weight) }
        };
        let t = last.t_s.round() as u64;
        let _ = writeln!(
            out,
            "| {}:{:02} | {:.0} | {} | {} ({}) | {} | {} | {} | {} | {} |",
            t / 60,
            t % 60,
            requests as f64 / seconds.max(1e-9),
            p99.map_or("–".to_owned(), ms),
            errors,
            server,
            last.auth_rss_kib.map_or("–".to_owned(), mib),
            last.movies_rss_kib.map_or("–".to_owned(), mib),
            avg(|s| s.auth_cores),
            avg(|s| s.movies_cores),
            avg(|s| s.busy_cores),
        );
    }
    let peaks: Vec<String> = r.memory.iter().filter_map(|m| Some(format!("{} {} MiB", title(&m.service), mib(m.peak_kib?)))).collect();
    if !peaks.is_empty() {
        let _ = writeln!(out, "\nPeak resident set over each process's life (VmHWM): {}.", peaks.join(", "));
    }

    let _ = writeln!(out, "\n### How the memory verdict is made\n");
    let _ = writeln!(
        out,
        "The first {:.0} s are warm-up: connection pools fill, Argon2's working memory (one buffer per hashing \
         permit) is allocated, caches and the allocator's arenas reach their working size. The baseline is the highest \
         resident set sampled in the {:.0} s after the warm-up, the end the highest in the last {:.0} s (the highest of \
         a window rather than one sample, so that a moment when the allocator briefly held more decides neither). \
         Growth up to the larger of {} MiB and {} % of the baseline counts as none: that band covers the allocator's \
         swings and the free memory it keeps (glibc malloc, one arena per thread that allocates), while a leak that \
         grows with the traffic would pass it within the run:\n",
        c.warmup_s,
        r.memory.first().map_or(60.0, |m| m.window_s),
        r.memory.first().map_or(60.0, |m| m.window_s),
        c.tolerance_mib,
        c.tolerance_pct,
    );
    for m in &r.memory {
        let per_request = if m.requests_after_warmup > 0 { m.tolerance_kib as f64 * 1024.0 / m.requests_after_warmup as f64 } else { f64::NAN };
        let _ = writeln!(
            out,
            "- {}: about {} requests after the warm-up, so a leak of more than {:.0} bytes per request would have \
             exceeded the tolerance of {} MiB. Before any load: {} MiB.",
            title(&m.service),
            m.requests_after_warmup,
            per_request,
            mib(m.tolerance_kib),
            mib(m.idle_kib),
        );
    }
    let _ = writeln!(
        out,
        "\nThe trend is the least-squares slope of all samples after the warm-up; a short run makes it noisy, \
         so it is reported, not judged."
    );

    let _ = writeln!(out, "\n### The load\n");
    let _ = writeln!(
        out,
        "Open loop: {} virtual users, each with its own account, session and keep-alive Movies connection, sharing {} \
         Auth connections, send requests at Poisson arrival times, {:.0} requests/s in total ({:.1}/s per user). \
         A late answer does not slow the schedule down: the overdue request goes out as soon as the user is free, and \
         the latency \"from schedule\" counts the delay. {} load-generator thread(s), on the same cores as the services. \
         Set-up (not measured): {} accounts signed up and signed in, the catalogue read through the API ({} films \
         the users may see, {} of them free, {} genres, {} words of titles, {} directors), in {:.1} s.\n",
        c.users,
        c.auth_connections,
        c.rate,
        c.rate / c.users as f64,
        c.threads,
        r.setup.accounts,
        r.setup.films,
        r.setup.free_films,
        r.setup.genres,
        r.setup.title_words,
        r.setup.directors,
        r.setup.seconds,
    );
    let weight_total: u32 = c.mix.iter().map(|(_, w)| w).sum();
    let _ = writeln!(
        out,
        "At each arrival a user, in this order: refreshes its tokens (rotating: always the refresh token of the last \
         answer) when {:.0} % of the access token's {} s lifetime has passed or after {} of its requests; else, with \
         probability {:.2} % ({:.1} sign-ins/s in total), signs out and in again (Argon2id); else sends one request of \
         this mix, every one with its bearer token:\n",
        REFRESH_AT * 100.0,
        c.access_ttl_s,
        c.refresh_every,
        c.sign_in_rate / c.rate * 100.0,
        c.sign_in_rate,
    );
    let _ = writeln!(out, "| Operation | Share | Request |\n|---|--:|---|");
    for (name, weight) in &c.mix {
        let op = Op::ALL.iter().find(|o| o.name() == name);
        let _ = writeln!(out, "| {name} | {:.0} % | {} |", *weight as f64 * 100.0 / weight_total.max(1) as f64, op.map_or("", |o| o.describe()));
    }
    for op in [Op::Refresh, Op::Logout, Op::Login, Op::LoginWrongPassword] {
        let share = match op {
            Op::LoginWrongPassword => format!("{} /s", c.wrong_password_rate),
            Op::Refresh => "see above".to_owned(),
            _ => format!("{} /s", c.sign_in_rate),
        };
        let _ = writeln!(out, "| {} | {share} | {} |", op.name(), op.describe());
    }
    let _ = writeln!(
        out,
        "\nAn answer counts as right when it is 2xx, or one of the expected refusals (the wrong-password sign-ins: 401, or \
         429 once the per-account sign-in limits refuse the attempt). Anything else is an error: 5xx (the target is zero), \
         any other status, or a transport failure. A user whose refresh fails signs in again at its next arrival."
    );
    out
}

fn title(service: &str) -> String {
    let mut chars = service.chars();
    chars.next().map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_change_one_letter_and_keep_the_first() {
        let mut rng = Rng::new(7, 0);
        for _ in 0..200 {
            let typo = misspell("godfather", &mut rng);
            assert!(typo.starts_with('g'));
            assert!((8..=10).contains(&typo.len()), "{typo}");
        }
        assert_eq!(misspell("up", &mut rng), "up");
    }

    #[test]
    fn query_text_is_percent_encoded() {
        assert_eq!(encode("star wars"), "star%20wars");
        assert_eq!(encode("-imdb_rating"), "-imdb_rating");
        assert_eq!(encode("a&b=c"), "a%26b%3Dc");
    }

    #[test]
    fn arrivals_have_the_asked_mean() {
        let mut rng = Rng::new(1, 2);
        let n = 100_000;
        let mean = (0..n).map(|_| rng.exp(0.08)).sum::<f64>() / n as f64;
        assert!((mean - 0.08).abs() < 0.002, "{mean}");
    }

    fn sample(t: f64, rss_mib: u64) -> Sample {
        Sample {
            t_s: t,
            interval_s: 10.0,
            requests: 1000,
            rps: 100.0,
            errors: 0,
            server_errors: 0,
            p99_us: Some(1000),
            auth_rss_kib: Some(rss_mib * 1024),
            movies_rss_kib: None,
            auth_cores: None,
            movies_cores: None,
            busy_cores: None,
        }
    }

    fn args(duration: f64) -> SoakArgs {
        SoakArgs {
            auth_addr: None,
            movies_addr: None,
            auth_pid: None,
            movies_pid: None,
            duration,
            warmup: None,
            sample: 10.0,
            users: 1,
            auth_connections: 1,
            rate: 1.0,
            sign_in_rate: 0.0,
            wrong_password_rate: 0.0,
            refresh_every: 1,
            tolerance_mib: 5.0,
            tolerance_pct: 5.0,
            seed: 1,
            threads: 1,
            render: None,
        }
    }

    #[test]
    fn memory_verdict_compares_the_end_with_after_the_warmup() {
        // Grows during the warm-up (first 120 s), then flat with noise.
        let flat: Vec<Sample> = (1..=60).map(|i| sample(i as f64 * 10.0, if i <= 12 { 20 + i } else { 32 + (i % 3) })).collect();
        let m = memory_verdict("auth", None, None, |s| s.auth_rss_kib, &flat, &args(600.0), 120.0, 1000).unwrap();
        assert!(m.no_growth, "{} → {}", m.baseline_kib, m.end_kib);
        // A steady leak after the warm-up: 1 MiB per sample.
        let leak: Vec<Sample> = (1..=60).map(|i| sample(i as f64 * 10.0, 20 + i)).collect();
        let m = memory_verdict("auth", None, None, |s| s.auth_rss_kib, &leak, &args(600.0), 120.0, 1000).unwrap();
        assert!(!m.no_growth);
        assert!((m.slope_mib_per_hour - 360.0).abs() < 1.0, "{}", m.slope_mib_per_hour);
    }
}
