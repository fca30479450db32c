//! The film catalogue API of the online cinema.
//!
//! `http` holds the routes, `access` the rules deciding what each viewer may see,
//! `catalog` the SQL, `cache` the Redis cache in front of it, `demo` the loader of the
//! demo catalogue, `limits` the request rate limits, `playback` the signed playback
//! URLs. Who the viewer is comes from Auth through the `auth-client` crate.

pub mod access;
pub mod cache;
pub mod catalog;
pub mod config;
pub mod demo;
pub mod error;
pub mod http;
pub mod limits;
pub mod playback;
pub mod startup;
pub mod state;
