//! Proves the Cyrus and Courier harnesses against the real servers, and records (as
//! assertions) what each does differently from Dovecot that matters to mailmove: the
//! folder names it refuses, what it changes in the bytes it stores, and how a folder
//! gets a new UIDVALIDITY.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use mailmove_testkit::{Courier, Cyrus, messages};

const DATE: &str = "01-Jan-2020 10:00:00 +0000";

/// The error of a refused CREATE, e.g. `CREATE "x" failed: C2 NO Invalid mailbox name`.
fn refusal(result: anyhow::Result<()>) -> String {
    format!("{:#}", result.expect_err("the server accepted the name"))
}

/// `openssl s_client` verifying the server's certificate against the instance's CA
/// and the name `localhost`; returns what it printed.
fn tls_handshake(port: u16, ca: &Path, starttls: bool) -> String {
    let mut command = Command::new("openssl");
    command
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args([
            "-verify_return_error",
            "-verify_hostname",
            "localhost",
            "-CAfile",
        ])
        .arg(ca);
    if starttls {
        command.args(["-starttls", "imap"]);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a LOGOUT\r\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn cyrus_logs_in_creates_appends_and_fetches_back() {
    let cyrus = Cyrus::start().unwrap();
    cyrus.add_user("alice", "secret").unwrap();
    let mut checker = cyrus.checker("alice", "secret").unwrap();

    checker.create("INBOX.Archive").unwrap();
    checker.create("INBOX.Archive.2020").unwrap();
    let body = messages::simple("m1@example.com", "Hello", 2_000);
    let uid = checker
        .append("INBOX.Archive.2020", &["\\Seen"], Some(DATE), &body)
        .unwrap();
    assert_eq!(uid, 1);
    let fetched = checker.fetch_all("INBOX.Archive.2020").unwrap();
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].body, body);
    assert_eq!(fetched[0].flags, vec!["\\Seen"]);
    // Cyrus pads the day with a space (RFC 3501's date-day-fixed), Dovecot with 0.
    assert_eq!(fetched[0].internal_date, " 1-Jan-2020 10:00:00 +0000");

    let names: Vec<String> = checker
        .list()
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["INBOX", "INBOX.Archive", "INBOX.Archive.2020"]);
    let namespace = String::from_utf8(checker.raw("NAMESPACE").unwrap()).unwrap();
    assert!(
        namespace.contains(r#"* NAMESPACE (("INBOX." "."))"#),
        "{namespace}"
    );

    // Passwords are checked for real.
    let wrong = format!("{:#}", cyrus.checker("alice", "wrong").unwrap_err());
    assert!(
        wrong.contains("NO Login failed: authentication failure"),
        "{wrong}"
    );
    // A changed password is the only one accepted, at once.
    cyrus.add_user("alice", "changed").unwrap();
    cyrus.checker("alice", "changed").unwrap();
    assert!(cyrus.checker("alice", "secret").is_err());
    // Sessions are recorded from the first command after LOGIN.
    assert!(
        cyrus.log().contains("CREATE \"INBOX.Archive\""),
        "{}",
        cyrus.log()
    );
}

#[test]
fn cyrus_refuses_a_slash_in_a_folder_name() {
    let cyrus = Cyrus::start().unwrap();
    cyrus.add_user("alice", "secret").unwrap();
    let mut checker = cyrus.checker("alice", "secret").unwrap();
    let error = refusal(checker.create("INBOX.Projects.TCP/IP"));
    assert!(error.contains("NO Invalid mailbox name"), "{error}");
    checker.create("INBOX.Projects").unwrap();
}

#[test]
fn cyrus_replaces_raw_8bit_header_bytes_with_x() {
    let cyrus = Cyrus::start().unwrap();
    cyrus.add_user("alice", "secret").unwrap();
    let mut checker = cyrus.checker("alice", "secret").unwrap();
    let body = messages::eight_bit_headers("8bit@example.com");
    checker.append("INBOX", &[], Some(DATE), &body).unwrap();
    let stored = &checker.fetch_all("INBOX").unwrap()[0].body;

    // Debian's default munge8bit: same size, every non-ASCII header byte is 'X',
    // the body (8-bit Latin-1) untouched.
    assert_eq!(stored.len(), body.len());
    assert_ne!(stored, &body);
    let end = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let munged: Vec<u8> = body[..end]
        .iter()
        .map(|&b| if b >= 0x80 { b'X' } else { b })
        .collect();
    assert_eq!(&stored[..end], &munged[..]);
    assert_eq!(&stored[end..], &body[end..]);
}

