//! Tokens Auth issues: signed access JWTs, their keys (JWKS), and opaque refresh tokens.

pub mod access;
pub mod keys;
pub mod refresh;

pub use access::{AccessClaims, AccessTokens};
pub use keys::{KeyRing, hmac_sha256};
