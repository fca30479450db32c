//! Helpers for tests of what is logged (feature `test-support`).

use std::sync::{Arc, Mutex};

/// The log lines written on this thread while the guard of [`CapturedLogs::capture`]
/// lives: what a service logs when its start-up, or its tasks on a current-thread
/// runtime, run on the test's own thread.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Captures this thread's events at `level` and above, plain text without colours.
    pub fn capture(level: tracing::Level) -> (Self, tracing::subscriber::DefaultGuard) {
        // With one dispatcher registered in the process, tracing-core computes a new
        // callsite's interest from the default of the thread that first reaches it only
        // (its `has_just_one` shortcut): another test's thread, with no subscriber,
        // made a warning "never" for this one too, and a warning logged once per outage
        // was lost. A second dispatcher, kept for the process, turns the shortcut off.
        static SECOND_DISPATCHER: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
        SECOND_DISPATCHER.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
        let logs = Self::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).with_max_level(level).finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
