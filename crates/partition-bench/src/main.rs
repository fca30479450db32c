use std::process::ExitCode;

use auth::config::Settings;
use clap::Parser;
use partition_bench::BenchArgs;
use platform::telemetry::LogOutput;

/// Fill a scratch database with a realistic audience and measure Auth's partitioned
/// schema against the same data unpartitioned (docs/partitioning.md). The database is
/// made on the server of AUTH_DATABASE_URL, which must name another database.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let Cli { args } = Cli::parse();
    platform::service::run("partition-bench", LogOutput::Stderr, Settings::from_env, Settings::unknown_variables, async |settings: Settings| {
        partition_bench::run(&settings, args).await
    })
    .await
}
