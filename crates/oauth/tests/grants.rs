//! Every grant against a real provider: the testkit's `OidcProvider` (oidc-provider
//! from npm) over HTTPS with its own CA, found through its discovery document.
//!
//! Needs node with `npm ci` run in crates/testkit/oidc (scripts/test does it).

mod common;

use std::sync::Arc;
use std::time::Duration;

use mailmove_model::Secret;
use mailmove_net::Remedy;
use mailmove_oauth::{
    Client, ClientAuth, DevicePoll, Error, HttpOptions, Provider, ServiceAccount, SigningKey,
};
use mailmove_testkit::oidc::{CONFIDENTIAL_CLIENT, OidcProvider, PUBLIC_CLIENT, SERVICE_ACCOUNT};

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn discovery_over_https_trusts_the_given_ca_and_only_it() {
    let provider = OidcProvider::start_default().unwrap();
    let found = discovered(&provider).await;
    assert_eq!(found.issuer.as_deref(), Some(provider.issuer()));
    assert_eq!(found.name, "127.0.0.1");
    let endpoints = provider.endpoints();
    assert_eq!(found.endpoints.token.as_str(), endpoints.token);
    assert_eq!(
        found
            .endpoints
            .device_authorization
            .as_ref()
            .unwrap()
            .as_str(),
        endpoints.device_authorization
    );
    assert_eq!(
        found.endpoints.revocation.as_ref().unwrap().as_str(),
        endpoints.revocation
    );
    assert_eq!(
        found.endpoints.introspection.as_ref().unwrap().as_str(),
        endpoints.introspection
    );

    // Without the test CA the certificate is not trusted, and the error says so.
    let refused = Provider::discover(provider.issuer(), &HttpOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::Unreachable { .. }), "{refused:?}");
    assert_eq!(
        refused.remedy(),
        Some(Remedy::TrustCertificate),
        "{refused}"
    );
    assert!(!refused.is_transient());

    // Plain HTTP is refused before anything is sent.
    let plain = format!("http://127.0.0.1:{}", provider.http_port());
    let refused = Provider::discover(&plain, &http_options(&provider))
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::Configuration(_)), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn device_flow_waits_while_pending_and_gets_the_token_once_approved() {
    let provider = Arc::new(OidcProvider::start_default().unwrap());
    let client = client(&provider, PUBLIC_CLIENT, ClientAuth::None).await;
    let mut device = client.start_device(MAIL_SCOPES, ALICE).await.unwrap();
    assert!(!device.user_code.is_empty());
    assert!(device.verification_uri.starts_with(provider.issuer()));
    assert_eq!(
        device.interval,
        Duration::from_secs(5),
        "RFC 8628's default"
    );

    assert!(matches!(
        client.poll_device(&mut device).await.unwrap(),
        DevicePoll::Pending
    ));
    // The person approves while the client waits.
    let approver = {
        let provider = Arc::clone(&provider);
        let user_code = device.user_code.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(2));
            provider.approve_device_code(&user_code, ALICE).unwrap();
        })
    };
    let tokens = client.wait_for_device(&mut device).await.unwrap();
    approver.join().unwrap();
    let claims = provider.introspect(tokens.access_token.expose()).unwrap();
    assert_eq!(claims["active"], true);
    assert_eq!(claims["sub"], ALICE);
    assert!(tokens.refresh_token.is_some(), "offline_access was asked");
    assert!(tokens.lifetime.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_device_code_asks_for_a_new_sign_in() {
    let provider = OidcProvider::start_default().unwrap();
    let client = client(&provider, PUBLIC_CLIENT, ClientAuth::None).await;
    let mut device = client.start_device(MAIL_SCOPES, ALICE).await.unwrap();
    provider.deny_device_code(&device.user_code).unwrap();
    let error = client.wait_for_device(&mut device).await.unwrap_err();
    assert_eq!(error.oauth().unwrap().code, "access_denied", "{error}");
    assert!(error.needs_sign_in());
    assert!(error.to_string().contains(ALICE), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn authorization_code_with_pkce_and_state() {
    let provider = OidcProvider::start_default().unwrap();
    // OpenID Connect gives a refresh token only after an explicit consent: a
    // discovered provider asks for it, as Google's preset asks `access_type`.
    let found = discovered(&provider).await;
    assert_eq!(
        found.authorization_parameters,
        [("prompt".to_string(), "consent".to_string())]
    );
    let secret = Secret::new(provider.confidential_secret().to_string());
    let client = Client::new(
        found,
        CONFIDENTIAL_CLIENT,
        ClientAuth::SecretBasic(secret),
        http_options(&provider),
    );
    let (url, pending) = client
        .authorization_url(REDIRECT_URI, MAIL_SCOPES, Some(ALICE))
        .unwrap();
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let param = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    assert_eq!(param("code_challenge_method"), Some("S256"));
    assert_eq!(param("state"), Some(pending.state().expose().as_str()));
    assert_eq!(param("login_hint"), Some(ALICE));
    assert!(param("code_verifier").is_none(), "the verifier stays here");

    let redirect = provider.sign_in_browser(url.as_str(), ALICE).unwrap();

    // A redirect carrying another state is not ours.
    let forged = redirect.replace(pending.state().expose().as_str(), "forged");
    let error = pending.code_from_redirect(&forged).unwrap_err();
    assert!(matches!(error, Error::Mismatch(_)), "{error:?}");

    // The redirect comes back to another request (the portal's callback), which
    // has only what the first one stored.
    let pending = client.resume_authorization(
        pending.state().clone(),
        pending.verifier().clone(),
        pending.redirect_uri(),
        pending.account(),
    );
    let code = pending.code_from_redirect(&redirect).unwrap();
    let tokens = client.exchange_code(&pending, &code).await.unwrap();
    let claims = provider.introspect(tokens.access_token.expose()).unwrap();
    assert_eq!(claims["sub"], ALICE);
    assert!(tokens.refresh_token.is_some());
    assert!(tokens.id_token.is_some());

    // The code works once.
    let error = client.exchange_code(&pending, &code).await.unwrap_err();
    assert_eq!(error.oauth().unwrap().code, "invalid_grant", "{error}");
    assert_no_secret(&error, &[code.expose(), tokens.access_token.expose()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sign_in_refused_in_the_browser_is_a_refusal() {
    let provider = OidcProvider::start_default().unwrap();
    let client = confidential(&provider).await;
    let (_url, pending) = client
        .authorization_url(REDIRECT_URI, &["openid"], Some(ALICE))
        .unwrap();
    // What the provider sends back when the person cancels.
    let state = pending.state().expose().clone();
    let redirect = format!(
        "{REDIRECT_URI}?error=access_denied&error_description=End-User+aborted&state={state}"
    );
    let error = pending.code_from_redirect(&redirect).unwrap_err();
    assert_eq!(error.oauth().unwrap().code, "access_denied");
    assert!(error.needs_sign_in());
    assert!(
        error
            .to_string()
            .contains("refused the sign-in for alice@example.test"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_credentials_with_a_secret_and_with_a_signed_assertion() {
    let provider = OidcProvider::start_default().unwrap();
    let scope = ["https://outlook.office365.com/.default"];

    let tokens = confidential(&provider)
        .await
        .client_credentials(&scope)
        .await
        .unwrap();
    let claims = provider.introspect(tokens.access_token.expose()).unwrap();
    assert_eq!(claims["active"], true);
    assert_eq!(claims["client_id"], "mailmove-web");

    let tokens = jwt_client(&provider)
        .await
        .client_credentials(&scope)
        .await
        .unwrap();
    let claims = provider.introspect(tokens.access_token.expose()).unwrap();
    assert_eq!(claims["active"], true);
    assert_eq!(claims["client_id"], "mailmove-jwt");
    assert!(tokens.refresh_token.is_none());

    // A wrong secret: the client is refused, and the secret is not quoted.
    let wrong = Secret::new("not-the-secret-at-all".to_string());
    let client = common::client(
        &provider,
        "mailmove-web",
        ClientAuth::SecretBasic(wrong.clone()),
    )
    .await;
    let error = client.client_credentials(&scope).await.unwrap_err();
    assert_eq!(error.oauth().unwrap().code, "invalid_client", "{error}");
    assert_no_secret(&error, &[wrong.expose()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_bearer_gets_a_token_for_the_mailbox_named_as_subject() {
    let provider = OidcProvider::start_default().unwrap();
    let client = client(&provider, SERVICE_ACCOUNT, ClientAuth::None).await;
    let account = ServiceAccount {
        email: SERVICE_ACCOUNT.into(),
        key: SigningKey::from_pem(provider.service_account_key_pem())
            .unwrap()
            .with_key_id("service-account-key"),
    };
    let tokens = client
        .jwt_bearer(&account, "bob@example.test", &["https://mail.google.com/"])
        .await
        .unwrap();
    let claims = provider.introspect(tokens.access_token.expose()).unwrap();
    assert_eq!(claims["active"], true);
    assert_eq!(claims["sub"], "bob@example.test");
    assert!(
        claims["scope"]
            .as_str()
            .unwrap()
            .contains("https://mail.google.com/")
    );

    // A key the provider does not know is refused for that mailbox.
    let stranger = ServiceAccount {
        email: SERVICE_ACCOUNT.into(),
        key: SigningKey::from_pem(provider.client_key_pem())
            .unwrap()
            .with_key_id("service-account-key"),
    };
    let error = client
        .jwt_bearer(&stranger, "bob@example.test", &["https://mail.google.com/"])
        .await
        .unwrap_err();
    assert!(error.oauth().is_some(), "{error:?}");
    assert!(error.to_string().contains("bob@example.test"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_google_key_file_is_read() {
    let provider = OidcProvider::start_default().unwrap();
    let file = serde_json::json!({
        "type": "service_account",
        "client_email": SERVICE_ACCOUNT,
        "private_key_id": "service-account-key",
        "private_key": provider.service_account_key_pem(),
        "token_uri": provider.endpoints().token,
    });
    let account = ServiceAccount::from_google_key_file(&file.to_string()).unwrap();
    assert_eq!(account.email, SERVICE_ACCOUNT);
    assert!(!format!("{account:?}").contains("PRIVATE KEY"));
    let client = client(&provider, SERVICE_ACCOUNT, ClientAuth::None).await;
    let tokens = client
        .jwt_bearer(&account, ALICE, &["https://mail.google.com/"])
        .await
        .unwrap();
    let claims = provider.introspect(tokens.access_token.expose()).unwrap();
    assert_eq!(claims["sub"], ALICE);
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_rotates_and_the_old_refresh_token_is_refused_afterwards() {
    let provider = OidcProvider::start_default().unwrap();
    let first = provider
        .device_flow_token(ALICE, "openid offline_access https://mail.google.com/")
        .unwrap();
    let old = Secret::new(first.refresh_token.unwrap());
    let client = client(&provider, PUBLIC_CLIENT, ClientAuth::None).await;

    let refreshed = client.refresh(&old, ALICE).await.unwrap();
    let new = refreshed.refresh_token.clone().unwrap();
    assert_ne!(new, old, "the provider rotates refresh tokens");
    assert_eq!(
        provider
            .introspect(refreshed.access_token.expose())
            .unwrap()["active"],
        true
    );

    let error = client.refresh(&old, ALICE).await.unwrap_err();
    assert_eq!(error.oauth().unwrap().code, "invalid_grant", "{error}");
    assert!(error.needs_sign_in());
    assert_eq!(error.remedy(), Some(Remedy::SignInAgain));
    assert!(
        error.to_string().starts_with(
            "127.0.0.1 refused the token refresh for alice@example.test: invalid_grant"
        ),
        "{error}"
    );
    assert_no_secret(
        &error,
        &[
            old.expose(),
            new.expose(),
            refreshed.access_token.expose(),
            &first.access_token,
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_refresh_token_asks_for_a_new_sign_in() {
    let provider = OidcProvider::start_default().unwrap();
    let first = provider
        .device_flow_token(ALICE, "openid offline_access")
        .unwrap();
    let refresh = Secret::new(first.refresh_token.unwrap());
    let client = client(&provider, PUBLIC_CLIENT, ClientAuth::None).await;
    client
        .revoke(&refresh, "refresh_token", ALICE)
        .await
        .unwrap();
    let error = client.refresh(&refresh, ALICE).await.unwrap_err();
    assert!(error.needs_sign_in(), "{error}");
    assert_no_secret(&error, &[refresh.expose(), &first.access_token]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_provider_is_transient() {
    let provider = OidcProvider::start_default().unwrap();
    let mut found = discovered(&provider).await;
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    found.endpoints.token = format!("https://127.0.0.1:{port}/token").parse().unwrap();
    let client = Client::new(
        found,
        PUBLIC_CLIENT,
        ClientAuth::None,
        http_options(&provider),
    );
    let refresh = Secret::new("some-refresh-token".to_string());
    let error = client.refresh(&refresh, ALICE).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert!(!error.needs_sign_in());
    assert_no_secret(&error, &[refresh.expose()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_are_read_with_a_size_cap() {
    let provider = OidcProvider::start_default().unwrap();
    let options = HttpOptions {
        max_answer_bytes: 200,
        ..http_options(&provider)
    };
    let error = Provider::discover(provider.issuer(), &options)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::BadAnswer { .. }), "{error:?}");
    assert!(
        error.to_string().contains("larger than 200 bytes"),
        "{error}"
    );
}

/// What no real provider does on demand: accept the connection and say nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_provider_times_out_as_a_transient_failure() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let options = HttpOptions {
        timeout: Duration::from_secs(1),
        ..HttpOptions::default()
    };
    let started = std::time::Instant::now();
    let error = Provider::discover(&format!("https://127.0.0.1:{port}"), &options)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "{error}");
    assert!(error.is_transient(), "{error:?}");
    holder.abort();
}