#[test]
fn cyrus_keeps_a_missing_final_crlf_and_refuses_bare_newlines_and_nul() {
    let cyrus = Cyrus::start().unwrap();
    cyrus.add_user("alice", "secret").unwrap();
    let mut checker = cyrus.checker("alice", "secret").unwrap();
    let no_final_crlf = b"From: a@example.com\r\nSubject: x\r\n\r\nBody".to_vec();
    checker.append("INBOX", &[], None, &no_final_crlf).unwrap();
    assert_eq!(checker.fetch_all("INBOX").unwrap()[0].body, no_final_crlf);

    let bare_lf = b"From: a@example.com\nSubject: x\n\nBody\n";
    let error = format!(
        "{:#}",
        checker.append("INBOX", &[], None, bare_lf).unwrap_err()
    );
    assert!(
        error.contains("NO Message contains bare newlines"),
        "{error}"
    );
    let nul = b"From: a@example.com\r\nSubject: x\r\n\r\nA\x00B\r\n";
    let error = format!("{:#}", checker.append("INBOX", &[], None, nul).unwrap_err());
    assert!(
        error.contains("NO Message contains NUL characters"),
        "{error}"
    );
}

#[test]
fn cyrus_reconstruct_gives_a_folder_a_new_uidvalidity() {
    let cyrus = Cyrus::start().unwrap();
    cyrus.add_user("alice", "secret").unwrap();
    let mut checker = cyrus.checker("alice", "secret").unwrap();
    checker.create("INBOX.Sub").unwrap();
    let body = messages::simple("r1@example.com", "Kept", 500);
    checker.append("INBOX.Sub", &[], Some(DATE), &body).unwrap();
    let before = checker.uidvalidity("INBOX.Sub").unwrap();

    let output = cyrus.reconstruct("alice", "INBOX.Sub").unwrap();
    assert!(output.contains("uid 1 found - adding"), "{output}");

    let mut checker = cyrus.checker("alice", "secret").unwrap();
    let after = checker.uidvalidity("INBOX.Sub").unwrap();
    assert_ne!(before, after);
    let fetched = checker.fetch_all("INBOX.Sub").unwrap();
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].uid, 1, "reconstruct keeps the UIDs");
    assert_eq!(fetched[0].body, body);
}

#[test]
fn cyrus_offers_tls_with_the_test_ca() {
    let cyrus = Cyrus::start().unwrap();
    for (port, starttls) in [(cyrus.imap_port(), true), (cyrus.imaps_port(), false)] {
        let output = tls_handshake(port, cyrus.ca_pem(), starttls);
        assert!(output.contains("Verify return code: 0 (ok)"), "{output}");
    }
}

#[test]
fn courier_logs_in_creates_appends_and_fetches_back() {
    let courier = Courier::start().unwrap();
    courier.add_user("alice", "secret").unwrap();
    let mut checker = courier.checker("alice", "secret").unwrap();

    checker.create("INBOX.Archive").unwrap();
    checker.create("INBOX.Archive.2020").unwrap();
    let body = messages::simple("m1@example.com", "Hello", 2_000);
    let uid = checker
        .append("INBOX.Archive.2020", &["\\Seen"], Some(DATE), &body)
        .unwrap();
    assert_eq!(uid, 1);
    let fetched = checker.fetch_all("INBOX.Archive.2020").unwrap();
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].body, body);
    assert_eq!(fetched[0].flags, vec!["\\Seen"]);
    assert_eq!(fetched[0].internal_date, DATE);

    let mut names: Vec<String> = checker
        .list()
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    names.sort();
    assert_eq!(names, ["INBOX", "INBOX.Archive", "INBOX.Archive.2020"]);
    let namespace = String::from_utf8(checker.raw("NAMESPACE").unwrap()).unwrap();
    assert!(
        namespace.contains(r#"* NAMESPACE (("INBOX." "."))"#),
        "{namespace}"
    );
    assert!(
        courier.maildir("alice").join(".Archive.2020/cur").is_dir(),
        "Maildir++ layout"
    );

    // A second user added while the server runs; passwords are checked for real.
    courier.add_user("bob", "other").unwrap();
    courier.checker("bob", "other").unwrap();
    // Courier answers a failed LOGIN after 5 seconds.
    let wrong = format!("{:#}", courier.checker("alice", "wrong").unwrap_err());
    assert!(wrong.contains("NO Login failed."), "{wrong}");
    courier.add_user("bob", "changed").unwrap();
    courier.checker("bob", "changed").unwrap();
    assert!(
        courier.log().contains("LOGIN FAILED, user=alice"),
        "{}",
        courier.log()
    );
}

