//! Access tokens: EdDSA-signed JWTs that other services verify with the JWKS alone.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::KeyRing;
use crate::config::TokenSettings;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: Uuid,
    pub sid: Uuid,
    pub jti: Uuid,
    pub iat: i64,
    pub exp: i64,
    pub roles: Vec<String>,
    /// The highest age class (0, 6, 12, 16, 18) the user may watch; absent when the
    /// birth date is unknown. Recomputed at each refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_class: Option<u8>,
}

/// Who an access token is issued to: what the token states about the user.
pub struct Subject {
    pub user_id: Uuid,
    pub roles: Vec<String>,
    pub birth_date: Option<chrono::NaiveDate>,
}

#[derive(Clone)]
pub struct AccessTokens {
    keys: Arc<KeyRing>,
    issuer: String,
    audience: String,
    ttl: Duration,
    validation: Validation,
}

pub struct IssuedAccess {
    pub token: String,
    pub claims: AccessClaims,
}

impl AccessTokens {
    pub fn new(keys: Arc<KeyRing>, settings: &TokenSettings) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 0;
        // Refused from the second of `exp` on, as RFC 7519 §4.1.4 has it (jsonwebtoken's
        // own check is `exp < now`); auth-client's validation does the same.
        validation.reject_tokens_expiring_in_less_than = 1;
        // None of ours carries `nbf`; one that does is held to it (RFC 7519 §4.1.5).
        validation.validate_nbf = true;
        Self { keys, issuer: settings.issuer.clone(), audience: settings.audience.clone(), ttl: settings.access_ttl, validation }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    pub fn issue(&self, subject: Subject, session_id: Uuid) -> anyhow::Result<IssuedAccess> {
        let now = Utc::now().timestamp();
        let age_class = subject.birth_date.map(|birth| crate::domain::profile::age_class(birth, Utc::now().date_naive()));
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: subject.user_id,
            sid: session_id,
            jti: Uuid::new_v4(),
            iat: now,
            exp: now + self.ttl.as_secs() as i64,
            roles: subject.roles,
            age_class,
        };
        let (kid, key) = self.keys.signing();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        let token = jsonwebtoken::encode(&header, &claims, key)?;
        Ok(IssuedAccess { token, claims })
    }

    /// Checks the signature (EdDSA only, a published `kid` required, no `crit`), issuer,
    /// audience and expiry. Revocation is checked separately.
    pub fn verify(&self, token: &str) -> Option<AccessClaims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        // Critical extensions are refused when not understood (RFC 7515 §4.1.11): ours
        // use none.
        if header.alg != Algorithm::EdDSA || header.crit.is_some() {
            return None;
        }
        let key = self.keys.verifying(header.kid.as_deref()?)?;
        jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation).ok().map(|data| data.claims)
    }
}
