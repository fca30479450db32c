//! Social sign-in as an OAuth 2.0 / OpenID Connect consumer: Yandex ID, VK ID, Google
//! and Mail.ru. This module owns the protocol side: settings, the flow state kept in
//! Redis, PKCE, one client per provider that turns a callback's `code` into an
//! [`Identity`], and the rules that map an identity to an account (`linking`).
//! The routes are in `http::oauth` and `http::social`, the SQL in `store::social`.
//! Wire formats follow `docs/oauth.md`, which also says why this is written on
//! `reqwest` and `jsonwebtoken` rather than the `oauth2` and `openidconnect` crates
//! (the providers' non-standard answers, and a second HTTP stack).

pub mod config;
pub mod flow;
mod google;
mod http;
pub mod linking;
mod mailru;
pub(crate) mod pkce;
mod vk;
mod yandex;

use std::time::Duration;

use axum::http::StatusCode;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use url::Url;
use utoipa::ToSchema;

pub use config::{MailruSettings, OAuthSettings, ProviderSettings};
pub use flow::{FlowState, Flows, LinkTarget, LoginGrant};

use crate::{
    domain::{BirthDate, Email},
    error::{ApiError, Result},
    store::history::Method,
};

/// A social sign-in provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Yandex,
    Vk,
    Google,
    Mailru,
}

impl Provider {
    pub const ALL: [Provider; 4] = [Provider::Yandex, Provider::Vk, Provider::Google, Provider::Mailru];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Yandex => "yandex",
            Self::Vk => "vk",
            Self::Google => "google",
            Self::Mailru => "mailru",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == raw)
    }

    pub fn display_name(self) -> &'static str {
        match self {
            Self::Yandex => "Yandex ID",
            Self::Vk => "VK ID",
            Self::Google => "Google",
            Self::Mailru => "Mail.ru",
        }
    }

    /// How a sign-in through this provider is recorded in the login history.
    pub fn method(self) -> Method {
        match self {
            Self::Yandex => Method::Yandex,
            Self::Vk => Method::Vk,
            Self::Google => Method::Google,
            Self::Mailru => Method::Mailru,
        }
    }
}

/// Who the provider says the person is, after the code exchange.
#[derive(Debug, Clone)]
pub struct Identity {
    pub provider: Provider,
    /// The provider's stable user id: the key of the link, never the email.
    pub subject: String,
    pub email: Option<Email>,
    /// Whether the provider vouches that the person controls `email`. Only then may
    /// the identity be linked to an existing account by that email.
    pub email_verified: bool,
    pub display_name: Option<String>,
    pub birth_date: Option<BirthDate>,
}

/// What a provider's callback carried besides the state.
pub struct Callback<'a> {
    pub code: &'a str,
    /// VK ID sends the device id, which its code exchange needs.
    pub device_id: Option<&'a str>,
}

/// The enabled providers, their clients and the flow store.
pub struct OAuth {
    settings: OAuthSettings,
    http: http::ProviderHttp,
    google: Option<google::Google>,
    pub flows: Flows,
}

impl OAuth {
    pub fn new(settings: &OAuthSettings, redis: redis::aio::ConnectionManager, key_prefix: &str) -> anyhow::Result<Self> {
        Ok(Self {
            settings: settings.clone(),
            http: http::ProviderHttp::new(settings.http_timeout)?,
            google: settings.google.clone().map(google::Google::new),
            flows: Flows::new(redis, key_prefix, settings.state_ttl),
        })
    }

    pub fn enabled(&self) -> Vec<Provider> {
        Provider::ALL.into_iter().filter(|p| self.is_enabled(*p)).collect()
    }

    pub fn is_enabled(&self, provider: Provider) -> bool {
        match provider {
            Provider::Yandex => self.settings.yandex.is_some(),
            Provider::Vk => self.settings.vk.is_some(),
            Provider::Google => self.google.is_some(),
            Provider::Mailru => self.settings.mailru.is_some(),
        }
    }