#[test]
fn courier_refuses_a_slash_in_a_folder_name() {
    let courier = Courier::start().unwrap();
    courier.add_user("alice", "secret").unwrap();
    let mut checker = courier.checker("alice", "secret").unwrap();
    let error = refusal(checker.create("INBOX.Projects.TCP/IP"));
    assert!(error.contains("NO Invalid mailbox name."), "{error}");
    checker.create("INBOX.Projects").unwrap();
}

#[test]
fn courier_ends_a_message_with_crlf_and_turns_bare_newlines_into_crlf() {
    let courier = Courier::start().unwrap();
    courier.add_user("alice", "secret").unwrap();
    let mut checker = courier.checker("alice", "secret").unwrap();
    let mut body = messages::simple("nocrlf@example.com", "No final CRLF", 300);
    while body.ends_with(b"\r\n") {
        body.truncate(body.len() - 2);
    }
    checker.append("INBOX", &[], Some(DATE), &body).unwrap();
    // Raw 8-bit headers are kept as they are (unlike Cyrus).
    let eight_bit = messages::eight_bit_headers("8bit@example.com");
    checker
        .append("INBOX", &[], Some(DATE), &eight_bit)
        .unwrap();

    let fetched = checker.fetch_all("INBOX").unwrap();
    let stored = &fetched[0].body;
    assert_eq!(stored.len(), body.len() + 2);
    assert_eq!(&stored[..body.len()], &body[..]);
    assert!(stored.ends_with(b"\r\n"));
    assert_eq!(fetched[1].body, eight_bit);

    // Bare newlines become CRLF; NUL is stored as it is.
    checker.create("INBOX.Raw").unwrap();
    let bare_lf = b"From: a@example.com\nSubject: x\n\nBody\nline\n";
    let nul = b"From: a@example.com\r\nSubject: x\r\n\r\nA\x00B\r\n";
    checker.append("INBOX.Raw", &[], None, bare_lf).unwrap();
    checker.append("INBOX.Raw", &[], None, nul).unwrap();
    let raw = checker.fetch_all("INBOX.Raw").unwrap();
    assert_eq!(
        raw[0].body,
        b"From: a@example.com\r\nSubject: x\r\n\r\nBody\r\nline\r\n"
    );
    assert_eq!(raw[1].body, nul);

    // Courier refuses an APPEND to the folder the session has EXAMINEd.
    let error = format!(
        "{:#}",
        checker.append("INBOX.Raw", &[], None, &body).unwrap_err()
    );
    assert!(
        error.contains("NO Current box is selected READ-ONLY."),
        "{error}"
    );
}

#[test]
fn courier_deleting_the_uid_db_gives_a_folder_a_new_uidvalidity() {
    let courier = Courier::start().unwrap();
    courier.add_user("alice", "secret").unwrap();
    let mut checker = courier.checker("alice", "secret").unwrap();
    checker.create("INBOX.Sub").unwrap();
    let first = messages::simple("u1@example.com", "One", 500);
    let second = messages::simple("u2@example.com", "Two", 500);
    checker
        .append("INBOX.Sub", &[], Some(DATE), &first)
        .unwrap();
    let uid = checker
        .append("INBOX.Sub", &[], Some(DATE), &second)
        .unwrap();
    checker.delete_message("INBOX.Sub", uid - 1).unwrap();
    let before = checker.uidvalidity("INBOX.Sub").unwrap();
    drop(checker);

    courier.delete_uid_db("alice", "INBOX.Sub").unwrap();

    let mut checker = courier.checker("alice", "secret").unwrap();
    let after = checker.uidvalidity("INBOX.Sub").unwrap();
    assert!(after > before, "{before} -> {after}");
    let fetched = checker.fetch_all("INBOX.Sub").unwrap();
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].body, second);
    assert_eq!(fetched[0].uid, 1, "messages are numbered again from 1");
}

#[test]
fn courier_offers_tls_with_the_test_ca() {
    let courier = Courier::start().unwrap();
    for (port, starttls) in [(courier.imap_port(), true), (courier.imaps_port(), false)] {
        let output = tls_handshake(port, courier.ca_pem(), starttls);
        assert!(output.contains("Verify return code: 0 (ok)"), "{output}");
    }
}
