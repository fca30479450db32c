//! Storage: SQL against PostgreSQL (the source of truth), and the Redis caches of
//! revocations and of profiles in front of it.

pub mod history;
pub mod partitions;
pub mod profiles;
pub mod revocation;
pub mod roles;
pub mod sessions;
pub mod social;
pub mod users;

pub use profiles::Profiles;
pub use revocation::Revocations;
