//! The client: local verification, revocation through introspection, and the
//! background refresh of the JWKS.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, Validation, jwk::JwkSet};
use log_hygiene::{AtMostEvery, Outage, without_userinfo};
use moka::future::Cache;
use revoked_tokens::RevokedTokens;
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    User,
    breaker::{Breaker, BreakerState},
    config::{AuthClientConfig, InvalidConfig},
    introspection::{IntrospectionRequest, IntrospectionResponse},
    keys::{FetchSlot, KeyCache},
};

/// The claims of an access token this library relies on.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Claims {
    sub: Uuid,
    sid: Uuid,
    jti: Uuid,
    /// Checked by the validation; kept to forget a revoked token once it expires.
    exp: u64,
    #[serde(default)]
    pub(crate) roles: Vec<String>,
    #[serde(default)]
    age_class: Option<u8>,
}

impl Claims {
    /// The user as the token says, without asking Auth (served degraded).
    pub(crate) fn user(&self) -> User {
        self.user_now(Live { roles: self.roles.clone(), age_class: None })
    }

    /// The user with what Auth's introspection says of them now, which wins over the
    /// token's claims: roles granted or removed, a birth date corrected since it was
    /// issued.
    fn user_now(&self, live: Live) -> User {
        User { id: self.sub, session_id: self.sid, token_id: self.jti, roles: live.roles, age_class: live.age_class.unwrap_or(self.age_class) }
    }
}

/// What Auth's introspection says of a live token's user now.
#[derive(Debug, Clone)]
struct Live {
    roles: Vec<String>,
    /// `None`: Auth did not say (an older Auth), so the token's claim stands.
    age_class: Option<Option<u8>>,
}

/// Every counter the client keeps, at zero, so that an alert can tell zero from a
/// series missing. Call once the metrics recorder is installed.
pub fn register_metrics() {
    for name in [
        "auth_client_degraded_total",
        "auth_client_unknown_key_total",
        "auth_client_introspections_shed_total",
        "auth_client_introspections_throttled_total",
    ] {
        metrics::counter!(name).increment(0);
    }
}

/// How long an idle connection to Auth is kept for reuse: below the 30 s after which
/// Auth closes a connection that sends no request (`platform::server::HEADER_READ_TIMEOUT`),
/// so an introspection is never sent on a connection Auth is closing (it would fail,
/// and the token be accepted on its signature alone).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// What access tokens must satisfy besides the signature: EdDSA, this issuer and
/// audience, not expired (no leeway).
pub(crate) fn validation(issuer: &str, audience: &str) -> Validation {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 0;
    // RFC 7519 §4.1.4: never "on or after" `exp`. jsonwebtoken refuses only once
    // `exp < now`, which accepts a token for the whole second of its `exp`; asking
    // for one second of life left makes that `exp <= now`, as Auth itself does.
    validation.reject_tokens_expiring_in_less_than = 1;
    // Auth's tokens carry no `nbf`; one that does is held to it (RFC 7519 §4.1.5).
    validation.validate_nbf = true;
    validation
}

/// The key id a token's header names, when the header parses, names EdDSA and asks
/// for no extension (`crit`, which RFC 7515 §4.1.11 says to refuse when not
/// understood: Auth's tokens use none): only then is a key looked up (or the JWKS
/// refetched).
pub(crate) fn eddsa_kid(token: &str) -> Option<String> {
    let header = jsonwebtoken::decode_header(token).ok()?;
    if header.alg != Algorithm::EdDSA || header.crit.is_some() {
        return None;
    }
    header.kid
}

/// The claims of a token signed by `key` and valid by `validation` now.
pub(crate) fn decode_claims(token: &str, key: &jsonwebtoken::DecodingKey, validation: &Validation) -> Option<Claims> {
    jsonwebtoken::decode::<Claims>(token, key, validation).ok().map(|data| data.claims)
}

/// A token whose signature and claims were checked with the keys already held, without
/// asking Auth (so not whether it was revoked): enough to key a rate limit on its user.
/// Put in the request's extensions, it spares the [`Viewer`](crate::Viewer) extractor
/// a second signature check.
#[derive(Debug, Clone)]
pub struct SignedToken(Arc<Claims>);

impl SignedToken {
    pub fn user_id(&self) -> Uuid {
        self.0.sub
    }
}

