//! VK ID (OAuth 2.1): PKCE is mandatory, the callback brings a `device_id` the exchange
//! needs, errors may come with status 200, and the email comes from user info only.
//! Also the way to Mail.ru for new integrations (`provider=mail_ru`).

use url::Url;

use super::{
    Callback, FlowState, Identity, Provider, ProviderSettings, birth_date, display_name, email,
    http::{self, ProviderHttp},
    pkce, provider_error,
};
use crate::error::Result;

/// `provider` picks the account type on VK ID's page: `mail_ru` for Mail.ru.
pub fn authorization_url(settings: &ProviderSettings, redirect_uri: &str, state: &str, flow: &FlowState, provider: Option<&str>) -> Url {
    let mut url = settings.auth_url.clone();
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &settings.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state)
            .append_pair("code_challenge", &flow.code_challenge())
            // VK ID documents the method in lower case.
            .append_pair("code_challenge_method", "s256")
            .append_pair("scope", "vkid.personal_info email");
        if let Some(provider) = provider {
            query.append_pair("provider", provider);
        }
    }
    url
}

pub async fn identify(
    http: &ProviderHttp,
    settings: &ProviderSettings,
    redirect_uri: &str,
    callback: &Callback<'_>,
    flow: &FlowState,
) -> Result<Identity> {
    let device_id = callback.device_id.filter(|d| !d.is_empty() && d.len() <= 512).ok_or_else(|| provider_error("vk id callback: no device_id"))?;
    // The exchange carries a state of its own, which VK ID echoes back.
    let exchange_state = pkce::random_token();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", callback.code),
        ("code_verifier", &flow.code_verifier),
        ("client_id", &settings.client_id),
        ("device_id", device_id),
        ("redirect_uri", redirect_uri),
        ("state", &exchange_state),
    ];
    let token = http.json(http.client().post(settings.token_url.clone()).form(&form), "vk id token").await?.success()?;
    // Tolerant of an answer without `state`; a different one is refused.
    if http::str(&token, "state").is_some_and(|echoed| echoed != exchange_state) {
        return Err(provider_error("vk id token: the echoed state differs"));
    }
    let access_token = http::str(&token, "access_token").ok_or_else(|| provider_error("vk id token: no access_token"))?;
    let token_user = http::string(&token, "user_id");

    let form = [("client_id", settings.client_id.as_str()), ("access_token", access_token)];
    let info = http.json(http.client().post(settings.userinfo_url.clone()).form(&form), "vk id user info").await?.success()?;
    let user = info.get("user").ok_or_else(|| provider_error("vk id user info: no user"))?;
    let subject = http::subject(http::string(user, "user_id"), "vk id user info")?;
    if token_user.as_ref().is_some_and(|id| *id != subject) {
        return Err(provider_error("vk id user info: another user than the token's"));
    }
    Ok(Identity {
        // Also when reached through the Mail.ru button (`OAUTH_MAILRU_VIA_VKID`): the
        // person is a VK ID account, in VK ID's id space. Stored as `mailru`, these ids
        // were mistaken for oauth.mail.ru's own, which are another space: VK ID user
        // 555000 signed in to the account of oauth.mail.ru user 555000.
        provider: Provider::Vk,
        subject,
        email: email(http::str(user, "email")),
        // VK ID releases only an address confirmed to it (with the `email` scope);
        // Ory Kratos treats it as verified too (docs/oauth.md).
        email_verified: true,
        display_name: display_name(&[http::str(user, "first_name"), http::str(user, "last_name")]),
        birth_date: birth_date(http::str(user, "birthday"), "%d.%m.%Y"),
    })
}
