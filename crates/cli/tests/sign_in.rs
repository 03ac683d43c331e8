//! The real binary signing in without the mailbox's password: as an administrator (a
//! Dovecot master user) acting for the mailbox, and with OAuth2 from a real OpenID
//! provider, whose tokens Dovecot checks by introspection: an access token given as
//! is, a user's sign-in kept by `mailmove auth login` (the device flow, approved at
//! the provider) and renewed through a pass that outlives its tokens, and a service
//! account acting for the mailbox. No token shows in what mailmove prints, even at
//! `trace`, and the kept refresh token is sealed.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{CountingProxy, DEST_PASSWORD, DEST_USER, both_cas, finish};
use mailmove_testkit::oidc::{
    CONFIDENTIAL_CLIENT, OidcOptions, OidcProvider, PUBLIC_CLIENT, SERVICE_ACCOUNT,
};
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

/// What the OAuth tests share: a provider, the two servers, and a data directory with
/// a profiles file naming the provider twice (the users' consent through the public
/// client, and a service account).
struct Lab {
    provider: OidcProvider,
    source: Dovecot,
    dest: Dovecot,
    dir: tempfile::TempDir,
    ca: PathBuf,
}

impl Lab {
    fn start(options: OidcOptions) -> Lab {
        let provider = OidcProvider::start(options).unwrap();
        let (source, dest) = servers(&provider);
        let dir = tempfile::tempdir().unwrap();
        let ca = both_cas(dir.path(), source.ca_pem(), dest.ca_pem());
        let service_key = serde_json::json!({
            "client_email": SERVICE_ACCOUNT,
            "private_key": provider.service_account_key_pem(),
            "private_key_id": "service-account-key",
        });
        std::fs::write(dir.path().join("service.json"), service_key.to_string()).unwrap();
        std::fs::write(
            dir.path().join("app.secret"),
            format!("{}\n", provider.confidential_secret()),
        )
        .unwrap();
        let profiles = format!(
            "[profile.lab]\n\
             provider = \"{issuer}\"\n\
             client_id = \"{PUBLIC_CLIENT}\"\n\
             scopes = [\"openid\", \"offline_access\", \"https://mail.google.com/\"]\n\
             tls_ca = \"{ca}\"\n\
             \n\
             [profile.delegated]\n\
             provider = \"{issuer}\"\n\
             client_id = \"{SERVICE_ACCOUNT}\"\n\
             access = \"service-account\"\n\
             service_account_file = \"service.json\"\n\
             scopes = [\"https://mail.google.com/\"]\n\
             tls_ca = \"{ca}\"\n\
             \n\
             [profile.app]\n\
             provider = \"{issuer}\"\n\
             client_id = \"{CONFIDENTIAL_CLIENT}\"\n\
             access = \"app\"\n\
             client_secret_file = \"app.secret\"\n\
             scopes = [\"https://outlook.office365.com/.default\"]\n\
             tls_ca = \"{ca}\"\n",
            issuer = provider.issuer(),
            ca = provider.ca_pem().display(),
        );
        std::fs::write(dir.path().join("oauth.toml"), profiles).unwrap();
        Lab {
            provider,
            source,
            dest,
            dir,
            ca,
        }
    }

    fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// `mailmove` with the lab's data directory (profiles, kept sign-ins, key).
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mailmove"));
        command
            .args(args)
            .env("MAILMOVE_DATA_DIR", self.data_dir())
            .env_remove("MAILMOVE_DATABASE")
            .env_remove("MAILMOVE_SECRET_KEY")
            .env("MAILMOVE_LOG", "trace");
        command
    }

    /// `mailmove auth login lab --account ACCOUNT`, the code approved at the provider
    /// as the person would in a browser, once the command printed it.
    fn log_in(&self, account: &str) -> common::Run {
        let mut child = self
            .command(&["auth", "login", "lab", "--account", account])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut printed = String::new();
        let code = loop {
            let mut line = String::new();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "the command ended before it printed a code: {printed}"
            );
            printed.push_str(&line);
            if let Some((_, code)) = line.trim_end().rsplit_once("enter the code ") {
                break code.to_string();
            }
        };
        self.provider.approve_device_code(&code, account).unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        let mut output = child.wait_with_output().unwrap();
        output.stdout = (printed + &rest).into_bytes();
        finish(output, None)
    }

    /// `mailmove auth login PROFILE --account alice` for a profile that signs in by
    /// itself: nothing to approve.
    fn log_in_app(&self, profile: &str) -> common::Run {
        finish(
            self.command(&["auth", "login", profile, "--account", ALICE])
                .output()
                .unwrap(),
            None,
        )
    }

    /// `mailmove SUBCOMMAND` from alice's mailbox through `source_port` (the source,
    /// or a proxy to it) to bob's, trusting both servers, the destination's password
    /// given and none for the source.
    fn between(&self, subcommand: &str, source_port: u16) -> Command {
        let mut command = self.command(&[subcommand]);
        command
            .args([
                "--source",
                &format!("imap://alice%40example.test@127.0.0.1:{source_port}"),
                "--dest",
                &format!(
                    "imap://bob%40new.example@127.0.0.1:{}",
                    self.dest.imap_port()
                ),
            ])
            .arg("--tls-ca")
            .arg(&self.ca)
            .env_remove("MAILMOVE_SOURCE_PASSWORD")
            .env("MAILMOVE_DEST_PASSWORD", DEST_PASSWORD);
        if subcommand != "check" {
            command
                .arg("--state")
                .arg(self.data_dir().join("state.sqlite"));
        }
        command
    }

    /// `migrate` through `source_port`, with a report.
    fn migrate(&self, source_port: u16, args: &[&str]) -> common::Run {
        let report = self.data_dir().join("report.json");
        let _ = std::fs::remove_file(&report);
        let output = self
            .between("migrate", source_port)
            .arg("--report")
            .arg(&report)
            .args(args)
            .output()
            .unwrap();
        finish(output, Some(report))
    }

    fn dest_count(&self) -> usize {
        self.dest
            .checker(DEST_USER, DEST_PASSWORD)
            .unwrap()
            .fetch_all("INBOX")
            .unwrap()
            .len()
    }

    fn add_source_messages(&self, from: usize, count: usize, size: usize) {
        let mut checker = self.source.checker(ALICE, "alice-password").unwrap();
        for i in from..from + count {
            let message = messages::simple(&format!("<big{i}@example.test>"), "big", size);
            checker.append("INBOX", &[], None, &message).unwrap();
        }
    }
}

#[test]
fn a_mailbox_signed_in_once_is_copied_checked_listed_and_signed_out() {
    let lab = Lab::start(OidcOptions::default());
    // Before any sign-in, the command says what to run.
    let early = lab.migrate(lab.source.imap_port(), &["--source-oauth", "lab"]);
    assert_eq!(early.code, 2, "{}", early.everything());
    assert!(
        early
            .stderr
            .contains("run `mailmove auth login lab --account alice@example.test` first"),
        "{}",
        early.stderr
    );

    let login = lab.log_in(ALICE);
    assert_eq!(login.code, 0, "{}", login.everything());
    assert!(
        login
            .stdout
            .contains("Signed in alice@example.test with lab"),
        "{}",
        login.stdout
    );

    let run = lab.migrate(lab.source.imap_port(), &["--source-oauth", "lab"]);
    assert_eq!(run.code, 0, "{}", run.everything());
    assert_eq!(run.counts(), (3, 0, 0, 0));
    assert_eq!(lab.dest_count(), 3);

    let check = lab
        .between("check", lab.source.imap_port())
        .args(["--source-oauth", "lab"])
        .output()
        .unwrap();
    let check = finish(check, None);
    assert_eq!(check.code, 0, "{}", check.everything());
    assert!(
        check
            .stdout
            .contains("signed in with OAuth2 (lab), the token holds until 20"),
        "{}",
        check.stdout
    );

    let list = finish(lab.command(&["auth", "list"]).output().unwrap(), None);
    assert_eq!(list.code, 0, "{}", list.everything());
    assert!(list.stdout.contains("  lab: https://"), "{}", list.stdout);
    assert!(
        list.stdout
            .contains("alice@example.test with lab: signed in 20"),
        "{}",
        list.stdout
    );

    // The refresh token is kept sealed: the row holds ciphertext (the format's
    // version byte, a nonce, then bytes that are not a token's text).
    let sealed = kept_refresh_token(lab.data_dir());
    assert_eq!(sealed[0], 1);
    assert!(sealed.len() > 1 + 24 + 16);
    assert!(
        std::str::from_utf8(&sealed[25..]).is_err(),
        "the kept token looks like text"
    );

    let logout = finish(
        lab.command(&["auth", "logout", "lab", "--account", ALICE])
            .output()
            .unwrap(),
        None,
    );
    assert_eq!(logout.code, 0, "{}", logout.everything());
    assert!(
        logout
            .stdout
            .contains("revoked at the provider and forgotten"),
        "{}",
        logout.everything()
    );
    let after = lab.migrate(lab.source.imap_port(), &["--source-oauth", "lab"]);
    assert_eq!(after.code, 2, "{}", after.everything());
    for run in [&early, &login, &run, &check, &list, &logout, &after] {
        assert!(
            !run.everything().contains("Bearer "),
            "{}",
            run.everything()
        );
    }
}

