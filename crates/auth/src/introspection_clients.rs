//! The services allowed to call token introspection (RFC 7662 §2.1 requires its
//! callers to be authorized), read from `AUTH_INTROSPECTION_CLIENTS`, and the check of
//! the credentials they send: HTTP Basic as RFC 6749 §2.3.1 describes it
//! (`client_secret_basic`).
//!
//! Only a SHA-256 digest of each secret is kept after start-up. A presented secret is
//! hashed and compared with every registered digest in constant time, so an unknown
//! id and a wrong secret cost the same work and get the same answer.

use std::{fmt, sync::Arc};

use axum::http::{HeaderMap, header};
use base64::Engine;
use platform::{
    credentials::{ClientId, parse_client_secret},
    env::{ConfigError, Env},
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

pub const VARIABLE: &str = "AUTH_INTROSPECTION_CLIENTS";

/// Longest Base64 credentials read: a 64-character id and a 256-character secret, each
/// percent-encoded in full (3 bytes a character), are 1,284 characters.
const MAX_ENCODED_LEN: usize = 2048;

/// The registered introspection clients: ids and the SHA-256 digests of their secrets.
#[derive(Clone, Default)]
pub struct IntrospectionClients {
    clients: Arc<[Registered]>,
}

struct Registered {
    id: ClientId,
    secret_digest: [u8; 32],
}

/// The ids only: the digests stay out of logs too.
impl fmt::Debug for IntrospectionClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clients.iter().map(|c| c.id.as_str())).finish()
    }
}

/// The outcome of checking a request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCheck {
    Authenticated(ClientId),
    Refused(Refusal),
}

/// Why credentials were refused: for the log only. Every refusal gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization` header.
    Missing,
    /// Not `Basic`, not Base64, no `:`, or not UTF-8 once decoded.
    Malformed,
    /// No client has this id.
    UnknownClient,
    /// The id is registered; the secret is not its secret.
    WrongSecret(ClientId),
}

impl Refusal {
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::UnknownClient => "unknown_client",
            Refusal::WrongSecret(_) => "wrong_secret",
        }
    }
}

