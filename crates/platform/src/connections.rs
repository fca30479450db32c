//! How many client connections a service holds open at once, and the open-file limit
//! that bounds it: every connection is a file descriptor, and a process out of them
//! can no longer accept, nor open a socket to PostgreSQL or Redis.

use crate::env::{ConfigError, Env};

/// Client connections a service serves at once unless told otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// File descriptors kept for everything but client connections, on top of the
/// database pool (counted apart, as its size is a setting): the standard streams, the
/// listening socket and the runtime's own (epoll, its waker, the signal pipe), about
/// 10; Redis, one connection for the caches and one for the rate limiter, or one per
/// node of a Redis Cluster; the OTLP exporter's connection; and outgoing HTTP, the
/// largest and least even share: the movies API's pooled connections to Auth, Auth's
/// calls to the sign-in providers, and the DNS lookups before them. 256 leaves about
/// 200 of them for outgoing HTTP ([`OUTGOING_HTTP_FILES`]).
pub const RESERVED_FILES: u64 = 256;

/// The share of [`RESERVED_FILES`] for outgoing HTTP: a bound for settings that size
/// outgoing connections, such as the movies API's introspection calls in flight.
pub const OUTGOING_HTTP_FILES: usize = 200;

/// The cap on client connections, as read from the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCap {
    /// Client connections served at once; more wait in the listen backlog.
    pub max: usize,
    /// The soft open-file limit it was checked against; `None` where there is none.
    pub open_files: Option<u64>,
    /// The default was lowered to fit the open-file limit.
    pub lowered: bool,
}

impl ConnectionCap {
    /// A cap of `max` that no limit asked for (tests, tools).
    pub fn exactly(max: usize) -> Self {
        Self { max, open_files: None, lowered: false }
    }

    /// The one start-up line that says the cap in force and why.
    pub fn log(&self) {
        let open_files = self.open_files.map(|n| n.to_string()).unwrap_or_else(|| "unlimited".into());
        if self.lowered {
            tracing::info!(
                max_connections = self.max,
                open_files_limit = %open_files,
                "serving at most {} client connections at once: the default {DEFAULT_MAX_CONNECTIONS} lowered to fit the open-file limit",
                self.max
            );
        } else {
            tracing::info!(max_connections = self.max, open_files_limit = %open_files, "serving at most {} client connections at once", self.max);
        }
    }
}

/// Reads the cap from the variable `name`: [`DEFAULT_MAX_CONNECTIONS`] when unset,
/// lowered to what the process's current open-file limit leaves after
/// [`RESERVED_FILES`], the database pool and, when the service has one (`operations`),
/// the operations listener (its socket and [`crate::ops::MAX_CONNECTIONS`]). An
/// explicit value above that, zero or not a number is an error naming the variable.
pub fn max_connections(env: &Env, name: &str, database_connections: u32, operations: bool) -> Result<ConnectionCap, ConfigError> {
    fit(env, name, open_files_limit(), database_connections, operations)
}

/// [`max_connections`] against a given open-file limit.
pub fn fit(env: &Env, name: &str, open_files: Option<u64>, database_connections: u32, operations: bool) -> Result<ConnectionCap, ConfigError> {
    let explicit = env.optional(name).is_some();
    let wanted: usize = env.parse_positive(name, DEFAULT_MAX_CONNECTIONS)?;
    let error = |reason: String| ConfigError { name: name.to_owned(), reason };
    let operations_files = if operations { crate::ops::MAX_CONNECTIONS as u64 + 1 } else { 0 };
    let reserve = RESERVED_FILES + u64::from(database_connections) + operations_files;
    // The semaphore's own ceiling, where no open-file limit is lower.
    let mut allowed = tokio::sync::Semaphore::MAX_PERMITS as u64;
    if let Some(limit) = open_files {
        allowed = allowed.min(limit.saturating_sub(reserve));
        if allowed == 0 {
            return Err(error(format!(
                "the open-file limit ({limit}) leaves no file descriptor for client connections after the {reserve} kept for the database pool and other files; raise it (ulimit -n, or the container's nofile limit)"
            )));
        }
    }
    let allowed = usize::try_from(allowed).unwrap_or(usize::MAX);
    if wanted <= allowed {
        return Ok(ConnectionCap { max: wanted, open_files, lowered: false });
    }
    if explicit {
        let why = open_files.map_or_else(String::new, |limit| {
            format!(": the open-file limit is {limit}, and {reserve} of it is kept for the database pool and other files")
        });
        return Err(error(format!("must be at most {allowed}{why}")));
    }
    Ok(ConnectionCap { max: allowed, open_files, lowered: true })
}

