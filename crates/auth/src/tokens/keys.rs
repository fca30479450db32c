//! Signing keys and the public JWKS.
//!
//! One Ed25519 key signs; any number of older public keys stay published and accepted
//! so tokens signed before a rotation remain valid until they expire. Each key's `kid`
//! is its RFC 7638 thumbprint, so it is stable and needs no bookkeeping.

use std::{collections::HashMap, path::Path};

use anyhow::Context;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{
    SigningKey, VerifyingKey,
    pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, spki::der::pem::LineEnding},
};
use jsonwebtoken::{
    DecodingKey, EncodingKey,
    jwk::{
        AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
        ThumbprintHash,
    },
};

use crate::config::TokenSettings;

pub struct KeyRing {
    signing_kid: String,
    signing_key: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
    jwks: JwkSet,
    /// Keys other secrets from the signing key: every instance holding the same signing
    /// key derives the same ones, with no setting of their own.
    derivation_key: [u8; 32],
}

impl KeyRing {
    /// Loads the configured signing key (or the development key, created on first
    /// use) and the extra public keys.
    pub fn load(settings: &TokenSettings) -> anyhow::Result<Self> {
        // Each error names the variable that points at the file.
        let signing = match &settings.signing_key_file {
            Some(path) => {
                warn_if_world_readable(path);
                read_signing_key(path).context("AUTH_JWT_PRIVATE_KEY_FILE")?
            }
            None => dev_signing_key(&settings.dev_key_file).context("AUTH_JWT_DEV_KEY_FILE")?,
        };
        let mut extra = Vec::new();
        for path in &settings.extra_public_key_files {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading public key {}", path.display()))
                .context("AUTH_JWT_EXTRA_PUBLIC_KEY_FILES")?;
            let key = VerifyingKey::from_public_key_pem(&pem)
                .map_err(|e| anyhow::anyhow!("{}: not an Ed25519 public key PEM: {e}", path.display()))
                .context("AUTH_JWT_EXTRA_PUBLIC_KEY_FILES")?;
            extra.push(key);
        }
        Self::from_keys(&signing, &extra)
    }

    pub fn from_keys(signing: &SigningKey, extra_public: &[VerifyingKey]) -> anyhow::Result<Self> {
        let der = signing.to_pkcs8_der().map_err(|e| anyhow::anyhow!("encoding signing key: {e}"))?;
        let signing_key = EncodingKey::from_ed_der(der.as_bytes());
        let mut verifying = HashMap::new();
        let mut keys = Vec::new();
        let mut signing_kid = String::new();
        for (i, public) in std::iter::once(signing.verifying_key()).chain(extra_public.iter().copied()).enumerate() {
            let mut jwk = public_jwk(&public);
            let kid = jwk.thumbprint(ThumbprintHash::SHA256)?;
            jwk.common.key_id = Some(kid.clone());
            if i == 0 {
                signing_kid = kid.clone();
            }
            if verifying.insert(kid, DecodingKey::from_ed_components(&URL_SAFE_NO_PAD.encode(public.as_bytes()))?).is_none() {
                keys.push(jwk);
            }
        }
        let derivation_key = hmac_sha256(&signing.to_bytes(), b"cinema-auth: derived secrets");
        Ok(Self { signing_kid, signing_key, verifying, jwks: JwkSet { keys }, derivation_key })
    }

    /// A secret for `purpose`, derived from the signing key (HMAC-SHA256 as a PRF): it
    /// tells nothing of the signing key, differs per purpose, and changes when the
    /// signing key is rotated.
    pub fn derived_secret(&self, purpose: &str) -> [u8; 32] {
        hmac_sha256(&self.derivation_key, purpose.as_bytes())
    }

    pub fn signing(&self) -> (&str, &EncodingKey) {
        (&self.signing_kid, &self.signing_key)
    }

    pub fn verifying(&self, kid: &str) -> Option<&DecodingKey> {
        self.verifying.get(kid)
    }

    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }
}

pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn public_jwk(key: &VerifyingKey) -> Jwk {
    Jwk {
        common: CommonParameters { public_key_use: Some(PublicKeyUse::Signature), key_algorithm: Some(KeyAlgorithm::EdDSA), ..Default::default() },
        algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x: URL_SAFE_NO_PAD.encode(key.as_bytes()),
        }),
    }
}

/// A signing key every user of the host can read lets any of them sign tokens, an
/// admin's included. Warned, not refused: some platforms mount secrets world-readable
/// by default (Kubernetes' 0644) inside a container that holds one user.
fn warn_if_world_readable(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o004 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "AUTH_JWT_PRIVATE_KEY_FILE is readable by every user of the host, who could sign tokens with it: \
                 give it to the service's group (chgrp 65532, chmod 0640) or user (0400)"
            );
        }
    }
}

