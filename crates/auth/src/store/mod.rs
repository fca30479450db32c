//! Storage: SQL against PostgreSQL (the source of truth) and the Redis revocation cache.

pub mod history;
pub mod partitions;
pub mod revocation;
pub mod roles;
pub mod sessions;
pub mod social;
pub mod users;

pub use revocation::Revocations;