/// Raises the soft open-file limit (RLIMIT_NOFILE) to the hard one, as Go's runtime
/// and many servers do at start: the soft limit is often 1,024 for compatibility with
/// `select(2)`, which nothing here uses, while the hard one is far higher. Call it
/// before the settings are read, which check the cap against the limit in force. A
/// failure is logged and the limit left as it was.
pub fn raise_open_files_limit() {
    #[cfg(unix)]
    {
        let before = open_files_limit();
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(now) if Some(now) != before => tracing::debug!(before = ?before, now, "open-file limit raised to the hard limit"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, open_files_limit = ?before, "could not raise the open-file limit; keeping it"),
        }
    }
}

/// The soft open-file limit in force; `None` when it is unlimited or unknown.
pub fn open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        match rlimit::getrlimit(rlimit::Resource::NOFILE) {
            Ok((soft, _)) if soft != rlimit::INFINITY => Some(soft),
            _ => None,
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit_with(value: Option<&str>, open_files: Option<u64>) -> Result<ConnectionCap, String> {
        let lookup = |name: &str| if name == "X_MAX_CONNECTIONS" { value.map(str::to_owned) } else { None };
        fit(&Env::new(&lookup), "X_MAX_CONNECTIONS", open_files, 16, false).map_err(|e| e.to_string())
    }

    /// The operations listener's socket and its 32 connections come out of the same
    /// open-file limit.
    #[test]
    fn an_operations_listener_takes_its_files_from_the_limit_too() {
        let lookup = |_: &str| None;
        let cap = fit(&Env::new(&lookup), "X_MAX_CONNECTIONS", Some(1_024), 16, true).unwrap();
        assert_eq!(cap, ConnectionCap { max: 752 - 33, open_files: Some(1_024), lowered: true });
    }

    #[test]
    fn the_default_is_ten_thousand_where_the_open_file_limit_allows() {
        let cap = fit_with(None, Some(1_048_576)).unwrap();
        assert_eq!(cap, ConnectionCap { max: 10_000, open_files: Some(1_048_576), lowered: false });
        assert_eq!(fit_with(None, None).unwrap().max, 10_000);
        assert_eq!(fit_with(None, Some(10_000 + 256 + 16)).unwrap().max, 10_000);
    }

    #[test]
    fn the_default_is_lowered_to_what_the_open_file_limit_leaves_after_the_reserve() {
        // 1,024 files, 256 reserved, 16 for the database pool.
        let cap = fit_with(None, Some(1_024)).unwrap();
        assert_eq!(cap, ConnectionCap { max: 752, open_files: Some(1_024), lowered: true });
    }

    #[test]
    fn an_explicit_value_is_taken_up_to_what_the_limit_allows() {
        assert_eq!(fit_with(Some("752"), Some(1_024)).unwrap(), ConnectionCap { max: 752, open_files: Some(1_024), lowered: false });
        assert_eq!(fit_with(Some(" 50000 "), None).unwrap().max, 50_000);
        assert_eq!(
            fit_with(Some("753"), Some(1_024)).unwrap_err(),
            "X_MAX_CONNECTIONS: must be at most 752: the open-file limit is 1024, and 272 of it is kept for the database pool and other files"
        );
        let too_many = fit_with(Some("18446744073709551615"), None).unwrap_err();
        assert!(too_many.starts_with("X_MAX_CONNECTIONS: must be at most "), "{too_many}");
    }

    #[test]
    fn zero_junk_and_a_limit_too_small_name_the_variable() {
        assert_eq!(fit_with(Some("0"), Some(1_024)).unwrap_err(), "X_MAX_CONNECTIONS: must be greater than zero");
        assert_eq!(fit_with(Some("lots"), Some(1_024)).unwrap_err(), "X_MAX_CONNECTIONS: cannot parse \"lots\": invalid digit found in string");
        assert_eq!(fit_with(Some("-5"), Some(1_024)).unwrap_err(), "X_MAX_CONNECTIONS: cannot parse \"-5\": invalid digit found in string");
        for value in [None, Some("10")] {
            let error = fit_with(value, Some(272)).unwrap_err();
            assert!(error.starts_with("X_MAX_CONNECTIONS: the open-file limit (272) leaves no file descriptor"), "{error}");
        }
    }

    /// Linux only: macOS reports an unlimited hard limit that it refuses to grant.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
        use rlimit::Resource;
        let (_, hard) = Resource::NOFILE.get().unwrap();
        // One below the hard limit, so the test process keeps its room for the tests
        // that run beside this one.
        Resource::NOFILE.set(hard - 1, hard).unwrap();
        assert_eq!(open_files_limit(), Some(hard - 1));
        raise_open_files_limit();
        assert_eq!(Resource::NOFILE.get().unwrap(), (hard, hard));
        assert_eq!(open_files_limit(), Some(hard));
    }
}
