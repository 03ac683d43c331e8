//! End-to-end: a POP3 source (Dovecot's POP3 server) into an IMAP destination.

mod common;

use common::{DEST_PASSWORD, SOURCE_PASSWORD, SOURCE_USER, Setup, bodies};
use mailmove_testkit::messages;

fn pop_url(setup: &Setup) -> String {
    format!(
        "pop3://{SOURCE_USER}@127.0.0.1:{}",
        setup.source.pop3_port()
    )
}

fn run(setup: &Setup, command: &str, source: &str, extra: &[&str]) -> common::Run {
    let report = setup
        .dir
        .path()
        .join(format!("{command}-{}.json", rand_suffix()));
    let mut process = std::process::Command::new(env!("CARGO_BIN_EXE_mailmove"));
    process
        .args([
            command,
            "--source",
            source,
            "--dest",
            &setup.dest_url(),
            "--tls-ca",
        ])
        .arg(&setup.ca);
    if command != "check" {
        process.arg("--state").arg(setup.state());
    }
    let output = process
        .arg("--report")
        .arg(&report)
        .args(extra)
        .env("MAILMOVE_SOURCE_PASSWORD", SOURCE_PASSWORD)
        .env("MAILMOVE_DEST_PASSWORD", DEST_PASSWORD)
        .output()
        .unwrap();
    common::finish(output, Some(report))
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn pop3_messages_arrive_byte_exact_and_the_source_stays_unread() {
    let setup = Setup::new();
    let mut src = setup.src();
    let originals = vec![
        b"Subject: dots\r\nMessage-ID: <dots@x>\r\n\r\n.one\r\n..two\r\n.\r\nend\r\n".to_vec(),
        b"Subject: open\r\nMessage-ID: <open@x>\r\n\r\nno line break at the end".to_vec(),
        messages::eight_bit_headers("8bit@example.com"),
        messages::with_attachment("ten@example.com", 10 * 1024 * 1024, 3),
    ];
    for body in &originals {
        src.append("INBOX", &[], None, body).unwrap();
    }
    let first = run(&setup, "migrate", &pop_url(&setup), &[]);
    assert_eq!(first.code, 0, "{}", first.everything());
    assert_eq!(first.counts(), (4, 0, 0, 0));
    assert_eq!(bodies(&mut setup.dst(), "INBOX"), bodies(&mut src, "INBOX"));
    for message in src.fetch_all("INBOX").unwrap() {
        assert!(
            message.flags.is_empty(),
            "the source was changed: {:?}",
            message.flags
        );
    }
    // A rerun copies nothing.
    assert_eq!(
        run(&setup, "migrate", &pop_url(&setup), &[]).counts(),
        (0, 4, 0, 0)
    );
    // The proof agrees.
    let proof = run(&setup, "verify", &pop_url(&setup), &[]);
    assert_eq!(proof.code, 0, "{}", proof.everything());
}

#[test]
fn later_passes_copy_new_messages_and_ignore_deletions_at_the_source() {
    let setup = Setup::new();
    let mut src = setup.src();
    for i in 0..3 {
        src.append(
            "INBOX",
            &[],
            None,
            &messages::simple(&format!("p{i}@x"), "p", 500),
        )
        .unwrap();
    }
    assert_eq!(
        run(&setup, "migrate", &pop_url(&setup), &[]).counts(),
        (3, 0, 0, 0)
    );
    let first_uid = src.fetch_all("INBOX").unwrap()[0].uid;
    src.delete_message("INBOX", first_uid).unwrap();
    src.append("INBOX", &[], None, &messages::simple("p3@x", "p", 500))
        .unwrap();
    let second = run(&setup, "migrate", &pop_url(&setup), &[]);
    assert_eq!(second.counts(), (1, 2, 0, 0), "{}", second.everything());
    // The message deleted at the source is still at the destination.
    assert_eq!(setup.dst().fetch_all("INBOX").unwrap().len(), 4);
}

#[test]
fn pop_folder_and_the_date_header_as_arrival_date() {
    let setup = Setup::new();
    let body = b"Date: Tue, 15 Aug 2023 23:59:00 +0000\r\nSubject: dated\r\nMessage-ID: <d@x>\r\n\r\nhi\r\n".to_vec();
    setup.src().append("INBOX", &[], None, &body).unwrap();
    let run = run(
        &setup,
        "migrate",
        &pop_url(&setup),
        &["--pop-folder", "Old POP mail"],
    );
    assert_eq!(run.code, 0, "{}", run.everything());
    let mut dst = setup.dst();
    let copied = dst.fetch_all("Old POP mail").unwrap();
    assert_eq!(copied.len(), 1);
    assert_eq!(copied[0].body, body);
    assert_eq!(copied[0].internal_date, "15-Aug-2023 23:59:00 +0000");
    assert!(dst.fetch_all("INBOX").unwrap().is_empty());
}

#[test]
fn implicit_tls_stls_and_untrusted_certificates() {
    let setup = Setup::new();
    setup
        .src()
        .append("INBOX", &[], None, &messages::simple("t@x", "t", 100))
        .unwrap();
    let implicit = format!(
        "pop3s://{SOURCE_USER}@localhost:{}",
        setup.source.pop3s_port()
    );
    assert_eq!(run(&setup, "check", &implicit, &[]).code, 0);
    let untrusted = std::process::Command::new(env!("CARGO_BIN_EXE_mailmove"))
        .args(["check", "--source", &implicit, "--dest", &setup.dest_url()])
        .env("MAILMOVE_SOURCE_PASSWORD", SOURCE_PASSWORD)
        .env("MAILMOVE_DEST_PASSWORD", DEST_PASSWORD)
        .output()
        .unwrap();
    let untrusted = common::finish(untrusted, None);
    assert_eq!(untrusted.code, 3, "{}", untrusted.everything());
    assert!(
        untrusted
            .stderr
            .contains("source: certificate for localhost is not trusted"),
        "{}",
        untrusted.stderr
    );
    // pop3:// upgrades with STLS on the plain port.
    let migrated = run(&setup, "migrate", &pop_url(&setup), &[]);
    assert_eq!(migrated.code, 0, "{}", migrated.everything());
}

#[test]
fn a_wrong_pop3_password_exits_3() {
    let setup = Setup::new();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mailmove"))
        .args([
            "migrate",
            "--source",
            &pop_url(&setup),
            "--dest",
            &setup.dest_url(),
            "--tls-ca",
        ])
        .arg(&setup.ca)
        .arg("--state")
        .arg(setup.state())
        .env("MAILMOVE_SOURCE_PASSWORD", "wrong-one")
        .env("MAILMOVE_DEST_PASSWORD", DEST_PASSWORD)
        .output()
        .unwrap();
    let run = common::finish(output, None);
    assert_eq!(run.code, 3, "{}", run.everything());
    assert!(
        run.stderr
            .contains("source login refused for alice: check the password"),
        "{}",
        run.stderr
    );
}

#[test]
fn check_counts_and_verify_finds_a_message_missing_at_the_destination() {
    let setup = Setup::new();
    let mut src = setup.src();
    src.append("INBOX", &[], None, &messages::simple("c1@x", "c", 1_000))
        .unwrap();
    src.append(
        "INBOX",
        &[],
        None,
        &messages::with_attachment("c2@x", 200_000, 4),
    )
    .unwrap();
    let check = run(&setup, "check", &pop_url(&setup), &[]);
    assert_eq!(check.code, 0, "{}", check.everything());
    let report = check.report.unwrap();
    assert_eq!(report["source"]["messages"], 2);
    assert!(report["source"]["largest_message"].as_u64().unwrap() > 200_000);
    assert_eq!(run(&setup, "migrate", &pop_url(&setup), &[]).code, 0);
    let mut dst = setup.dst();
    let victim = dst.fetch_all("INBOX").unwrap()[0].uid;
    dst.delete_message("INBOX", victim).unwrap();
    let proof = run(&setup, "verify", &pop_url(&setup), &[]);
    assert_eq!(proof.code, 1, "{}", proof.everything());
    let missing = proof.report.unwrap()["missing"].as_array().unwrap().clone();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0]["message_id"], "<c1@x>");
}

