//! The sign-in rules against password guessing.
//!
//! Each attempt is counted before its password is checked, against the account from
//! this client address (`login-account-ip`, 5 per 15 minutes by default) and against
//! the account from everywhere (`login-account`, 50 per hour), both in one
//! all-or-nothing check. A success takes its attempt back from the account's count
//! and clears the account's count from that address, so what is counted is failures.
//! Counting first (rather than after a failure) keeps concurrent guesses from slipping
//! past the limit between the check and the count.
//!
//! A refused attempt is not checked at all, so it tells nothing about the password.
//! The attacker's address is throttled; the owner, signing in from another address,
//! is not, unless an attack spread over many addresses exhausts the account-wide
//! limit, which then lets one attempt through per 72 seconds (docs/rate-limiting.md).
//! The per-address limit of the route (`login-ip`, 30 per minute) is the layer's.
//!
//! A password change's check of the current password is counted by the same rules:
//! it is a guess at the password too.

use std::{net::IpAddr, time::Duration};

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use ratelimit::{Backend, Check, Status, Verdict};
use sqlx::PgPool;
use uuid::Uuid;

use super::{RateLimits, ip_subject};
use crate::{
    error::{ApiError, problem_response},
    store::history,
};

/// Whose attempts are counted: the account, or, when no account matches, the
/// identifier typed (keyed-hashed: keys in Redis carry no email addresses).
pub struct AccountKey {
    key: String,
    /// The account, when the identifier matched one.
    user_id: Option<Uuid>,
}

impl AccountKey {
    pub fn account(id: Uuid) -> Self {
        Self { key: format!("acct:{}", id.simple()), user_id: Some(id) }
    }

    /// For an identifier that matches no account; `identifier` is already normalised.
    ///
    /// An HMAC under a secret derived from the signing key, not a plain hash: anyone
    /// able to read Redis could otherwise test a list of addresses against the keys and
    /// learn who tried to sign in with them. Rotating the signing key starts these
    /// counts over, which only concerns identifiers of no account.
    pub fn unknown(identifier: &str, secret: &IdentifierSecret) -> Self {
        let mac = crate::tokens::hmac_sha256(&secret.0, identifier.to_lowercase().as_bytes());
        let hex: String = mac[..16].iter().map(|b| format!("{b:02x}")).collect();
        Self { key: format!("acct:~{hex}"), user_id: None }
    }
}

/// The key of [`AccountKey::unknown`]'s HMAC.
pub struct IdentifierSecret(pub(super) [u8; 32]);

impl IdentifierSecret {
    /// What the signing keys derive it under (`KeyRing::derived_secret`).
    pub const PURPOSE: &str = "rate-limit keys of unknown sign-in identifiers";

    pub fn new(secret: [u8; 32]) -> Self {
        Self(secret)
    }
}

impl std::fmt::Debug for IdentifierSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentifierSecret(..)")
    }
}

/// An attempt let through; unless it succeeds, it stays counted.
#[must_use = "call `succeeded` when the password was right"]
pub struct Admitted {
    per_ip: Option<Check>,
    per_account: Option<Check>,
    verdict: Verdict,
}

impl RateLimits {
    /// Counts a sign-in attempt; refuses it when the account is locked from this
    /// address or from everywhere.
    ///
    /// While the limits' Redis is down or slow, each instance counts on its own, so
    /// with N instances an account took N times its hourly limit of guesses. Then an
    /// attempt is also refused when the sign-in history, which every instance writes,
    /// already holds `login-account`'s burst of wrong passwords for the account within
    /// the time that burst takes to refill (docs/rate-limiting.md, "When Redis is down
    /// or slow", for what still passes). One read on the index of the account's
    /// history, only while the limiter is on its in-process store; an identifier of no
    /// account makes the same read, for nothing, so that the two cost the same.
    pub async fn admit_sign_in(&self, db: &PgPool, account: &AccountKey, ip: Option<IpAddr>) -> Result<Admitted, Verdict> {
        if !self.enabled {
            return Ok(Admitted { per_ip: None, per_account: None, verdict: Verdict::default() });
        }
        let per_ip = Check::new(&self.policies.login_account_ip, &account.key).within(ip_subject(ip));
        let per_account = Check::new(&self.policies.login_account, &account.key);
        let checks = [per_ip, per_account];
        let verdict = reported(self.limiter.acquire(&checks).await, &self.policies.login_account_ip);
        if !verdict.allowed() {
            return Err(verdict);
        }
        if self.limiter.backend() == Backend::Local
            && let Some(refused) = self.beyond_recorded_failures(db, account).await
        {
            // Not checked, so not counted: as a refusal by Redis charges nothing.
            self.limiter.refund(&checks).await;
            return Err(refused);
        }
        let [per_ip, per_account] = checks;
        Ok(Admitted { per_ip: Some(per_ip), per_account: Some(per_account), verdict })
    }

