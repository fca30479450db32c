//! Social sign-in routes: the enabled providers, the authorization-code flow (authorize,
//! callback) and the exchange of a front end's one-time login code for tokens.
//! Linking from a signed-in account starts in `social.rs` and ends in the same callback.

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    auth::{TokenPair, open_session},
    extract::{ClientInfo, Json, Path, Query},
};
use crate::{
    error::{ApiError, Problem, Result},
    oauth::{Callback, FlowState, LinkTarget, LoginGrant, Provider, flow::LOGIN_CODE_TTL, invalid_state, linking, pkce, provider_error},
    state::AppState,
    store::{roles, sessions, social::SocialAccount},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_providers)).routes(routes!(authorize)).routes(routes!(callback)).routes(routes!(exchange))
}

/// The cookie that binds a flow to the browser that started it: a callback from
/// another browser (an attacker's link sent to a victim, or the reverse) is refused.
///
/// Over HTTPS (`AUTH_PUBLIC_URL` https) it is `__Host-oauth_browser`. Browsers take a
/// cookie of that name only from a secure origin, with `Secure`, `Path=/` and no
/// `Domain`, so neither a sibling subdomain nor a plain-HTTP answer forged on the
/// network can plant one: a planted binding would let an attacker finish their own
/// sign-in in the victim's browser (login CSRF) or link their identity to the victim's
/// account. Over plain HTTP (development) the prefix cannot be set; the cookie is
/// `oauth_browser` on `/api/v1`, which covers every route that starts, finishes or
/// exchanges a flow (sign-in under `/api/v1/oauth`, linking under
/// `/api/v1/users/me/social`; narrower, the linking start would not see the cookie and
/// would replace it, breaking flows under way in other tabs).
#[derive(Clone, Copy)]
pub struct BrowserCookie {
    secure: bool,
}

impl BrowserCookie {
    pub fn of(state: &AppState) -> Self {
        Self::new(state.oauth.secure_cookies())
    }

    /// The cookie of an HTTPS deployment (`secure`) or of a plain-HTTP one.
    pub fn new(secure: bool) -> Self {
        Self { secure }
    }

    pub fn name(self) -> &'static str {
        if self.secure { "__Host-oauth_browser" } else { "oauth_browser" }
    }

    fn path(self) -> &'static str {
        if self.secure { "/" } else { "/api/v1" }
    }

    /// `Set-Cookie` of the binding `browser`, kept for `lifetime`.
    fn header(self, browser: &str, lifetime: Duration) -> Result<HeaderValue> {
        let (name, path, secure) = (self.name(), self.path(), if self.secure { "; Secure" } else { "" });
        let cookie = format!("{name}={browser}; Path={path}; Max-Age={}; HttpOnly; SameSite=Lax{secure}", lifetime.as_secs());
        Ok(HeaderValue::from_str(&cookie).map_err(|e| anyhow::anyhow!("cookie header: {e}"))?)
    }

    /// The binding, when the request has a well-formed cookie of this name. A cookie
    /// of the other name (`oauth_browser` on an HTTPS deployment) is not read: that is
    /// the one anyone could have planted.
    pub fn read(self, headers: &HeaderMap) -> Option<&str> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == self.name())
            .map(|(_, value)| value)
            .filter(|v| v.len() == 43 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    }
}

#[derive(Serialize, ToSchema)]
pub struct ProviderList {
    providers: Vec<ProviderInfo>,
}

#[derive(Serialize, ToSchema)]
pub struct ProviderInfo {
    provider: Provider,
    #[schema(example = "Yandex ID")]
    name: &'static str,
    /// Where to send the browser to sign in.
    #[schema(example = "/api/v1/oauth/yandex/authorize")]
    authorize_url: String,
}

/// The social sign-in providers enabled on this deployment.
#[utoipa::path(get, path = "/api/v1/oauth/providers", tag = "oauth",
    responses((status = 200, description = "Enabled providers", body = ProviderList)))]
