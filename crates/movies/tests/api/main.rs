//! Integration tests of the movies API with a real Auth, PostgreSQL and Redis.

mod access;
mod auth_client;
mod cache;
mod catalog;
mod contract;
mod database;
mod degradation;
mod helpers;
mod playback;
mod ratelimit;
mod schema_fuzzing;
