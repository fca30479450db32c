//! The bearer token, from the raw `Authorization` bytes to verified-or-rejected, on
//! both sides: Auth (`http::extract::bearer_token`, then `AccessTokens::verify` with a
//! real `KeyRing`) and Movies (`auth-client`: the `Viewer` extractor's bearer parse,
//! then the local half of `AuthClient::authenticate`, keys loaded from Auth's JWKS).
//!
//! Properties, for every input:
//! - nothing panics;
//! - both sides read the same token out of the same header;
//! - an accepted token is signed: its signature, checked here independently with
//!   ed25519-dalek over the token's own bytes, verifies under the published key its
//!   header's `kid` names, the header says `EdDSA`, and the claims carry our issuer,
//!   audience and an unexpired `exp`;
//! - a token signed by a key outside the ring, with no signature, or with a corrupted
//!   one is refused by both;
//! - what Auth accepts, Movies accepts too, as the same user;
//! - liveness: a well-formed token signed by the current or the previous key is
//!   accepted by both (so the harness does reach the accepting paths).
//!
//! Input: the first byte chooses the mode.
//! - even: the rest is the raw `Authorization` header value.
//! - odd: the fuzzer chooses the JWT header and claims JSON (the rest of the input,
//!   split at the first NUL; an empty part means the canonical one) and the signer
//!   (second byte: current key, previous key, outsider key, no signature, corrupted
//!   signature at the position of the third byte). `$KID`, `$OLD`, `$EXP` and `$IAT`
//!   in the JSON stand for the current kid, the previous kid, a future expiry and now.
#![no_main]

use std::{
    path::PathBuf,
    sync::{Arc, LazyLock},
    time::Duration,
};

use auth::{
    config::TokenSettings,
    http::extract::bearer_token,
    tokens::{AccessClaims, AccessTokens, KeyRing},
};
use auth_client::fuzzing::LocalVerifier;
use axum::http::{HeaderValue, Request, header};
use base64::{
    Engine,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig, general_purpose::URL_SAFE_NO_PAD},
};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
use libfuzzer_sys::fuzz_target;

const ISSUER: &str = "cinema-auth";
const AUDIENCE: &str = "cinema";

struct World {
    current: SigningKey,
    previous: SigningKey,
    outsider: SigningKey,
    current_kid: String,
    previous_kid: String,
    auth: AccessTokens,
    movies: LocalVerifier,
}

/// Fixed keys, so that a crashing input replays and committed seeds stay valid.
static WORLD: LazyLock<World> = LazyLock::new(|| {
    let current = SigningKey::from_bytes(&[1; 32]);
    let previous = SigningKey::from_bytes(&[2; 32]);
    let outsider = SigningKey::from_bytes(&[3; 32]);
    let ring = KeyRing::from_keys(&current, &[previous.verifying_key()]).expect("key ring");
    let kids: Vec<String> = ring.jwks().keys.iter().map(|k| k.common.key_id.clone().expect("kid")).collect();
    assert_eq!(kids.len(), 2);
    assert_eq!(kids[0], ring.signing().0);
    let movies = LocalVerifier::new(ring.jwks(), ISSUER, AUDIENCE);
    let settings = TokenSettings {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        access_ttl: Duration::from_secs(900),
        refresh_ttl: Duration::from_secs(86_400),
        session_lifetime: Duration::from_secs(30 * 86_400),
        signing_key_file: None,
        dev_key_file: PathBuf::from("/nonexistent/never-read.pem"),
        extra_public_key_files: Vec::new(),
    };
    let auth = AccessTokens::new(Arc::new(ring), &settings);
    World { current, previous, outsider, current_kid: kids[0].clone(), previous_kid: kids[1].clone(), auth, movies }
});

const CANONICAL_HEADER: &[u8] = br#"{"alg":"EdDSA","typ":"JWT","kid":"$KID"}"#;
const CANONICAL_CLAIMS: &[u8] = br#"{"iss":"cinema-auth","aud":"cinema","sub":"0190a5f0-0000-7000-8000-000000000001","sid":"0190a5f0-0000-7000-8000-000000000002","jti":"0190a5f0-0000-7000-8000-000000000003","iat":$IAT,"exp":$EXP,"roles":["subscriber"],"age_class":18}"#;

#[derive(Clone, Copy, PartialEq, Debug)]
enum SignedBy {
    Current,
    Previous,
    Outsider,
    Unsigned,
    Corrupted,
}