async fn list_providers(State(state): State<AppState>) -> Json<ProviderList> {
    let providers = state
        .oauth
        .enabled()
        .into_iter()
        .map(|p| ProviderInfo { provider: p, name: p.display_name(), authorize_url: format!("/api/v1/oauth/{}/authorize", p.as_str()) })
        .collect();
    Json(ProviderList { providers })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuthorizeQuery {
    /// A front-end address on the allow-list to return to; it receives a one-time
    /// `login_code` instead of tokens. Without it the callback answers with tokens.
    redirect_uri: Option<String>,
}

/// Starts sign-in: redirects the browser to the provider with a fresh single-use
/// `state`, a PKCE S256 challenge and, for Google, a `nonce`.
#[utoipa::path(get, path = "/api/v1/oauth/{provider}/authorize", tag = "oauth",
    params(("provider" = Provider, Path, description = "The provider"), AuthorizeQuery),
    responses(
        (status = 302, description = "To the provider's sign-in page; sets the browser-binding cookie",
            headers(("location" = String, description = "The provider's authorization address"), ("set-cookie" = String))),
        (status = 404, description = "No such provider, or not enabled", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`redirect_uri` is not on the allow-list", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The provider's discovery failed (Google)", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The provider did not answer in time (Google)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn authorize(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    Query(query): Query<AuthorizeQuery>,
) -> Result<Response> {
    let provider = state.oauth.provider(&provider)?;
    let (url, cookie) = start_flow(&state, provider, &headers, query.redirect_uri.as_deref(), None).await?;
    let mut response = redirect(&url);
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// Stores a new flow; returns the provider's address and the cookie binding the browser.
pub async fn start_flow(
    state: &AppState,
    provider: Provider,
    headers: &HeaderMap,
    redirect_uri: Option<&str>,
    link: Option<LinkTarget>,
) -> Result<(Url, HeaderValue)> {
    let frontend = redirect_uri.map(|r| state.oauth.check_frontend_redirect(r)).transpose()?;
    // One binding per browser, reused across tabs so parallel flows do not evict each other.
    let cookie = BrowserCookie::of(state);
    let browser = cookie.read(headers).map(str::to_owned).unwrap_or_else(pkce::random_token);
    let flow = FlowState::new(provider, &browser, frontend.map(String::from), link);
    let flow_state = state.oauth.flows.start(&flow).await?;
    let url = state.oauth.authorization_url(provider, &flow_state, &flow).await?;
    Ok((url, cookie.header(&browser, state.oauth.state_ttl())?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    /// Set by the provider when the person declined (`access_denied`) or it failed.
    pub error: Option<String>,
    /// VK ID's device id, needed for its code exchange.
    pub device_id: Option<String>,
}

/// What a callback answers without a front-end `redirect_uri`.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Only documents the two bodies.
pub enum CallbackResult {
    /// A sign-in: the token pair, as from password login.
    SignedIn(TokenPair),
    /// A linking flow: the linked account.
    Linked(SocialAccount),
}

/// The provider's redirect back. Checks the state (single use, this provider, this
/// browser), exchanges the code, identifies the person, then signs in (linking or
/// creating the account by the rules in docs/oauth.md) or, for a linking flow, links.
#[utoipa::path(get, path = "/api/v1/oauth/{provider}/callback", tag = "oauth",
    params(("provider" = Provider, Path, description = "The provider"), CallbackQuery),
    responses(
        (status = 200, description = "Signed in (a token pair), or linked (the linked account)", body = CallbackResult),
        (status = 302, description = "With a front-end `redirect_uri`: to it with `login_code` (sign-in; the browser-binding cookie is set again to outlive the code) or `linked=<provider>` (linking; the provider stored, `vk` for Mail.ru through VK ID); never tokens",
            headers(("location" = String), ("set-cookie" = String, description = "Sign-in: the browser-binding cookie, again"))),
        (status = 400, description = "`invalid_state`: missing, unknown, used, expired, or from another flow or browser", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Linking: the session that started it has ended", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`provider_denied`: the person declined at the provider", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such provider, or not enabled", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`social_account_taken`, `provider_already_linked`, or `email_taken` for the email of an existing account when the provider does not verify it or no provider proved it for that account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`provider_email_required`: no email to create an account with", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`provider_error` or `invalid_id_token`", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "`provider_timeout`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn callback(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    ClientInfo(client): ClientInfo,
    Query(query): Query<CallbackQuery>,
) -> Result<Response> {
    let provider = state.oauth.provider(&provider)?;
    let flow = match query.state.as_deref() {
        Some(s) => state.oauth.flows.take(s).await?,
        None => None,
    };
    let flow = flow.ok_or_else(invalid_state)?;
    let callback = accept_callback(&query, provider, &flow, BrowserCookie::of(&state).read(&headers))?;
    let identity = state.oauth.identify(provider, callback, &flow).await?;

    if let Some(link) = flow.link {
        if !sessions::is_live(&state.db, link.session_id).await? {
            return Err(ApiError::invalid_token());
        }
        let account = linking::link(&state.db, link.user_id, &identity).await?;
        tracing::info!(user_id = %link.user_id, provider = provider.as_str(), "social account linked");
        return Ok(match &flow.frontend_redirect {
            // The provider stored, which is not the button's under OAUTH_MAILRU_VIA_VKID
            // (Mail.ru through VK ID links a `vk` identity).
            Some(to) => redirect(&with_query(to, "linked", account.provider.as_str())?),
            None => Json(account).into_response(),
        });
    }

    let outcome = linking::sign_in(&state.db, &identity).await?;
    let user_id = outcome.user_id();
    tracing::info!(%user_id, provider = provider.as_str(), ?outcome, "social sign-in");
    match &flow.frontend_redirect {
        Some(to) => {
            let code = state.oauth.flows.issue_login_code(&LoginGrant::new(user_id, provider, &flow)).await?;
            let mut response = redirect(&with_query(to, "login_code", &code)?);
            // The exchange needs the cookie, whose Max-Age counted from authorize may end
            // before the code's 60 s: sent again, it outlives the code (and, as at
            // authorize, any flow another tab started before).
            let cookie = BrowserCookie::of(&state);
            let browser = cookie.read(&headers).ok_or_else(invalid_state)?;
            let lifetime = state.oauth.state_ttl().max(LOGIN_CODE_TTL);
            response.headers_mut().insert(header::SET_COOKIE, cookie.header(browser, lifetime)?);
            Ok(response)
        }
        None => Ok(open_session(&state, user_id, &client, provider.method()).await?.into_response()),
    }
}

/// The checks of a callback whose `state` found its flow: the flow is this provider's
/// and this browser's, the provider reports no error, and a code of sane length came.
pub fn accept_callback<'q>(query: &'q CallbackQuery, provider: Provider, flow: &FlowState, browser: Option<&str>) -> Result<Callback<'q>> {
    if flow.provider != provider || !flow.is_same_browser(browser) {
        return Err(invalid_state());
    }
    if let Some(error) = query.error.as_deref() {
        return Err(if error == "access_denied" {
            ApiError::Refused { status: StatusCode::FORBIDDEN, code: "provider_denied", detail: "Sign-in was declined at the provider." }
        } else {
            provider_error(format!("callback error {:?}", error.chars().take(100).collect::<String>()))
        });
    }
    let code = query.code.as_deref().filter(|c| !c.is_empty() && c.len() <= 2048).ok_or_else(|| provider_error("callback without a code"))?;
    Ok(Callback { code, device_id: query.device_id.as_deref() })
}

fn with_query(base: &str, name: &str, value: &str) -> Result<Url> {
    let mut url = Url::parse(base).map_err(|e| anyhow::anyhow!("stored redirect does not parse: {e}"))?;
    url.query_pairs_mut().append_pair(name, value);
    Ok(url)
}

fn redirect(to: &Url) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(to.as_str()) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The provider's or our code must not leak to the next site through Referer.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginCodeExchange {
    /// The `login_code` the front end received on its `redirect_uri`.
    login_code: String,
}

/// Exchanges a front end's one-time login code (valid 60 s) for a token pair. The
/// request must carry the browser-binding cookie of the flow (`credentials: "include"`
/// from a front end on another origin of the same site).
#[utoipa::path(post, path = "/api/v1/oauth/exchange", tag = "oauth", request_body = LoginCodeExchange,
    responses(
        (status = 200, description = "Signed in", body = TokenPair),
        (status = 400, description = "`invalid_login_code`: unknown, used, expired, or without the browser cookie of its flow", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
    ))]
async fn exchange(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientInfo(client): ClientInfo,
    Json(body): Json<LoginCodeExchange>,
) -> Result<TokenPair> {
    let invalid = || ApiError::Refused {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_login_code",
        detail: "The login code is unknown, was already used, has expired or comes from another browser; sign in again.",
    };
    // Taken (and so spent) before the browser check: a code tried from another browser
    // is burnt, as a state is.
    let grant = state.oauth.flows.take_login_code(&body.login_code).await?.ok_or_else(invalid)?;
    if !grant.is_same_browser(BrowserCookie::of(&state).read(&headers)) {
        tracing::info!(user_id = %grant.user_id, provider = grant.provider.as_str(), "login code presented by another browser");
        return Err(invalid());
    }
    if !roles::user_exists(&state.db, grant.user_id).await? {
        return Err(invalid());
    }
    open_session(&state, grant.user_id, &client, grant.provider.method()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browser_cookie_is_found_among_others_and_junk_is_ignored() {
        let value = "A".repeat(43);
        for cookie in [BrowserCookie { secure: true }, BrowserCookie { secure: false }] {
            let name = cookie.name();
            let mut headers = HeaderMap::new();
            headers.insert(header::COOKIE, HeaderValue::from_str(&format!("a=1; {name}={value}; b=2")).unwrap());
            assert_eq!(cookie.read(&headers), Some(value.as_str()));
            headers.insert(header::COOKIE, HeaderValue::from_str(&format!("{name}=short")).unwrap());
            assert_eq!(cookie.read(&headers), None);
            assert_eq!(cookie.read(&HeaderMap::new()), None);
        }
    }

    /// Over HTTPS only the `__Host-` cookie binds: a plain `oauth_browser`, which a
    /// sibling subdomain or a forged HTTP answer can plant, is not read.
    #[test]
    fn over_https_only_the_host_prefixed_cookie_binds() {
        let (secure, plain) = (BrowserCookie { secure: true }, BrowserCookie { secure: false });
        let value = "A".repeat(43);
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&format!("oauth_browser={value}")).unwrap());
        assert_eq!(secure.read(&headers), None);
        assert_eq!(plain.read(&headers), Some(value.as_str()));
        let set = secure.header(&value, Duration::from_secs(600)).unwrap();
        assert_eq!(set.to_str().unwrap(), format!("__Host-oauth_browser={value}; Path=/; Max-Age=600; HttpOnly; SameSite=Lax; Secure"));
        let set = plain.header(&value, Duration::from_secs(600)).unwrap();
        assert_eq!(set.to_str().unwrap(), format!("oauth_browser={value}; Path=/api/v1; Max-Age=600; HttpOnly; SameSite=Lax"));
    }

    #[test]
    fn a_callback_is_accepted_only_for_its_provider_and_browser_without_error_and_with_a_code() {
        let browser = "B".repeat(43);
        let flow = FlowState::new(Provider::Vk, &browser, None, None);
        let same_browser = Some(browser.as_str());
        let query = |code: Option<&str>, error: Option<&str>| CallbackQuery {
            code: code.map(String::from),
            state: Some("s".into()),
            error: error.map(String::from),
            device_id: Some("d".into()),
        };
        let code_of = |r: Result<Callback<'_>>| match r {
            Ok(c) => Ok((c.code.to_owned(), c.device_id.map(String::from))),
            Err(ApiError::Refused { code, .. } | ApiError::BadGateway { code, .. }) => Err(code),
            Err(other) => panic!("{other:?}"),
        };
        let ok = query(Some("c"), None);
        assert_eq!(code_of(accept_callback(&ok, Provider::Vk, &flow, same_browser)), Ok(("c".into(), Some("d".into()))));
        assert_eq!(code_of(accept_callback(&ok, Provider::Yandex, &flow, same_browser)), Err("invalid_state"));
        assert_eq!(code_of(accept_callback(&ok, Provider::Vk, &flow, None)), Err("invalid_state"));
        // The binding is checked before the provider's error is looked at.
        let denied = query(None, Some("access_denied"));
        assert_eq!(code_of(accept_callback(&denied, Provider::Vk, &flow, None)), Err("invalid_state"));
        assert_eq!(code_of(accept_callback(&denied, Provider::Vk, &flow, same_browser)), Err("provider_denied"));
        assert_eq!(code_of(accept_callback(&query(Some("c"), Some("server_error")), Provider::Vk, &flow, same_browser)), Err("provider_error"));
        for bad in [None, Some(""), Some(&*"c".repeat(2049))] {
            assert_eq!(code_of(accept_callback(&query(bad, None), Provider::Vk, &flow, same_browser)), Err("provider_error"));
        }
    }
}
