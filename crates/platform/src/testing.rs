//! Helpers for the services' tests (feature `test-support`).

pub use log_hygiene::testing::CapturedLogs;
