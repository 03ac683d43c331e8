//! The real binary between Dovecot and the other real servers from Debian (Cyrus
//! IMAPd, Courier-IMAP): a folder name the destination refuses does not stop the pass,
//! and a server that changes what it stores causes no duplicate when it renumbers.

mod common;

use std::path::Path;
use std::process::Command;

use common::{SOURCE_PASSWORD, SOURCE_USER, both_cas, finish};
use mailmove_testkit::{Checker, Courier, Cyrus, Dovecot, DovecotOptions, messages};

const DEST_USER: &str = "bob";
const DEST_PASSWORD: &str = "dest-secret-3";
const DATE: &str = "01-Jan-2020 10:00:00 +0000";

/// A destination server for these tests, whichever it is.
struct Dest {
    /// The destination's URL without its login: `imap://127.0.0.1:PORT` or `imaps://`.
    url: String,
    ca_pem: std::path::PathBuf,
    checker: Box<dyn Fn() -> mailmove_testkit::Checker>,
    /// Gives INBOX a new UIDVALIDITY, as a restore or a repair does.
    renumber_inbox: Box<dyn Fn()>,
}

fn cyrus() -> Dest {
    let server = Cyrus::start().expect("Cyrus starts (scripts/test installs it)");
    server.add_user(DEST_USER, DEST_PASSWORD).unwrap();
    let (host, port) = (server.host().to_string(), server.imap_port());
    let server = std::rc::Rc::new(server);
    let renumbering = server.clone();
    Dest {
        url: format!("imap://{DEST_USER}@127.0.0.1:{port}"),
        ca_pem: server.ca_pem().to_path_buf(),
        checker: Box::new(move || {
            mailmove_testkit::Checker::connect(&host, port, DEST_USER, DEST_PASSWORD).unwrap()
        }),
        renumber_inbox: Box::new(move || {
            renumbering.reconstruct(DEST_USER, "INBOX").unwrap();
        }),
    }
}

fn courier() -> Dest {
    let server = Courier::start().expect("Courier starts (scripts/test installs it)");
    server.add_user(DEST_USER, DEST_PASSWORD).unwrap();
    let (host, port) = (server.host().to_string(), server.imap_port());
    // Implicit TLS: the harness's Courier does not finish a STARTTLS handshake (with
    // openssl s_client either).
    let server = std::rc::Rc::new(server);
    let renumbering = server.clone();
    Dest {
        url: format!("imaps://{DEST_USER}@127.0.0.1:{}", server.imaps_port()),
        ca_pem: server.ca_pem().to_path_buf(),
        checker: Box::new(move || {
            mailmove_testkit::Checker::connect(&host, port, DEST_USER, DEST_PASSWORD).unwrap()
        }),
        renumber_inbox: Box::new(move || {
            renumbering.delete_uid_db(DEST_USER, "INBOX").unwrap();
        }),
    }
}

/// A Dovecot source with a message in INBOX and three in `folder` (levels joined
/// by `/`, Dovecot's separator here).
fn source(folder: &str) -> Dovecot {
    let source = Dovecot::start(DovecotOptions::default()).expect("the source Dovecot starts");
    source.add_user(SOURCE_USER, SOURCE_PASSWORD).unwrap();
    let mut checker = source.checker(SOURCE_USER, SOURCE_PASSWORD).unwrap();
    checker.create(folder).unwrap();
    let inbox = messages::simple("<in@example.com>", "hello", 300);
    checker.append("INBOX", &[], Some(DATE), &inbox).unwrap();
    for i in 0..3 {
        let message = messages::simple(&format!("<refused{i}@example.com>"), "x", 400);
        checker.append(folder, &[], Some(DATE), &message).unwrap();
    }
    source
}

fn run(source: &Dovecot, dest: &Dest, dir: &std::path::Path, subcommand: &str) -> common::Run {
    run_with(source, dest, dir, subcommand, &[])
}

