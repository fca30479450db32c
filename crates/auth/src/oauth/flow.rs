//! Flows in progress and one-time login codes, in Redis.
//!
//! A flow is stored under the SHA-256 of its `state` for `OAUTH_STATE_TTL_SECONDS` and
//! taken with `GETDEL`, so a state works once, only before it expires, and only for
//! the provider, browser and (when linking) user it was issued for. The login code a
//! front end receives lives 60 seconds and is taken the same way.

use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Provider, pkce};

/// How long a front end has to exchange its login code.
pub const LOGIN_CODE_TTL: Duration = Duration::from_secs(60);

/// Everything the callback needs to finish a flow, kept server-side.
#[derive(Debug, Serialize, Deserialize)]
pub struct FlowState {
    pub provider: Provider,
    pub code_verifier: String,
    /// OpenID Connect nonce: the ID token must carry it back.
    pub nonce: String,
    /// SHA-256 of the browser-binding cookie set when the flow started.
    browser: String,
    /// Where to send the browser at the end, from the allow-list.
    pub frontend_redirect: Option<String>,
    /// Set when a signed-in user links an identity to their account.
    pub link: Option<LinkTarget>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct LinkTarget {
    pub user_id: Uuid,
    /// The session that asked; the link is refused if it has ended meanwhile.
    pub session_id: Uuid,
}

impl FlowState {
    pub fn new(provider: Provider, browser_cookie: &str, frontend_redirect: Option<String>, link: Option<LinkTarget>) -> Self {
        Self {
            provider,
            code_verifier: pkce::random_token(),
            nonce: pkce::random_token(),
            browser: pkce::digest(browser_cookie),
            frontend_redirect,
            link,
        }
    }

    pub fn code_challenge(&self) -> String {
        pkce::s256_challenge(&self.code_verifier)
    }

    /// Whether the callback comes from the browser that started the flow.
    pub fn is_same_browser(&self, browser_cookie: Option<&str>) -> bool {
        browser_cookie.is_some_and(|c| constant_time_eq(pkce::digest(c).as_bytes(), self.browser.as_bytes()))
    }
}

/// What a login code stands for: a sign-in that is decided, whose session opens when
/// the front end exchanges the code. No token is ever stored here.
///
/// Bound, like the flow, to the browser that ran it: a code taken from an attacker's
/// own flow and planted in a victim's browser (a link to the front end with it) would
/// otherwise sign the victim in to the attacker's account (login CSRF).
#[derive(Debug, Serialize, Deserialize)]
pub struct LoginGrant {
    pub user_id: Uuid,
    pub provider: Provider,
    /// SHA-256 of the browser-binding cookie of the flow.
    browser: String,
}

impl LoginGrant {
    /// The grant of a finished flow, bound to the flow's browser.
    pub fn new(user_id: Uuid, provider: Provider, flow: &FlowState) -> Self {
        Self { user_id, provider, browser: flow.browser.clone() }
    }

    /// Whether the exchange comes from the browser that ran the flow.
    pub fn is_same_browser(&self, browser_cookie: Option<&str>) -> bool {
        browser_cookie.is_some_and(|c| constant_time_eq(pkce::digest(c).as_bytes(), self.browser.as_bytes()))
    }
}

#[derive(Clone)]
pub struct Flows {
    redis: ConnectionManager,
    prefix: String,
    state_ttl: Duration,
}

impl Flows {
    pub fn new(redis: ConnectionManager, prefix: &str, state_ttl: Duration) -> Self {
        Self { redis, prefix: prefix.to_owned(), state_ttl }
    }

    fn state_key(&self, state: &str) -> String {
        format!("{}:oauth:state:{}", self.prefix, pkce::digest(state))
    }

    fn code_key(&self, code: &str) -> String {
        format!("{}:oauth:code:{}", self.prefix, pkce::digest(code))
    }

    /// Stores a new flow; returns its state.
    pub async fn start(&self, flow: &FlowState) -> redis::RedisResult<String> {
        let state = pkce::random_token();
        self.put(&self.state_key(&state), flow, self.state_ttl).await?;
        Ok(state)
    }

    /// Takes a flow out: a second take of the same state finds nothing.
    pub async fn take(&self, state: &str) -> redis::RedisResult<Option<FlowState>> {
        if state.is_empty() || state.len() > 128 {
            return Ok(None);
        }
        self.take_json(&self.state_key(state)).await
    }

    /// Whether a state is stored and not yet taken or expired.
    pub async fn is_pending(&self, state: &str) -> redis::RedisResult<bool> {
        redis::cmd("EXISTS").arg(self.state_key(state)).query_async(&mut self.redis.clone()).await
    }

    pub async fn issue_login_code(&self, grant: &LoginGrant) -> redis::RedisResult<String> {
        let code = pkce::random_token();
        self.put(&self.code_key(&code), grant, LOGIN_CODE_TTL).await?;
        Ok(code)
    }

    pub async fn take_login_code(&self, code: &str) -> redis::RedisResult<Option<LoginGrant>> {
        if code.is_empty() || code.len() > 128 {
            return Ok(None);
        }
        self.take_json(&self.code_key(code)).await
    }

    async fn put(&self, key: &str, value: &impl Serialize, ttl: Duration) -> redis::RedisResult<()> {
        let json = serde_json::to_string(value).expect("flow values serialise");
        // NX: 256 random bits do not collide, but never overwrite whatever is there.
        let stored: Option<String> =
            redis::cmd("SET").arg(key).arg(json).arg("NX").arg("EX").arg(ttl.as_secs()).query_async(&mut self.redis.clone()).await?;
        if stored.is_none() {
            return Err(redis::RedisError::from((redis::ErrorKind::Client, "flow key already exists")));
        }
        Ok(())
    }

    async fn take_json<T: for<'de> Deserialize<'de>>(&self, key: &str) -> redis::RedisResult<Option<T>> {
        let raw: Option<String> = redis::cmd("GETDEL").arg(key).query_async(&mut self.redis.clone()).await?;
        Ok(raw.and_then(|raw| match serde_json::from_str(&raw) {
            Ok(value) => Some(value),
            Err(e) => {
                tracing::warn!(error = %e, "unreadable flow entry in Redis; treated as unknown");
                None
            }
        }))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_is_bound_to_the_browser_cookie() {
        let flow = FlowState::new(Provider::Google, "cookie-a", None, None);
        assert!(flow.is_same_browser(Some("cookie-a")));
        assert!(!flow.is_same_browser(Some("cookie-b")));
        assert!(!flow.is_same_browser(None));
        assert_ne!(flow.code_verifier, flow.nonce);
    }

    #[test]
    fn a_login_code_is_bound_to_the_browser_of_its_flow() {
        let flow = FlowState::new(Provider::Yandex, "cookie-a", Some("https://front.example/done".into()), None);
        let grant = LoginGrant::new(Uuid::nil(), Provider::Yandex, &flow);
        assert!(grant.is_same_browser(Some("cookie-a")));
        assert!(!grant.is_same_browser(Some("cookie-b")));
        assert!(!grant.is_same_browser(None));
    }
}
