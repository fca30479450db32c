//! Google through OpenID Connect: endpoints and keys from the issuer's discovery
//! document, the person identified by a verified ID token (signature by a published
//! key, `iss`, `aud`, `exp`, `nonce`), keyed by `sub`.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse},
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Deserializer};
use url::Url;

use super::{
    FlowState, Identity, Provider,
    config::GoogleSettings,
    display_name, email,
    http::{self, ProviderHttp},
    provider_error,
};
use crate::error::{ApiError, Result};

const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
const JWKS_TTL: Duration = Duration::from_secs(3600);
/// A token naming an unknown key refetches the keys (Google rotates them), at most this often.
const JWKS_MIN_REFRESH: Duration = Duration::from_secs(30);
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 60;

pub struct Google {
    settings: GoogleSettings,
    /// The issuer, and Google's legacy form without the scheme when it is Google.
    issuers: Vec<String>,
    discovery: Mutex<Option<(Instant, Arc<Discovery>)>>,
    jwks: Mutex<Option<(Instant, Arc<JwkSet>)>>,
}

#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
    userinfo_endpoint: Option<Url>,
    jwks_uri: Url,
}

#[derive(Debug, Deserialize)]
struct IdClaims {
    sub: String,
    /// One issuer: an array is refused (jsonwebtoken would accept any overlap).
    #[allow(dead_code)]
    iss: String,
    /// Required, a number: jsonwebtoken ignores `iat` among its required claims.
    iat: i64,
    #[serde(deserialize_with = "audiences")]
    aud: Vec<String>,
    nonce: Option<String>,
    azp: Option<String>,
    email: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    email_verified: Option<bool>,
    name: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
}

/// `aud`: one string, or an array of them.
fn audiences<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Audience {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Audience::deserialize(d)? {
        Audience::One(aud) => vec![aud],
        Audience::Many(auds) => auds,
    })
}

/// `email_verified` is a boolean, but old tokens carry the string `"true"`.
fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<bool>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Bool(b) => Some(b),
        serde_json::Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        serde_json::Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    })
}

fn invalid_id_token(cause: impl Into<String>) -> ApiError {
    ApiError::BadGateway { code: "invalid_id_token", detail: "The provider's ID token did not verify; start the sign-in again.", cause: cause.into() }
}

impl Google {
    pub fn new(settings: GoogleSettings) -> Self {
        let mut issuers = vec![settings.issuer.clone()];
        if settings.issuer == super::config::GOOGLE_ISSUER {
            issuers.push("accounts.google.com".to_owned());
        }
        Self { settings, issuers, discovery: Mutex::new(None), jwks: Mutex::new(None) }
    }