/// What a bearer token turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Authentication {
    /// Verified locally and, unless `degraded`, confirmed live by Auth.
    User { user: User, degraded: bool },
    /// The token could not be checked (its key is unknown and Auth is unreachable):
    /// served as anonymous.
    Unverifiable,
    /// The token names a key not held, and the key set was fetched before the token
    /// was issued, too recently to fetch it again: maybe a key rotated in since, maybe
    /// a forgery. Served as anonymous, not refused, and not an outage: anyone can send
    /// such a token.
    KeyNotYetFetched,
    /// Invalid, expired or revoked: answer 401.
    Invalid,
}

#[derive(Clone)]
pub struct AuthClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: AuthClientConfig,
    /// Auth's endpoints, and the same without user name or password for spans
    /// (`url.full`), which reach the logs and the trace collector.
    jwks_url: String,
    jwks_url_shown: String,
    introspection_url: String,
    introspection_url_shown: String,
    http: reqwest::Client,
    keys: KeyCache,
    validation: Validation,
    breaker: Breaker,
    /// Introspection answers by token hash: `Some` live (with the user's roles and age
    /// class now), `None` revoked.
    introspections: Cache<[u8; 32], Option<Live>>,
    /// Tokens Auth said were revoked, by `jti`, until they expire: see
    /// [`AuthClient::found_revoked`].
    revoked: RevokedTokens,
    /// Whether the last JWKS fetch failed, to report Auth unreachable (`auth_reachable`)
    /// and retry soon.
    jwks_failing: AtomicBool,
    /// The JWKS fetch's outages, logged once rather than per retry, and their starts at
    /// most once a minute however often Auth flaps.
    jwks_outage: Outage,
    /// Told when a JWKS fetch starts failing, so the background refresh retries soon.
    jwks_failed: tokio::sync::Notify,
    /// `Authorization: Basic` of every introspection, built once (marked sensitive).
    credentials: reqwest::header::HeaderValue,
    /// Auth's refusal of our credentials, logged at most once a minute: each signed-in
    /// request meets it until the breaker opens, then each probe. It, `shed_logged`
    /// and `throttled_logged` are driven by requests: whoever holds many tokens would
    /// otherwise choose the log's volume.
    refused_logged: AtMostEvery,
    /// Whether Auth's last answer to an introspection was a refusal of our credentials
    /// (reported by readiness, cleared by the next answer).
    credentials_refused: AtomicBool,
    /// Places for introspection calls in flight (`max_concurrent_introspections`).
    introspection_slots: tokio::sync::Semaphore,
    /// Calls not made for want of a place, logged at most once a minute.
    shed_logged: AtMostEvery,
    /// Calls refused by Auth's rate limit, logged at most once a minute.
    throttled_logged: AtMostEvery,
}

enum Revocation {
    Live(Live),
    Revoked,
    Unknown,
}

impl AuthClient {
    /// A client of Auth with these settings; refused when they cannot work (an Auth URL
    /// with a user name or password, which would displace the client credentials).
    pub fn new(config: AuthClientConfig) -> Result<Self, InvalidConfig> {
        config.check()?;
        let validation = validation(&config.issuer, &config.audience);
        // A no-op when a provider is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .connect_timeout(config.introspection_timeout.max(Duration::from_millis(50)))
            .build()
            .expect("a plain HTTP client builds");
        let introspections = Cache::builder().time_to_live(config.introspection_cache_ttl).max_capacity(100_000).build();
        let jwks_url = format!("{}/.well-known/jwks.json", config.auth_url);
        let introspection_url = format!("{}/api/v1/auth/introspect", config.auth_url);
        Ok(Self {
            inner: Arc::new(Inner {
                jwks_url_shown: without_userinfo(&jwks_url),
                introspection_url_shown: without_userinfo(&introspection_url),
                jwks_url,
                introspection_url,
                breaker: Breaker::new(config.breaker_failure_threshold, config.breaker_open_for),
                credentials: basic_credentials(&config.client_id, config.client_secret.expose_secret()),
                refused_logged: AtMostEvery::default(),
                credentials_refused: AtomicBool::new(false),
                introspection_slots: tokio::sync::Semaphore::new(config.max_concurrent_introspections.max(1)),
                shed_logged: AtMostEvery::default(),
                throttled_logged: AtMostEvery::default(),
                config,
                http,
                keys: KeyCache::default(),
                validation,
                introspections,
                revoked: RevokedTokens::new(),
                jwks_failing: AtomicBool::new(false),
                jwks_outage: Outage::default(),
                jwks_failed: tokio::sync::Notify::new(),
            }),
        })
    }

