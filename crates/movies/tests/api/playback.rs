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
