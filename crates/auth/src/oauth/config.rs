//! Settings of social sign-in, read with the rest of the configuration.
//!
//! A provider is enabled by `OAUTH_<PROVIDER>_CLIENT_ID` and `OAUTH_<PROVIDER>_CLIENT_SECRET`
//! together (PROVIDER one of `YANDEX`, `VK`, `GOOGLE`, `MAILRU`); its endpoints default to
//! the provider's and can be overridden with `_AUTH_URL`, `_TOKEN_URL`, `_USERINFO_URL`.
//! Google's endpoints and keys come from the discovery document of `OAUTH_GOOGLE_ISSUER`.

use std::time::Duration;

use platform::env::Env;
use secrecy::SecretString;
use url::Url;

use crate::config::ConfigError;

/// Prefix of the provider variables; unknown ones are reported as likely typos.
const PREFIX: &str = "OAUTH_";

#[derive(Debug, Clone)]
pub struct OAuthSettings {
    /// Where browsers reach this service; callback addresses are built from it.
    pub public_url: Url,
    /// Front-end addresses a flow may return to (exact match).
    pub frontend_redirects: Vec<Url>,
    /// How long a started flow can be completed.
    pub state_ttl: Duration,
    /// Bound on all provider calls of one step (authorize or callback).
    pub http_timeout: Duration,
    pub yandex: Option<ProviderSettings>,
    pub vk: Option<ProviderSettings>,
    pub google: Option<GoogleSettings>,
    pub mailru: Option<MailruSettings>,
}

#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub client_id: String,
    pub client_secret: SecretString,
    pub auth_url: Url,
    pub token_url: Url,
    pub userinfo_url: Url,
}

#[derive(Debug, Clone)]
pub struct GoogleSettings {
    pub client_id: String,
    pub client_secret: SecretString,
    /// The discovery document is `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// Overrides of the discovered endpoints.
    pub auth_url: Option<Url>,
    pub token_url: Option<Url>,
    pub userinfo_url: Option<Url>,
}

/// Mail.ru has two ways in: its own `oauth.mail.ru`, which serves existing client ids
/// only since July 2025, and VK ID with `provider=mail_ru` for new integrations.
#[derive(Debug, Clone)]
pub enum MailruSettings {
    OAuthMail(Box<ProviderSettings>),
    /// Through VK ID with the VK client (`OAUTH_MAILRU_VIA_VKID=true`).
    ViaVkId,
}

struct Defaults {
    auth: &'static str,
    token: &'static str,
    userinfo: &'static str,
}

const YANDEX: Defaults =
    Defaults { auth: "https://oauth.yandex.ru/authorize", token: "https://oauth.yandex.ru/token", userinfo: "https://login.yandex.ru/info" };
const VK: Defaults =
    Defaults { auth: "https://id.vk.com/authorize", token: "https://id.vk.com/oauth2/auth", userinfo: "https://id.vk.com/oauth2/user_info" };
const MAILRU: Defaults =
    Defaults { auth: "https://oauth.mail.ru/login", token: "https://oauth.mail.ru/token", userinfo: "https://oauth.mail.ru/userinfo" };
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

const KNOWN: &[&str] =
    &["OAUTH_FRONTEND_REDIRECT_URIS", "OAUTH_STATE_TTL_SECONDS", "OAUTH_HTTP_TIMEOUT_SECONDS", "OAUTH_GOOGLE_ISSUER", "OAUTH_MAILRU_VIA_VKID"];
const PER_PROVIDER: &[&str] = &["CLIENT_ID", "CLIENT_SECRET", "AUTH_URL", "TOKEN_URL", "USERINFO_URL"];
const PROVIDERS: &[&str] = &["YANDEX", "VK", "GOOGLE", "MAILRU"];

