//! Integration tests of the Auth HTTP API against the real PostgreSQL and Redis.
//! One binary, one module per feature.

mod attacks;
mod contract;
mod errors;
mod health;
mod helpers;
mod history;
mod introspect;
mod keys;
mod login;
mod logout;
mod logs;
mod migration;
mod partitioning;
mod plans;
mod profile_cache;
mod ratelimit;
mod refresh;
mod roles;
mod schema_fuzzing;
mod sessions;
mod signup;
mod social;
mod superuser;
mod users_me;
