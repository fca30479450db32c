//! The cases schema fuzzing found (scripts/schemathesis.sh, docs/fuzzing.md), each
//! replayed as it was found: the answer, and that the contract now documents it.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Auth, Movies, assert_problem};

fn query_parameter<'a>(spec: &'a Value, path: &str, name: &str) -> &'a Value {
    let parameters = spec["paths"][path]["get"]["parameters"].as_array().unwrap();
    parameters.iter().find(|p| p["in"] == "query" && p["name"] == name).unwrap_or_else(|| panic!("{path} has no `{name}`"))
}

#[tokio::test]
async fn the_film_list_documents_its_sort_orders_as_an_enum() {
    let auth = Auth::in_process().await;
    let movies = Movies::start(&auth.url).await;
    // Found: `sort` was documented as any string; the list refuses all but six.
    let response = movies.get("/api/v1/films?sort=bogus", None).await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let spec = movies.json("/api/openapi.json", None).await;
    let orders = query_parameter(&spec, "/api/v1/films", "sort")["schema"]["enum"].as_array().expect("an enum").clone();
    let orders: Vec<&str> = orders.iter().map(|o| o.as_str().unwrap()).collect();
    assert_eq!(orders.join(", "), movies::catalog::films::Sort::ALLOWED);
    for order in orders {
        movies.json(&format!("/api/v1/films?sort={order}"), None).await;
    }
}

#[tokio::test]
async fn a_search_query_with_a_nul_is_a_422_not_a_500() {
    let auth = Auth::in_process().await;
    let movies = Movies::start(&auth.url).await;
    // Found: PostgreSQL refuses NUL in a text parameter, and both searches answered 500.
    for path in [
        "/api/v1/persons/search?query=%C2%80E%C2%B9%F1%8F%A1%A6%00%17w",
        "/api/v1/films/search?page%5Bsize%5D=90&query=%C3%B8%C2%BD%C3%8E%C2%BA%F2%B1%AB%A9%C2%B0%F4%8C%82%86%60%C3%B3%E7%88%97%1B%C3%8B7%F0%AC%A0%94%C2%83%C3%9A%00%7F&page%5Bnumber%5D=40",
    ] {
        let problem = assert_problem(movies.get(path, None).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], "query", "{problem}");
    }
}

/// Bytes that are not UTF-8 in a query string were replaced with U+FFFD, and the search
/// ran (and was cached) for a text the client never sent.
#[tokio::test]
async fn a_query_string_that_is_not_utf8_once_decoded_is_a_400() {
    let auth = Auth::in_process().await;
    let movies = Movies::start(&auth.url).await;
    for path in ["/api/v1/films/search?query=%FF%FE", "/api/v1/persons/search?query=%C0%80", "/api/v1/films?genre=%FF"] {
        let response = movies.get(path, None).await;
        assert!(response.headers().contains_key("x-request-id"), "{path}");
        let problem = assert_problem(response, StatusCode::BAD_REQUEST, "malformed_query").await;
        assert!(problem["detail"].as_str().unwrap().contains("UTF-8"), "{problem}");
    }
    // Percent-encoded UTF-8 is read as such ("матрица" finds nothing, without error).
    let found = movies.json("/api/v1/films/search?query=%D0%BC%D0%B0%D1%82%D1%80%D0%B8%D1%86%D0%B0", None).await;
    assert_eq!(found["page"]["total"], 0);
}

#[tokio::test]
async fn searches_document_that_the_query_is_1_to_200_characters_not_only_spaces_nor_nul() {
    let auth = Auth::in_process().await;
    let movies = Movies::start(&auth.url).await;
    let spec = movies.json("/api/openapi.json", None).await;
    for path in ["/api/v1/films/search", "/api/v1/persons/search"] {
        for refused in ["%20%20", &"x".repeat(201), "a%00"] {
            let response = movies.get(&format!("{path}?query={refused}"), None).await;
            assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        }
        let schema = &query_parameter(&spec, path, "query")["schema"];
        assert_eq!(schema["pattern"], movies::http::films::query_pattern(), "{path}: {schema}");
        assert_eq!(schema["maxLength"], 200, "{path}: {schema}");
        movies.json(&format!("{path}?query=%20a%20"), None).await;
    }
}

/// The code and the contract disagreed on the search query: the length was counted after
/// trimming, and the pattern's `\s` (ECMAScript's whitespace) is not Rust's. Each query
/// is answered as the contract's `maxLength` and `pattern` say.
#[tokio::test]
async fn searches_answer_each_query_as_the_contract_says() {
    let auth = Auth::in_process().await;
    let movies = Movies::start(&auth.url).await;
    let spec = movies.json("/api/openapi.json", None).await;
    let a = |n| "a".repeat(n);
    #[rustfmt::skip]
    let cases = [
        // U+0085 (NEL) is whitespace to Unicode and, now, to the contract's pattern.
        ("%C2%85", false),
        ("%E3%80%80", false),
        // U+FEFF is whitespace to ECMAScript's `\s`, not to Unicode, nor to the pattern now.
        ("%EF%BB%BF", true),
        // 202 characters: over maxLength, whatever the spaces around.
        (&format!("%20{}%20", a(200)), false),
        (&format!("%20{}", a(199)), true),
        (&a(200), true),
    ];
    for path in ["/api/v1/films/search", "/api/v1/persons/search"] {
        for (query, valid) in &cases {
            let response = movies.get(&format!("{path}?query={query}"), None).await;
            let expected = if *valid { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
            assert_eq!(response.status(), expected, "{path}?query={query}");
        }
        // The pattern spells its whitespace out (`movies::http::films` checks it refuses
        // what the code refuses, character by character).
        let schema = &query_parameter(&spec, path, "query")["schema"];
        assert!(!schema["pattern"].as_str().unwrap().contains(r"\s"), "{path}: `\\s` is another set in each dialect: {schema}");
    }
}
