//! The life of a service process: logging and tracing up, settings read, the command
//! run, spans flushed, an exit code.

use std::{fmt::Display, process::ExitCode};

/// Exit code of a configuration error: the process never started.
pub const CONFIG_ERROR: u8 = 2;

/// Sets up telemetry (logs to `logs`), reads the settings (a bad one stops with one line naming the
/// variable and exit code 2), warns about unknown variables, runs `command`, flushes
/// the spans still queued, and maps the outcome to an exit code.
pub async fn run<S, E: Display>(
    service: &str,
    logs: crate::telemetry::LogOutput,
    settings: impl FnOnce() -> Result<S, E>,
    unknown_variables: impl FnOnce() -> Vec<String>,
    command: impl AsyncFnOnce(S) -> anyhow::Result<()>,
) -> ExitCode {
    let telemetry = match crate::telemetry::init(service, logs) {
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
            let error = one_line(&e);
            // A service's log gets the line too; a command's log is stderr already,
            // where the plain line below would repeat it.
            if logs == crate::telemetry::LogOutput::Stdout {
                tracing::error!(error, "{service} stopped");
            }
            eprintln!("{service}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, like `{:#}`, but without a cause whose text
/// already ends the line: sqlx's errors print their source themselves, which made a
/// failed migration state the same database error three times.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapping(std::io::Error);

    impl Display for Wrapping {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "while executing migration 20: {}", self.0)
        }
    }

    impl std::error::Error for Wrapping {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_already_in_its_parents_text_is_stated_once() {
        let cause = std::io::Error::other("extension pg_partman is not installed");
        let error = anyhow::Error::new(Wrapping(cause)).context("applying migrations");
        assert_eq!(one_line(&error), "applying migrations: while executing migration 20: extension pg_partman is not installed");
        assert_eq!(format!("{error:#}").matches("pg_partman").count(), 2, "anyhow's own chain repeats it");

        let plain = anyhow::anyhow!("connection refused").context("connecting to PostgreSQL");
        assert_eq!(one_line(&plain), "connecting to PostgreSQL: connection refused");
    }
}
