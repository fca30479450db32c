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
    /// The user's age class now, from the birth date Auth holds now; absent when it
    /// knows none.
    #[serde(default)]
    pub age_class: Option<u8>,
    #[serde(default)]
    pub exp: Option<i64>,
}