/// Variables with the `OAUTH_` prefix that no setting reads: usually typos.
pub fn unknown_variables(names: impl Iterator<Item = String>) -> Vec<String> {
    names
        .filter(|name| name.starts_with(PREFIX))
        .filter(|name| !KNOWN.contains(&name.as_str()) && !PROVIDERS.iter().any(|p| PER_PROVIDER.iter().any(|v| *name == format!("OAUTH_{p}_{v}"))))
        .collect()
}

impl OAuthSettings {
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(lookup);
        let get = |name: &str| env.optional(name).map(|v| v.trim().to_owned());
        let public_url = url(&get, "AUTH_PUBLIC_URL", "http://127.0.0.1:8000")?;
        if public_url.query().is_some() || public_url.fragment().is_some() {
            return Err(error("AUTH_PUBLIC_URL", "must be a base address without query or fragment"));
        }
        let frontend_redirects = match get("OAUTH_FRONTEND_REDIRECT_URIS") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| match Url::parse(s) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.fragment().is_none() => Ok(u),
                    _ => Err(error("OAUTH_FRONTEND_REDIRECT_URIS", &format!("{s:?} is not an absolute http(s) address without a fragment"))),
                })
                .collect::<Result<_, _>>()?,
        };
        let yandex = provider(&get, "YANDEX", &YANDEX)?;
        let vk = provider(&get, "VK", &VK)?;
        let mailru_via_vkid = env.flag("OAUTH_MAILRU_VIA_VKID", false)?;
        let mailru = match (provider(&get, "MAILRU", &MAILRU)?, mailru_via_vkid) {
            (Some(settings), false) => Some(MailruSettings::OAuthMail(Box::new(settings))),
            (None, true) if vk.is_some() => Some(MailruSettings::ViaVkId),
            (None, true) => return Err(error("OAUTH_MAILRU_VIA_VKID", "needs VK ID enabled (OAUTH_VK_CLIENT_ID and OAUTH_VK_CLIENT_SECRET)")),
            (Some(_), true) => {
                return Err(error("OAUTH_MAILRU_VIA_VKID", "choose one: oauth.mail.ru (OAUTH_MAILRU_CLIENT_ID) or VK ID, not both"));
            }
            (None, false) => None,
        };
        let google = match credentials(&get, "GOOGLE")? {
            None => None,
            Some((client_id, client_secret)) => Some(GoogleSettings {
                client_id,
                client_secret,
                issuer: get("OAUTH_GOOGLE_ISSUER").unwrap_or_else(|| GOOGLE_ISSUER.to_owned()).trim_end_matches('/').to_owned(),
                auth_url: optional_url(&get, "OAUTH_GOOGLE_AUTH_URL")?,
                token_url: optional_url(&get, "OAUTH_GOOGLE_TOKEN_URL")?,
                userinfo_url: optional_url(&get, "OAUTH_GOOGLE_USERINFO_URL")?,
            }),
        };
        if let Some(google) = &google {
            Url::parse(&google.issuer).map_err(|_| error("OAUTH_GOOGLE_ISSUER", "must be an absolute address"))?;
        }
        Ok(Self {
            public_url,
            frontend_redirects,
            state_ttl: Duration::from_secs(env.positive_at_most("OAUTH_STATE_TTL_SECONDS", 600, 24 * 3600)?),
            http_timeout: env.seconds("OAUTH_HTTP_TIMEOUT_SECONDS", 5)?,
            yandex,
            vk,
            google,
            mailru,
        })
    }
}

type Get<'a> = dyn Fn(&str) -> Option<String> + 'a;

fn error(name: &str, reason: &str) -> ConfigError {
    ConfigError { name: name.to_owned(), reason: reason.to_owned() }
}

