//! The OAuth2 test provider validated by Authlib, an independent Python OAuth 2.0 /
//! OpenID Connect client, with Python's imaplib logging in to Dovecot: if a library
//! written against real authorization servers gets tokens through every grant here
//! and a stock IMAP client gets in with them, the provider and the Dovecot
//! configuration behave as the real thing does, at least as far as an independent
//! client can tell.
//!
//! Needs `python3` with Authlib and requests (`python3 -m pip install authlib`), node
//! with `npm ci` run in crates/testkit/oidc, and Dovecot (root).

use std::io::Write;
use std::process::{Command, Stdio};

use mailmove_testkit::oidc::{
    CONFIDENTIAL_CLIENT, INTROSPECTION_CLIENT, JWT_CLIENT, OidcProvider, PUBLIC_CLIENT,
    SERVICE_ACCOUNT,
};
use mailmove_testkit::{Dovecot, DovecotOptions};
use serde_json::{Value, json};

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";
const MAIL_SCOPE: &str = "https://mail.google.com/";

#[test]
fn authlib_gets_tokens_through_every_grant_and_imaplib_logs_in_with_them() {
    let provider = OidcProvider::start_default().unwrap();
    let dovecot = Dovecot::start(DovecotOptions {
        oauth2: Some(provider.dovecot_oauth2()),
        ..DovecotOptions::default()
    })
    .unwrap();
    dovecot.add_user(ALICE, "alice-password").unwrap();
    dovecot.add_user(BOB, "bob-password").unwrap();

    // The device flow needs a person to approve; the testkit's helper plays them,
    // and Authlib takes over with the tokens.
    let scope = format!("openid offline_access {MAIL_SCOPE}");
    let user_tokens = provider.device_flow_token(ALICE, &scope).unwrap();
    let fresh = provider.device_flow_token(ALICE, &scope).unwrap();
    let config = json!({
        "ca": provider.ca_pem(),
        "discovery": provider.endpoints().discovery,
        "confidential_id": CONFIDENTIAL_CLIENT,
        "confidential_secret": provider.confidential_secret(),
        "jwt_client_id": JWT_CLIENT,
        "jwt_client_key": provider.client_key_pem(),
        "introspection_id": INTROSPECTION_CLIENT,
        "introspection_secret": provider.introspection_secret(),
        "public_id": PUBLIC_CLIENT,
        "service_account": SERVICE_ACCOUNT,
        "service_account_key": provider.service_account_key_pem(),
        "delegated_user": BOB,
        "user": ALICE,
        "app_scope": "https://outlook.office365.com/.default",
        "mail_scope": MAIL_SCOPE,
        "id_token": user_tokens.id_token,
        "refresh_token": user_tokens.refresh_token,
        "fresh_access_token": fresh.access_token,
        "imap_host": dovecot.host(),
        "imap_port": dovecot.imap_port(),
    });

    let mut child = Command::new("timeout")
        .args(["300", "python3"])
        .arg(mailmove_testkit::testkit_path("tests/oauth_authlib.py"))
        // Authlib's sessions verify with requests' default bundle; this makes it the
        // test CA.
        .env("REQUESTS_CA_BUNDLE", provider.ca_pem())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(config.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the script failed ({}):\n{stdout}\n{}\nprovider log:\n{}\ndovecot log:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        provider.log(),
        dovecot.log()
    );
    let results: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let of = |kind: &str| -> &Value {
        results
            .iter()
            .find(|r| r["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {results:?}"))
    };

    assert_eq!(of("discovery")["issuer"], provider.issuer());
    assert_eq!(of("client_credentials")["expires_in"], 20);
    assert_eq!(of("private_key_jwt")["client_id"], JWT_CLIENT);
    let bearer = of("jwt_bearer");
    assert_eq!(bearer["sub"], BOB);
    assert_eq!(bearer["scope"], MAIL_SCOPE);
    assert_eq!(bearer["imap"], true, "{}", dovecot.log());
    assert_eq!(of("id_token")["sub"], ALICE);
    let refresh = of("refresh");
    assert_eq!(refresh["rotated"], true);
    assert_eq!(refresh["imap"], true);
    let reuse = of("reuse");
    assert_eq!(reuse["refused"], true);
    assert_eq!(reuse["error"], "invalid_grant");
    let revocation = of("revocation");
    assert_eq!(revocation["status"], 200);
    assert_eq!(revocation["imap_before"], true);
    assert_eq!(revocation["active_after"], false);
    assert_eq!(revocation["imap_after"], false);
    let wrong = of("wrong_token");
    assert_eq!(wrong["refused"], true);
    assert!(wrong["challenges"][0].get("status").is_some(), "{wrong}");
    of("done");
}
