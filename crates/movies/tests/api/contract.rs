//! The served OpenAPI document equals the committed `contracts/movies.openapi.json`.

use crate::helpers::{Auth, Movies};

const CONTRACT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contracts/movies.openapi.json");

#[tokio::test]
async fn the_served_spec_equals_the_committed_contract_and_docs_work_offline() {
    let auth = Auth::in_process().await;
    let movies = Movies::start(&auth.url).await;
    let served = movies.get("/api/openapi.json", None).await.text().await.unwrap();
    if std::env::var_os("UPDATE_CONTRACTS").is_some() {
        std::fs::write(CONTRACT, &served).unwrap();
    }
    let committed = std::fs::read_to_string(CONTRACT).expect("contracts/movies.openapi.json exists; run `make contracts`");
    let served: serde_json::Value = serde_json::from_str(&served).unwrap();
    assert!(served == serde_json::from_str::<serde_json::Value>(&committed).unwrap(), "the API changed: review, then run `make contracts`");
    #[rustfmt::skip]
    let paths = ["/api/v1/films", "/api/v1/films/search", "/api/v1/films/{id}", "/api/v1/films/{id}/stream", "/api/v1/genres", "/api/v1/genres/{id}", "/api/v1/persons/search", "/api/v1/persons/{id}", "/api/v1/persons/{id}/film"];
    for path in paths {
        assert!(served["paths"].get(path).is_some(), "{path}");
    }
    let page = movies.get("/api/docs/", None).await.text().await.unwrap();
    assert!(page.contains("swagger-ui") && !page.contains("https://"));
}