/// The kept refresh token's stored bytes, read from the data directory's database.
fn kept_refresh_token(data_dir: &Path) -> Vec<u8> {
    let output = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys; row = sqlite3.connect(sys.argv[1]).execute(\
             'SELECT refresh_token FROM oauth_grants').fetchone(); \
             sys.stdout.buffer.write(row[0])",
        )
        .arg(data_dir.join("mailmove.sqlite"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    output.stdout
}

#[test]
fn a_pass_outliving_its_tokens_renews_them_and_a_revoked_sign_in_stops_it() {
    // Tokens live 3 s; the source's connections are cut every 4 s on a slow link, so
    // the pass reconnects over several tokens' lifetimes, and each reconnection must
    // sign in with a fresh token.
    let lab = Lab::start(OidcOptions {
        access_token_lifetime: Duration::from_secs(3),
        ..OidcOptions::default()
    });
    lab.add_source_messages(0, 45, 60_000);
    let login = lab.log_in(ALICE);
    assert_eq!(login.code, 0, "{}", login.everything());
    let proxy = CountingProxy::cutting(
        lab.source.imap_port(),
        Duration::from_millis(100),
        Some(Duration::from_secs(4)),
    );
    let started = Instant::now();
    let run = lab.migrate(proxy.port, &["--source-oauth", "lab"]);
    let took = started.elapsed();
    assert_eq!(run.code, 0, "{}", run.everything());
    assert_eq!(run.counts(), (48, 0, 0, 0));
    assert_eq!(lab.dest_count(), 48, "every message once");
    let connections = proxy.total.load(Ordering::SeqCst);
    // Each connection after the first opened when the one before was cut, 4 s after
    // it opened, so later than the 3 s its token lived: each signed in with a token
    // renewed in the middle of the pass.
    assert!(
        took > Duration::from_secs(4) && connections >= 2,
        "the pass did not outlive its tokens ({took:?}, {connections} connections): \
         make the link slower"
    );

    // The provider rotated the refresh token at each renewal; the kept one is the
    // newest, so a later pass signs in without a new login.
    let again = lab.migrate(lab.source.imap_port(), &["--source-oauth", "lab"]);
    assert_eq!(again.code, 0, "{}", again.everything());
    assert_eq!(again.counts(), (0, 48, 0, 0));

    // Revoked while a pass runs: the next reconnection cannot renew, and the pass
    // stops with the reason and what to do, having duplicated nothing.
    lab.add_source_messages(100, 30, 60_000);
    let proxy = CountingProxy::cutting(
        lab.source.imap_port(),
        Duration::from_millis(100),
        Some(Duration::from_secs(4)),
    );
    let running = {
        let mut command = lab.between("migrate", proxy.port);
        command
            .args(["--source-oauth", "lab"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    while proxy.total.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    lab.provider.revoke_account(ALICE).unwrap();
    let stopped = finish(running.wait_with_output().unwrap(), None);
    assert_eq!(stopped.code, 3, "{}", stopped.everything());
    assert!(
        stopped
            .stderr
            .contains("refused the token refresh for alice@example.test"),
        "{}",
        stopped.stderr
    );
    assert!(
        stopped.stderr.contains("hint: sign the mailbox in again"),
        "{}",
        stopped.stderr
    );
    let copied = lab.dest_count();
    assert!(
        (48..78).contains(&copied),
        "stopped part-way, nothing twice: {copied}"
    );
    let mut bodies = common::bodies(
        &mut lab.dest.checker(DEST_USER, DEST_PASSWORD).unwrap(),
        "INBOX",
    );
    bodies.dedup();
    assert_eq!(bodies.len(), copied, "no message twice");
}

#[test]
fn a_service_account_and_an_application_sign_in_by_themselves_without_any_kept_sign_in() {
    let lab = Lab::start(OidcOptions::default());
    let login = lab.log_in_app("delegated");
    assert_eq!(login.code, 0, "{}", login.everything());
    assert!(
        login.stdout.contains("delegated signs in by itself"),
        "{}",
        login.stdout
    );
    let run = lab.migrate(lab.source.imap_port(), &["--source-oauth", "delegated"]);
    assert_eq!(run.code, 0, "{}", run.everything());
    assert_eq!(run.counts(), (3, 0, 0, 0));
    assert!(
        !run.everything().contains("Bearer "),
        "{}",
        run.everything()
    );
}

#[test]
fn a_project_whose_source_signs_in_with_a_profile_waits_for_the_sign_in_then_completes() {
    let lab = Lab::start(OidcOptions::default());
    let rows = lab.data_dir().join("rows.csv");
    std::fs::write(
        &rows,
        format!("Source Email,Destination Email\n{ALICE},bob@new.example\n"),
    )
    .unwrap();
    let project = |args: &[&str]| {
        let mut command = lab.command(&["project"]);
        command
            .args(args)
            .env("MAILMOVE_DEST_PASSWORD", DEST_PASSWORD);
        finish(command.output().unwrap(), None)
    };
    let created = project(&[
        "create",
        "moving",
        "--source",
        &format!("imap://127.0.0.1:{}", lab.source.imap_port()),
        "--dest",
        &format!("imap://127.0.0.1:{}", lab.dest.imap_port()),
        "--mailboxes",
        rows.to_str().unwrap(),
        "--source-oauth",
        "lab",
        "--tls-ca",
        lab.ca.to_str().unwrap(),
    ]);
    assert_eq!(created.code, 0, "{}", created.everything());

    // Nobody signed in yet: the pass says it waits for the mailbox's user.
    let early = project(&["run", "moving", "--pass", "full", "--wait"]);
    assert_eq!(early.code, 1, "{}", early.everything());
    let status = project(&["status", "moving", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let mailbox = &status["mailboxes"][0];
    assert_eq!(mailbox["status"], "Failed", "{status}");
    assert!(
        mailbox["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("waiting for alice@example.test to sign in"),
        "{status}"
    );

    let login = lab.log_in(ALICE);
    assert_eq!(login.code, 0, "{}", login.everything());
    let run = project(&["run", "moving", "--pass", "full", "--wait"]);
    assert_eq!(run.code, 0, "{}", run.everything());
    let status = project(&["status", "moving", "--json"]);
    assert!(!status.everything().contains("Bearer "));
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["mailboxes"][0]["status"], "Completed", "{status}");
    assert_eq!(lab.dest_count(), 3);

    // A withdrawn consent fails the mailbox with the reason and what to do.
    lab.provider.revoke_account(ALICE).unwrap();
    let again = project(&["run", "moving", "--pass", "full", "--wait"]);
    assert_eq!(again.code, 1, "{}", again.everything());
    let status = project(&["status", "moving", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let mailbox = &status["mailboxes"][0];
    assert_eq!(mailbox["status"], "Failed", "{status}");
    let reason = mailbox["last_error"].as_str().unwrap_or_default();
    assert!(reason.contains("refused"), "{status}");
    assert!(reason.contains("sign in again"), "{status}");
    assert_eq!(lab.dest_count(), 3, "nothing twice");
}
