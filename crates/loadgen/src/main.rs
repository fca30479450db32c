//! Load generator for the Auth service benchmark, driven by `scripts/bench.sh`.
//!
//! Refresh tokens are single-use and rotate, so generic tools (oha, wrk) that replay
//! one request cannot drive a refresh benchmark: the second replay ends the session.
//! Every scenario here keeps per-connection state instead, and prints one JSON line
//! per run on stdout; `report` turns those lines into the tables of
//! `docs/benchmarks.md`.

mod client;
mod hash;
mod procstat;
mod record;
mod report;
mod scenario;
mod sink;
mod soak;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Load generator for the Auth service benchmark")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Times single-threaded Argon2id verifications by the service's own routine and
    /// prints the login throughput bound they set (cores / time of one hash).
    Hash {
        /// Timed verifications; the median is reported.
        #[arg(long, default_value_t = 30)]
        samples: usize,
        /// PostgreSQL database of the service, as for the scenarios (for the CPU split).
        #[arg(long)]
        pg_database: Option<String>,
    },
    /// `POST /api/v1/auth/login` in a loop over a few accounts created first.
    Login(RunArgs),
    /// `POST /api/v1/auth/refresh`: one session per connection, always presenting the
    /// refresh token of the previous answer.
    Refresh(RunArgs),
    /// Authenticated `GET /api/v1/users/me`.
    Me(RunArgs),
    /// Movies: `GET /api/v1/films/{id}` over the top films, with `--bearer`.
    Film(RunArgs),
    /// Movies: `GET /api/v1/films/search` with words of the top films' titles, some
    /// misspelt (run it against an instance whose cache is off).
    Search(RunArgs),
    /// Prepares a subscriber: signs up a viewer, has the admin grant it the
    /// `subscriber` role, signs it in, and prints its access token.
    Subscriber {
        /// Address of the Auth service.
        #[arg(long, env = "LOADGEN_ADDR")]
        addr: SocketAddr,
        #[arg(long)]
        admin_email: String,
        #[arg(long, env = "LOADGEN_ADMIN_PASSWORD")]
        admin_password: String,
    },
    /// A stand-in trace collector: accepts OTLP/HTTP exports (any path), answers 200
    /// with an empty `Export…ServiceResponse`, and keeps its tallies in `--stats`.
    OtlpSink {
        #[arg(long)]
        listen: SocketAddr,
        /// JSON file rewritten every second: requests and bytes received.
        #[arg(long)]
        stats: PathBuf,
    },
    /// Waits until `GET /health/ready` answers 200, or fails at the deadline (or as soon
    /// as the process `--pid` exits), so scripts need neither curl nor fixed sleeps.
    Ready {
        #[arg(long, env = "LOADGEN_ADDR")]
        addr: SocketAddr,
        /// Seconds to wait at most.
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
        /// The service's process id: stop waiting if it exits.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// `GET /health/live`, which touches neither storage nor crypto: the ceiling of
    /// the HTTP stack and the load generator on this machine, for comparison.
    Live(RunArgs),
    /// Both services under a mixed, realistic load for many minutes (`scripts/soak.sh`).
    Soak(soak::SoakArgs),
    /// Renders the JSON lines of earlier runs as the Markdown tables of the report.
    Report {
        /// File of JSON lines written by `hash`, `login`, `refresh` and `me`.
        results: PathBuf,
    },
}

#[derive(Args, Clone)]
pub struct RunArgs {
    /// Address of the service under test (Auth, or Movies for film and search).
    #[arg(long, env = "LOADGEN_ADDR")]
    pub addr: SocketAddr,
    /// Name of this run in the report (default: the scenario's), e.g. `me-traced`.
    #[arg(long)]
    pub label: Option<String>,
    /// `Authorization: Bearer` token for film and search.
    #[arg(long, env = "LOADGEN_BEARER")]
    pub bearer: Option<String>,
    /// Keep-alive connections, each driven by one task with one request in flight.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Accounts to sign up and share between connections (login and me).
    #[arg(long, default_value_t = 8)]
    pub accounts: usize,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 3.0)]
    pub warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Process id of Auth, for its peak RSS (when it is the service under test) and CPU share.
    #[arg(long)]
    pub auth_pid: Option<u32>,
    /// Process id of Movies, for its RSS (when it is the service under test) and CPU share.
    #[arg(long)]
    pub movies_pid: Option<u32>,
    /// The service's PostgreSQL database, to tell its backends from other work's.
    #[arg(long)]
    pub pg_database: Option<String>,
    /// Runtime worker threads of the load generator itself.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

impl RunArgs {
    fn watch(&self) -> procstat::Watch {
        procstat::Watch { auth_pid: self.auth_pid, movies_pid: self.movies_pid, pg_database: self.pg_database.clone() }
    }

    fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup)
    }

    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration)
    }
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let (kind, args) = match cli.command {
        Command::Hash { samples, pg_database } => {
            let watch = procstat::Watch { auth_pid: None, movies_pid: None, pg_database };
            return record::print(&record::Record::Hash(hash::measure(samples, &watch)?));
        }
        Command::Soak(args) => return soak::run(args),
        Command::Report { results } => {
            print!("{}", report::render(&std::fs::read_to_string(&results)?)?);
            return Ok(());
        }
        Command::Ready { addr, timeout, pid } => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            return runtime.block_on(scenario::wait_ready(addr, Duration::from_secs_f64(timeout), pid));
        }
        Command::Login(args) => (scenario::Kind::Login, args),
        Command::Refresh(args) => (scenario::Kind::Refresh, args),
        Command::Me(args) => (scenario::Kind::Me, args),
        Command::Film(args) => (scenario::Kind::Film, args),
        Command::Search(args) => (scenario::Kind::Search, args),
        Command::Subscriber { addr, admin_email, admin_password } => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            println!("{}", runtime.block_on(scenario::subscriber(addr, &admin_email, &admin_password))?);
            return Ok(());
        }
        Command::OtlpSink { listen, stats } => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            return runtime.block_on(sink::serve(listen, stats));
        }
        Command::Live(args) => (scenario::Kind::Live, args),
    };
    anyhow::ensure!(args.connections > 0 && args.accounts > 0 && args.threads > 0, "counts must be positive");
    anyhow::ensure!(args.duration > 0.0 && args.warmup >= 0.0, "durations must be positive");
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()?
    };
    let result = runtime.block_on(scenario::run(kind, &args))?;
    record::print(&record::Record::Scenario(result))
}
