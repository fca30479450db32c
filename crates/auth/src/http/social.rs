//! The caller's linked social accounts: list, link (starts a flow bound to the caller)
//! and unlink.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    extract::{AuthUser, Json, Path, Query},
    oauth::start_flow,
};
use crate::{
    error::{Problem, Result},
    oauth::{LinkTarget, Provider, linking},
    state::AppState,
    store::social::{self, SocialAccount},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_linked)).routes(routes!(start_link, unlink))
}

/// The social accounts linked to the caller's account.
#[utoipa::path(get, path = "/api/v1/users/me/social", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, description = "Linked accounts, oldest first", body = Vec<SocialAccount>),
    ))]
async fn list_linked(State(state): State<AppState>, user: AuthUser) -> Result<Json<Vec<SocialAccount>>> {
    Ok(Json(social::list(&state.db, user.id()).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    /// A front-end address on the allow-list to return to, with `linked=<provider>`.
    redirect_uri: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LinkStart {
    /// Send the browser here; the provider redirects back to our callback, which links.
    authorization_url: String,
}

/// Starts linking a provider's account to the caller's: a flow bound to the caller and
/// their session. The response sets the browser-binding cookie, so call it from the
/// browser that will visit `authorization_url` (with credentials, if cross-origin).
#[utoipa::path(post, path = "/api/v1/users/me/social/{provider}", tag = "users", security(("bearer" = [])),
    params(("provider" = Provider, Path, description = "The provider"), LinkQuery),
    responses(
        (status = 200, description = "The provider address to send the browser to", body = LinkStart,
            headers(("set-cookie" = String, description = "Binds the flow to this browser"))),
        (status = 404, description = "No such provider, or not enabled", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`redirect_uri` is not on the allow-list", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The provider's discovery failed (Google)", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The provider did not answer in time (Google)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn start_link(
    State(state): State<AppState>,
    user: AuthUser,
    Path(provider): Path<String>,
    headers: HeaderMap,
    Query(query): Query<LinkQuery>,
) -> Result<Response> {
    let provider = state.oauth.provider(&provider)?;
    let link = LinkTarget { user_id: user.id(), session_id: user.session_id() };
    let (url, cookie) = start_flow(&state, provider, &headers, query.redirect_uri.as_deref(), Some(link)).await?;
    let mut response = Json(LinkStart { authorization_url: url.into() }).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Unlinks the caller's account of a provider. Refused when it is the last way to
/// sign in (no password and no other linked account that can still sign in).
#[utoipa::path(delete, path = "/api/v1/users/me/social/{provider}", tag = "users", security(("bearer" = [])),
    params(("provider" = Provider, Path, description = "The provider")),
    responses(
        (status = 204, description = "Unlinked"),
        (status = 404, description = "No account of this provider is linked", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`last_sign_in_method`: set a password or link another account first", body = Problem, content_type = "application/problem+json"),
    ))]
async fn unlink(State(state): State<AppState>, user: AuthUser, Path(provider): Path<String>) -> Result<StatusCode> {
    // A provider disabled since it was linked can still be unlinked.
    let provider = Provider::parse(&provider).ok_or_else(social::not_linked)?;
    linking::unlink(&state.db, user.id(), provider, |p| state.oauth.signs_in_linked(p)).await?;
    tracing::info!(user_id = %user.id(), provider = provider.as_str(), "social account unlinked");
    Ok(StatusCode::NO_CONTENT)
}