    /// Whether a linked identity of `provider` can sign its account in now: the provider
    /// is enabled, and its identities are looked up. Under `OAUTH_MAILRU_VIA_VKID` the
    /// Mail.ru button signs in VK ID identities (linked as `vk`), so a `mailru` row left
    /// from `oauth.mail.ru` is never found again.
    pub fn signs_in_linked(&self, provider: Provider) -> bool {
        self.is_enabled(provider) && !(provider == Provider::Mailru && matches!(self.settings.mailru, Some(MailruSettings::ViaVkId)))
    }

    /// The provider named in a path, if it is one of ours and enabled; else 404.
    pub fn provider(&self, raw: &str) -> Result<Provider> {
        Provider::parse(raw).filter(|p| self.is_enabled(*p)).ok_or(ApiError::NotFound("No such sign-in provider, or it is not enabled."))
    }

    pub fn state_ttl(&self) -> Duration {
        self.settings.state_ttl
    }

    /// Whether cookies must carry `Secure`: when the public address is HTTPS.
    pub fn secure_cookies(&self) -> bool {
        self.settings.public_url.scheme() == "https"
    }

    /// Our callback address for a provider, as registered with it.
    pub fn callback_url(&self, provider: Provider) -> String {
        let base = self.settings.public_url.as_str().trim_end_matches('/');
        format!("{base}/api/v1/oauth/{}/callback", provider.as_str())
    }

    /// Checks a front-end `redirect_uri` against the allow-list: an exact match, so no
    /// open redirect and no code sent to a look-alike address.
    pub fn check_frontend_redirect(&self, raw: &str) -> Result<Url> {
        let invalid = || ApiError::field("redirect_uri", "is not on the allow-list of front-end addresses (OAUTH_FRONTEND_REDIRECT_URIS)");
        let url = Url::parse(raw).map_err(|_| invalid())?;
        if url.fragment().is_some() || !self.settings.frontend_redirects.contains(&url) {
            return Err(invalid());
        }
        Ok(url)
    }

    /// The origins of the front-end return addresses, each once: the front ends that
    /// may call the API from another origin (`http::cors`).
    pub fn frontend_origins(&self) -> Vec<String> {
        let mut origins: Vec<String> = self.settings.frontend_redirects.iter().map(|url| url.origin().ascii_serialization()).collect();
        origins.sort();
        origins.dedup();
        origins
    }

    /// The provider's authorization address for a flow that was just stored under `state`.
    pub async fn authorization_url(&self, provider: Provider, state: &str, flow: &FlowState) -> Result<Url> {
        let redirect_uri = self.callback_url(provider);
        let url = match provider {
            Provider::Yandex => yandex::authorization_url(self.yandex()?, &redirect_uri, state, flow),
            Provider::Vk => vk::authorization_url(self.vk()?, &redirect_uri, state, flow, None),
            Provider::Google => {
                let google = self.google.as_ref().ok_or_else(not_enabled)?;
                self.within_budget(google.authorization_url(&self.http, &redirect_uri, state, flow)).await?
            }
            Provider::Mailru => match self.mailru()? {
                MailruSettings::OAuthMail(settings) => mailru::authorization_url(settings, &redirect_uri, state, flow),
                MailruSettings::ViaVkId => vk::authorization_url(self.vk()?, &redirect_uri, state, flow, Some("mail_ru")),
            },
        };
        Ok(url)
    }

