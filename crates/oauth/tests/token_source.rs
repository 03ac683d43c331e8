//! The token source against the real provider: a pass that outlives several
//! short-lived access tokens, a token a server refused, a grant revoked mid-pass.
//!
//! Needs node with `npm ci` run in crates/testkit/oidc (scripts/test does it).

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use mailmove_model::Secret;
use mailmove_net::Remedy;
use mailmove_oauth::{ClientAuth, Renewal, ServiceAccount, SigningKey, TokenSource, Tokens};
use mailmove_testkit::oidc::{
    CONFIDENTIAL_CLIENT, OidcOptions, OidcProvider, PUBLIC_CLIENT, SERVICE_ACCOUNT, TokenResponse,
};

use common::*;

/// The testkit's answer as the client's `Tokens`, as a finished sign-in hands them
/// over.
fn tokens(response: &TokenResponse) -> Tokens {
    let lifetime = Duration::from_secs(response.expires_in);
    Tokens {
        access_token: Secret::new(response.access_token.clone()),
        refresh_token: response.refresh_token.clone().map(Secret::new),
        id_token: None,
        lifetime: Some(lifetime),
        expires_at: Some(SystemTime::now() + lifetime),
        scope: response.scope.clone(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pass_outlives_several_access_tokens_and_stores_each_rotated_refresh_token() {
    let provider = OidcProvider::start(OidcOptions {
        access_token_lifetime: Duration::from_secs(4),
        ..OidcOptions::default()
    })
    .unwrap();
    let signed_in = provider
        .device_flow_token(ALICE, "openid offline_access https://mail.google.com/")
        .unwrap();
    let first_refresh = Secret::new(signed_in.refresh_token.clone().unwrap());
    let stored: Arc<Mutex<Vec<Secret<String>>>> = Arc::default();
    let client = client(&provider, PUBLIC_CLIENT, ClientAuth::None).await;
    let source = {
        let stored = Arc::clone(&stored);
        TokenSource::new(client, ALICE, Renewal::RefreshToken(first_refresh.clone()))
            .with_tokens(&tokens(&signed_in))
            .on_rotation(move |rotated| stored.lock().unwrap().push(rotated.clone()))
    };

    // A pass of 13 s with tokens that live 4 s: every token handed out is valid at
    // the provider when it is used.
    let mut seen = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(13) {
        let token = source.access_token().await.unwrap();
        let claims = provider.introspect(token.expose()).unwrap();
        assert_eq!(claims["active"], true, "an expired token was handed out");
        assert_eq!(claims["sub"], ALICE);
        if seen.last() != Some(&token) {
            seen.push(token);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(seen.len() >= 4, "only {} tokens in 13 s", seen.len());
    assert_eq!(
        seen[0].expose(),
        &signed_in.access_token,
        "the sign-in's token first"
    );
    assert!(source.expires_at().await.unwrap() > SystemTime::now());

    // Each renewal rotated the refresh token, and the owner heard of each.
    let stored = stored.lock().unwrap().clone();
    assert_eq!(stored.len(), seen.len() - 1);
    let distinct: HashSet<&String> = stored.iter().map(Secret::expose).collect();
    assert_eq!(distinct.len(), stored.len());
    assert!(!distinct.contains(first_refresh.expose()));
    // The last one stored is the one that works: a later pass starts from it.
    let later = common::client(&provider, PUBLIC_CLIENT, ClientAuth::None).await;
    later.refresh(stored.last().unwrap(), ALICE).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_token_is_replaced_once_however_many_lanes_report_it() {
    let provider = OidcProvider::start_default().unwrap();
    let source = TokenSource::new(
        confidential(&provider).await,
        "the migration application",
        Renewal::ClientCredentials {
            scopes: vec!["https://outlook.office365.com/.default".into()],
        },
    );
    let first = source.access_token().await.unwrap();
    assert_eq!(source.access_token().await.unwrap(), first, "not due yet");

    // The token is revoked at the provider; a server refuses it.
    provider
        .revoke_token(CONFIDENTIAL_CLIENT, first.expose())
        .unwrap();
    assert_eq!(
        provider.introspect(first.expose()).unwrap()["active"],
        false
    );
    source.invalidate(&first).await;
    let second = source.access_token().await.unwrap();
    assert_ne!(second, first);
    assert_eq!(
        provider.introspect(second.expose()).unwrap()["active"],
        true
    );

    // Another lane reports the old token late: the new one stays.
    source.invalidate(&first).await;
    assert_eq!(source.access_token().await.unwrap(), second);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_account_source_renews_for_its_mailbox() {
    let provider = OidcProvider::start(OidcOptions {
        access_token_lifetime: Duration::from_secs(3),
        ..OidcOptions::default()
    })
    .unwrap();
    let account = ServiceAccount {
        email: SERVICE_ACCOUNT.into(),
        key: SigningKey::from_pem(provider.service_account_key_pem())
            .unwrap()
            .with_key_id("service-account-key"),
    };
    let source = TokenSource::new(
        client(&provider, SERVICE_ACCOUNT, ClientAuth::None).await,
        "bob@example.test",
        Renewal::JwtBearer {
            account,
            subject: "bob@example.test".into(),
            scopes: vec!["https://mail.google.com/".into()],
        },
    );
    let first = source.access_token().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = source.access_token().await.unwrap();
    assert_ne!(first, second, "renewed after its lifetime");
    let claims = provider.introspect(second.expose()).unwrap();
    assert_eq!(claims["active"], true);
    assert_eq!(claims["sub"], "bob@example.test");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_grant_stops_the_source_with_sign_in_again() {
    let provider = OidcProvider::start_default().unwrap();
    let signed_in = provider
        .device_flow_token(ALICE, "openid offline_access")
        .unwrap();
    let refresh = signed_in.refresh_token.clone().unwrap();
    let source = TokenSource::new(
        client(&provider, PUBLIC_CLIENT, ClientAuth::None).await,
        ALICE,
        Renewal::RefreshToken(Secret::new(refresh.clone())),
    )
    .with_tokens(&tokens(&signed_in));
    let token = source.access_token().await.unwrap();

    // The administrator revokes alice's sessions in the middle of the pass.
    assert!(provider.revoke_account(ALICE).unwrap() > 0);
    source.invalidate(&token).await;
    let error = source.access_token().await.unwrap_err();
    assert!(error.needs_sign_in(), "{error}");
    assert!(!error.is_transient());
    assert_eq!(error.remedy(), Some(Remedy::SignInAgain));
    assert_eq!(error.oauth().unwrap().code, "invalid_grant");
    let message = error.to_string();
    assert!(
        message.contains("refused the token refresh for alice@example.test"),
        "{message}"
    );
    assert_no_secret(&error, &[&refresh, &signed_in.access_token]);
    assert!(!format!("{source:?}").contains(&refresh));
}