fn credentials(get: &Get, provider: &str) -> Result<Option<(String, SecretString)>, ConfigError> {
    let id_name = format!("OAUTH_{provider}_CLIENT_ID");
    let secret_name = format!("OAUTH_{provider}_CLIENT_SECRET");
    match (get(&id_name), get(&secret_name)) {
        (Some(id), Some(secret)) => Ok(Some((id, secret.into()))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(error(&secret_name, &format!("must be set together with {id_name}"))),
        (None, Some(_)) => Err(error(&id_name, &format!("must be set together with {secret_name}"))),
    }
}

fn provider(get: &Get, name: &str, defaults: &Defaults) -> Result<Option<ProviderSettings>, ConfigError> {
    let Some((client_id, client_secret)) = credentials(get, name)? else { return Ok(None) };
    Ok(Some(ProviderSettings {
        client_id,
        client_secret,
        auth_url: url(get, &format!("OAUTH_{name}_AUTH_URL"), defaults.auth)?,
        token_url: url(get, &format!("OAUTH_{name}_TOKEN_URL"), defaults.token)?,
        userinfo_url: url(get, &format!("OAUTH_{name}_USERINFO_URL"), defaults.userinfo)?,
    }))
}

fn url(get: &Get, name: &str, default: &str) -> Result<Url, ConfigError> {
    Ok(optional_url(get, name)?.unwrap_or_else(|| Url::parse(default).expect("default addresses parse")))
}

fn optional_url(get: &Get, name: &str) -> Result<Option<Url>, ConfigError> {
    get(name)
        .map(|raw| match Url::parse(&raw) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(u),
            _ => Err(error(name, &format!("{raw:?} is not an absolute http(s) address"))),
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<OAuthSettings, ConfigError> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        OAuthSettings::from_lookup(&move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn nothing_is_enabled_by_default() {
        let s = with(&[]).unwrap();
        assert!(s.yandex.is_none() && s.vk.is_none() && s.google.is_none() && s.mailru.is_none());
        assert_eq!(s.public_url.as_str(), "http://127.0.0.1:8000/");
        assert_eq!(s.http_timeout, Duration::from_secs(5));
    }

    #[test]
    fn a_provider_needs_both_id_and_secret_and_gets_default_endpoints() {
        let s = with(&[("OAUTH_YANDEX_CLIENT_ID", "id"), ("OAUTH_YANDEX_CLIENT_SECRET", "secret")]).unwrap();
        let yandex = s.yandex.unwrap();
        assert_eq!(yandex.token_url.as_str(), "https://oauth.yandex.ru/token");
        let err = with(&[("OAUTH_VK_CLIENT_ID", "id")]).unwrap_err();
        assert_eq!(err.name, "OAUTH_VK_CLIENT_SECRET");
        let err = with(&[("OAUTH_VK_CLIENT_ID", "id"), ("OAUTH_VK_CLIENT_SECRET", "s"), ("OAUTH_VK_TOKEN_URL", "id.vk.com/x")]).unwrap_err();
        assert_eq!(err.name, "OAUTH_VK_TOKEN_URL");
    }

    #[test]
    fn mailru_goes_through_vk_id_only_when_asked_and_possible() {
        let err = with(&[("OAUTH_MAILRU_VIA_VKID", "true")]).unwrap_err();
        assert_eq!(err.name, "OAUTH_MAILRU_VIA_VKID");
        let s = with(&[("OAUTH_VK_CLIENT_ID", "id"), ("OAUTH_VK_CLIENT_SECRET", "s"), ("OAUTH_MAILRU_VIA_VKID", "true")]).unwrap();
        assert!(matches!(s.mailru, Some(MailruSettings::ViaVkId)));
    }

    #[test]
    fn client_secrets_stay_out_of_debug_output() {
        let s = with(&[("OAUTH_GOOGLE_CLIENT_ID", "id"), ("OAUTH_GOOGLE_CLIENT_SECRET", "GOCSPX-hunter2")]).unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn typos_in_provider_variables_are_reported() {
        let names = ["OAUTH_YANDEX_CLIENT_ID", "OAUTH_YANDX_CLIENT_ID", "OAUTH_GOOGLE_ISSUER", "OAUTH_VK_SECRET", "PATH"];
        let unknown = unknown_variables(names.iter().map(|s| s.to_string()));
        assert_eq!(unknown, ["OAUTH_YANDX_CLIENT_ID", "OAUTH_VK_SECRET"]);
    }
}
