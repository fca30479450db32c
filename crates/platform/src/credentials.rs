//! The rules for the credentials one service presents to another: the client id and
//! secret a caller of Auth's token introspection sends (HTTP Basic, RFC 6749 §2.3.1).
//!
//! Both are limited to characters that form-urlencoding leaves unchanged, so the
//! encoding RFC 6749 asks for before Base64 is the identity on them, and an operator
//! can paste a value into a header or a shell without quoting.

use std::fmt;

use secrecy::SecretString;

pub const CLIENT_ID_MAX_LEN: usize = 64;
pub const CLIENT_SECRET_MIN_LEN: usize = 32;
pub const CLIENT_SECRET_MAX_LEN: usize = 256;

/// The placeholder of `deploy/.env.example`: a deployment that kept it would run with a
/// secret anyone can read in this repository.
const PLACEHOLDER: &str = "change-me";

/// A client id: 1 to 64 of `a-z`, `0-9`, `_` and `-`. Not a secret: it appears in
/// logs, rate-limit keys and headers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientId(String);

impl ClientId {
    /// The reason never repeats the value: a misplaced secret would land there.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let valid = (1..=CLIENT_ID_MAX_LEN).contains(&raw.len())
            && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if valid { Ok(Self(raw.to_owned())) } else { Err("a client id is 1 to 64 characters of a-z, 0-9, _ and -") }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a client secret: 32 to 256 of `A-Z`, `a-z`, `0-9`, `.`, `_`, `~` and `-`
/// (RFC 3986's unreserved characters), and not the placeholder of the examples. The
/// reason never repeats the value.
pub fn parse_client_secret(raw: &str) -> Result<SecretString, &'static str> {
    if !(CLIENT_SECRET_MIN_LEN..=CLIENT_SECRET_MAX_LEN).contains(&raw.len()) {
        return Err("a client secret is 32 to 256 characters long; generate one with e.g. `openssl rand -hex 32`");
    }
    if !raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-')) {
        return Err("a client secret is made of A-Z, a-z, 0-9, '.', '_', '~' and '-' only");
    }
    if raw.to_ascii_lowercase().starts_with(PLACEHOLDER) {
        return Err("the client secret is still the example's placeholder; generate one with e.g. `openssl rand -hex 32`");
    }
    Ok(raw.into())
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn client_ids_are_short_lowercase_names() {
        for good in ["movies", "a", "billing_2", "search-api", &"x".repeat(64)] {
            assert_eq!(ClientId::parse(good).unwrap().as_str(), good);
        }
        for bad in ["", "Movies", "mov ies", "movies:", "movies%20", "фильмы", &"x".repeat(65)] {
            assert!(ClientId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn client_secrets_are_long_unreserved_strings_and_not_the_placeholder() {
        let hex = "0123456789abcdef0123456789abcdef";
        for good in [hex, "A-Za-z0-9._~A-Za-z0-9._~A-Za-z0-9", &"Z".repeat(256)] {
            assert_eq!(parse_client_secret(good).unwrap().expose_secret(), good);
        }
        for bad in [
            &hex[1..],
            &"Z".repeat(257),
            "0123456789abcdef0123456789abcde+",
            "0123456789abcdef0123456789abcde:",
            "0123456789abcdef 0123456789abcdef",
            "change-me-to-a-long-random-secret-please",
            "CHANGE-ME-to-a-long-random-secret-please",
        ] {
            let reason = parse_client_secret(bad).unwrap_err();
            assert!(!reason.contains(bad), "{reason}");
        }
    }
}
