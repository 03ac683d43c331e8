//! The real binary signing in without the mailbox's password: as an administrator (a
//! Dovecot master user) acting for the mailbox, and with an OAuth2 access token from
//! a real OpenID provider, which Dovecot checks by introspection. The token never
//! shows in what mailmove prints, even at `trace`.

mod common;

use std::process::Command;

use common::{DEST_PASSWORD, DEST_USER, both_cas, finish};
use mailmove_testkit::oidc::OidcProvider;
use mailmove_testkit::{Dovecot, DovecotOptions, MasterUser, messages};

const ALICE: &str = "alice@example.test";
const MAIL_SCOPE: &str = "openid offline_access https://mail.google.com/";

/// A source Dovecot that takes `provider`'s tokens and a master user, with three
/// messages in alice's INBOX; and a plain destination.
fn servers(provider: &OidcProvider) -> (Dovecot, Dovecot) {
    let source = Dovecot::start(DovecotOptions {
        oauth2: Some(provider.dovecot_oauth2()),
        master_user: Some(MasterUser {
            name: "migrator".into(),
            password: "master-secret".into(),
        }),
        ..DovecotOptions::default()
    })
    .unwrap();
    source.add_user(ALICE, "alice-password").unwrap();
    let mut checker = source.checker(ALICE, "alice-password").unwrap();
    for i in 0..3 {
        let message = messages::simple(&format!("<m{i}@example.test>"), "hi", 300);
        checker.append("INBOX", &[], None, &message).unwrap();
    }
    let dest = Dovecot::start_default().unwrap();
    dest.add_user(DEST_USER, DEST_PASSWORD).unwrap();
    (source, dest)
}

/// `mailmove migrate` from alice's mailbox, signing in with `secret` and `args`.
fn migrate(source: &Dovecot, dest: &Dovecot, secret: &str, args: &[&str]) -> common::Run {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let ca = both_cas(dir.path(), source.ca_pem(), dest.ca_pem());
    let output = Command::new(env!("CARGO_BIN_EXE_mailmove"))
        .arg("migrate")
        .args([
            "--source",
            &format!(
                "imap://alice%40example.test@127.0.0.1:{}",
                source.imap_port()
            ),
            "--dest",
            &format!("imap://bob%40new.example@127.0.0.1:{}", dest.imap_port()),
        ])
        .arg("--tls-ca")
        .arg(&ca)
        .arg("--state")
        .arg(dir.path().join("state.sqlite"))
        .arg("--report")
        .arg(&report)
        .args(args)
        .env("MAILMOVE_SOURCE_PASSWORD", secret)
        .env("MAILMOVE_DEST_PASSWORD", DEST_PASSWORD)
        .env("MAILMOVE_LOG", "trace")
        .output()
        .expect("mailmove runs");
    finish(output, Some(report))
}

#[test]
fn an_administrator_copies_a_mailbox_without_its_password() {
    let provider = OidcProvider::start_default().unwrap();
    let (source, dest) = servers(&provider);
    let run = migrate(
        &source,
        &dest,
        "master-secret",
        &["--source-admin", "migrator"],
    );
    assert_eq!(run.code, 0, "{}", run.everything());
    assert_eq!(run.counts(), (3, 0, 0, 0));
    // Dovecot's own form, mailbox*admin, copies nothing more: the same mailbox.
    let again = migrate(
        &source,
        &dest,
        "master-secret",
        &["--source-admin", "migrator", "--admin-separator", "*"],
    );
    assert_eq!(again.code, 0, "{}", again.everything());
    assert_eq!(
        dest.checker(DEST_USER, DEST_PASSWORD)
            .unwrap()
            .fetch_all("INBOX")
            .unwrap()
            .len(),
        3
    );
    // A wrong administrator password is a refused login, exit 3.
    let wrong = migrate(&source, &dest, "not it", &["--source-admin", "migrator"]);
    assert_eq!(wrong.code, 3, "{}", wrong.everything());
    assert!(
        wrong
            .stderr
            .contains("login refused for alice@example.test"),
        "{}",
        wrong.stderr
    );
}

#[test]
fn an_access_token_copies_a_mailbox_and_a_revoked_one_asks_to_sign_in_again() {
    let provider = OidcProvider::start_default().unwrap();
    let (source, dest) = servers(&provider);
    let issued = provider.device_flow_token(ALICE, MAIL_SCOPE).unwrap();
    let token = issued.access_token.as_str();
    let run = migrate(&source, &dest, token, &["--source-auth", "oauth2"]);
    assert_eq!(run.code, 0, "{}", run.everything());
    assert_eq!(run.counts(), (3, 0, 0, 0));
    assert!(!run.everything().contains(token), "the token was printed");

    provider.revoke_account(ALICE).unwrap();
    let refused = migrate(&source, &dest, token, &["--source-auth", "oauth2"]);
    assert_eq!(refused.code, 3, "{}", refused.everything());
    assert!(
        refused
            .stderr
            .contains("refused the access token for alice@example.test"),
        "{}",
        refused.stderr
    );
    assert!(
        !refused.everything().contains(token),
        "the token was printed"
    );
}
