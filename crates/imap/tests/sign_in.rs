//! Signing in without a mailbox password, against a real Dovecot: OAuth2 access tokens
//! from a real OpenID provider (the testkit's oidc-provider) over OAUTHBEARER and
//! XOAUTH2, validated by Dovecot through introspection; and an administrator (a
//! Dovecot master user) acting for a mailbox, by authorization identity and by
//! Dovecot's `mailbox*admin` login.

use mailmove_imap::{Client, ConnectOptions, Error, TlsOptions};
use mailmove_model::{Endpoint, Secret};
use mailmove_net::{AdminForm, Remedy, SignIn};
use mailmove_testkit::oidc::OidcProvider;
use mailmove_testkit::{Dovecot, DovecotOAuth2, DovecotOptions, MasterUser, messages};

const ALICE: &str = "alice@example.test";
const MAIL_SCOPE: &str = "openid offline_access https://mail.google.com/";

fn dovecot(provider: &OidcProvider, mechanisms: &str) -> Dovecot {
    let dovecot = Dovecot::start(DovecotOptions {
        oauth2: Some(DovecotOAuth2 {
            mechanisms: mechanisms.to_string(),
            ..provider.dovecot_oauth2()
        }),
        master_user: Some(MasterUser {
            name: "migrator".into(),
            password: "master-secret".into(),
        }),
        ..DovecotOptions::default()
    })
    .unwrap();
    dovecot.add_user(ALICE, "alice-password").unwrap();
    let mut checker = dovecot.checker(ALICE, "alice-password").unwrap();
    let message = messages::simple("<only@example.test>", "alice's", 200);
    checker.append("INBOX", &[], None, &message).unwrap();
    dovecot
}

async fn connect(dovecot: &Dovecot) -> Client {
    let endpoint = Endpoint::parse(&format!(
        "imap://{}:{}",
        dovecot.host(),
        dovecot.imap_port()
    ))
    .unwrap();
    let options = ConnectOptions {
        tls: TlsOptions {
            extra_ca: Some(dovecot.ca_pem().to_path_buf()),
            accept_invalid_certs: false,
        },
        ..ConnectOptions::default()
    };
    Client::connect(&endpoint, &options).await.unwrap()
}

/// Signs in, then proves it is alice's mailbox: her one message is in INBOX.
async fn signs_in_to_alice(dovecot: &Dovecot, sign_in: &SignIn) -> Result<(), Error> {
    let mut client = connect(dovecot).await;
    client.sign_in(sign_in).await?;
    let inbox = client.examine(b"INBOX").await?;
    assert_eq!(inbox.exists, 1, "signed in, but not to alice's mailbox");
    client.logout().await;
    Ok(())
}

fn token(user: &str, token: &str) -> SignIn {
    SignIn::Token {
        user: user.to_string(),
        token: Secret::new(token.to_string()),
    }
}

#[tokio::test]
async fn an_access_token_signs_in_over_oauthbearer_or_xoauth2() {
    let provider = OidcProvider::start_default().unwrap();
    let issued = provider.device_flow_token(ALICE, MAIL_SCOPE).unwrap();
    for mechanisms in ["xoauth2 oauthbearer", "xoauth2", "oauthbearer"] {
        let dovecot = dovecot(&provider, mechanisms);
        signs_in_to_alice(&dovecot, &token(ALICE, &issued.access_token))
            .await
            .unwrap_or_else(|e| panic!("{mechanisms}: {e}\n{}", dovecot.log()));
    }
}

#[tokio::test]
async fn a_refused_token_says_so_with_the_servers_reason_and_asks_to_sign_in_again() {
    let provider = OidcProvider::start_default().unwrap();
    let issued = provider.device_flow_token(ALICE, MAIL_SCOPE).unwrap();
    provider.revoke_account(ALICE).unwrap();
    for mechanisms in ["oauthbearer", "xoauth2"] {
        let dovecot = dovecot(&provider, mechanisms);
        let error = signs_in_to_alice(&dovecot, &token(ALICE, &issued.access_token))
            .await
            .expect_err("a revoked token signs in");
        let Error::TokenRefused { user, text } = &error else {
            panic!("{mechanisms}: {error:?}");
        };
        assert_eq!(user, ALICE);
        // Dovecot's error challenge, read from its JSON, beside its NO.
        assert!(text.contains("status "), "{mechanisms}: {text}");
        assert_eq!(error.remedy(), Some(Remedy::SignInAgain));
        assert!(!error.to_string().contains(&issued.access_token));
    }
}

#[tokio::test]
async fn a_server_without_oauth_is_told_apart_from_a_refusal() {
    let dovecot = Dovecot::start_default().unwrap();
    let mut client = connect(&dovecot).await;
    let error = client
        .sign_in(&token(ALICE, "whatever"))
        .await
        .expect_err("no OAuth offered");
    assert!(matches!(error, Error::CannotSignIn { .. }), "{error:?}");
    assert_eq!(error.remedy(), Some(Remedy::OtherSignIn));
}

#[tokio::test]
async fn an_administrator_opens_a_mailbox_both_ways_dovecot_offers() {
    let provider = OidcProvider::start_default().unwrap();
    let dovecot = dovecot(&provider, "xoauth2 oauthbearer");
    for form in [AdminForm::AuthorizationIdentity, AdminForm::Separator('*')] {
        let admin = SignIn::Admin {
            mailbox: ALICE.into(),
            admin: "migrator".into(),
            password: Secret::new("master-secret".into()),
            form,
        };
        signs_in_to_alice(&dovecot, &admin)
            .await
            .unwrap_or_else(|e| panic!("{form:?}: {e}\n{}", dovecot.log()));
        let wrong = SignIn::Admin {
            mailbox: ALICE.into(),
            admin: "migrator".into(),
            password: Secret::new("not it".into()),
            form,
        };
        let error = signs_in_to_alice(&dovecot, &wrong)
            .await
            .expect_err("a wrong administrator password signs in");
        assert!(
            matches!(error, Error::AuthFailed { .. }),
            "{form:?}: {error:?}"
        );
    }
}
