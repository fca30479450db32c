//! For the fuzz targets in `fuzz/` only: the local half of
//! [`AuthClient::authenticate`](crate::AuthClient::authenticate) (the bearer header,
//! the JWT header and `kid`, the key lookup, the signature and claims) without the
//! network, through the very functions it calls. Not a stable API.

use axum::http::HeaderValue;
use jsonwebtoken::{Validation, jwk::JwkSet};

use crate::{
    User,
    client::{decode_claims, eddsa_kid, validation},
    keys::KeyCache,
};

/// The token of an `Authorization` value, as the [`Viewer`](crate::Viewer) extractor reads it.
pub fn bearer_token(value: &HeaderValue) -> Option<&str> {
    crate::viewer::bearer_token(value)
}

/// A key cache loaded from a JWKS, as the background refresh loads it.
pub struct LocalVerifier {
    keys: KeyCache,
    validation: Validation,
}

impl LocalVerifier {
    pub fn new(jwks: &JwkSet, issuer: &str, audience: &str) -> Self {
        let keys = KeyCache::default();
        keys.replace(jwks, std::time::SystemTime::now());
        Self { keys, validation: validation(issuer, audience) }
    }

    /// What `authenticate` concludes before asking Auth about revocation: the user
    /// with the token's roles, or `None` where it answers `Invalid` (an unknown `kid`
    /// included: here the key set is final).
    pub fn verify(&self, token: &str) -> Option<User> {
        let kid = eddsa_kid(token)?;
        let key = self.keys.get(&kid)?;
        let claims = decode_claims(token, &key, &self.validation)?;
        Some(claims.user())
    }
}
