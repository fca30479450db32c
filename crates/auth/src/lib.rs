//! Auth: the identity service of the online cinema.
//!
//! `http` holds the routes, `domain` the rules for account values, `tokens` the JWTs
//! and refresh tokens, `store` the SQL and the Redis cache. `startup` wires them.

pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod introspection_clients;
pub mod limits;
pub mod oauth;
pub mod partitions;
pub mod startup;
pub mod state;
pub mod store;
pub mod superuser;
pub mod tokens;
