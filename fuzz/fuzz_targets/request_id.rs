//! `X-Request-Id`: the validity rule (`platform::http::is_valid_request_id`) and the
//! middleware every service runs (`ensure_request_id`, reached through
//! `platform::http::standard_layers` on a real router).
//!
//! Properties, for every input:
//! - nothing panics;
//! - a value is accepted ⇔ it is 1 to 128 characters, each of `[A-Za-z0-9._-]`;
//! - through the middleware, the handler and the response see the same id, readable by
//!   `platform::http::request_id`; it is the client's when that is valid, otherwise a
//!   fresh UUID; it is always itself valid;
//! - without the header, a deployment that requires one answers 400 (still with a
//!   fresh id) except on the probes and `/metrics`; otherwise it generates one.
//!
//! Input: the first byte holds flags (bit 0: require the header, bit 1: ask a probe
//! path, bit 2: send no header), the rest is the header value.
#![no_main]

use std::{sync::LazyLock, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, HeaderValue, Request, StatusCode},
    routing::get,
};
use libfuzzer_sys::fuzz_target;
use platform::http::{HttpSettings, REQUEST_ID, is_valid_request_id, request_id, standard_layers};
use tower::ServiceExt;

/// The rule as documented, written independently of the implementation.
fn spec(value: &[u8]) -> bool {
    (1..=128).contains(&value.len()) && value.iter().all(|&b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime"));

/// The same routes under both settings. The handler answers with the id it was given.
static ROUTERS: LazyLock<[Router; 2]> = LazyLock::new(|| {
    let app = || {
        async fn seen(headers: HeaderMap) -> String {
            request_id(&headers).expect("the handler always sees a readable id").to_owned()
        }
        Router::new().route("/films", get(seen)).route("/health/live", get(seen))
    };
    let settings = |require_request_id| HttpSettings { request_timeout: Duration::from_secs(30), require_request_id };
    [standard_layers(app(), settings(false)), standard_layers(app(), settings(true))]
});

fuzz_target!(|data: &[u8]| {
    let Some((&flags, value)) = data.split_first() else { return };
    assert_eq!(is_valid_request_id(value), spec(value), "rule and documentation disagree on {value:?}");

    let required = flags & 1 != 0;
    let path = if flags & 2 != 0 { "/health/live" } else { "/films" };
    let sent = if flags & 4 != 0 {
        None
    } else {
        match HeaderValue::from_bytes(value) {
            Ok(v) => Some(v),
            // Not a header value at all: no HTTP client can send it.
            Err(_) => return,
        }
    };
    let mut request = Request::get(path);
    if let Some(v) = &sent {
        request = request.header(REQUEST_ID, v.clone());
    }
    let request = request.body(Body::empty()).expect("request");
    let router = ROUTERS[usize::from(required)].clone();
    let (status, headers, body) = RUNTIME.block_on(async move {
        let response = router.oneshot(request).await.expect("infallible");
        let (parts, body) = response.into_parts();
        (parts.status, parts.headers, axum::body::to_bytes(body, 1 << 16).await.expect("body"))
    });

    let answered = request_id(&headers).expect("every response carries a readable X-Request-Id");
    assert!(is_valid_request_id(answered.as_bytes()), "answered an invalid id {answered:?}");
    assert_eq!(headers.get_all(REQUEST_ID).iter().count(), 1);
    let fresh = || uuid::Uuid::parse_str(answered).is_ok_and(|u| u.get_version_num() == 4);
    match &sent {
        Some(v) => {
            assert_eq!(status, StatusCode::OK);
            assert_eq!(&body[..], answered.as_bytes(), "the handler and the response saw different ids");
            if spec(v.as_bytes()) {
                assert_eq!(answered.as_bytes(), v.as_bytes(), "a valid id was replaced");
            } else {
                assert!(fresh(), "an invalid id {v:?} was not replaced by a fresh one: {answered:?}");
            }
        }
        None if required && path != "/health/live" => {
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(fresh());
        }
        None => {
            assert_eq!(status, StatusCode::OK);
            assert_eq!(&body[..], answered.as_bytes());
            assert!(fresh());
        }
    }
});
