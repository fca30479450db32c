use std::process::ExitCode;

use auth::{config::Settings, startup::Application};
use clap::{Parser, Subcommand};
use platform::telemetry::LogOutput;

/// The identity service of the online cinema.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Create the database if needed, apply migrations and serve the API (the default).
    Serve,
    /// Create the database if needed and apply migrations, then exit.
    Migrate,
    /// Create an admin account, or promote an existing one. The password is read from
    /// standard input when it is not a terminal, else prompted for without echo.
    CreateSuperuser {
        #[arg(long)]
        email: String,
    },
    /// Print the OpenAPI document (the contract in contracts/auth.openapi.json).
    Openapi,
    /// Make the login history's coming monthly partitions and drop those past
    /// AUTH_LOGIN_HISTORY_RETENTION_MONTHS, and delete dead sessions past
    /// AUTH_ENDED_SESSION_RETENTION_DAYS, once (the service also does it periodically).
    MaintainPartitions,
    /// Exit 0 when the service answers its readiness probe, on AUTH_OPS_LISTEN when set,
    /// else on AUTH_LISTEN: the container healthcheck of images without a shell or curl.
    Healthcheck,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Openapi) = cli.command {
        print!("{}", auth::http::openapi_json());
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Healthcheck) = cli.command {
        return match Settings::from_env() {
            Ok(settings) => platform::probe::healthcheck("auth", settings.listen, settings.ops_listen).await,
            Err(e) => {
                eprintln!("auth: configuration error: {e}");
                ExitCode::from(platform::service::CONFIG_ERROR)
            }
        };
    }
    let command = cli.command.unwrap_or(Command::Serve);
    let logs = if matches!(command, Command::Serve) { LogOutput::Stdout } else { LogOutput::Stderr };
    platform::service::run("auth", logs, Settings::from_env, Settings::unknown_variables, async |settings: Settings| match command {
        Command::Migrate => auth::startup::connect_and_migrate(&settings).await.map(|_| tracing::info!("migrations applied")),
        Command::Serve => serve(&settings).await,
        Command::CreateSuperuser { email } => {
            let outcome = auth::superuser::run(&settings, &email, &mut std::io::stdin().lock()).await;
            outcome.map(|(outcome, email)| match outcome {
                auth::superuser::Outcome::Created => println!("created admin {email}"),
                auth::superuser::Outcome::Promoted => println!("promoted {email} to admin"),
                auth::superuser::Outcome::AlreadyAdmin => println!("{email} is already an admin; nothing to do"),
            })
        }
        Command::MaintainPartitions => maintain_partitions(&settings).await,
        Command::Openapi | Command::Healthcheck => unreachable!("handled above"),
    })
    .await
}

async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    tracing::info!(address = %app.local_addr(), "auth listening");
    if let Some(address) = app.ops_addr() {
        tracing::info!(%address, max_connections = platform::ops::MAX_CONNECTIONS, "auth operations listener (probes and /metrics) listening");
    }
    app.run_until_stopped().await
}

async fn maintain_partitions(settings: &Settings) -> anyhow::Result<()> {
    let db = auth::startup::connect_existing(settings).await?;
    let outcome = auth::partitions::maintain(&db, &settings.partitions).await?;
    for p in &outcome.created {
        println!("created {} ({} to {})", p.name, p.from, p.to);
    }
    for p in &outcome.dropped {
        println!("dropped {} ({} to {})", p.name, p.from, p.to);
    }
    for p in &outcome.drop_postponed {
        println!("not dropped {} ({} to {}): a query is reading it or the table; the next run tries again", p.name, p.from, p.to);
    }
    if outcome.moved_from_default > 0 {
        println!("moved {} rows out of login_history_default into their months", outcome.moved_from_default);
    }
    if outcome.created.is_empty() && outcome.dropped.is_empty() && outcome.drop_postponed.is_empty() {
        println!("login history partitions up to date; nothing to do");
    }
    let purged = auth::partitions::purge_sessions(&db, &settings.partitions).await?;
    println!("deleted {} dead sessions and {} expired refresh tokens", purged.sessions, purged.refresh_tokens);
    Ok(())
}
