use std::process::ExitCode;

use auth::{config::Settings, startup::Application};
use platform::telemetry;
use clap::{Parser, Subcommand};

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
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Openapi) = cli.command {
        print!("{}", auth::http::openapi_json());
        return ExitCode::SUCCESS;
    }
    let telemetry = match telemetry::init("auth") {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("auth: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("auth: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    for name in Settings::unknown_variables() {
        tracing::warn!(variable = %name, "unknown AUTH_ or OAUTH_ variable ignored; is it a typo?");
    }
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => auth::startup::connect_and_migrate(&settings).await.map(|_| tracing::info!("migrations applied")),
        Command::Serve => serve(&settings).await,
        Command::CreateSuperuser { email } => {
            let outcome = auth::superuser::run(&settings, &email, &mut std::io::stdin().lock()).await;
            outcome.map(|outcome| match outcome {
                auth::superuser::Outcome::Created => println!("created admin {email}"),
                auth::superuser::Outcome::Promoted => println!("promoted {email} to admin"),
                auth::superuser::Outcome::AlreadyAdmin => println!("{email} is already an admin; nothing to do"),
            })
        }
        Command::Openapi => unreachable!("handled above"),
    };
    // Export the spans still queued before the process ends.
    telemetry.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "auth stopped");
            eprintln!("auth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    tracing::info!(address = %app.local_addr(), "auth listening");
    app.run_until_stopped().await
}
