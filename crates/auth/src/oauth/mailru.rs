//! Mail.ru through `oauth.mail.ru`, for client ids registered there before July 2025.
//! New integrations reach Mail.ru through VK ID instead (`vk.rs`, `provider=mail_ru`).

use secrecy::ExposeSecret;
use url::{Url, form_urlencoded::byte_serialize};

use super::{
    FlowState, Identity, Provider, ProviderSettings, birth_date, display_name, email,
    http::{self, ProviderHttp},
    provider_error,
};
use crate::{domain::Email, error::Result};

/// Domains of Mail.ru's own mailboxes. `oauth.mail.ru` has no "verified" flag; an
/// address on these domains is the account itself, so the person controls it.
const MAILRU_DOMAINS: &[&str] = &["mail.ru", "inbox.ru", "list.ru", "bk.ru", "internet.ru"];

pub fn authorization_url(settings: &ProviderSettings, redirect_uri: &str, state: &str, flow: &FlowState) -> Url {
    let mut url = settings.auth_url.clone();
    // PKCE is in the newer documentation; apps registered earlier ignore it, and the
    // verifier sent at the exchange is then ignored too.
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &settings.client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", "userinfo")
        .append_pair("state", state)
        .append_pair("code_challenge", &flow.code_challenge())
        .append_pair("code_challenge_method", "S256");
    url
}

pub async fn identify(http: &ProviderHttp, settings: &ProviderSettings, redirect_uri: &str, code: &str, flow: &FlowState) -> Result<Identity> {
    let form = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect_uri), ("code_verifier", &flow.code_verifier)];
    // HTTP Basic with both parts form-encoded first (RFC 6749 §2.3.1).
    let user: String = byte_serialize(settings.client_id.as_bytes()).collect();
    let password: String = byte_serialize(settings.client_secret.expose_secret().as_bytes()).collect();
    let token =
        http.json(http.client().post(settings.token_url.clone()).basic_auth(user, Some(password)).form(&form), "mail.ru token").await?.success()?;
    let access_token = http::str(&token, "access_token").ok_or_else(|| provider_error("mail.ru token: no access_token"))?;

    // Mail.ru takes the token only as a query parameter; the request goes straight to
    // Mail.ru over TLS and its address is never logged (see `http::transport_error`).
    let info =
        http.json(http.client().get(settings.userinfo_url.clone()).query(&[("access_token", access_token)]), "mail.ru user info").await?.success()?;
    let subject = http::subject(http::string(&info, "id"), "mail.ru user info")?;
    let email = email(http::str(&info, "email"));
    Ok(Identity {
        provider: Provider::Mailru,
        subject,
        email_verified: email.as_ref().is_some_and(is_mailru_mailbox),
        email,
        display_name: display_name(&[http::str(&info, "name")])
            .or_else(|| display_name(&[http::str(&info, "first_name"), http::str(&info, "last_name")])),
        birth_date: birth_date(http::str(&info, "birthday"), "%d.%m.%Y"),
    })
}

fn is_mailru_mailbox(email: &Email) -> bool {
    email.as_ref().rsplit_once('@').is_some_and(|(_, domain)| MAILRU_DOMAINS.contains(&domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mailru_mailboxes_count_as_verified() {
        assert!(is_mailru_mailbox(&Email::parse("ivan@mail.ru").unwrap()));
        assert!(is_mailru_mailbox(&Email::parse("ivan@BK.ru").unwrap()));
        assert!(!is_mailru_mailbox(&Email::parse("ivan@gmail.com").unwrap()));
        assert!(!is_mailru_mailbox(&Email::parse("ivan@evilmail.ru").unwrap()));
    }
}
