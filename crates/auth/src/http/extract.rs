//! Extractors: JSON bodies with problem+json rejections, the client's address and
//! agent, the authenticated user behind a bearer token, and the service calling
//! introspection.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequest, FromRequestParts},
    http::{header, request::Parts},
    response::{IntoResponse, Response},
};
use platform::credentials::ClientId;
use uuid::Uuid;

use crate::{
    error::ApiError,
    introspection_clients::{ClientCheck, Refusal},
    state::AppState,
    store::{
        CacheCall, Profiles, profiles,
        revocation::Cached,
        sessions,
        users::{self, User},
    },
    tokens::AccessClaims,
};

/// `axum::Json` whose rejections are our problem documents, and which takes a JSON
/// object only: serde would otherwise read an array into a struct's fields in order
/// (`["arrayrole"]` as a role named "arrayrole"), a second syntax no client is meant
/// to use and no contract documents.
pub struct Json<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(Object(value)) = axum::Json::<Object<T>>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

/// Deserializes `T` from a JSON object, refusing any other JSON value.
struct Object<T>(T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = T;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_map(Visitor(std::marker::PhantomData)).map(Object)
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query` whose rejections are our problem documents.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// `axum::extract::Path` whose rejections are our problem documents.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Where a request came from: the client address (the peer's, or the one a trusted
/// proxy reports; see `ratelimit::ClientIpLayer`) and the User-Agent.
pub struct ClientInfo(pub sessions::Client);

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip: Option<IpAddr> =
            ratelimit::ClientIp::of(&parts.extensions).or_else(|| parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()));
        let user_agent = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|ua| ua.chars().take(512).collect());
        Ok(Self(sessions::Client { ip, user_agent }))
    }
}

/// The caller, authenticated by a valid, unrevoked access token.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub claims: AccessClaims,
}

impl AuthUser {
    pub fn id(&self) -> Uuid {
        self.claims.sub
    }

    pub fn session_id(&self) -> Uuid {
        self.claims.sid
    }
}

/// The token of an `Authorization: Bearer` header, if there is one.
pub fn bearer_token(parts: &Parts) -> Result<Option<&str>, ApiError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let value = value.to_str().map_err(|_| ApiError::invalid_token())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(ApiError::invalid_token)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() || token.len() > 4096 {
        return Err(ApiError::invalid_token());
    }
    Ok(Some(token.trim()))
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let claims = verified_claims(parts, state)?;
        if is_revoked(state, &claims).await? {
            return Err(ApiError::invalid_token());
        }
        Ok(Self { claims })
    }
}

/// The claims of the request's bearer token, whose signature, issuer, audience and
/// expiry have been checked (by the rate-limit layer, usually, which keeps them).
fn verified_claims(parts: &Parts, state: &AppState) -> Result<AccessClaims, ApiError> {
    let Some(token) = bearer_token(parts)? else {
        return Err(ApiError::Unauthorized { code: "unauthorized", detail: "Send an access token as `Authorization: Bearer <token>`." });
    };
    match parts.extensions.get::<crate::limits::requests::VerifiedToken>() {
        Some(verified) => Ok(verified.0.clone()),
        None => state.tokens.verify(token).ok_or_else(ApiError::invalid_token),
    }
}

/// Asks the Redis cache first; on a miss, or when Redis is unavailable, asks PostgreSQL.
pub async fn is_revoked(state: &AppState, claims: &AccessClaims) -> Result<bool, ApiError> {
    let cached = tokio::time::timeout(REDIS_CHECK_TIMEOUT, state.revocations.lookup(claims.jti, claims.sid)).await;
    resolve_revocation(state, claims, cached.unwrap_or_else(|_| Err(slow_cache()))).await
}

fn slow_cache() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "revocation cache slow"))
}

/// Whether the token is revoked, given what the Redis cache said about it. A revoked
/// token is remembered, so the rate-limit layer stops counting it against its user.
async fn resolve_revocation(state: &AppState, claims: &AccessClaims, cached: redis::RedisResult<Cached>) -> Result<bool, ApiError> {
    let revoked = revocation(state, claims, cached).await?;
    if revoked {
        state.limits.revoked_tokens.remember(claims.jti, u64::try_from(claims.exp).unwrap_or(0));
    }
    Ok(revoked)
}

async fn revocation(state: &AppState, claims: &AccessClaims, cached: redis::RedisResult<Cached>) -> Result<bool, ApiError> {
    let failures = &state.cache_failures;
    match &cached {
        Ok(_) => failures.succeeded(CacheCall::RevocationRead),
        Err(e) => failures.failed(CacheCall::RevocationRead, e),
    }
    match cached {
        Ok(Cached::Revoked) => Ok(true),
        Ok(Cached::Live) => Ok(false),
        Ok(Cached::Unknown) => {
            let live = sessions::is_live(&state.db, claims.sid).await?;
            let write = if live { state.revocations.remember_live(claims.sid).await } else { state.revocations.revoke(&[claims.sid], None).await };
            match write {
                Ok(()) => failures.succeeded(CacheCall::SessionStateWrite),
                Err(e) => failures.failed(CacheCall::SessionStateWrite, &e),
            }
            Ok(!live)
        }
        Err(_) => Ok(!sessions::is_live(&state.db, claims.sid).await?),
    }
}

/// The signed-in caller's own account, as `GET /users/me` shows it: an [`AuthUser`]
/// whose profile comes from the same Redis round trip as its revocation check when
/// it is cached ([`crate::store::profiles`]), else from PostgreSQL.
pub struct Me(pub User);

impl FromRequestParts<AppState> for Me {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let claims = verified_claims(parts, state)?;
        let lookup = state.revocations.lookup_with(claims.jti, claims.sid, state.profiles.lookup(claims.sub));
        let (revocation, profile) = match tokio::time::timeout(REDIS_CHECK_TIMEOUT, lookup).await {
            Ok(Ok((revocation, profile))) => (Ok(revocation), Some(Profiles::parse(claims.sub, profile))),
            Ok(Err(e)) => (Err(e), None),
            Err(_) => (Err(slow_cache()), None),
        };
        if resolve_revocation(state, &claims, revocation).await? {
            return Err(ApiError::invalid_token());
        }
        let generation = match profile {
            Some(profiles::Cached::Hit(user)) => return Ok(Self(user)),
            Some(profiles::Cached::Miss { generation }) => Some(generation),
            None => None,
        };
        // The account is gone if its row is (its sessions went with it).
        let user = users::get(&state.db, claims.sub).await?.ok_or_else(ApiError::invalid_token)?;
        if let Some(generation) = generation {
            // In the background: the answer does not wait for the cache.
            let (profiles, failures, cached) = (state.profiles.clone(), state.cache_failures.clone(), user.clone());
            tokio::spawn(async move {
                match profiles.fill(&cached, generation).await {
                    Ok(_) => failures.succeeded(CacheCall::ProfileWrite),
                    Err(e) => failures.failed(CacheCall::ProfileWrite, &e),
                }
            });
        }
        Ok(Self(user))
    }
}

/// The service calling token introspection, authenticated by its client credentials
/// (HTTP Basic, RFC 6749 §2.3.1). Anything else is 401 `invalid_client` with a `Basic`
/// challenge: no credentials, malformed ones, an unknown id or a wrong secret alike.
#[derive(Debug, Clone)]
pub struct IntrospectionClient(pub ClientId);

impl FromRequestParts<AppState> for IntrospectionClient {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // The rate-limit layer checked them already, unless limits are off.
        let check = match parts.extensions.get::<crate::limits::requests::CheckedClient>() {
            Some(checked) => checked.0.clone(),
            None => state.introspection_clients.check(&parts.headers),
        };
        match check {
            ClientCheck::Authenticated(id) => Ok(Self(id)),
            ClientCheck::Refused(refusal) => {
                // The id is logged only when it is registered: the log holds no stranger's
                // text, which might be a secret typed in the wrong place.
                let client_id = match &refusal {
                    Refusal::WrongSecret(id) => Some(id.as_str()),
                    _ => None,
                };
                tracing::info!(reason = refusal.as_str(), client_id, "introspection client refused");
                Err(ApiError::InvalidClient)
            }
        }
    }
}

const REDIS_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(100);

/// A permission an admin route requires.
pub trait RequiredPermission {
    const NAME: &'static str;
}

/// Managing roles and who holds them.
pub struct ManageRoles;
impl RequiredPermission for ManageRoles {
    const NAME: &'static str = "roles.manage";
}

/// Looking accounts up for support.
pub struct ReadUsers;
impl RequiredPermission for ReadUsers {
    const NAME: &'static str = "users.read";
}

/// The caller, holding permission `P` now. Permissions are read from the database,
/// not from the token, so taking a role away takes effect at once on admin routes.
pub struct Authorized<P>(pub AuthUser, std::marker::PhantomData<P>);

impl<P: RequiredPermission + Send + Sync> FromRequestParts<AppState> for Authorized<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        let permissions = crate::store::roles::permissions_of(&state.db, user.id()).await?;
        if !permissions.iter().any(|p| p == P::NAME) {
            return Err(ApiError::Forbidden("Your roles do not allow this."));
        }
        Ok(Self(user, std::marker::PhantomData))
    }
}
