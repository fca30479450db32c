//! The wire format of Auth's `POST /api/v1/auth/introspect` (RFC 7662), as committed
//! in `contracts/auth.openapi.json`; `tests/contract.rs` checks these types against it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Serialize)]
pub struct IntrospectionRequest<'a> {
    pub token: &'a str,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct IntrospectionResponse {
    pub active: bool,
    #[serde(default)]
    pub sub: Option<Uuid>,
    #[serde(default)]
    pub sid: Option<Uuid>,
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// The user's age class now, from the birth date Auth holds now: `Some(None)` when
    /// it knows none (`null`), `None` when the answer does not say (an Auth from before
    /// the field), in which case the token's claim stands.
    #[serde(default, deserialize_with = "present")]
    pub age_class: Option<Option<u8>>,
    #[serde(default)]
    pub exp: Option<i64>,
}

/// A field that is present, `null` included: `Some` of its value, where an absent one
/// is `None` (`#[serde(default)]`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}