fuzz_target!(|data: &[u8]| {
    let world = &*WORLD;
    let now = chrono::Utc::now().timestamp();
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        check(world, rest, now);
        // `verify` on its own too, on whatever string the bytes make.
        let raw = String::from_utf8_lossy(rest);
        if let Some(claims) = world.auth.verify(&raw) {
            assert_signed(world, &raw, &claims, now);
        }
        return;
    }
    let [signer, position, json @ ..] = rest else { return };
    let signer = [SignedBy::Current, SignedBy::Previous, SignedBy::Outsider, SignedBy::Unsigned, SignedBy::Corrupted][usize::from(*signer) % 5];
    let (header_json, claims_json) = match json.iter().position(|&b| b == 0) {
        Some(i) => (&json[..i], &json[i + 1..]),
        None => (json, &[][..]),
    };
    let header_json = if header_json.is_empty() { CANONICAL_HEADER } else { header_json };
    let claims_json = if claims_json.is_empty() { CANONICAL_CLAIMS } else { claims_json };
    let canonical = header_json == CANONICAL_HEADER && claims_json == CANONICAL_CLAIMS;
    let substitute = |json: &[u8]| {
        let kid = if signer == SignedBy::Previous { &world.previous_kid } else { &world.current_kid };
        let json = replace(json, b"$KID", kid.as_bytes());
        let json = replace(&json, b"$OLD", world.previous_kid.as_bytes());
        let json = replace(&json, b"$EXP", (now + 3600).to_string().as_bytes());
        replace(&json, b"$IAT", now.to_string().as_bytes())
    };
    let message = format!("{}.{}", URL_SAFE_NO_PAD.encode(substitute(header_json)), URL_SAFE_NO_PAD.encode(substitute(claims_json)));
    let signature = match signer {
        SignedBy::Current => world.current.sign(message.as_bytes()).to_bytes().to_vec(),
        SignedBy::Previous => world.previous.sign(message.as_bytes()).to_bytes().to_vec(),
        SignedBy::Outsider => world.outsider.sign(message.as_bytes()).to_bytes().to_vec(),
        SignedBy::Unsigned => Vec::new(),
        SignedBy::Corrupted => {
            let mut sig = world.current.sign(message.as_bytes()).to_bytes().to_vec();
            let at = usize::from(*position);
            sig[at / 8 % 64] ^= 1 << (at % 8);
            sig
        }
    };
    let token = format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature));
    let (by_auth, by_movies) = check(world, format!("Bearer {token}").as_bytes(), now);
    match signer {
        SignedBy::Outsider | SignedBy::Unsigned | SignedBy::Corrupted => {
            assert!(!by_auth, "Auth accepted a token not signed by the ring ({signer:?}): {token}");
            assert!(!by_movies, "Movies accepted a token not signed by the ring ({signer:?}): {token}");
        }
        SignedBy::Current | SignedBy::Previous if canonical => {
            assert!(by_auth, "Auth refused a well-formed token of the {signer:?} key: {token}");
            assert!(by_movies, "Movies refused a well-formed token of the {signer:?} key: {token}");
        }
        _ => {}
    }
});

/// Runs both sides on one `Authorization` value; returns whether each accepted it.
fn check(world: &World, authorization: &[u8], now: i64) -> (bool, bool) {
    let Ok(value) = HeaderValue::from_bytes(authorization) else { return (false, false) };
    let (parts, ()) = Request::builder().header(header::AUTHORIZATION, value.clone()).body(()).expect("request").into_parts();
    let auth_token = bearer_token(&parts).ok().flatten();
    let movies_token = auth_client::fuzzing::bearer_token(&value);
    assert_eq!(auth_token, movies_token, "the two services read different tokens out of {value:?}");
    let Some(token) = auth_token else { return (false, false) };
    let by_auth = world.auth.verify(token);
    if let Some(claims) = &by_auth {
        assert_signed(world, token, claims, now);
    }
    let by_movies = world.movies.verify(token);
    if let Some(user) = &by_movies {
        let (_, kid) = signed_by(world, token);
        assert!(!kid.is_empty());
        if let Some(claims) = &by_auth {
            assert_eq!((user.id, user.session_id, user.token_id), (claims.sub, claims.sid, claims.jti));
            assert_eq!((&user.roles, user.age_class), (&claims.roles, claims.age_class));
        }
    } else if let Some(claims) = &by_auth {
        // Tolerate the second in which the token expires between the two calls.
        assert!(claims.exp <= now + 1, "Auth accepted and Movies refused {token}");
    }
    (by_auth.is_some(), by_movies.is_some())
}

/// The independent check of an accepted token: signed by the ring key its `kid`
/// names, `EdDSA`, our issuer and audience, not expired.
fn assert_signed(world: &World, token: &str, claims: &AccessClaims, now: i64) {
    let (header, _) = signed_by(world, token);
    assert_eq!(header["alg"], "EdDSA", "accepted a token whose header is not EdDSA: {token}");
    assert_eq!(claims.iss, ISSUER);
    assert_eq!(claims.aud, AUDIENCE);
    assert!(claims.exp >= now, "accepted an expired token: {token}");
}

/// The header of a token and the kid whose key signed it; panics when no ring key did.
fn signed_by(world: &World, token: &str) -> (serde_json::Value, String) {
    let lenient =
        GeneralPurpose::new(&base64::alphabet::URL_SAFE, GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent));
    let (message, signature) = token.rsplit_once('.').unwrap_or_else(|| panic!("accepted a token without a signature part: {token}"));
    let header = message.split('.').next().expect("split yields one part");
    let header: serde_json::Value =
        serde_json::from_slice(&lenient.decode(header).unwrap_or_else(|e| panic!("accepted an undecodable header ({e}): {token}")))
            .unwrap_or_else(|e| panic!("accepted a header that is not JSON ({e}): {token}"));
    let kid = header["kid"].as_str().unwrap_or_else(|| panic!("accepted a token without a kid: {token}")).to_owned();
    let key = if kid == world.current_kid {
        world.current.verifying_key()
    } else if kid == world.previous_kid {
        world.previous.verifying_key()
    } else {
        panic!("accepted a token whose kid is not published: {token}")
    };
    let signature = lenient.decode(signature).unwrap_or_else(|e| panic!("accepted an undecodable signature ({e}): {token}"));
    let signature = Signature::from_slice(&signature).unwrap_or_else(|e| panic!("accepted a signature of the wrong size ({e}): {token}"));
    key.verify(message.as_bytes(), &signature).unwrap_or_else(|e| panic!("accepted a token its kid's key did not sign ({e}): {token}"));
    (header, kid)
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}
