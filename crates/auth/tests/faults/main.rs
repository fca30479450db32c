//! Fault injection against real processes (docs/faults.md): Auth's own binary, on a
//! private PostgreSQL cluster and a private Redis that the tests stop, crash, restart
//! and slow down. The shared servers the other tests use are never touched.
//!
//! `cargo test -p auth --test faults`

mod harness;
mod postgres_down;
mod redis_down;
mod servers;
mod slow_database;
