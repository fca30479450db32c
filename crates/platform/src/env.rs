//! Reading typed settings from environment variables, with defaults and one-line
//! errors that name the variable.

use std::{str::FromStr, time::Duration};

#[derive(Debug, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct ConfigError {
    pub name: String,
    pub reason: String,
}

/// A view of the environment through a lookup function, so tests can pass settings
/// without touching the process environment.
pub struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Env<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self { lookup }
    }

    /// The value, unless unset or blank.
    pub fn optional(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    pub fn string(&self, name: &str, default: &str) -> String {
        self.optional(name).unwrap_or_else(|| default.to_owned())
    }

    pub fn parse<T: FromStr>(&self, name: &str, default: &str) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        let raw = self.string(name, default);
        raw.trim().parse().map_err(|e| ConfigError { name: name.to_owned(), reason: format!("cannot parse {raw:?}: {e}") })
    }

    pub fn parse_positive<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + Default + ToString,
        T::Err: std::fmt::Display,
    {
        let value: T = self.parse(name, &default.to_string())?;
        if value <= T::default() {
            return Err(ConfigError { name: name.to_owned(), reason: "must be greater than zero".into() });
        }
        Ok(value)
    }

    pub fn seconds(&self, name: &str, default: u64) -> Result<Duration, ConfigError> {
        self.parse_positive(name, default).map(Duration::from_secs)
    }

    pub fn millis(&self, name: &str, default: u64) -> Result<Duration, ConfigError> {
        self.parse_positive(name, default).map(Duration::from_millis)
    }

    /// A positive whole number of at most `max`: for values that are added to the clock
    /// or handed to a server with its own limit, where a larger one would fail later.
    pub fn positive_at_most(&self, name: &str, default: u64, max: u64) -> Result<u64, ConfigError> {
        let value = self.parse_positive(name, default)?;
        if value > max {
            return Err(ConfigError { name: name.to_owned(), reason: format!("must be at most {max}") });
        }
        Ok(value)
    }

    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(true),
            Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(false),
            Some(v) => Err(ConfigError { name: name.to_owned(), reason: format!("expected true or false, got {v:?}") }),
        }
    }
}

/// Variables starting with `prefix` that are not in `known`: usually typos.
pub fn unknown_variables(prefix: &str, known: &[&str]) -> Vec<String> {
    std::env::vars().map(|(k, _)| k).filter(|k| k.starts_with(prefix) && !known.contains(&k.as_str())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_with_defaults_and_errors_name_the_variable() {
        let lookup = |name: &str| match name {
            "A" => Some("12".to_owned()),
            "B" => Some("x".to_owned()),
            "C" => Some("  ".to_owned()),
            "F" => Some("maybe".to_owned()),
            _ => None,
        };
        let env = Env::new(&lookup);
        assert_eq!(env.parse::<u32>("A", "1").unwrap(), 12);
        assert_eq!(env.string("C", "dflt"), "dflt");
        assert_eq!(env.seconds("MISSING", 5).unwrap(), Duration::from_secs(5));
        assert_eq!(env.parse::<u32>("B", "1").unwrap_err().to_string(), "B: cannot parse \"x\": invalid digit found in string");
        assert!(env.flag("F", false).unwrap_err().to_string().starts_with("F: "));
        assert!(env.flag("MISSING", true).unwrap());
    }
}