    /// Starts the background task that fetches the JWKS: every `jwks_retry_interval`
    /// while the last fetch failed (no key known yet, or Auth down since), else every
    /// `jwks_refresh_interval`. Returns at once, whether Auth is up or not.
    pub fn spawn_key_refresh(&self) -> tokio::task::JoinHandle<()> {
        let client = self.clone();
        tokio::spawn(async move {
            loop {
                let config = &client.inner.config;
                let wait = if client.refresh_keys().await { config.jwks_refresh_interval } else { config.jwks_retry_interval };
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    // A fetch on a request path failed: retried here soon, rather than
                    // at the next refresh minutes later, so readiness and the keys
                    // recover as soon as Auth does.
                    () = client.inner.jwks_failed.notified() => tokio::time::sleep(config.jwks_retry_interval).await,
                }
            }
        })
    }

    pub fn has_keys(&self) -> bool {
        !self.inner.keys.is_empty()
    }

    /// Whether Auth answered when last asked: keys are held, the last JWKS fetch
    /// succeeded and the breaker is not within an open window. Without signed-in
    /// traffic the only asking is the key refresh, so this changes no sooner than it runs.
    pub fn auth_reachable(&self) -> bool {
        self.has_keys() && !self.inner.jwks_failing.load(Ordering::Relaxed) && !self.inner.breaker.refusing()
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.inner.breaker.state()
    }

    /// Whether Auth refused this service's introspection credentials at its last
    /// answer: a configuration error, reported apart from an unreachable Auth.
    pub fn credentials_refused(&self) -> bool {
        self.inner.credentials_refused.load(Ordering::Relaxed)
    }

    /// Asks Auth once whether it accepts this service's introspection credentials, by
    /// introspecting a string that is no token (Auth answers `active: false` to a
    /// client it knows). Waits up to the JWKS timeout, not the introspection one: this
    /// runs once, at start, on a cold connection. An answer sets what
    /// [`credentials_refused`](Self::credentials_refused) reports, so readiness names a
    /// refusal before any signed-in request meets it.
    pub async fn check_credentials(&self) -> CredentialCheck {
        match self.introspect(CREDENTIAL_CHECK_TOKEN, None, self.inner.config.jwks_timeout).await {
            Ok(_) => CredentialCheck::Accepted,
            Err(IntrospectionError::Unauthorized) => CredentialCheck::Refused,
            // Auth counts accepted credentials against their client's quota and refused
            // ones against the caller's address: a 429 does not say which it was.
            Err(IntrospectionError::Throttled) => CredentialCheck::Unanswered("answered 429 Too Many Requests".into()),
            Err(IntrospectionError::Failed(why)) => CredentialCheck::Unanswered(why),
        }
    }

    /// Fetches the JWKS now, waiting up to the JWKS timeout; true when keys were loaded.
    pub async fn refresh_keys(&self) -> bool {
        self.refresh_keys_within(self.inner.config.jwks_timeout).await
    }

    async fn refresh_keys_within(&self, timeout: Duration) -> bool {
        match self.fetch_keys(timeout).await {
            Ok(loaded) => {
                self.inner.jwks_failing.store(false, Ordering::Relaxed);
                if let Some(failures) = self.inner.jwks_outage.succeeded() {
                    tracing::info!(keys = loaded, failures, "JWKS fetched again");
                }
                true
            }
            Err(why) => {
                if !self.inner.jwks_failing.swap(true, Ordering::Relaxed) {
                    self.inner.jwks_failed.notify_one();
                }
                if self.inner.jwks_outage.failed() {
                    tracing::warn!(error = %why, "JWKS fetch failed; keeping the keys already known and retrying");
                }
                false
            }
        }
    }

    async fn fetch_keys(&self, timeout: Duration) -> Result<usize, String> {
        let asked_at = SystemTime::now();
        let span = tracing::info_span!("GET /.well-known/jwks.json", otel.kind = "client", http.request.method = "GET", url.full = %self.inner.jwks_url_shown);
        let headers = outgoing_headers(&span, None);
        let response =
            self.inner.http.get(&self.inner.jwks_url).headers(headers).timeout(timeout).send().instrument(span).await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let set: JwkSet = response.json().await.map_err(|e| format!("unreadable: {e}"))?;
        match self.inner.keys.replace(&set, asked_at) {
            0 => Err("no usable key in the set".into()),
            loaded => Ok(loaded),
        }
    }

    /// The signature and claims check alone, with the keys held now (never fetching):
    /// `None` for a token that fails it or names a key not held.
    pub fn check_signature(&self, token: &str) -> Option<SignedToken> {
        let key = self.inner.keys.get(&eddsa_kid(token)?)?;
        decode_claims(token, &key, &self.inner.validation).map(|claims| SignedToken(Arc::new(claims)))
    }

    /// Whether Auth has said this token was revoked (in this process, before its
    /// expiry). A rate limit counts such a token by address, not against its user:
    /// otherwise whoever holds a leaked token could keep its owner at 429 after the
    /// owner signed out. Bounded (10,000 tokens); only Auth's key makes tokens.
    pub fn found_revoked(&self, signed: &SignedToken) -> bool {
        self.inner.revoked.contains(&signed.0.jti)
    }

    /// Checks a bearer token: signature and expiry locally, revocation through Auth.
    /// `request_id` is forwarded to Auth as `X-Request-Id`.
    pub async fn authenticate(&self, token: &str, request_id: Option<&str>) -> Authentication {
        self.authenticate_signed(token, None, request_id).await
    }

    /// As [`authenticate`](Self::authenticate), trusting `signed` (from
    /// [`check_signature`](Self::check_signature) on this same token) for the signature.
    pub async fn authenticate_signed(&self, token: &str, signed: Option<&SignedToken>, request_id: Option<&str>) -> Authentication {
        let claims = match signed {
            Some(signed) => signed.0.clone(),
            None => {
                let Some(kid) = eddsa_kid(token) else { return Authentication::Invalid };
                let key = match self.inner.keys.get(&kid) {
                    Some(key) => key,
                    None => match self.key_after_refetch(&kid, token).await {
                        KeyLookup::Found(key) => key,
                        KeyLookup::Unknown => return Authentication::Invalid,
                        KeyLookup::Undecided => return Authentication::Unverifiable,
                        KeyLookup::NotYetFetched => return Authentication::KeyNotYetFetched,
                    },
                };
                let Some(claims) = decode_claims(token, &key, &self.inner.validation) else {
                    return Authentication::Invalid;
                };
                Arc::new(claims)
            }
        };
        // Auth said so already: revocation is for good, and asking again would let an
        // outage of Auth serve the token as a degraded viewer.
        if self.inner.revoked.contains(&claims.jti) {
            return Authentication::Invalid;
        }
        match self.revocation(token, request_id).await {
            Revocation::Live(live) => Authentication::User { user: claims.user_now(live), degraded: false },
            Revocation::Revoked => {
                self.inner.revoked.remember(claims.jti, claims.exp);
                Authentication::Invalid
            }
            Revocation::Unknown => Authentication::User { user: claims.user(), degraded: true },
        }
    }

    /// The key `kid` once the key set has been refetched, when a refetch is due. On a
    /// request path: neither a fetch of its own nor one under way for another request
    /// is waited for longer than an introspection, so a hanging Auth never holds a
    /// viewer for the JWKS timeout.
    async fn key_after_refetch(&self, kid: &str, token: &str) -> KeyLookup {
        let config = &self.inner.config;
        match self.inner.keys.fetch_slot(config.unknown_kid_refetch_interval, config.introspection_timeout).await {
            FetchSlot::Busy => return KeyLookup::Undecided,
            FetchSlot::Due(_slot) if !self.refresh_keys_within(config.introspection_timeout).await => return KeyLookup::Undecided,
            FetchSlot::Due(_slot) => {}
            // Fetched recently: trust that answer, unless it was a failure. Auth did not
            // say it does not know this key then: the token may be good (a key published
            // just before Auth went down), so it is served as anonymous, not refused.
            FetchSlot::Recent if self.inner.keys.is_empty() || self.inner.jwks_failing.load(Ordering::Relaxed) => return KeyLookup::Undecided,
            FetchSlot::Recent => match issued_at(token) {
                // Auth issues no token dated ahead of its clock.
                Some(at) if at > SystemTime::now() + CLOCK_SKEW => return KeyLookup::Unknown,
                // Nor does a set asked for before the token was issued say anything of
                // its key: after a rotation not announced ahead, the first token under
                // the new key is good, and refusing it (401) until the next refetch
                // would send its viewer round a refresh loop. Served as anonymous
                // instead; a forged token naming a fresh date gains nothing by it.
                Some(at) if !self.inner.keys.asked_after(at + CLOCK_SKEW) => return KeyLookup::NotYetFetched,
                _ => {}
            },
        }
        self.inner.keys.get(kid).map_or(KeyLookup::Unknown, KeyLookup::Found)
    }

    async fn revocation(&self, token: &str, request_id: Option<&str>) -> Revocation {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Concurrent requests with one token make one call, the others waiting for its
        // answer (the cache runs one initialisation per key): a burst of requests with
        // one token holds one place, not one each. No answer is not cached.
        match self.inner.introspections.try_get_with(key, self.ask(token, request_id)).await {
            Ok(live) => live.map_or(Revocation::Revoked, Revocation::Live),
            Err(_) => Revocation::Unknown,
        }
    }

    /// One introspection call, within a place and the breaker: `Some` live, `None`
    /// revoked, `Err` when Auth gave no answer.
    async fn ask(&self, token: &str, request_id: Option<&str>) -> Result<Option<Live>, Unconfirmed> {
        // A place before the breaker: a call not made must not hold the breaker's probe.
        // Waited for up to the introspection timeout: under a burst of new tokens places
        // free within milliseconds; when a slow Auth holds them all, the token goes
        // unconfirmed rather than wait longer or open another connection.
        let waited = tokio::time::timeout(self.inner.config.introspection_timeout, self.inner.introspection_slots.acquire()).await;
        let Ok(Ok(_place)) = waited else {
            self.shed();
            return Err(Unconfirmed);
        };
        let Some(call) = self.inner.breaker.try_acquire() else {
            return Err(Unconfirmed);
        };
        match self.introspect(token, request_id, self.inner.config.introspection_timeout).await {
            Ok(answer) => {
                call.succeeded();
                Ok(answer.active.then(|| Live { roles: answer.roles.unwrap_or_default(), age_class: answer.age_class }))
            }
            // Auth is up and answering: its rate limit refused this one call. Counted as
            // a failure it would open the breaker, and turn revocation checks off for
            // every viewer while Auth is healthy: anyone able to present many distinct
            // tokens at once could do that at will. This token alone goes unconfirmed.
            Err(IntrospectionError::Throttled) => {
                metrics::counter!("auth_client_introspections_throttled_total").increment(1);
                if self.inner.throttled_logged.happened().is_some() {
                    tracing::warn!(
                        "introspection refused by Auth's rate limit; tokens are accepted on their signature meanwhile (logged at most once a minute)"
                    );
                }
                call.succeeded();
                Err(Unconfirmed)
            }
            // Auth is up but refuses our credentials: a configuration error no retry
            // fixes. Counted as a failure, so the breaker opens and signed-in requests
            // are served degraded without each waiting for a refusal.
            Err(IntrospectionError::Unauthorized) => {
                self.log_refused_credentials();
                call.failed();
                Err(Unconfirmed)
            }
            Err(IntrospectionError::Failed(e)) => {
                tracing::warn!(error = %e, "introspection failed; token accepted on its signature");
                call.failed();
                Err(Unconfirmed)
            }
        }
    }

    /// Every place stayed taken for the introspection timeout: a slow Auth holds them,
    /// or a flood of new tokens came. This token goes unconfirmed rather than waiting
    /// longer or opening another connection; the breaker is told of no failure (the
    /// calls holding the places tell it of theirs).
    fn shed(&self) {
        metrics::counter!("auth_client_introspections_shed_total").increment(1);
        if self.inner.shed_logged.happened().is_some() {
            tracing::warn!(
                max = self.inner.config.max_concurrent_introspections,
                "every introspection place is taken; tokens are accepted on their signature meanwhile (logged at most once a minute)"
            );
        }
    }

    fn log_refused_credentials(&self) {
        if self.inner.refused_logged.happened().is_none() {
            return;
        }
        let config = &self.inner.config;
        tracing::error!(
            client_id = %config.client_id,
            "Auth refused this service's introspection credentials (401): check {} against Auth's AUTH_INTROSPECTION_CLIENTS; \
             tokens are accepted on their signature until then (logged at most once a minute)",
            config.credential_settings,
        );
    }

    async fn introspect(&self, token: &str, request_id: Option<&str>, timeout: Duration) -> Result<IntrospectionResponse, IntrospectionError> {
        let span = tracing::info_span!(
            "POST /api/v1/auth/introspect",
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = "POST",
            url.full = %self.inner.introspection_url_shown,
            http.response.status_code = tracing::field::Empty,
        );
        let headers = outgoing_headers(&span, request_id);
        let result = async {
            let response = self
                .inner
                .http
                .post(&self.inner.introspection_url)
                .headers(headers)
                .header(reqwest::header::AUTHORIZATION, self.inner.credentials.clone())
                .timeout(timeout)
                .json(&IntrospectionRequest { token })
                .send()
                .await
                .map_err(|e| IntrospectionError::Failed(if e.is_timeout() { "timed out".to_owned() } else { format!("unreachable: {e}") }))?;
            // As an i64: tracing-opentelemetry has no u64 field, and would export a string.
            tracing::Span::current().record("http.response.status_code", i64::from(response.status().as_u16()));
            if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
                return Err(IntrospectionError::Throttled);
            }
            if response.status() == reqwest::StatusCode::UNAUTHORIZED {
                return Err(IntrospectionError::Unauthorized);
            }
            if !response.status().is_success() {
                return Err(IntrospectionError::Failed(format!("answered {}", response.status())));
            }
            response.json().await.map_err(|e| IntrospectionError::Failed(format!("unreadable answer: {e}")))
        }
        .instrument(span.clone())
        .await;
        if result.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        // Whatever asked: an answer clears a refusal, a refusal is remembered.
        match &result {
            Ok(_) => self.inner.credentials_refused.store(false, Ordering::Relaxed),
            Err(IntrospectionError::Unauthorized) => self.inner.credentials_refused.store(true, Ordering::Relaxed),
            Err(_) => {}
        }
        result
    }
}