fn run_with(
    source: &Dovecot,
    dest: &Dest,
    dir: &std::path::Path,
    subcommand: &str,
    extra: &[&str],
) -> common::Run {
    let report = dir.join(format!("{subcommand}-{}.json", rand_suffix()));
    let ca = both_cas(dir, source.ca_pem(), &dest.ca_pem);
    let output = Command::new(env!("CARGO_BIN_EXE_mailmove"))
        .arg(subcommand)
        .args([
            "--source",
            &format!("imap://{SOURCE_USER}@127.0.0.1:{}", source.imap_port()),
        ])
        .args(["--dest", &dest.url])
        .arg("--tls-ca")
        .arg(&ca)
        .arg("--state")
        .arg(dir.join("state.sqlite"))
        .arg("--report")
        .arg(&report)
        .args(extra)
        .env("MAILMOVE_SOURCE_PASSWORD", SOURCE_PASSWORD)
        .env("MAILMOVE_DEST_PASSWORD", DEST_PASSWORD)
        .env_remove("MAILMOVE_LOG")
        .output()
        .expect("mailmove runs");
    finish(output, Some(report))
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Copies `folder`, which `dest` refuses, and checks that it went to `fallback`
/// (as the report names it; `fallback_raw` on the server), with a warning and no
/// failure, and that a second pass and the proof agree.
fn a_refused_folder_name_falls_back(
    dest: Dest,
    folder: &str,
    fallback: &str,
    fallback_raw: &str,
    server_said: &str,
) {
    let source = source(folder);
    let dir = tempfile::tempdir().unwrap();
    let first = run(&source, &dest, dir.path(), "migrate");
    assert_eq!(first.code, 0, "{}", first.everything());
    assert_eq!(first.counts(), (4, 0, 0, 0), "{}", first.everything());
    let report = first.report.as_ref().unwrap();
    let folders = report["folders"].as_array().unwrap();
    let copied = folders
        .iter()
        .find(|f| f["source"] == folder)
        .expect("the folder is reported");
    assert_eq!(copied["dest"], fallback, "{report}");
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains(&format!("refused the folder name {folder}"))
            && warnings.contains(server_said),
        "{warnings}"
    );
    assert!(report.get("fatal").is_none(), "{report}");
    let mut checker = (dest.checker)();
    assert_eq!(checker.fetch_all(fallback_raw).unwrap().len(), 3);
    assert_eq!(checker.fetch_all("INBOX").unwrap().len(), 1);

    // A second pass finds the fallback and copies nothing; the proof agrees.
    let second = run(&source, &dest, dir.path(), "migrate");
    assert_eq!(second.counts(), (0, 4, 0, 0), "{}", second.everything());
    let proof = run(&source, &dest, dir.path(), "verify");
    assert_eq!(proof.code, 0, "{}", proof.everything());
}

#[test]
fn cyrus_refuses_a_percent_sign_and_the_folder_goes_under_another_name() {
    a_refused_folder_name_falls_back(
        cyrus(),
        "Projects/50% off",
        "Projects/50_ off",
        "INBOX.Projects.50_ off",
        "Invalid mailbox name",
    );
}

#[test]
fn courier_refuses_a_name_too_long_and_the_folder_goes_under_a_short_one() {
    let folder = format!("Projects/{}/{}", "x".repeat(150), "y".repeat(150));
    let short: String = format!("Projects_{}_{}", "x".repeat(150), "y".repeat(150))
        .chars()
        .take(60)
        .collect();
    a_refused_folder_name_falls_back(
        courier(),
        &folder,
        &short,
        &format!("INBOX.{short}"),
        "Cannot create this folder.",
    );
}

/// A message without a final line break (Courier adds one: two bytes more), one
/// without a Message-ID whose Subject has raw 8-bit bytes (Cyrus stores each as `X`),
/// and an ordinary one.
fn changed_by_servers() -> Vec<Vec<u8>> {
    let mut no_final_crlf = messages::simple("<no-crlf@example.com>", "no final CRLF", 300);
    no_final_crlf.truncate(no_final_crlf.len() - 2);
    let eight_bit = b"From: J\xfcrgen <j@example.com>\r\nSubject: Gr\xfc\xdfe aus K\xf6ln\r\n\
Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nHallo.\r\n"
        .to_vec();
    let plain = messages::simple("<plain@example.com>", "plain", 400);
    vec![no_final_crlf, eight_bit, plain]
}

