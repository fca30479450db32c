//! Signed playback URLs: the media server (the stack's nginx; in production a CDN with
//! its own scheme, behind this one small module) plays a manifest only through a URL
//! Movies signed for an entitled viewer, and only until the URL's expiry.
//!
//! The format is the one nginx's `ngx_http_secure_link_module` verifies with
//! `secure_link $arg_sig,$arg_expires; secure_link_md5 "$secure_link_expires$uri <secret>";`:
//! `sig` is the base64url (no padding) MD5 of the expiry in Unix seconds, the path and
//! the secret, in that order. MD5 is the module's only digest; the secret comes last,
//! so a length-extension attack (appending to a known signed message) has nothing to
//! extend: the appended part would follow the secret, which the attacker cannot
//! reproduce. See docs/movies.md, "Signed playback URLs".

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use md5::{Digest, Md5};
use platform::env::{ConfigError, Env};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

/// The settings of signed playback URLs.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// How long a signed manifest URL plays.
    pub url_ttl: Duration,
    /// Shared with the media server that verifies the URLs (the stack's nginx). None: a
    /// random one per start, which nothing else knows.
    pub signing_secret: Option<SecretString>,
}

/// A minute to a day: shorter would expire before a player fetched the manifest on a
/// slow start; longer makes a leaked URL a lasting free pass.
const URL_TTL_SECONDS: std::ops::RangeInclusive<u64> = 60..=86_400;

/// The shortest signing secret: 32 hex digits are 128 bits (`openssl rand -hex 32` prints 64).
const MIN_SECRET_CHARS: usize = 32;

impl StreamSettings {
    pub const VARIABLES: [&str; 2] = ["MOVIES_STREAM_URL_TTL_SECONDS", "MOVIES_STREAM_SIGNING_SECRET"];

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self { url_ttl: url_ttl(env)?, signing_secret: signing_secret(env)? })
    }
}

/// `MOVIES_STREAM_URL_TTL_SECONDS`: 600 (10 minutes) by default.
fn url_ttl(env: &Env) -> Result<Duration, ConfigError> {
    let name = "MOVIES_STREAM_URL_TTL_SECONDS";
    let seconds: u64 = env.parse(name, "600")?;
    if !URL_TTL_SECONDS.contains(&seconds) {
        let (min, max) = (URL_TTL_SECONDS.start(), URL_TTL_SECONDS.end());
        return Err(ConfigError { name: name.into(), reason: format!("must be {min} to {max} seconds (a minute to a day)") });
    }
    Ok(Duration::from_secs(seconds))
}

/// `MOVIES_STREAM_SIGNING_SECRET`: unset or blank is `None`. The value is never echoed.
/// Only letters, digits and `+/=-_.` (what `openssl rand -hex` or `-base64` print): the
/// same value is written into nginx's configuration inside a quoted string, where `$`
/// starts a variable, `\` an escape and `"` ends the string, and compose's `.env` reads
/// `$` too; nginx would then hash another secret and refuse every URL.
fn signing_secret(env: &Env) -> Result<Option<SecretString>, ConfigError> {
    let name = "MOVIES_STREAM_SIGNING_SECRET";
    let Some(secret) = env.optional(name) else { return Ok(None) };
    let invalid = |reason: &str| ConfigError { name: name.into(), reason: reason.into() };
    if secret.chars().count() < MIN_SECRET_CHARS {
        return Err(invalid("must be at least 32 characters, e.g. `openssl rand -hex 32`"));
    }
    if !secret.chars().all(|c| c.is_ascii_alphanumeric() || "+/=-_.".contains(c)) {
        return Err(invalid("only letters, digits and + / = - _ . are allowed (nginx reads it in its configuration), e.g. `openssl rand -hex 32`"));
    }
    Ok(Some(secret.into()))
}

/// Signs media paths for a fixed lifetime with the secret the media server shares.
#[derive(Debug, Clone)]
pub struct UrlSigner {
    secret: SecretString,
    ttl: Duration,
}

/// A signed URL and the instant it stops playing (the `expires` it carries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedUrl {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

impl UrlSigner {
    pub fn new(secret: SecretString, ttl: Duration) -> Self {
        Self { secret, ttl }
    }