/// What Auth said of this service's introspection credentials ([`AuthClient::check_credentials`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialCheck {
    /// Auth answered an introspection made with them.
    Accepted,
    /// Auth refused them (401): a wrong client id or secret.
    Refused,
    /// Auth could not be asked, or its answer said nothing of them: why.
    Unanswered(String),
}

/// What [`AuthClient::check_credentials`] introspects: not a JWT, so Auth answers
/// `active: false` without a database query.
pub const CREDENTIAL_CHECK_TOKEN: &str = "credential-check";

/// Auth gave no answer about a token: it is served on its signature, degraded.
#[derive(Debug)]
struct Unconfirmed;

/// Why an introspection call gave no answer.
enum IntrospectionError {
    /// Auth's rate limit refused the call (429): Auth is up.
    Throttled,
    /// Auth refused our client credentials (401): a wrong id or secret.
    Unauthorized,
    /// Auth could not be reached, timed out, failed (5xx) or answered nonsense.
    Failed(String),
}

enum KeyLookup {
    Found(jsonwebtoken::DecodingKey),
    /// Auth answered, after the token was issued, and has no such key: the token is
    /// forged or from elsewhere.
    Unknown,
    /// Auth could not be asked.
    Undecided,
    /// Auth was asked before the token was issued, too recently to ask again.
    NotYetFetched,
}

