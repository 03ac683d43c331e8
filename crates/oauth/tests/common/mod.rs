//! What the tests against the real provider share: a client of the testkit's
//! provider, found through its discovery document, trusting its CA.

#![allow(dead_code)] // reason: each test file uses a different part

use mailmove_model::Secret;
use mailmove_net::TlsOptions;
use mailmove_oauth::{Client, ClientAuth, HttpOptions, Provider, SigningKey};
use mailmove_testkit::oidc::{CONFIDENTIAL_CLIENT, JWT_CLIENT, OidcProvider};

pub const ALICE: &str = "alice@example.test";
pub const MAIL_SCOPES: &[&str] = &["openid", "offline_access", "https://mail.google.com/"];
pub const REDIRECT_URI: &str = "http://127.0.0.1/callback";

pub fn http_options(provider: &OidcProvider) -> HttpOptions {
    HttpOptions {
        tls: TlsOptions {
            extra_ca: Some(provider.ca_pem()),
            accept_invalid_certs: false,
        },
        ..HttpOptions::default()
    }
}

pub async fn discovered(provider: &OidcProvider) -> Provider {
    Provider::discover(provider.issuer(), &http_options(provider))
        .await
        .unwrap()
}

pub async fn client(provider: &OidcProvider, id: &str, auth: ClientAuth) -> Client {
    Client::new(discovered(provider).await, id, auth, http_options(provider))
}

pub async fn confidential(provider: &OidcProvider) -> Client {
    let secret = Secret::new(provider.confidential_secret().to_string());
    client(
        provider,
        CONFIDENTIAL_CLIENT,
        ClientAuth::SecretBasic(secret),
    )
    .await
}

pub async fn jwt_client(provider: &OidcProvider) -> Client {
    let key = SigningKey::from_pem(provider.client_key_pem())
        .unwrap()
        .with_key_id("client-key");
    client(provider, JWT_CLIENT, ClientAuth::PrivateKeyJwt(key)).await
}

/// Neither the error's message nor its `Debug` (nor any error it wraps) holds any
/// of `secrets`.
pub fn assert_no_secret(error: &(dyn std::error::Error + 'static), secrets: &[&str]) {
    let mut next = Some(error);
    while let Some(error) = next {
        for text in [error.to_string(), format!("{error:?}")] {
            for secret in secrets {
                assert!(
                    !secret.is_empty() && !text.contains(secret),
                    "a secret shows in the error: {text}"
                );
            }
        }
        next = error.source();
    }
}
