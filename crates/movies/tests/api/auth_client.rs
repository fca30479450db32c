//! The `auth-client` library against the real Auth: it introspects with this service's
//! client credentials (HTTP Basic), and Auth answers only those.

use auth_client::{AuthClient, AuthClientConfig, Authentication, CredentialCheck};

use crate::helpers::{Auth, INTROSPECTION_SECRET};

async fn client(auth: &Auth, secret: &str) -> AuthClient {
    let client = AuthClient::new(AuthClientConfig::new(&auth.url, "movies", secret.into())).unwrap();
    assert!(client.refresh_keys().await, "the JWKS is served without credentials");
    client
}

#[tokio::test]
async fn the_client_introspects_with_its_credentials_and_a_wrong_secret_leaves_it_degraded() {
    let auth = Auth::in_process().await;
    let viewer = auth.viewer(&["subscriber"], None).await;

    let right = client(&auth, INTROSPECTION_SECRET).await;
    match right.authenticate(&viewer.access, None).await {
        Authentication::User { user, degraded } => {
            assert!(!degraded, "Auth answered the introspection");
            assert!(user.has_role("subscriber"), "{user:?}");
        }
        other => panic!("expected a confirmed user, got {other:?}"),
    }
    // Only Auth's introspection can know this: the signature is as good as before.
    auth.logout(&viewer).await;
    assert_eq!(client(&auth, INTROSPECTION_SECRET).await.authenticate(&viewer.access, None).await, Authentication::Invalid);

    // Refused (401): the token goes unconfirmed, as while Auth is down.
    let other = auth.viewer(&[], None).await;
    let wrong = client(&auth, "a-wrong-secret-a-wrong-secret-a-wrong-secret").await;
    assert!(matches!(wrong.authenticate(&other.access, None).await, Authentication::User { degraded: true, .. }));
}

/// The start-up check: accepted with the right secret, refused with a wrong one, and
/// unanswered (not refused) when Auth cannot be reached.
#[tokio::test]
async fn the_credential_check_tells_a_refusal_from_an_auth_that_does_not_answer() {
    let auth = Auth::in_process().await;
    let check = |url: &str, secret: &str| AuthClient::new(AuthClientConfig::new(url, "movies", secret.into())).unwrap();
    assert_eq!(check(&auth.url, INTROSPECTION_SECRET).check_credentials().await, CredentialCheck::Accepted);
    let wrong = check(&auth.url, "a-wrong-secret-a-wrong-secret-a-wrong-secret");
    assert_eq!(wrong.check_credentials().await, CredentialCheck::Refused);
    let closed = format!("http://127.0.0.1:{}", crate::helpers::free_port());
    assert!(matches!(check(&closed, INTROSPECTION_SECRET).check_credentials().await, CredentialCheck::Unanswered(_)));
}
