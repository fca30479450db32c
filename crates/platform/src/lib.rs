//! Plumbing shared by the cinema's services, so each service's own code is about its
//! domain: typed settings from the environment, the rules for service credentials,
//! database bootstrap, logging, metrics, the HTTP server.

pub mod cache_failures;
pub mod connections;
pub mod credentials;
pub mod db;
pub mod env;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod probe;
pub mod server;
pub mod service;
pub mod telemetry;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