/// A POP3 server with neither UIDL nor TOP (no real server does that on demand):
/// messages must then be recognised by content, and read with RETR.
fn bare_pop3_server(messages: Vec<Vec<u8>>) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let messages = messages.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let _ = writer.write_all(b"+OK bare server ready\r\n");
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    let words: Vec<&str> = line.split_whitespace().collect();
                    let reply: Vec<u8> =
                        match words.first().map(|w| w.to_ascii_uppercase()).as_deref() {
                            Some("USER") | Some("PASS") | Some("NOOP") => b"+OK\r\n".to_vec(),
                            Some("STAT") => {
                                let total: usize = messages.iter().map(Vec::len).sum();
                                format!("+OK {} {total}\r\n", messages.len()).into_bytes()
                            }
                            Some("LIST") => {
                                let mut out = b"+OK\r\n".to_vec();
                                for (i, m) in messages.iter().enumerate() {
                                    out.extend(format!("{} {}\r\n", i + 1, m.len()).into_bytes());
                                }
                                out.extend(b".\r\n");
                                out
                            }
                            Some("RETR") => {
                                let n: usize = words[1].parse().unwrap();
                                let mut out = b"+OK\r\n".to_vec();
                                for l in messages[n - 1].split_inclusive(|&b| b == b'\n') {
                                    if l.starts_with(b".") {
                                        out.push(b'.');
                                    }
                                    out.extend(l);
                                }
                                out.extend(b".\r\n");
                                out
                            }
                            Some("QUIT") => {
                                let _ = writer.write_all(b"+OK bye\r\n");
                                return;
                            }
                            _ => b"-ERR not here\r\n".to_vec(),
                        };
                    if writer.write_all(&reply).is_err() {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
    port
}

#[test]
fn a_server_without_uidl_is_matched_by_content_and_never_duplicated() {
    let setup = Setup::new();
    let same = b"Subject: twin\r\nMessage-ID: <twin@x>\r\n\r\n.same body\r\n".to_vec();
    let other = b"Subject: other\r\n\r\nno message id here\r\n".to_vec();
    let port = bare_pop3_server(vec![same.clone(), other.clone(), same.clone()]);
    let source = format!("pop3://alice@127.0.0.1:{port}");
    let first = run(&setup, "migrate", &source, &[]);
    assert_eq!(first.code, 0, "{}", first.everything());
    assert_eq!(first.counts(), (3, 0, 0, 0));
    let mut expected = vec![same.clone(), other, same];
    expected.sort();
    assert_eq!(bodies(&mut setup.dst(), "INBOX"), expected);
    let second = run(&setup, "migrate", &source, &[]);
    assert_eq!(second.counts(), (0, 3, 0, 0), "{}", second.everything());
    assert_eq!(setup.dst().fetch_all("INBOX").unwrap().len(), 3);
}