/// Copies [`changed_by_servers`] to `dest`, has the server renumber INBOX (a new
/// UIDVALIDITY, so the ledger's UIDs no longer hold), and copies again: every message
/// is found by what survives the server's changes, none is sent twice, and the proof
/// explains everything; `verify --content` names the one copy the server changed
/// (`changed`, with its Message-ID) and how.
fn a_server_that_changes_bytes_and_renumbers_gets_no_duplicate(
    dest: Dest,
    changed: Option<&str>,
    how: &str,
) {
    let source = Dovecot::start(DovecotOptions::default()).expect("the source Dovecot starts");
    source.add_user(SOURCE_USER, SOURCE_PASSWORD).unwrap();
    let mut checker = source.checker(SOURCE_USER, SOURCE_PASSWORD).unwrap();
    for message in changed_by_servers() {
        checker.append("INBOX", &[], Some(DATE), &message).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let first = run(&source, &dest, dir.path(), "migrate");
    assert_eq!(first.counts(), (3, 0, 0, 0), "{}", first.everything());
    // Courier's added line break shows in the stored size; Cyrus's X for an 8-bit
    // byte does not (verify --content below sees both).
    let by_size = changed.is_none();
    assert_eq!(
        first.report.as_ref().unwrap()["dest_byte_exact"],
        by_size,
        "{}",
        first.everything()
    );
    (dest.renumber_inbox)();
    let second = run(&source, &dest, dir.path(), "migrate");
    assert_eq!(second.code, 0, "{}", second.everything());
    assert_eq!(second.counts(), (0, 3, 0, 0), "{}", second.everything());
    assert_eq!(
        (dest.checker)().fetch_all("INBOX").unwrap().len(),
        3,
        "a duplicate"
    );
    let proof = run_with(&source, &dest, dir.path(), "verify", &["--content"]);
    assert_eq!(proof.code, 0, "{}", proof.everything());
    let content = &proof.report.as_ref().unwrap()["content"];
    assert_eq!(content["identical"], 2, "{content}");
    let found = content["changed"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{content}");
    assert_eq!(found[0]["message_id"].as_str(), changed, "{content}");
    assert_eq!(found[0]["how"], how, "{content}");
    assert!(proof.stdout.contains(how), "{}", proof.stdout);
}

#[test]
fn courier_adds_a_final_line_break_and_renumbers_and_nothing_is_copied_twice() {
    a_server_that_changes_bytes_and_renumbers_gets_no_duplicate(
        courier(),
        Some("<no-crlf@example.com>"),
        "a final line break added",
    );
}

#[test]
fn cyrus_rewrites_8_bit_headers_and_renumbers_and_nothing_is_copied_twice() {
    a_server_that_changes_bytes_and_renumbers_gets_no_duplicate(
        cyrus(),
        None,
        "8-bit header bytes rewritten",
    );
}

/// Cyrus or Courier as the source, seeded through `checker` with folders whose names
/// need care (`&`, non-ASCII, deep) and messages with keywords and raw 8-bit headers;
/// Dovecot as the destination. Everything arrives byte for byte with its flags and
/// date, a second pass copies nothing, and `verify --content` finds every copy
/// identical.
fn from_another_server_to_dovecot(
    source_url: &str,
    source_ca: &Path,
    mut seed: Checker,
    renumber_inbox: &dyn Fn(),
) {
    let folders = [
        "INBOX",
        "INBOX.R&AOk-sum&AOk-s",
        "INBOX.Projects",
        "INBOX.Projects.A &- B",
        "INBOX.Deep.Er.Still.Deeper",
    ];
    for folder in &folders[1..] {
        seed.create(folder).unwrap();
    }
    for (i, folder) in folders.iter().enumerate() {
        let plain = messages::simple(&format!("<f{i}@example.com>"), "hello", 300);
        seed.append(folder, &["\\Seen", "Project1"], Some(DATE), &plain)
            .unwrap();
        let eight_bit = messages::eight_bit_headers(&format!("<e{i}@example.com>"));
        seed.append(folder, &["\\Flagged"], Some(DATE), &eight_bit)
            .unwrap();
    }
    let dest = Dovecot::start(DovecotOptions::default()).expect("Dovecot starts");
    dest.add_user(DEST_USER, DEST_PASSWORD).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = both_cas(dir.path(), source_ca, dest.ca_pem());
    let dest_url = format!("imap://{DEST_USER}@127.0.0.1:{}", dest.imap_port());
    let mailmove = |subcommand: &str, extra: &[&str]| {
        let report = dir
            .path()
            .join(format!("{subcommand}-{}.json", rand_suffix()));
        let output = Command::new(env!("CARGO_BIN_EXE_mailmove"))
            .arg(subcommand)
            .args(["--source", source_url, "--dest", &dest_url])
            .arg("--tls-ca")
            .arg(&ca)
            .arg("--state")
            .arg(dir.path().join("state.sqlite"))
            .arg("--report")
            .arg(&report)
            .args(extra)
            .env("MAILMOVE_SOURCE_PASSWORD", SOURCE_PASSWORD)
            .env("MAILMOVE_DEST_PASSWORD", DEST_PASSWORD)
            .env_remove("MAILMOVE_LOG")
            .output()
            .expect("mailmove runs");
        finish(output, Some(report))
    };
    let first = mailmove("migrate", &[]);
    assert_eq!(first.code, 0, "{}", first.everything());
    assert_eq!(first.counts(), (10, 0, 0, 0), "{}", first.everything());
    assert_eq!(first.report.as_ref().unwrap()["dest_byte_exact"], true);
    let mut source = seed;
    let mut copied = dest.checker(DEST_USER, DEST_PASSWORD).unwrap();
    for (folder, dest_folder) in folders.iter().zip([
        "INBOX",
        "R&AOk-sum&AOk-s",
        "Projects",
        "Projects/A &- B",
        "Deep/Er/Still/Deeper",
    ]) {
        let sent = source.fetch_all(folder).unwrap();
        let arrived = copied.fetch_all(dest_folder).unwrap();
        assert_eq!(arrived.len(), sent.len(), "{folder}");
        for (a, b) in sent.iter().zip(&arrived) {
            assert_eq!(a.body, b.body, "{folder}: bytes");
            assert_eq!(a.flags, b.flags, "{folder}: flags");
            assert_eq!(
                a.internal_date.trim_start_matches([' ', '0']),
                b.internal_date.trim_start_matches([' ', '0']),
                "{folder}: date"
            );
        }
    }
    let again = mailmove("migrate", &[]);
    assert_eq!(again.counts(), (0, 10, 0, 0), "{}", again.everything());
    // The source renumbers INBOX (a new UIDVALIDITY): its messages are found again at
    // the destination, not copied twice.
    renumber_inbox();
    let renumbered = mailmove("migrate", &[]);
    assert_eq!(
        renumbered.counts(),
        (0, 10, 0, 0),
        "{}",
        renumbered.everything()
    );
    let proof = mailmove("verify", &["--content"]);
    assert_eq!(proof.code, 0, "{}", proof.everything());
    let content = &proof.report.as_ref().unwrap()["content"];
    assert_eq!(content["identical"], 10, "{content}");
}

#[test]
fn cyrus_as_the_source_arrives_exactly_in_dovecot() {
    let cyrus = Cyrus::start().expect("Cyrus starts");
    cyrus.add_user(SOURCE_USER, SOURCE_PASSWORD).unwrap();
    let seed = cyrus.checker(SOURCE_USER, SOURCE_PASSWORD).unwrap();
    let url = format!("imap://{SOURCE_USER}@127.0.0.1:{}", cyrus.imap_port());
    let renumber = || {
        cyrus.reconstruct(SOURCE_USER, "INBOX").unwrap();
    };
    from_another_server_to_dovecot(&url, cyrus.ca_pem(), seed, &renumber);
}

#[test]
fn courier_as_the_source_arrives_exactly_in_dovecot() {
    let courier = Courier::start().expect("Courier starts");
    courier.add_user(SOURCE_USER, SOURCE_PASSWORD).unwrap();
    let seed = courier.checker(SOURCE_USER, SOURCE_PASSWORD).unwrap();
    let url = format!("imaps://{SOURCE_USER}@127.0.0.1:{}", courier.imaps_port());
    let renumber = || courier.delete_uid_db(SOURCE_USER, "INBOX").unwrap();
    from_another_server_to_dovecot(&url, courier.ca_pem(), seed, &renumber);
}