    /// The configured secret or, when none is set, a random one made now: the URLs then
    /// verify nowhere else (nor after a restart), which is said once in the log.
    pub fn from_settings(settings: &StreamSettings) -> Self {
        let secret = settings.signing_secret.clone().unwrap_or_else(|| {
            tracing::warn!(
                "MOVIES_STREAM_SIGNING_SECRET is not set: stream URLs are signed with a random secret made at start, \
                 so they will not verify anywhere else (nginx, a CDN); fine for development and tests only"
            );
            random_secret()
        });
        Self::new(secret, settings.url_ttl)
    }

    /// The path of a film's HLS master playlist.
    pub fn manifest_path(film: Uuid) -> String {
        format!("/media/films/{}/master.m3u8", film.simple())
    }

    /// `path` signed to play until now plus the lifetime.
    pub fn sign(&self, path: &str) -> SignedUrl {
        self.sign_at(path, Utc::now())
    }

    /// `path` signed to play until `now` (whole seconds) plus the lifetime.
    pub fn sign_at(&self, path: &str, now: DateTime<Utc>) -> SignedUrl {
        let ttl = i64::try_from(self.ttl.as_secs()).expect("the lifetime is bounded by the settings");
        let expires = now.timestamp() + ttl;
        let sig = signature(self.secret.expose_secret(), path, expires);
        let expires_at = DateTime::from_timestamp(expires, 0).expect("now plus at most a day is a valid time");
        SignedUrl { url: format!("{path}?expires={expires}&sig={sig}"), expires_at }
    }
}

/// base64url without padding of MD5(`expires` `path` ` ` `secret`): what nginx's
/// `secure_link_md5 "$secure_link_expires$uri <secret>"` computes. `path` is the
/// decoded, normalised path nginx has in `$uri`; the paths signed here need no
/// escaping (a hex film id).
pub fn signature(secret: &str, path: &str, expires: i64) -> String {
    let digest = Md5::new().chain_update(expires.to_string()).chain_update(path).chain_update(" ").chain_update(secret).finalize();
    URL_SAFE_NO_PAD.encode(digest)
}

