use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use movies::{config::Settings, startup::Application};
use platform::telemetry::LogOutput;

/// The film catalogue API of the online cinema.
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
    /// Load the demo catalogue (vega-datasets movies.json) and clear the cache.
    LoadDemo {
        /// The dataset; defaults to the bundled copy.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Print the OpenAPI document (the contract in contracts/movies.openapi.json).
    Openapi,
    /// Exit 0 when the service answers its readiness probe, on MOVIES_OPS_LISTEN when set,
    /// else on MOVIES_LISTEN: the container healthcheck of images without a shell or curl.
    Healthcheck,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Openapi) = cli.command {
        print!("{}", movies::http::openapi_json());
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Healthcheck) = cli.command {
        return match Settings::from_env() {
            Ok(settings) => platform::probe::healthcheck("movies", settings.listen, settings.ops_listen).await,
            Err(e) => {
                eprintln!("movies: configuration error: {e}");
                ExitCode::from(platform::service::CONFIG_ERROR)
            }
        };
    }
    let command = cli.command.unwrap_or(Command::Serve);
    let logs = if matches!(command, Command::Serve) { LogOutput::Stdout } else { LogOutput::Stderr };
    // Serving calls Auth, with the introspection secret; the one-off commands never do,
    // and run without it (least privilege: the catalogue loader need not hold it).
    let serving = matches!(command, Command::Serve);
    let settings = move || {
        let settings = Settings::from_env()?;
        if serving {
            settings.auth_client()?;
        }
        Ok::<_, platform::env::ConfigError>(settings)
    };
    platform::service::run("movies", logs, settings, Settings::unknown_variables, async |settings: Settings| match command {
        Command::Serve => serve(&settings).await,
        Command::Migrate => movies::startup::connect_and_migrate(&settings).await.map(|_| tracing::info!("migrations applied")),
        Command::LoadDemo { file } => load_demo(&settings, file).await,
        Command::Openapi | Command::Healthcheck => unreachable!("handled above"),
    })
    .await
}

async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    tracing::info!(address = %app.local_addr(), "movies listening");
    if let Some(address) = app.ops_addr() {
        tracing::info!(%address, max_connections = platform::ops::MAX_CONNECTIONS, "movies operations listener (probes and /metrics) listening");
    }
    app.run_until_stopped().await
}

async fn load_demo(settings: &Settings, file: Option<PathBuf>) -> anyhow::Result<()> {
    let path = file.unwrap_or_else(|| PathBuf::from(movies::demo::DEFAULT_DATASET));
    let records = movies::demo::read(&path)?;
    let db = movies::startup::connect_and_migrate(settings).await?;
    let loaded = movies::demo::load(&db, &records).await?;
    if let Err(e) = movies::startup::cache(settings)?.clear().await {
        tracing::warn!(error = %e, "could not clear the cache; entries expire by themselves");
    }
    println!("loaded {} films, {} genres, {} persons", loaded.films, loaded.genres, loaded.persons);
    Ok(())
}
