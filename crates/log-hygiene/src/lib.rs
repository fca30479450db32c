//! How the cinema's services keep their logs few and free of secrets, in one place for
//! `platform` and `auth-client` alike (auth-client, the light library other services
//! link, takes neither `platform` nor any dependency through this crate).
//!
//! - [`Outage`]: a failure that lasts (the answer cache's Redis, a trace collector) is
//!   told when it starts, at most once a minute, and when it ends, only when its start
//!   was told.
//! - [`AtMostEvery`]: a condition that recurs on every request (a refusal, a cap
//!   reached) is told at most once a minute, with how often it happened meanwhile.
//! - [`without_userinfo`]: a URL as shown in logs and spans, without its password.
//!
//! With the feature `test-support`, [`testing::CapturedLogs`] captures what a test logs.
//!
//! Each is driven by requests or retries: without them, whoever sends the requests, or
//! a dependency that fails, would choose how much the log says.

mod outage;
mod repeated;
#[cfg(feature = "test-support")]
pub mod testing;
mod url;

pub use outage::Outage;
pub use repeated::AtMostEvery;
pub use url::without_userinfo;

/// How often, at most, the start of an outage or a repeated condition is told.
pub const ONCE_A_MINUTE: std::time::Duration = std::time::Duration::from_secs(60);
