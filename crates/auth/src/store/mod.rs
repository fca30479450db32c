//! Storage: SQL against PostgreSQL (the source of truth), and the Redis caches of
//! revocations and of profiles in front of it.

/// SQL: the sorted role names of the account whose id is the SQL expression `$user`,
/// as a `text[]` (empty without roles).
macro_rules! role_names {
    ($user:literal) => {
        concat!(
            "COALESCE(ARRAY(SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = ",
            $user,
            " ORDER BY r.name), '{}')"
        )
    };
}

pub mod cache_failures;
pub mod history;
pub mod partitions;
pub mod profiles;
pub mod revocation;
pub mod roles;
pub mod sessions;
pub mod social;
pub mod users;

pub use cache_failures::{CacheCall, CacheFailures};
pub use profiles::Profiles;
pub use revocation::Revocations;