    async fn discovery(&self, http: &ProviderHttp) -> Result<Arc<Discovery>> {
        if let Some((at, doc)) = self.discovery.lock().expect("not poisoned").as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(doc.clone());
        }
        let address = format!("{}/.well-known/openid-configuration", self.settings.issuer);
        let body = http.json(http.client().get(&address), "google discovery").await?.success()?;
        let doc: Discovery = serde_json::from_value(body).map_err(|e| provider_error(format!("google discovery: {e}")))?;
        // OpenID Connect Discovery §4.3: the document must name the issuer it was read from.
        if doc.issuer.trim_end_matches('/') != self.settings.issuer {
            return Err(provider_error(format!("google discovery: issuer {:?} is not the configured one", doc.issuer)));
        }
        let doc = Arc::new(doc);
        *self.discovery.lock().expect("not poisoned") = Some((Instant::now(), doc.clone()));
        Ok(doc)
    }

    /// The published key a token names, refetching the key set when it is stale or
    /// does not have the key yet.
    async fn key(&self, http: &ProviderHttp, jwks_uri: &Url, kid: Option<&str>) -> Result<Jwk> {
        let cached = self.jwks.lock().expect("not poisoned").clone();
        if let Some((at, set)) = &cached {
            let found = find_key(set, kid);
            match found {
                Some(key) if at.elapsed() < JWKS_TTL => return Ok(key),
                _ => {}
            }
            if at.elapsed() < JWKS_MIN_REFRESH {
                return found.ok_or_else(|| invalid_id_token("no published key has the token's kid"));
            }
        }
        let body = http.json(http.client().get(jwks_uri.clone()), "google keys").await?.success()?;
        let set: JwkSet = serde_json::from_value(body).map_err(|e| provider_error(format!("google keys: {e}")))?;
        let set = Arc::new(set);
        *self.jwks.lock().expect("not poisoned") = Some((Instant::now(), set.clone()));
        find_key(&set, kid).ok_or_else(|| invalid_id_token("no published key has the token's kid"))
    }

    pub async fn authorization_url(&self, http: &ProviderHttp, redirect_uri: &str, state: &str, flow: &FlowState) -> Result<Url> {
        let endpoint = match &self.settings.auth_url {
            Some(url) => url.clone(),
            None => self.discovery(http).await?.authorization_endpoint.clone(),
        };
        let mut url = endpoint;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", "openid email profile")
            .append_pair("state", state)
            .append_pair("nonce", &flow.nonce)
            .append_pair("code_challenge", &flow.code_challenge())
            .append_pair("code_challenge_method", "S256");
        Ok(url)
    }

    pub async fn identify(&self, http: &ProviderHttp, redirect_uri: &str, code: &str, flow: &FlowState) -> Result<Identity> {
        let discovery = self.discovery(http).await?;
        let token_endpoint = self.settings.token_url.clone().unwrap_or_else(|| discovery.token_endpoint.clone());
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", &self.settings.client_id),
            ("client_secret", self.settings.client_secret.expose_secret()),
            ("code_verifier", &flow.code_verifier),
        ];
        let token = http.json(http.client().post(token_endpoint).form(&form), "google token").await?.success()?;
        let id_token = http::str(&token, "id_token").ok_or_else(|| provider_error("google token: no id_token"))?;

        let header = jsonwebtoken::decode_header(id_token).map_err(|e| invalid_id_token(format!("header: {e}")))?;
        // Google signs with RS256 only; anything else (none, HS256 keyed with a public
        // key, …) is refused before a key is even looked up.
        if header.alg != Algorithm::RS256 {
            return Err(invalid_id_token(format!("algorithm {:?}", header.alg)));
        }
        let jwk = self.key(http, &discovery.jwks_uri, header.kid.as_deref()).await?;
        let claims = verify(id_token, &jwk, &self.settings.client_id, &self.issuers, &flow.nonce)?;

        let (mut email_claim, mut verified) = (claims.email.clone(), claims.email_verified.unwrap_or(false));
        if email_claim.is_none() {
            // The ID token may leave the email to the user-info endpoint (OIDC Core §5.4).
            if let (Some(endpoint), Some(access_token)) =
                (self.settings.userinfo_url.clone().or_else(|| discovery.userinfo_endpoint.clone()), http::str(&token, "access_token"))
            {
                let info = http.json(http.client().get(endpoint).bearer_auth(access_token), "google user info").await?.success()?;
                // OIDC Core §5.3.2: user info about anyone but the token's subject is ignored.
                if http::str(&info, "sub") == Some(claims.sub.as_str()) {
                    email_claim = http::str(&info, "email").map(str::to_owned);
                    verified = info.get("email_verified").and_then(|v| lenient_bool(v.clone()).ok().flatten()).unwrap_or(false);
                }
            }
        }
        let subject = http::subject(Some(claims.sub.clone()).filter(|s| !s.is_empty()), "google id token")?;
        Ok(Identity {
            provider: Provider::Google,
            subject,
            email: email(email_claim.as_deref()),
            email_verified: verified,
            display_name: display_name(&[claims.name.as_deref()])
                .or_else(|| display_name(&[claims.given_name.as_deref(), claims.family_name.as_deref()])),
            birth_date: None,
        })
    }
}

fn find_key(set: &JwkSet, kid: Option<&str>) -> Option<Jwk> {
    match kid {
        Some(kid) => set.find(kid).cloned(),
        // Without a kid, only an unambiguous set will do.
        None if set.keys.len() == 1 => set.keys.first().cloned(),
        None => None,
    }
}

/// Signature by `jwk`, then `iss` (one), `aud` (us alone), `exp` (and `nbf`), `iat`
/// (present, not in the future), `nonce` and `azp`.
fn verify(id_token: &str, jwk: &Jwk, client_id: &str, issuers: &[String], nonce: &str) -> Result<IdClaims> {
    if jwk.common.key_algorithm.is_some_and(|a| a != KeyAlgorithm::RS256) {
        return Err(invalid_id_token("the key is not an RS256 key"));
    }
    if jwk.common.public_key_use.as_ref().is_some_and(|u| *u != PublicKeyUse::Signature) {
        return Err(invalid_id_token("the key is not a signing key"));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| invalid_id_token(format!("key: {e}")))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[client_id]);
    validation.set_issuer(issuers);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_nbf = true;
    let claims = jsonwebtoken::decode::<IdClaims>(id_token, &key, &validation).map_err(|e| invalid_id_token(format!("{:?}", e.kind())))?.claims;
    if claims.nonce.as_deref() != Some(nonce) {
        return Err(invalid_id_token("nonce missing or not the one sent"));
    }
    if claims.azp.as_deref().is_some_and(|azp| azp != client_id) {
        return Err(invalid_id_token("azp is another client"));
    }
    // OIDC Core §3.1.3.7: refused when it lists an audience the client does not trust,
    // and it trusts only itself (jsonwebtoken accepts any list that includes it).
    if claims.aud.iter().any(|aud| aud != client_id) {
        return Err(invalid_id_token("aud lists another client"));
    }
    let now = chrono::Utc::now().timestamp();
    if claims.iat > now + LEEWAY_SECONDS as i64 {
        return Err(invalid_id_token("iat is in the future"));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_verified_accepts_booleans_and_their_legacy_strings() {
        let parse = |v: serde_json::Value| lenient_bool(v).unwrap();
        assert_eq!(parse(serde_json::json!(true)), Some(true));
        assert_eq!(parse(serde_json::json!("true")), Some(true));
        assert_eq!(parse(serde_json::json!("false")), Some(false));
        assert_eq!(parse(serde_json::json!("yes")), None);
        assert_eq!(parse(serde_json::json!(1)), None);
    }
}
