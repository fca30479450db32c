//! Playback URLs signed for the media server in the format of nginx's secure_link
//! module, checked here by recomputing the signature from the configured secret.

use std::collections::BTreeMap;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use md5::{Digest, Md5};

use crate::helpers::{Auth, Movies, MoviesOptions};

const SECRET: &str = "integration-test-secret-0123456789abcdef";

#[tokio::test]
async fn the_manifest_url_is_signed_under_the_configured_secret_and_expires_with_the_descriptor() {
    let auth = Auth::in_process().await;
    let vars = vec![("MOVIES_STREAM_SIGNING_SECRET", SECRET.to_owned()), ("MOVIES_STREAM_URL_TTL_SECONDS", "120".to_owned())];
    let movies = Movies::start_with(&auth.url, MoviesOptions { vars }).await;
    movies.wait_for_keys().await;
    let subscriber = auth.viewer(&["subscriber"], None).await;
    let picnic = movies.film_id("Family Picnic").await; // free: anonymous viewers play it
    let matrix = movies.film_id("The Matrix").await; // subscription

    for (film, token) in [(picnic, None), (matrix, Some(subscriber.access.as_str()))] {
        let before = Utc::now().timestamp();
        let descriptor = movies.json(&format!("/api/v1/films/{film}/stream"), token).await;
        let after = Utc::now().timestamp();
        let manifest_url = descriptor["manifest_url"].as_str().unwrap();
        let url = url::Url::parse("http://cinema.test").unwrap().join(manifest_url).unwrap();
        let path = format!("/media/films/{}/master.m3u8", film.simple());
        assert_eq!(url.path(), path);
        let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(query.keys().collect::<Vec<_>>(), ["expires", "sig"], "{manifest_url}");

        // The configured lifetime (120 s), from the answer's second.
        let expires: i64 = query["expires"].parse().unwrap();
        assert!((before + 120..=after + 120).contains(&expires), "{expires} not 120 s after {before}..{after}");
        // What nginx's `secure_link_md5 "$secure_link_expires$uri <secret>"` computes.
        let expected = URL_SAFE_NO_PAD.encode(Md5::digest(format!("{expires}{path} {SECRET}")));
        assert_eq!(query["sig"], expected, "{manifest_url}");
        assert_eq!(manifest_url, format!("{path}?expires={expires}&sig={expected}"), "a path on the site, as the media server gets it");

        // The descriptor's expiry is the signed one, to the second.
        let expires_at: DateTime<Utc> = descriptor["expires_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(expires_at, DateTime::from_timestamp(expires, 0).unwrap(), "{descriptor}");
    }
}

/// No answer said how it may be cached: a shared cache could have kept a stream
/// descriptor, whose signed URL is a bearer pass, or a page computed for another
/// viewer's age class and token, and served it to the next client.
#[tokio::test]
async fn answers_for_a_viewer_are_not_stored_by_shared_caches_and_the_stream_by_none() {
    let auth = Auth::in_process().await;
    let movies = Movies::start(&auth.url).await;
    let picnic = movies.film_id("Family Picnic").await;
    let matrix = movies.film_id("The Matrix").await;
    let headers = |response: &reqwest::Response| {
        let value = |name: &str| response.headers().get_all(name).iter().map(|v| v.to_str().unwrap().to_owned()).collect::<Vec<_>>().join(", ");
        (response.status(), value("cache-control"), value("vary").to_lowercase())
    };
    let stream = movies.get(&format!("/api/v1/films/{picnic}/stream"), None).await;
    let (status, cache_control, vary) = headers(&stream);
    assert_eq!((status.as_u16(), cache_control.as_str()), (200, "no-store"));
    assert!(vary.contains("authorization"), "{vary}");
    // A refusal of the stream too: it depends on the viewer as much.
    let refused = movies.get(&format!("/api/v1/films/{matrix}/stream"), None).await;
    assert_eq!((refused.status().as_u16(), headers(&refused).1.as_str()), (401, "no-store"));
    let person = uuid::Uuid::new_v4();
    let paths = [
        "/api/v1/films".to_owned(),
        "/api/v1/films/search?query=matrix".to_owned(),
        format!("/api/v1/films/{picnic}"),
        "/api/v1/genres".to_owned(),
        "/api/v1/persons/search?query=bob".to_owned(),
        format!("/api/v1/persons/{person}"),
        "/api/v1/films?sort=bogus".to_owned(),
    ];
    for path in paths {
        let response = movies.get(&path, None).await;
        let (status, cache_control, vary) = headers(&response);
        assert_eq!(cache_control, "private", "{path}: {status}");
        assert!(vary.contains("authorization"), "{path}: {vary}");
    }
}
