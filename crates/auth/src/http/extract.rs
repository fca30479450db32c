//! Extractors: JSON bodies with problem+json rejections, the client's address and
//! agent, and the authenticated user behind a bearer token.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequest, FromRequestParts},
    http::{header, request::Parts},
    response::{IntoResponse, Response},
};
use uuid::Uuid;

use crate::{
    error::ApiError,
    state::AppState,
    store::{revocation::Cached, sessions},
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
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(512).collect());
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
        let Some(token) = bearer_token(parts)? else {
            return Err(ApiError::Unauthorized { code: "unauthorized", detail: "Send an access token as `Authorization: Bearer <token>`." });
        };
        // The rate-limit layer has usually verified this very token already.
        let claims = match parts.extensions.get::<crate::limits::requests::VerifiedToken>() {
            Some(verified) => verified.0.clone(),
            None => state.tokens.verify(token).ok_or_else(ApiError::invalid_token)?,
        };
        if is_revoked(state, &claims).await? {
            return Err(ApiError::invalid_token());
        }
        Ok(Self { claims })
    }
}

/// Asks the Redis cache first; on a miss, or when Redis is unavailable, asks PostgreSQL.
pub async fn is_revoked(state: &AppState, claims: &AccessClaims) -> Result<bool, ApiError> {
    let cached = tokio::time::timeout(REDIS_CHECK_TIMEOUT, state.revocations.lookup(claims.jti, claims.sid)).await;
    match cached {
        Ok(Ok(Cached::Revoked)) => Ok(true),
        Ok(Ok(Cached::Live)) => Ok(false),
        Ok(Ok(Cached::Unknown)) => {
            let live = sessions::is_live(&state.db, claims.sid).await?;
            let write = if live {
                state.revocations.remember_live(claims.sid).await
            } else {
                state.revocations.revoke(&[claims.sid], None).await
            };
            if let Err(e) = write {
                tracing::warn!(error = %e, "could not cache a session state");
            }
            Ok(!live)
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "revocation cache unavailable; asking the database");
            Ok(!sessions::is_live(&state.db, claims.sid).await?)
        }
        Err(_) => {
            tracing::warn!("revocation cache slow; asking the database");
            Ok(!sessions::is_live(&state.db, claims.sid).await?)
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
