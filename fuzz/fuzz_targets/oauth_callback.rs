//! The OAuth callback (`GET /api/v1/oauth/{provider}/callback?code=…&state=…`):
//! the query string through Auth's own `Query` extractor into `CallbackQuery` (`code`,
//! `state`, `error`, VK's `device_id`), the browser-binding cookie
//! (`http::oauth::BrowserCookie::read`, of an HTTPS deployment, `__Host-oauth_browser`,
//! or a plain-HTTP one, `oauth_browser`), and the checks the handler makes once the state
//! found its flow (`http::oauth::accept_callback`: this provider, this browser, no
//! provider error, a code of sane length). The Redis lookup of the state and the
//! provider calls are outside.
//!
//! Properties, for every input:
//! - nothing panics, rejections included (each renders as a 4xx problem);
//! - the extracted fields are exactly the query's percent-decoded pairs
//!   (`serde_urlencoded` read independently as a list of pairs), a repeated known
//!   field is refused, unknown ones are ignored;
//! - a browser cookie is only ever read from a well-formed pair of the deployment's
//!   name (never the other's);
//! - `accept_callback` decides exactly by the documented rule: `invalid_state` unless
//!   the flow is this provider's and this browser's; then `provider_denied` for
//!   `error=access_denied`, `provider_error` for any other error or a code that is
//!   missing, empty or over 2048 bytes; otherwise the code and device id, untouched.
//!
//! Input: byte 0 the provider in the path (its top bit set: an HTTPS deployment), byte 1
//! the flow's provider, then the query
//! string, a NUL, and `Cookie` header values separated by NULs; `$B` in a cookie
//! stands for the browser cookie the flow was started with.
#![no_main]

use std::sync::LazyLock;

use auth::{
    error::ApiError,
    http::{
        extract::Query,
        oauth::{BrowserCookie, CallbackQuery, accept_callback},
    },
    oauth::{FlowState, Provider},
};
use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, HeaderValue, Request, StatusCode, header},
    response::IntoResponse,
};
use libfuzzer_sys::fuzz_target;

/// The flow's browser cookie: 43 characters, as `pkce::random_token` makes them.
const BROWSER: &str = "Zm9vYmFyYmF6cXV4LV9fZm9vYmFyYmF6cXV4LV9fX18";

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| tokio::runtime::Builder::new_current_thread().build().expect("runtime"));

fn well_formed_cookie(v: &str) -> bool {
    v.len() == 43 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fuzz_target!(|data: &[u8]| {
    let [path_provider, flow_provider, rest @ ..] = data else { return };
    let kind = BrowserCookie::new(*path_provider >= 0x80);
    let (name, other_name) =
        if *path_provider >= 0x80 { ("__Host-oauth_browser", "oauth_browser") } else { ("oauth_browser", "__Host-oauth_browser") };
    assert_eq!(kind.name(), name);
    let path_provider = Provider::ALL[usize::from(*path_provider) % 4];
    let flow_provider = Provider::ALL[usize::from(*flow_provider) % 4];
    let mut pieces = rest.split(|&b| b == 0);
    let query_bytes = pieces.next().unwrap_or_default();
    let Ok(raw_query) = std::str::from_utf8(query_bytes) else { return };
    let mut request = Request::get(format!("/api/v1/oauth/{}/callback?{raw_query}", path_provider.as_str()));
    for cookie in pieces {
        let cookie = String::from_utf8_lossy(cookie).replace("$B", BROWSER);
        let Ok(value) = HeaderValue::from_str(&cookie) else { return };
        request = request.header(header::COOKIE, value);
    }
    let Ok(request) = request.body(()) else { return };
    let (mut parts, ()) = request.into_parts();

    // The query, as the handler's extractor reads it, against the pairs read on their own.
    let extracted = RUNTIME.block_on(Query::<CallbackQuery>::from_request_parts(&mut parts, &()));
    let query_string = parts.uri.query().unwrap_or_default();
    let pairs = serde_urlencoded::from_str::<Vec<(String, String)>>(query_string);
    let query = match extracted {
        Ok(Query(query)) => query,
        Err(rejection) => {
            if let Ok(pairs) = &pairs {
                let known = ["code", "state", "error", "device_id"];
                assert!(known.iter().any(|k| pairs.iter().filter(|(name, _)| name == k).count() > 1), "refused a query of distinct pairs {pairs:?}");
            }
            // A query that does not deserialise is a 422 problem (`validation_failed`, field `query`).
            assert_eq!(rejection.into_response().status(), StatusCode::UNPROCESSABLE_ENTITY);
            return;
        }
    };
    let pairs = pairs.unwrap_or_else(|e| panic!("extracted {query_string:?}, which does not read as pairs: {e}"));
    let field = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(query.code, field("code"));
    assert_eq!(query.state, field("state"));
    assert_eq!(query.error, field("error"));
    assert_eq!(query.device_id, field("device_id"));

    // The browser binding.
    let headers: &HeaderMap = &parts.headers;
    let cookie = kind.read(headers);
    if let Some(value) = cookie {
        assert!(well_formed_cookie(value), "read a malformed browser cookie {value:?}");
        let pair = format!("{name}={value}");
        assert!(
            headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).any(|v| v.split(';').any(|p| p.trim() == pair)),
            "read {value:?}, which no cookie pair carries"
        );
    }
    let single: Vec<_> = headers.get_all(header::COOKIE).iter().collect();
    if single.len() == 1 && single[0].as_bytes() == format!("{name}={BROWSER}").as_bytes() {
        assert_eq!(cookie, Some(BROWSER));
    }
    if single.len() == 1 && single[0].as_bytes() == format!("{other_name}={BROWSER}").as_bytes() {
        assert_eq!(cookie, None, "read the cookie of the other name");
    }

    // The checks after the flow was found.
    let flow = FlowState::new(flow_provider, BROWSER, None, None);
    let bound = path_provider == flow_provider && cookie == Some(BROWSER);
    let decided = accept_callback(&query, path_provider, &flow, cookie);
    let code_ok = query.code.as_deref().is_some_and(|c| !c.is_empty() && c.len() <= 2048);
    match (&decided, bound, query.error.as_deref()) {
        (Err(ApiError::Refused { code: "invalid_state", status, .. }), false, _) => assert_eq!(*status, StatusCode::BAD_REQUEST),
        (Err(ApiError::Refused { code: "provider_denied", status, .. }), true, Some("access_denied")) => {
            assert_eq!(*status, StatusCode::FORBIDDEN)
        }
        (Err(ApiError::BadGateway { code: "provider_error", .. }), true, Some(e)) => assert_ne!(e, "access_denied"),
        (Err(ApiError::BadGateway { code: "provider_error", .. }), true, None) => assert!(!code_ok),
        (Ok(callback), true, None) => {
            assert!(code_ok);
            assert_eq!(Some(callback.code), query.code.as_deref());
            assert_eq!(callback.device_id, query.device_id.as_deref());
        }
        (other, _, _) => panic!("bound={bound} error={:?} code_ok={code_ok} decided {:?}", query.error, other.as_ref().err()),
    }
    if let Err(e) = decided {
        let status = e.into_response().status();
        assert!([StatusCode::BAD_REQUEST, StatusCode::FORBIDDEN, StatusCode::BAD_GATEWAY].contains(&status), "{status}");
    }
});
