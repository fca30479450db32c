//! The life of a service process: logging and tracing up, settings read, the command
//! run, spans flushed, an exit code.

use std::{fmt::Display, process::ExitCode};

/// Exit code of a configuration error: the process never started.
pub const CONFIG_ERROR: u8 = 2;

/// Sets up telemetry, reads the settings (a bad one stops with one line naming the
/// variable and exit code 2), warns about unknown variables, runs `command`, flushes
/// the spans still queued, and maps the outcome to an exit code.
pub async fn run<S, E: Display>(
    service: &str,
    settings: impl FnOnce() -> Result<S, E>,
    unknown_variables: impl FnOnce() -> Vec<String>,
    command: impl AsyncFnOnce(S) -> anyhow::Result<()>,
) -> ExitCode {
    let telemetry = match crate::telemetry::init(service) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("{service}: configuration error: {e}");
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    let settings = match settings() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{service}: configuration error: {e}");
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    for name in unknown_variables() {
        tracing::warn!(variable = %name, "unknown variable with this service's prefix ignored; is it a typo?");
    }
    let result = command(settings).await;
    telemetry.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "{service} stopped");
            eprintln!("{service}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