/// 256 random bits, base64url: the development secret.
fn random_secret() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "test-vector-secret-0123456789abcdef";
    const PATH: &str = "/media/films/3f1c2d4e5a6b47c8a9d0e1f2a3b4c5d6/master.m3u8";

    fn signer(ttl_seconds: u64) -> UrlSigner {
        UrlSigner::new(SECRET.to_owned().into(), Duration::from_secs(ttl_seconds))
    }

    fn at(unix: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(unix, 0).unwrap()
    }

    /// Computed independently of this code, as nginx's secure_link_md5 does:
    /// `printf '%s' "1767225600$PATH $SECRET" | openssl md5 -binary | base64 | tr '+/' '-_' | tr -d '='`
    #[test]
    fn the_signature_matches_vectors_computed_with_openssl() {
        assert_eq!(signature(SECRET, PATH, 1_767_225_600), "5XPm8jwnslJjpdpZwgUwJA");
        assert_eq!(signature(SECRET, PATH, 1_767_225_660), "DnWbUUptDaG4Uubn3ZXlHQ");
        // One whose base64 has both characters base64url replaces ('+' and '/').
        assert_eq!(signature(SECRET, PATH, 1_767_225_605), "epXbZ-_6EFrCFfa_mrjSKA");
    }

    #[test]
    fn the_url_carries_the_expiry_now_plus_the_lifetime_and_its_signature() {
        let signed = signer(600).sign_at(PATH, at(1_767_225_000));
        assert_eq!(signed.url, format!("{PATH}?expires=1767225600&sig=5XPm8jwnslJjpdpZwgUwJA"));
        assert_eq!(signed.expires_at, at(1_767_225_600));
        assert_eq!(signed.expires_at.to_rfc3339(), "2026-01-01T00:00:00+00:00");
    }

    #[test]
    fn the_expiry_is_in_whole_seconds_and_never_past_now_plus_the_lifetime() {
        let now = at(1_767_225_000) + chrono::Duration::milliseconds(999);
        let signed = signer(60).sign_at(PATH, now);
        assert_eq!(signed.expires_at, at(1_767_225_060));
        assert!(signed.expires_at <= now + chrono::Duration::seconds(60));
        assert!(signed.url.contains("?expires=1767225060&sig="), "{}", signed.url);
    }

    #[test]
    fn different_films_times_and_secrets_give_different_signatures() {
        let other_film = UrlSigner::manifest_path(Uuid::from_u128(1));
        let signatures = [
            signature(SECRET, PATH, 1_767_225_600),
            signature(SECRET, PATH, 1_767_225_601),
            signature(SECRET, &other_film, 1_767_225_600),
            signature(&format!("{SECRET}x"), PATH, 1_767_225_600),
        ];
        for (i, a) in signatures.iter().enumerate() {
            for b in &signatures[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let sign = |now| signer(600).sign_at(PATH, at(now)).url;
        assert_ne!(sign(1_767_225_000), sign(1_767_225_001));
    }

    #[test]
    fn the_manifest_path_holds_the_films_id_in_hex() {
        let film = Uuid::parse_str("3f1c2d4e-5a6b-47c8-a9d0-e1f2a3b4c5d6").unwrap();
        assert_eq!(UrlSigner::manifest_path(film), PATH);
    }

    #[test]
    fn without_a_configured_secret_each_start_gets_its_own_random_one() {
        let settings = StreamSettings { url_ttl: Duration::from_secs(600), signing_secret: None };
        let (a, b) = (UrlSigner::from_settings(&settings), UrlSigner::from_settings(&settings));
        assert_eq!(a.secret.expose_secret().len(), 43, "256 bits in base64url");
        assert_ne!(a.secret.expose_secret(), b.secret.expose_secret());
        assert_ne!(a.sign_at(PATH, at(0)).url, b.sign_at(PATH, at(0)).url);
    }

    #[test]
    fn the_stream_url_lifetime_is_ten_minutes_by_default_and_a_minute_to_a_day() {
        assert_eq!(with(&[]).unwrap().url_ttl, Duration::from_secs(600));
        assert_eq!(with(&[("MOVIES_STREAM_URL_TTL_SECONDS", "60")]).unwrap().url_ttl, Duration::from_secs(60));
        assert_eq!(with(&[("MOVIES_STREAM_URL_TTL_SECONDS", "86400")]).unwrap().url_ttl, Duration::from_secs(86_400));
        for bad in ["59", "0", "86401", "-1", "ten", "1e3", "18446744073709551616"] {
            let error = with(&[("MOVIES_STREAM_URL_TTL_SECONDS", bad)]).unwrap_err().to_string();
            assert!(error.starts_with("MOVIES_STREAM_URL_TTL_SECONDS: "), "{bad:?}: {error}");
            assert!(!error.contains('\n'), "one line: {error}");
        }
    }

    #[test]
    fn the_stream_signing_secret_is_optional_but_long_and_plain_when_set() {
        assert!(with(&[]).unwrap().signing_secret.is_none());
        assert!(with(&[("MOVIES_STREAM_SIGNING_SECRET", "  ")]).unwrap().signing_secret.is_none(), "blank is unset");
        let hex = "0123456789abcdef0123456789abcdef";
        let base64 = "q83vEjRWeJA+/w==q83vEjRWeJA-_.Zm9v";
        for good in [hex, base64] {
            let secret = with(&[("MOVIES_STREAM_SIGNING_SECRET", good)]).unwrap().signing_secret.unwrap();
            assert_eq!(secret.expose_secret(), good);
        }
        let short = "0123456789abcdef0123456789abcde"; // 31
        let nginx_would_read_otherwise =
            ["0123456789abcdef0123456789abcdef$x", "0123456789abcdef\"0123456789abcdef", "0123456789abcdef 0123456789abcdef"];
        for bad in std::iter::once(short).chain(nginx_would_read_otherwise) {
            let error = with(&[("MOVIES_STREAM_SIGNING_SECRET", bad)]).unwrap_err().to_string();
            assert!(error.starts_with("MOVIES_STREAM_SIGNING_SECRET: "), "{bad:?}: {error}");
            assert!(!error.contains("0123456789abcde") && !error.contains(bad), "the value is never echoed: {error}");
        }
    }

    /// The settings read through the service's own (`Settings::from_lookup` names the variable).
    fn with(vars: &[(&str, &str)]) -> Result<StreamSettings, ConfigError> {
        crate::config::Settings::from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())).map(|s| s.stream)
    }

    #[test]
    fn the_secret_stays_out_of_debug_output() {
        let debug = format!("{:?}", signer(600));
        assert!(!debug.contains(SECRET), "{debug}");
    }
}