impl IntrospectionClients {
    /// `AUTH_INTROSPECTION_CLIENTS`: comma-separated `client_id:secret` entries. Unset or
    /// blank: no client, and every introspection is refused.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let raw: SecretString = env.optional(VARIABLE).unwrap_or_default().into();
        Self::parse(&raw).map_err(|reason| ConfigError { name: VARIABLE.into(), reason })
    }

    /// The reasons name an entry by its position only: never a secret, nor an id, which
    /// may be a secret written in the wrong place (a hex secret is a valid id).
    pub fn parse(raw: &SecretString) -> Result<Self, String> {
        let mut clients: Vec<(usize, Registered)> = Vec::new();
        let entries = raw.expose_secret().split(',').map(str::trim).enumerate().filter(|(_, entry)| !entry.is_empty());
        for (index, entry) in entries {
            let position = index + 1;
            let Some((id, secret)) = entry.split_once(':') else {
                return Err(format!("entry {position} is not `client_id:secret`"));
            };
            let id = ClientId::parse(id).map_err(|reason| format!("entry {position}: {reason}"))?;
            let secret = parse_client_secret(secret).map_err(|reason| format!("entry {position}: {reason}"))?;
            if let Some((earlier, _)) = clients.iter().find(|(_, c)| c.id == id) {
                return Err(format!("entries {earlier} and {position} have the same client id"));
            }
            clients.push((position, Registered { secret_digest: digest(secret.expose_secret()), id }));
        }
        Ok(Self { clients: clients.into_iter().map(|(_, client)| client).collect() })
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = &ClientId> {
        self.clients.iter().map(|c| &c.id)
    }

    /// Checks the request's `Authorization: Basic` credentials.
    pub fn check(&self, headers: &HeaderMap) -> ClientCheck {
        let Some(value) = headers.get(header::AUTHORIZATION) else { return ClientCheck::Refused(Refusal::Missing) };
        let Some((id, secret)) = value.to_str().ok().and_then(basic_credentials) else {
            return ClientCheck::Refused(Refusal::Malformed);
        };
        self.verify(&id, &secret)
    }

    /// The same work whether `id` is registered or not: the secret is hashed, and every
    /// client's id and digest are compared, without an early exit.
    fn verify(&self, id: &str, secret: &str) -> ClientCheck {
        let presented = digest(secret);
        let mut known = Choice::from(0);
        let mut matched = Choice::from(0);
        let mut index = 0u32;
        for (i, client) in self.clients.iter().enumerate() {
            let same_id = client.id.as_str().as_bytes().ct_eq(id.as_bytes());
            known |= same_id;
            matched |= same_id & client.secret_digest[..].ct_eq(&presented[..]);
            index.conditional_assign(&(i as u32), same_id);
        }
        match (bool::from(known), bool::from(matched)) {
            (true, true) => ClientCheck::Authenticated(self.clients[index as usize].id.clone()),
            (true, false) => ClientCheck::Refused(Refusal::WrongSecret(self.clients[index as usize].id.clone())),
            (false, _) => ClientCheck::Refused(Refusal::UnknownClient),
        }
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The id and secret of an `Authorization: Basic` value: Base64 of
/// `urlencode(id) ":" urlencode(secret)` (RFC 6749 §2.3.1), each part decoded.
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    let encoded = encoded.trim();
    if !scheme.eq_ignore_ascii_case("basic") || encoded.len() > MAX_ENCODED_LEN {
        return None;
    }
    let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn form_decode(part: &str) -> Option<String> {
    let spaced = part.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced).decode_utf8().ok().map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    const MOVIES_SECRET: &str = "m0vies-secret-0123456789abcdefghij";
    const BILLING_SECRET: &str = "billing.secret~0123456789ABCDEFGHIJ";

    fn parse(raw: &str) -> Result<IntrospectionClients, ConfigError> {
        let lookup = |name: &str| (name == VARIABLE).then(|| raw.to_owned());
        IntrospectionClients::from_env(&Env::new(&lookup))
    }

    fn basic(raw: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&value).unwrap());
        headers
    }

    fn two_clients() -> IntrospectionClients {
        parse(&format!("movies:{MOVIES_SECRET}, billing:{BILLING_SECRET},")).unwrap()
    }

    #[test]
    fn unset_or_blank_means_no_client() {
        for raw in ["", "  ", ","] {
            assert!(parse(raw).unwrap().is_empty(), "{raw:?}");
        }
        let lookup = |_: &str| None;
        assert!(IntrospectionClients::from_env(&Env::new(&lookup)).unwrap().is_empty());
    }

    #[test]
    fn entries_are_parsed_and_only_ids_are_shown() {
        let clients = two_clients();
        assert_eq!(clients.ids().map(ClientId::as_str).collect::<Vec<_>>(), ["movies", "billing"]);
        let debug = format!("{clients:?}");
        assert_eq!(debug, r#"["movies", "billing"]"#);
    }

    /// Each bad entry stops start-up with one line that names the variable and the
    /// entry, and never the secret.
    #[test]
    fn bad_entries_name_the_variable_and_hide_the_secret() {
        let secret = "hunter2-hunter2-hunter2-hunter2-hunter2";
        for (raw, expected) in [
            (secret.to_owned(), "AUTH_INTROSPECTION_CLIENTS: entry 1 is not `client_id:secret`"),
            (format!("Movies:{secret}"), "AUTH_INTROSPECTION_CLIENTS: entry 1: a client id is"),
            // Swapped: the secret is a valid id (so is any hex secret), and is not repeated either.
            (format!("{secret}:movies"), "AUTH_INTROSPECTION_CLIENTS: entry 1: a client secret is 32 to 256"),
            (format!("movies:{MOVIES_SECRET},billing:hunter2"), "AUTH_INTROSPECTION_CLIENTS: entry 2: a client secret is 32 to 256"),
            (format!("movies:{secret}+"), "AUTH_INTROSPECTION_CLIENTS: entry 1: a client secret is made of"),
            (format!("movies:{secret},,movies:{MOVIES_SECRET}"), "AUTH_INTROSPECTION_CLIENTS: entries 1 and 3 have the same client id"),
            ("movies:change-me-to-a-long-random-secret".to_owned(), "AUTH_INTROSPECTION_CLIENTS: entry 1: the client secret is still"),
        ] {
            let error = parse(&raw).unwrap_err();
            assert_eq!(error.name, VARIABLE);
            let line = error.to_string();
            assert!(line.starts_with(expected), "{raw:?}: {line}");
            assert!(!line.contains("hunter2") && !line.contains(MOVIES_SECRET) && !line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn the_right_credentials_authenticate_their_client() {
        let clients = two_clients();
        assert_eq!(clients.check(&basic(&format!("movies:{MOVIES_SECRET}"))), ClientCheck::Authenticated(ClientId::parse("movies").unwrap()));
        assert_eq!(clients.check(&basic(&format!("billing:{BILLING_SECRET}"))), ClientCheck::Authenticated(ClientId::parse("billing").unwrap()));
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let mut headers = basic(&format!("movies:{MOVIES_SECRET}"));
        let lower = headers[header::AUTHORIZATION].to_str().unwrap().replacen("Basic", "basic", 1);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&lower).unwrap());
        assert!(matches!(clients.check(&headers), ClientCheck::Authenticated(_)));
    }

    /// RFC 6749 §2.3.1: id and secret are form-urlencoded before Base64.
    #[test]
    fn percent_encoded_parts_are_decoded() {
        let clients = two_clients();
        let encoded = format!("%6Dovies:{}", MOVIES_SECRET.replace('-', "%2D").replace('m', "%6d"));
        assert!(matches!(clients.check(&basic(&encoded)), ClientCheck::Authenticated(_)));
        // `+` is a space, which no secret holds.
        let plus = format!("movies:{}", MOVIES_SECRET.replacen('-', "+", 1));
        assert_eq!(clients.check(&basic(&plus)), ClientCheck::Refused(Refusal::WrongSecret(ClientId::parse("movies").unwrap())));
        assert_eq!(clients.check(&basic(&format!("movies:{MOVIES_SECRET}%FF"))), ClientCheck::Refused(Refusal::Malformed));
    }

    #[test]
    fn wrong_unknown_missing_and_malformed_credentials_are_refused() {
        let clients = two_clients();
        assert_eq!(
            clients.check(&basic(&format!("movies:{BILLING_SECRET}"))),
            ClientCheck::Refused(Refusal::WrongSecret(ClientId::parse("movies").unwrap()))
        );
        assert_eq!(clients.check(&basic(&format!("search:{MOVIES_SECRET}"))), ClientCheck::Refused(Refusal::UnknownClient));
        assert_eq!(
            clients.check(&basic(&format!("movies:{MOVIES_SECRET}x"))),
            ClientCheck::Refused(Refusal::WrongSecret(ClientId::parse("movies").unwrap()))
        );
        assert_eq!(clients.check(&HeaderMap::new()), ClientCheck::Refused(Refusal::Missing));
        for value in [
            "Bearer abc".to_owned(),
            "Basic".to_owned(),
            "Basic !!!".to_owned(),
            format!("Basic {}", "QUFB".repeat(600)),
            "Basic bW92aWVz".to_owned(),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&value).unwrap());
            assert_eq!(clients.check(&headers), ClientCheck::Refused(Refusal::Malformed), "{value}");
        }
        // No client registered: everyone is refused.
        assert_eq!(IntrospectionClients::default().check(&basic(&format!("movies:{MOVIES_SECRET}"))), ClientCheck::Refused(Refusal::UnknownClient));
    }
}
