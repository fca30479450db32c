//! Yandex ID: authorization code with PKCE, user info with the `OAuth` scheme.

use secrecy::ExposeSecret;
use url::Url;

use super::{
    FlowState, Identity, Provider, ProviderSettings, birth_date, display_name, email,
    http::{self, ProviderHttp},
    provider_error,
};
use crate::error::Result;

pub fn authorization_url(settings: &ProviderSettings, redirect_uri: &str, state: &str, flow: &FlowState) -> Url {
    let mut url = settings.auth_url.clone();
    // No `scope`: Yandex then grants what the app was registered with (login:email,
    // login:info, login:birthday; see docs/oauth.md), and a scope the registration
    // lacks would fail the whole sign-in.
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &settings.client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("state", state)
        .append_pair("code_challenge", &flow.code_challenge())
        .append_pair("code_challenge_method", "S256");
    url
}

pub async fn identify(http: &ProviderHttp, settings: &ProviderSettings, _redirect_uri: &str, code: &str, flow: &FlowState) -> Result<Identity> {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("code_verifier", &flow.code_verifier),
        ("client_id", &settings.client_id),
        ("client_secret", settings.client_secret.expose_secret()),
    ];
    let token = http.json(http.client().post(settings.token_url.clone()).form(&form), "yandex token").await?.success()?;
    let access_token = http::str(&token, "access_token").ok_or_else(|| provider_error("yandex token: no access_token"))?;

    let info = http
        .json(
            http.client()
                .get(settings.userinfo_url.clone())
                .query(&[("format", "json")])
                // Yandex's scheme is `OAuth`, not `Bearer`.
                .header(reqwest::header::AUTHORIZATION, format!("OAuth {access_token}")),
            "yandex user info",
        )
        .await?
        .success()?;
    let subject = http::subject(http::string(&info, "id"), "yandex user info")?;
    let first_email = info.get("emails").and_then(|e| e.get(0)).and_then(|e| e.as_str());
    Ok(Identity {
        provider: Provider::Yandex,
        subject,
        email: email(http::str(&info, "default_email").or(first_email)),
        // Yandex has no "verified" flag. Its addresses are Yandex mailboxes or addresses
        // the user confirmed to Yandex; like Ory Kratos we treat `default_email` as
        // verified (docs/oauth.md).
        email_verified: true,
        display_name: display_name(&[http::str(&info, "display_name").or(http::str(&info, "real_name")).or(http::str(&info, "login"))]),
        birth_date: birth_date(http::str(&info, "birthday"), "%Y-%m-%d"),
    })
}