/// How far Auth's clock may run ahead of ours: a token is taken as issued this much
/// later than its `iat` says.
const CLOCK_SKEW: Duration = Duration::from_secs(30);

/// When the token says it was issued, by its unverified `iat` (its key is not held);
/// `None` without one (every token of Auth's has one) or past the clock's range.
fn issued_at(token: &str) -> Option<SystemTime> {
    #[derive(Deserialize)]
    struct IssuedAt {
        iat: u64,
    }
    let claims = jsonwebtoken::dangerous::insecure_decode_claims::<IssuedAt>(token).ok()?;
    let at = UNIX_EPOCH.checked_add(Duration::from_secs(claims.iat))?;
    // The skew is added to it later: within the clock's range with it too.
    at.checked_add(CLOCK_SKEW)?;
    Some(at)
}

/// RFC 6749 §2.3.1 `client_secret_basic`: Base64 of the form-urlencoded id and secret.
/// (The ids and secrets Auth accepts are unreserved characters, which the encoding
/// leaves as they are; other values are still sent correctly, and refused by Auth.)
fn basic_credentials(id: &str, secret: &str) -> reqwest::header::HeaderValue {
    use base64::Engine;
    const FORM: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    let plain = format!("{}:{}", percent_encoding::utf8_percent_encode(id, FORM), percent_encoding::utf8_percent_encode(secret, FORM));
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(plain)))
        .expect("Base64 is a valid header value");
    value.set_sensitive(true);
    value
}