fn read_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    let pem = std::fs::read_to_string(path).with_context(|| format!("reading signing key {}", path.display()))?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| anyhow::anyhow!("{}: not an Ed25519 PKCS#8 PEM private key: {e}", path.display()))
}

/// The development key: generated once into a git-ignored file with owner-only
/// permissions, then reused so tokens survive restarts.
fn dev_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    if path.exists() {
        return read_signing_key(path);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| anyhow::anyhow!("encoding development key: {e}"))?;
    if !publish_private(path, pem.as_bytes())? {
        // Another instance starting at the same moment published its key first: sign
        // with that one, or the two would publish and accept different keys.
        return read_signing_key(path);
    }
    tracing::warn!(path = %path.display(), "generated a development signing key; set AUTH_JWT_PRIVATE_KEY_FILE in production");
    Ok(key)
}

/// Writes `contents` to `path` unless it exists, readable by the owner only. The file
/// appears whole or not at all: written under a temporary name, then hard-linked into
/// place, which fails if another process got there first. False in that case.
fn publish_private(path: &Path, contents: &[u8]) -> anyhow::Result<bool> {
    use std::io::Write;
    let temporary = path.with_extension(format!("tmp-{:016x}", rand::random::<u64>()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temporary).and_then(|mut file| {
        file.write_all(contents)?;
        file.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&temporary, path));
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("writing {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_publishes_signing_and_extra_keys_with_thumbprint_kids() {
        let current = SigningKey::generate(&mut rand::rngs::OsRng);
        let previous = SigningKey::generate(&mut rand::rngs::OsRng);
        let ring = KeyRing::from_keys(&current, &[previous.verifying_key()]).unwrap();
        let json = serde_json::to_value(ring.jwks()).unwrap();
        let keys = json["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0]["kty"], "OKP");
        assert_eq!(keys[0]["crv"], "Ed25519");
        assert_eq!(keys[0]["alg"], "EdDSA");
        assert_eq!(keys[0]["use"], "sig");
        assert_eq!(keys[0]["kid"], ring.signing().0);
        assert!(keys.iter().all(|k| k.get("d").is_none()), "private part leaked: {json}");
        assert_ne!(keys[0]["kid"], keys[1]["kid"]);
    }

    #[test]
    fn derived_secrets_follow_the_signing_key_and_the_purpose() {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let ring = KeyRing::from_keys(&key, &[]).unwrap();
        let again = KeyRing::from_keys(&key, &[]).unwrap();
        assert_eq!(ring.derived_secret("a"), again.derived_secret("a"), "every instance with the key agrees");
        assert_ne!(ring.derived_secret("a"), ring.derived_secret("b"));
        let other = KeyRing::from_keys(&SigningKey::generate(&mut rand::rngs::OsRng), &[]).unwrap();
        assert_ne!(ring.derived_secret("a"), other.derived_secret("a"));
        assert_ne!(ring.derived_secret("a"), key.to_bytes());
        // RFC 4231, test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn dev_key_is_generated_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("auth-devkey-{}", uuid::Uuid::new_v4()));
        let path = dir.join("k.pem");
        let first = dev_signing_key(&path).unwrap();
        let second = dev_signing_key(&path).unwrap();
        assert_eq!(first.to_bytes(), second.to_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A configured key any user can read is named in a warning; one private to its
    /// owner and group is not.
    #[cfg(unix)]
    #[test]
    fn a_world_readable_signing_key_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("auth-key-{}", uuid::Uuid::new_v4()));
        let path = dir.join("k.pem");
        dev_signing_key(&path).unwrap();
        let settings =
            |path: &Path| TokenSettings { signing_key_file: Some(path.to_owned()), ..crate::config::Settings::from_lookup(|_| None).unwrap().tokens };
        for (mode, warned) in [(0o644, true), (0o640, false), (0o400, false)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let (logs, _guard) = platform::testing::CapturedLogs::capture(tracing::Level::WARN);
            KeyRing::load(&settings(&path)).unwrap();
            assert_eq!(logs.text().contains("readable by every user"), warned, "mode {mode:o}: {}", logs.text());
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Instances started at once agree on one key: whoever publishes the file first
    /// wins, and the others sign with the key they read back.
    #[test]
    fn instances_generating_the_dev_key_at_once_all_use_the_published_one() {
        let dir = std::env::temp_dir().join(format!("auth-devkey-{}", uuid::Uuid::new_v4()));
        let path = dir.join("k.pem");
        let start = std::sync::Barrier::new(8);
        let keys: Vec<[u8; 32]> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        start.wait();
                        dev_signing_key(&path).unwrap().to_bytes()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let published = read_signing_key(&path).unwrap().to_bytes();
        assert!(keys.iter().all(|k| *k == published));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temporary file is left");
        // Publishing again keeps the first key.
        assert!(!publish_private(&path, b"another key").unwrap());
        assert_eq!(read_signing_key(&path).unwrap().to_bytes(), published);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