    /// The account-wide refusal, when the sign-in history holds `login-account`'s burst
    /// of wrong passwords within the time the burst takes to refill; it may retry once
    /// the oldest of them leaves that time. A failed read refuses nothing: the
    /// in-process limits still hold, and the sign-in needs PostgreSQL for what follows
    /// anyway.
    async fn beyond_recorded_failures(&self, db: &PgPool, account: &AccountKey) -> Option<Verdict> {
        let policy = &self.policies.login_account;
        let (burst, refill_seconds) = policy.quota();
        // The nil id holds no history: an unknown identifier is read for, and never refused.
        let user_id = account.user_id.unwrap_or(Uuid::nil());
        let wait = match history::until_fewer_wrong_passwords(db, user_id, Duration::from_secs(refill_seconds), burst).await {
            Ok(wait) => wait?,
            Err(e) => {
                tracing::warn!(error = %format_args!("{e:#}"), "could not count the account's recorded sign-in failures; the in-process limits alone apply");
                return None;
            }
        };
        let wait = wait.max(Duration::from_secs(1));
        Some(Verdict { statuses: vec![Status { policy: policy.clone(), allowed: false, remaining: 0, reset: wait, retry_after: wait }] })
    }
}

/// What the answer may tell of the account's counts: this address's, and any policy
/// that refused. The account-wide count of an allowing policy would tell anyone who
/// tries once how many attempts the owner and everyone else made lately, and whether
/// a login and an email are one account's (they share the count).
fn reported(mut verdict: Verdict, per_ip: &std::sync::Arc<ratelimit::Policy>) -> Verdict {
    verdict.statuses.retain(|s| !s.allowed || std::sync::Arc::ptr_eq(&s.policy, per_ip));
    verdict
}

impl Admitted {
    /// The password was wrong: the answer reports how many attempts are left.
    pub fn failed(self, error: ApiError) -> SignInError {
        SignInError::Failed(error, self.verdict)
    }

    /// The password was right: the address starts over, and the account-wide count
    /// gets this attempt back. The two touch different keys, so they go out together
    /// on the shared Redis connection, which Redis then reads and answers in one go:
    /// its read and write events per sign-in fell from 4 to 3 (INFO stats).
    pub async fn succeeded(self, limits: &RateLimits) {
        if let (Some(per_ip), Some(per_account)) = (self.per_ip, self.per_account) {
            let (per_ip, per_account) = ([per_ip], [per_account]);
            tokio::join!(limits.limiter.reset(&per_ip), limits.limiter.refund(&per_account));
        }
    }
}

/// How a sign-in can fail: any API error, or too many attempts.
#[derive(Debug)]
pub enum SignInError {
    Api(ApiError),
    /// A counted attempt that failed: the error, with the account policies' `RateLimit` headers.
    Failed(ApiError, Verdict),
    /// 429 `too_many_sign_in_attempts`, with the account policies' `RateLimit` headers
    /// and `Retry-After`.
    TooManyAttempts(Verdict),
}

impl From<ApiError> for SignInError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<anyhow::Error> for SignInError {
    fn from(e: anyhow::Error) -> Self {
        Self::Api(e.into())
    }
}

impl From<sqlx::Error> for SignInError {
    fn from(e: sqlx::Error) -> Self {
        Self::Api(e.into())
    }
}

impl IntoResponse for SignInError {
    fn into_response(self) -> Response {
        match self {
            Self::Api(e) => e.into_response(),
            Self::Failed(e, verdict) => {
                let mut response = e.into_response();
                ratelimit::headers::apply(response.headers_mut(), &verdict);
                response
            }
            Self::TooManyAttempts(verdict) => {
                let mut response = problem_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_sign_in_attempts",
                    "Too many sign-in attempts",
                    Some("Too many failed sign-ins for this account; retry after the number of seconds in `Retry-After`.".into()),
                    Vec::new(),
                );
                ratelimit::headers::apply(response.headers_mut(), &verdict);
                response
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_identifiers_are_hashed_case_insensitively_under_the_secret() {
        let secret = IdentifierSecret::new([7; 32]);
        let a = AccountKey::unknown("Viewer_42", &secret);
        assert_eq!(a.key, AccountKey::unknown("viewer_42", &secret).key);
        assert!(a.key.starts_with("acct:~") && a.key.len() == 6 + 32 && !a.key.contains("viewer"));
        // Not computable from the identifier alone: another secret, another key, and
        // not the plain SHA-256 these keys once were.
        assert_ne!(a.key, AccountKey::unknown("viewer_42", &IdentifierSecret::new([8; 32])).key);
        use sha2::Digest as _;
        let plain: String = sha2::Sha256::digest(b"viewer_42")[..16].iter().map(|b| format!("{b:02x}")).collect();
        assert!(!a.key.ends_with(&plain));
        assert_eq!(format!("{secret:?}"), "IdentifierSecret(..)");
    }
}