    /// Exchanges the callback's code and finds out who the person is. All provider calls
    /// together are bounded by the HTTP timeout.
    pub async fn identify(&self, provider: Provider, callback: Callback<'_>, flow: &FlowState) -> Result<Identity> {
        let redirect_uri = self.callback_url(provider);
        let http = &self.http;
        let identify = async {
            match provider {
                Provider::Yandex => yandex::identify(http, self.yandex()?, &redirect_uri, callback.code, flow).await,
                Provider::Vk => vk::identify(http, self.vk()?, &redirect_uri, &callback, flow).await,
                Provider::Google => {
                    let google = self.google.as_ref().ok_or_else(not_enabled)?;
                    google.identify(http, &redirect_uri, callback.code, flow).await
                }
                Provider::Mailru => match self.mailru()? {
                    MailruSettings::OAuthMail(settings) => mailru::identify(http, settings, &redirect_uri, callback.code, flow).await,
                    MailruSettings::ViaVkId => vk::identify(http, self.vk()?, &redirect_uri, &callback, flow).await,
                },
            }
        };
        self.within_budget(identify).await
    }

    async fn within_budget<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::time::timeout(self.settings.http_timeout, work).await.unwrap_or(Err(ApiError::GatewayTimeout))
    }

    fn yandex(&self) -> Result<&ProviderSettings> {
        self.settings.yandex.as_ref().ok_or_else(not_enabled)
    }

    fn vk(&self) -> Result<&ProviderSettings> {
        self.settings.vk.as_ref().ok_or_else(not_enabled)
    }

    fn mailru(&self) -> Result<&MailruSettings> {
        self.settings.mailru.as_ref().ok_or_else(not_enabled)
    }
}

fn not_enabled() -> ApiError {
    ApiError::NotFound("No such sign-in provider, or it is not enabled.")
}

/// The provider answered outside its protocol, or refused the exchange.
pub(crate) fn provider_error(cause: impl Into<String>) -> ApiError {
    ApiError::BadGateway {
        code: "provider_error",
        detail: "The sign-in provider refused or failed the exchange; start the sign-in again.",
        cause: cause.into(),
    }
}

/// The state is unknown, used, expired, for another provider or another browser.
pub fn invalid_state() -> ApiError {
    ApiError::Refused {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_state",
        detail: "This sign-in link is unknown, was already used or has expired; start the sign-in again.",
    }
}

/// A display name from optional parts, bounded in length.
fn display_name(parts: &[Option<&str>]) -> Option<String> {
    let joined = parts.iter().flatten().map(|s| s.trim()).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
    (!joined.is_empty()).then(|| joined.chars().filter(|c| !c.is_control()).take(200).collect())
}

/// A birth date when the provider knows all of it and it passes our rule; `None` for
/// partial dates (Yandex writes unknown parts as `0000`) and junk.
fn birth_date(raw: Option<&str>, format: &str) -> Option<BirthDate> {
    let date = NaiveDate::parse_from_str(raw?.trim(), format).ok()?;
    BirthDate::try_from(date).ok()
}

/// An email the provider sent, if it is one we would accept at sign-up.
fn email(raw: Option<&str>) -> Option<Email> {
    raw.map(str::trim).filter(|s| !s.is_empty()).and_then(|s| Email::parse(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_round_trip_by_name() {
        for p in Provider::ALL {
            assert_eq!(Provider::parse(p.as_str()), Some(p));
            assert_eq!(p.method().as_str(), p.as_str());
        }
        assert_eq!(Provider::parse("Yandex"), None);
        assert_eq!(Provider::parse("facebook"), None);
    }

    #[test]
    fn partial_or_bad_birth_dates_are_dropped() {
        assert!(birth_date(Some("1990-05-01"), "%Y-%m-%d").is_some());
        assert!(birth_date(Some("0000-05-01"), "%Y-%m-%d").is_none());
        assert!(birth_date(Some("1990-00-00"), "%Y-%m-%d").is_none());
        assert!(birth_date(Some("01.05.1990"), "%d.%m.%Y").is_some());
        assert!(birth_date(Some("01.05.2990"), "%d.%m.%Y").is_none());
        assert!(birth_date(None, "%Y-%m-%d").is_none());
    }

    #[test]
    fn display_names_skip_empty_parts() {
        assert_eq!(display_name(&[Some("Ivan"), Some(" "), Some("Petrov")]).as_deref(), Some("Ivan Petrov"));
        assert_eq!(display_name(&[None, Some("")]), None);
    }
}
