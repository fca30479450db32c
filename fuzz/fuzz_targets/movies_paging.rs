//! Movies' paging and sort parameters, from the raw query string: `page[number]` and
//! `page[size]` through the service's own `Query` extractor into `PageParams`, then
//! `PageParams::paging`; `sort` through `catalog::films::Sort::parse`.
//!
//! Properties, for every input:
//! - nothing panics (extraction, the bounds checks, the offset arithmetic, and the
//!   problem response of a rejection);
//! - an accepted paging has 1 <= size <= 100, number >= 1, the limit is the size, and
//!   the page ends within the first `Paging::MAX_RESULTS` results (offset + limit);
//! - a sort key is accepted only when it is one of the documented keys, and reads
//!   back as itself.
//!
//! Input: the query string (after `?`) of `GET /api/v1/films`.
#![no_main]

use std::sync::LazyLock;

use axum::{extract::FromRequestParts, http::Request, response::IntoResponse};
use libfuzzer_sys::fuzz_target;
use movies::{
    catalog::{Paging, films::Sort},
    http::{extract::Query, paging::PageParams},
};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| tokio::runtime::Builder::new_current_thread().build().expect("runtime"));

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    if let Some(sort) = Sort::parse(raw) {
        assert!(Sort::ALLOWED.split(", ").any(|k| k == raw));
        assert_eq!(sort.key(), raw);
    }
    let Ok(request) = Request::get(format!("/api/v1/films?{raw}")).body(()) else { return };
    let (mut parts, ()) = request.into_parts();
    let extracted = RUNTIME.block_on(Query::<PageParams>::from_request_parts(&mut parts, &()));
    let params = match extracted {
        Ok(Query(params)) => params,
        Err(rejection) => {
            assert!(rejection.into_response().status().is_client_error());
            return;
        }
    };
    match params.paging() {
        Ok(paging) => {
            assert!((1..=Paging::MAX_SIZE).contains(&paging.size));
            assert!(paging.number >= 1);
            // The page ends within the first MAX_RESULTS results.
            assert!(paging.offset() >= 0 && paging.offset() + paging.limit() <= i64::from(Paging::MAX_RESULTS));
            assert_eq!(paging.limit(), i64::from(paging.size));
            assert_eq!(params.number.unwrap_or(1), paging.number);
        }
        Err(e) => assert!(e.into_response().status().is_client_error()),
    }
});
