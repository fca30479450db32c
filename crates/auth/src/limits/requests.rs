//! Which requests count against which policy.
//!
//! Every request except the probes (and metrics) counts against the general API
//! limit: per user when it carries a valid access token, else per client address. A
//! token this instance has already found revoked counts by address
//! ([`revoked_tokens::RevokedTokens`], filled by the handler's extractor, which checks
//! revocation: this layer verifies signature and expiry only): whoever holds a leaked
//! token cannot spend its owner's quota after a sign-out.
//! Some routes also count against their own per-address policy: sign-in (and the
//! social sign-in callbacks), signup, refresh, the password change, and the start of a
//! social sign-in and the exchange of its login code. Token
//! introspection, which other services call on behalf of many viewers, counts per
//! calling service (its client id) against its own, larger policy instead, once the
//! service's credentials check out; without valid credentials it counts by address
//! like any anonymous request, so guessing a client secret is as slow as anything else.

use std::sync::Arc;

use axum::{
    extract::MatchedPath,
    http::{Method, request::Parts},
    response::Response,
};
use ratelimit::{Check, ClientIp, RateLimitLayer, Verdict};

use super::{RateLimits, ip_subject};
use crate::{
    http::extract::bearer_token,
    introspection_clients::{ClientCheck, IntrospectionClients},
    tokens::AccessClaims,
};

/// The claims of the request's access token, verified (signature and expiry, not
/// revocation) by the rate-limit layer, so the handler's extractor does not verify
/// the signature a second time.
#[derive(Debug, Clone)]
pub struct VerifiedToken(pub AccessClaims);

/// The introspection caller's credentials, checked by the rate-limit layer, so the
/// handler's extractor does not check them a second time.
#[derive(Debug, Clone)]
pub struct CheckedClient(pub ClientCheck);

/// The introspection route, whose callers are services with client credentials.
pub const INTROSPECTION_ROUTE: &str = "/api/v1/auth/introspect";

/// The route's own policy, beyond the general API limit.
fn route_policy<'a>(limits: &'a RateLimits, method: &Method, route: &str) -> Option<&'a Arc<ratelimit::Policy>> {
    let p = &limits.policies;
    match (method.as_str(), route) {
        ("POST", "/api/v1/auth/login") => Some(&p.login_ip),
        ("GET" | "POST", r) if r.starts_with("/api/v1/oauth/") && r.ends_with("/callback") => Some(&p.login_ip),
        ("POST", "/api/v1/auth/signup") => Some(&p.signup),
        ("POST", "/api/v1/auth/refresh") => Some(&p.refresh),
        ("PUT", "/api/v1/users/me/password") => Some(&p.password_change),
        // Needs no login and stores a flow in Redis for its lifetime: without a policy
        // of its own, anonymous addresses could fill Redis at the general rate.
        // Starting a link stores the same flow: signed in, one account could otherwise
        // keep tens of thousands alive at the per-user rate.
        ("GET", "/api/v1/oauth/{provider}/authorize") | ("POST", "/api/v1/users/me/social/{provider}") => Some(&p.oauth_authorize),
        ("POST", "/api/v1/oauth/exchange") => Some(&p.oauth_exchange),
        _ => None,
    }
}

/// What a request counts against. Needs the [`ClientIp`] extension (see `ratelimit::ClientIpLayer`).
pub fn checks(limits: &RateLimits, tokens: &crate::tokens::AccessTokens, clients: &IntrospectionClients, parts: &mut Parts) -> Vec<Check> {
    if !limits.enabled {
        return Vec::new();
    }
    // Unmatched paths (404s) count like any other request.
    let route = parts.extensions.get::<MatchedPath>().map(|m| m.as_str().to_owned());
    if route.as_deref().is_some_and(platform::http::is_operational) {
        return Vec::new();
    }
    let ip = ip_subject(ClientIp::of(&parts.extensions));
    if parts.method == Method::POST && route.as_deref() == Some(INTROSPECTION_ROUTE) {
        let check = clients.check(&parts.headers);
        let counted = match &check {
            ClientCheck::Authenticated(id) => Check::new(&limits.policies.introspect_client, format_args!("client:{id}")),
            ClientCheck::Refused(_) => Check::new(&limits.policies.api_anonymous, &ip),
        };
        parts.extensions.insert(CheckedClient(check));
        return vec![counted];
    }
    let claims = bearer_token(parts).ok().flatten().and_then(|token| tokens.verify(token));
    let mut checks = Vec::with_capacity(2);
    match claims {
        Some(claims) if !limits.revoked_tokens.contains(&claims.jti) => {
            checks.push(Check::new(&limits.policies.api_user, format_args!("user:{}", claims.sub.simple())));
            parts.extensions.insert(VerifiedToken(claims));
        }
        // A missing, bad or known revoked token counts by address; the handler answers 401.
        _ => checks.push(Check::new(&limits.policies.api_anonymous, &ip)),
    }
    if let Some(policy) = route.as_deref().and_then(|r| route_policy(limits, &parts.method, r)) {
        checks.push(Check::new(policy, &ip));
    }
    checks
}

/// The layer for Auth's router.
///
/// The closure holds the `Arc`-backed state: the router clones its services, and with
/// them this closure, for every request.
pub fn layer(state: crate::state::AppState) -> RateLimitLayer<impl Fn(&mut Parts) -> Vec<Check> + Clone + Send + Sync + 'static> {
    let limiter = state.limits.limiter.clone();
    RateLimitLayer::new(limiter, move |parts: &mut Parts| checks(&state.limits, &state.tokens, &state.introspection_clients, parts))
        .on_refused(refusal)
}

fn refusal(_: &Verdict) -> Response {
    crate::error::problem_response(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "Too many requests",
        Some("Too many requests; retry after the number of seconds in `Retry-After`.".into()),
        Vec::new(),
    )
}

/// Documents the 429 answer on every limited operation of the OpenAPI document.
pub const TOO_MANY_REQUESTS_DOC: platform::openapi::TooManyRequests = platform::openapi::TooManyRequests {
    description: "Too many requests: a rate limit refused it (`rate_limited`, or `too_many_sign_in_attempts` on sign-in and on a password change's check of the current password). See docs/rate-limiting.md.",
    unlimited: platform::http::is_operational,
};
