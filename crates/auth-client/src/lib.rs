//! The integration library between Auth and the cinema's other services.
//!
//! It turns a request into a [`Viewer`]: anonymous, or a user with id, roles and age
//! class. Signatures and expiry are checked locally with the keys of Auth's JWKS, held
//! in memory through any Auth outage. Revocation is checked through Auth's
//! introspection endpoint, with a short-lived cache, a timeout and a circuit breaker:
//! when Auth fails, locally valid tokens are honoured (the response says so in
//! `X-Auth-Degraded: 1`) and nothing waits on Auth. See `docs/degradation.md`.

mod breaker;
mod client;
mod config;
#[doc(hidden)]
pub mod fuzzing;
mod introspection;
mod keys;
mod viewer;

pub use breaker::BreakerState;
pub use client::{AuthClient, Authentication, CREDENTIAL_CHECK_TOKEN, CredentialCheck, POOL_IDLE_TIMEOUT, SignedToken, register_metrics};
pub use config::{AuthClientConfig, InvalidConfig};
pub use introspection::{IntrospectionRequest, IntrospectionResponse};
pub use viewer::{DEGRADED_HEADER, User, Viewer, ViewerRejection, bearer_token, degraded_layer};