/// Headers of an outgoing call: W3C `traceparent` of its client span, so Auth's spans
/// join the caller's trace, and the caller's `X-Request-Id`, or a fresh one for calls
/// made on no request's behalf (the background JWKS refresh): Auth behind nginx
/// refuses requests without one (`REQUIRE_REQUEST_ID`).
fn outgoing_headers(span: &tracing::Span, request_id: Option<&str>) -> reqwest::header::HeaderMap {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let mut headers = reqwest::header::HeaderMap::new();
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut opentelemetry_http::HeaderInjector(&mut headers)));
    let value = request_id
        .and_then(|id| reqwest::header::HeaderValue::from_str(id).ok())
        .unwrap_or_else(|| reqwest::header::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("a UUID is a valid header value"));
    headers.insert("x-request-id", value);
    headers
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, EncodingKey, Header, errors::ErrorKind};
    use serde_json::{Value, json};

    use super::*;

    /// RFC 8037 A.1's Ed25519 key: its seed in a PKCS#8 envelope, and its public half.
    const PKCS8_PREFIX: [u8; 16] = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    const SEED: [u8; 32] = [
        0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69,
        0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
    ];
    const PUBLIC_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn token_expiring_at(exp: u64) -> String {
        signed(&json!({"iss": "cinema-auth", "aud": "cinema", "sub": "viewer", "exp": exp}))
    }

    fn signed(claims: &Value) -> String {
        let der = [PKCS8_PREFIX.as_slice(), SEED.as_slice()].concat();
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &EncodingKey::from_ed_der(&der)).unwrap()
    }

    /// Auth flapping (down, up, down, up within a minute) while the keys are fetched:
    /// the outage's start and end are logged once each, not at every flap.
    #[tokio::test]
    async fn a_flapping_jwks_is_logged_once_a_minute() {
        let (logs, _guard) = log_hygiene::testing::CapturedLogs::capture(tracing::Level::INFO);
        let up = Arc::new(AtomicBool::new(false));
        let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": PUBLIC_X, "kid": "k1", "alg": "EdDSA", "use": "sig"}]});
        let answer = {
            let up = up.clone();
            move || {
                let body = up.load(Ordering::Relaxed).then(|| axum::Json(jwks.clone()));
                async move { body.ok_or(axum::http::StatusCode::SERVICE_UNAVAILABLE) }
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(axum::serve(listener, axum::Router::new().route("/.well-known/jwks.json", axum::routing::get(answer))).into_future());
        let client = AuthClient::new(AuthClientConfig::new(url, "movies", secrecy::SecretString::from("a-test-secret-0123456789abcdef"))).unwrap();
        for auth_up in [false, false, true, false, false, true] {
            up.store(auth_up, Ordering::Relaxed);
            assert_eq!(client.refresh_keys().await, auth_up);
        }
        let text = logs.text();
        let count = |needle: &str| text.lines().filter(|line| line.contains(needle)).count();
        assert_eq!((count("JWKS fetch failed"), count("JWKS fetched again")), (1, 1), "{text}");
        assert!(text.contains("failures=2"), "the end tells the failures it saw: {text}");
    }

    /// RFC 7515 §4.1.11: a header naming critical extensions we do not understand (any:
    /// Auth's tokens use none) is refused, whatever the signature.
    #[test]
    fn a_header_with_critical_extensions_is_refused() {
        let der = [PKCS8_PREFIX.as_slice(), SEED.as_slice()].concat();
        let claims = json!({"iss": "cinema-auth", "aud": "cinema", "sub": "viewer", "exp": jsonwebtoken::get_current_timestamp() + 60});
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("k1".into());
        let plain = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(&der)).unwrap();
        assert_eq!(eddsa_kid(&plain).as_deref(), Some("k1"));
        header.crit = Some(vec!["exp-ext".into()]);
        let critical = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(&der)).unwrap();
        assert_eq!(eddsa_kid(&critical), None);
    }

    /// Auth's answer wins over the token's age class when it says one, `null` (no birth
    /// date) included; an answer without the field (an Auth from before it) leaves the
    /// token's claim, rather than dropping a child's cap to the default.
    #[test]
    fn the_age_class_of_the_answer_wins_only_when_it_says_one() {
        let claims: Claims = serde_json::from_value(json!({
            "sub": Uuid::nil(), "sid": Uuid::nil(), "jti": Uuid::nil(), "exp": 1, "roles": ["user"], "age_class": 12
        }))
        .unwrap();
        let live = |age_class| Live { roles: vec!["user".into()], age_class };
        assert_eq!(claims.user_now(live(None)).age_class, Some(12), "an older Auth: the token's");
        assert_eq!(claims.user_now(live(Some(Some(18)))).age_class, Some(18));
        assert_eq!(claims.user_now(live(Some(None))).age_class, None, "Auth knows no birth date now");
        assert_eq!(claims.user().age_class, Some(12));
    }

    /// While Movies serves degraded, this check is the only one a token gets: a token
    /// of Auth's key made for another audience or by another issuer must not pass.
    #[test]
    fn tokens_for_another_audience_or_issuer_or_not_yet_valid_are_refused() {
        let key = DecodingKey::from_ed_components(PUBLIC_X).unwrap();
        let exp = jsonwebtoken::get_current_timestamp() + 60;
        let check = |claims: Value| jsonwebtoken::decode::<Value>(&signed(&claims), &key, &validation("cinema-auth", "cinema")).map(|_| ());
        assert!(check(json!({"iss": "cinema-auth", "aud": "cinema", "sub": "viewer", "exp": exp})).is_ok());
        let refusals = [
            (json!({"iss": "cinema-auth", "aud": "billing", "sub": "viewer", "exp": exp}), ErrorKind::InvalidAudience),
            (json!({"iss": "cinema-auth", "aud": ["billing"], "sub": "viewer", "exp": exp}), ErrorKind::InvalidAudience),
            (json!({"iss": "other-auth", "aud": "cinema", "sub": "viewer", "exp": exp}), ErrorKind::InvalidIssuer),
            (json!({"iss": "cinema-auth", "sub": "viewer", "exp": exp}), ErrorKind::MissingRequiredClaim("aud".into())),
            (json!({"aud": "cinema", "sub": "viewer", "exp": exp}), ErrorKind::MissingRequiredClaim("iss".into())),
            (json!({"iss": "cinema-auth", "aud": "cinema", "sub": "viewer", "exp": exp, "nbf": exp}), ErrorKind::ImmatureSignature),
        ];
        for (claims, kind) in refusals {
            let refused = check(claims.clone()).unwrap_err();
            assert_eq!(refused.kind(), &kind, "{claims}");
        }
    }

    /// RFC 6749 §2.3.1 and RFC 7617: `Basic base64(urlencode(id) ":" urlencode(secret))`.
    #[test]
    fn credentials_are_sent_as_basic_with_form_urlencoded_parts() {
        use base64::Engine;
        let value = basic_credentials("movies", "A-Za-z0-9._~secret");
        assert!(value.is_sensitive());
        let encoded = value.to_str().unwrap().strip_prefix("Basic ").unwrap();
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap(), b"movies:A-Za-z0-9._~secret");
        let value = basic_credentials("a:b", "p w+%");
        let encoded = value.to_str().unwrap().strip_prefix("Basic ").unwrap();
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap(), b"a%3Ab:p%20w%2B%25");
    }

    #[test]
    fn a_token_is_refused_from_the_second_of_its_exp() {
        let key = DecodingKey::from_ed_components(PUBLIC_X).unwrap();
        let now = jsonwebtoken::get_current_timestamp();
        let live = jsonwebtoken::decode::<Value>(&token_expiring_at(now + 60), &key, &validation("cinema-auth", "cinema"));
        assert!(live.is_ok(), "{live:?}");
        let at_exp = jsonwebtoken::decode::<Value>(&token_expiring_at(now), &key, &validation("cinema-auth", "cinema")).unwrap_err();
        assert_eq!(at_exp.kind(), &ErrorKind::ExpiredSignature);
    }
}
