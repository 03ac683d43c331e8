//! Proves the harness itself against real Dovecot: if these fail, every other crate's
//! real-server tests would fail for reasons that have nothing to do with mailmove.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use mailmove_testkit::{Checker, Dovecot, DovecotOptions, MasterUser, Sasl, messages};

fn read_line(reader: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    line
}

#[test]
fn appended_messages_come_back_byte_exact() {
    let dovecot = Dovecot::start_default().unwrap();
    dovecot.add_user("alice", "secret").unwrap();
    let mut checker = dovecot.checker("alice", "secret").unwrap();

    let bodies = [
        messages::simple("one@example.com", "First", 1000),
        messages::eight_bit_headers("two@example.com"),
        messages::long_lines("three@example.com", 20_000),
        messages::with_attachment("four@example.com", 50_000, 42),
        messages::without_message_id("No id"),
    ];
    let date = "01-Jan-2020 10:00:00 +0000";
    let mut uids = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let flags: &[&str] = if i == 0 {
            &["\\Seen", "$Forwarded"]
        } else {
            &[]
        };
        uids.push(checker.append("INBOX", flags, Some(date), body).unwrap());
    }
    assert_eq!(uids, vec![1, 2, 3, 4, 5]);

    let fetched = checker.fetch_all("INBOX").unwrap();
    assert_eq!(fetched.len(), bodies.len());
    for ((message, body), uid) in fetched.iter().zip(&bodies).zip(&uids) {
        assert_eq!(message.uid, *uid);
        assert_eq!(&message.body, body, "uid {uid} differs");
        assert_eq!(message.internal_date, date);
    }
    assert_eq!(fetched[0].flags, vec!["$Forwarded", "\\Seen"]);
    assert!(fetched[1].flags.is_empty(), "\\Recent must be left out");

    checker.set_flags("INBOX", uids[1], &["\\Flagged"]).unwrap();
    checker.delete_message("INBOX", uids[2]).unwrap();
    let fetched = checker.fetch_all("INBOX").unwrap();
    let remaining: Vec<u32> = fetched.iter().map(|m| m.uid).collect();
    assert_eq!(remaining, vec![1, 2, 4, 5]);
    assert_eq!(fetched[1].flags, vec!["\\Flagged"]);

    checker.create("Archive/2020").unwrap();
    checker.create("Archive/2020").unwrap(); // already exists is fine
    assert!(checker.fetch_all("Archive/2020").unwrap().is_empty());
}

#[test]
fn folders_special_use_subscriptions_and_uidvalidity() {
    let dovecot = Dovecot::start_default().unwrap();
    dovecot.add_user("alice", "secret").unwrap();
    let mut checker = dovecot.checker("alice", "secret").unwrap();

    let folders = checker.list().unwrap();
    let sent = folders
        .iter()
        .find(|f| f.name == "Sent")
        .expect("Sent listed");
    assert!(
        sent.attributes.contains(&"\\Sent".to_string()),
        "{folders:?}"
    );
    let trash = folders
        .iter()
        .find(|f| f.name == "Trash")
        .expect("Trash listed");
    assert!(
        trash.attributes.contains(&"\\Trash".to_string()),
        "{folders:?}"
    );
    assert!(folders.iter().any(|f| f.name == "INBOX"));

    let subscribed = checker.subscribed().unwrap();
    for name in ["Sent", "Drafts", "Trash", "Junk"] {
        assert!(subscribed.contains(&name.to_string()), "{subscribed:?}");
    }

    checker.create("Projects/Old").unwrap();
    let uid = checker
        .append(
            "Projects/Old",
            &[],
            None,
            &messages::simple("p@x", "P", 100),
        )
        .unwrap();
    assert_eq!(uid, 1);
    let before = checker.uidvalidity("Projects/Old").unwrap();
    checker.delete_folder("Projects/Old").unwrap();
    checker.create("Projects/Old").unwrap();
    let after = checker.uidvalidity("Projects/Old").unwrap();
    assert_ne!(before, after);
    assert!(checker.fetch_all("Projects/Old").unwrap().is_empty());

    let noop = String::from_utf8(checker.raw("NOOP").unwrap()).unwrap();
    assert!(noop.ends_with("\r\n") && noop.contains(" OK "), "{noop}");
    let error = checker.raw("FROBNICATE").unwrap_err().to_string();
    assert!(error.contains("BAD"), "{error}");
    // Still in step after the error.
    checker.raw("NOOP").unwrap();
}

#[test]
fn courier_style_dot_separator_with_inbox_prefix() {
    let dovecot = Dovecot::start(DovecotOptions {
        separator: '.',
        inbox_prefix: true,
        special_use: vec![
            ("Sent Messages".to_string(), "\\Sent".to_string()),
            ("INBOX.Deleted Messages".to_string(), "\\Trash".to_string()),
        ],
        ..DovecotOptions::default()
    })
    .unwrap();
    dovecot.add_user("carol", "pw").unwrap();
    let mut checker = dovecot.checker("carol", "pw").unwrap();

    checker.create("INBOX.Archive.2020").unwrap();
    let folders = checker.list().unwrap();
    let names: Vec<&str> = folders.iter().map(|f| f.name.as_str()).collect();
    assert!(names.contains(&"INBOX"), "{names:?}");
    assert!(names.contains(&"INBOX.Archive.2020"), "{names:?}");
    let sent = folders
        .iter()
        .find(|f| f.name == "INBOX.Sent Messages")
        .unwrap_or_else(|| panic!("{folders:?}"));
    assert!(sent.attributes.contains(&"\\Sent".to_string()));
    let trash = folders
        .iter()
        .find(|f| f.name == "INBOX.Deleted Messages")
        .unwrap_or_else(|| panic!("{folders:?}"));
    assert!(trash.attributes.contains(&"\\Trash".to_string()));

    // Outside the prefix there is no namespace.
    assert!(checker.create("Elsewhere").is_err());

    let body = messages::simple("c@x", "Courier", 300);
    let uid = checker
        .append("INBOX.Sent Messages", &["\\Seen"], None, &body)
        .unwrap();
    let fetched = checker.fetch_all("INBOX.Sent Messages").unwrap();
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].uid, uid);
    assert_eq!(fetched[0].body, body);
}

#[test]
fn quota_and_max_mail_size_refuse_appends() {
    let dovecot = Dovecot::start(DovecotOptions {
        quota_bytes: Some(64 * 1024),
        max_mail_size: Some(16 * 1024),
        ..DovecotOptions::default()
    })
    .unwrap();
    dovecot.add_user("dave", "pw").unwrap();
    let mut checker = dovecot.checker("dave", "pw").unwrap();

    let too_large = messages::simple("big@x", "Big", 20 * 1024);
    let error = checker
        .append("INBOX", &[], None, &too_large)
        .unwrap_err()
        .to_string();
    assert!(error.contains("NO [LIMIT]"), "{error}");

    let mut refused = None;
    for i in 0..10 {
        let body = messages::simple(&format!("m{i}@x"), "Fill", 12 * 1024);
        if let Err(error) = checker.append("INBOX", &[], None, &body) {
            refused = Some((i, error.to_string()));
            break;
        }
    }
    let (count, error) = refused.expect("quota never reached");
    assert!(error.contains("NO [OVERQUOTA]"), "{error}");
    assert_eq!(count, 5, "64 KiB holds five 12 KiB messages");
    // The connection is still usable after a refusal.
    assert_eq!(checker.fetch_all("INBOX").unwrap().len(), 5);
    let quota = dovecot.doveadm(&["quota", "get", "-u", "dave"]).unwrap();
    assert!(quota.contains("STORAGE"), "{quota}");
}

#[test]
fn max_mail_size_alone_refuses_large_appends() {
    let dovecot = Dovecot::start(DovecotOptions {
        max_mail_size: Some(4096),
        ..DovecotOptions::default()
    })
    .unwrap();
    dovecot.add_user("erin", "pw").unwrap();
    let mut checker = dovecot.checker("erin", "pw").unwrap();
    checker
        .append("INBOX", &[], None, &messages::simple("s@x", "Small", 1000))
        .unwrap();
    let error = checker
        .append("INBOX", &[], None, &messages::simple("l@x", "Large", 8000))
        .unwrap_err()
        .to_string();
    assert!(error.contains("NO [LIMIT]"), "{error}");
}

#[test]
fn restart_keeps_data_and_ports() {
    let mut dovecot = Dovecot::start_default().unwrap();
    dovecot.add_user("frank", "pw").unwrap();
    let body = messages::simple("r@x", "Restart", 500);
    let port = dovecot.imap_port();
    {
        let mut checker = dovecot.checker("frank", "pw").unwrap();
        checker.append("INBOX", &["\\Seen"], None, &body).unwrap();
    }

    dovecot.stop().unwrap();
    assert!(!dovecot.is_running());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port still answers"
    );
    dovecot.stop().unwrap(); // stopping twice is harmless

    dovecot.restart().unwrap();
    assert_eq!(dovecot.imap_port(), port);
    let mut checker = dovecot.checker("frank", "pw").unwrap();
    let fetched = checker.fetch_all("INBOX").unwrap();
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].body, body);
    assert_eq!(fetched[0].flags, vec!["\\Seen"]);

    // Restarting a running server works too.
    dovecot.restart().unwrap();
    dovecot.checker("frank", "pw").unwrap();
    assert!(dovecot.log().contains("starting up"));
}

#[test]
fn users_added_later_can_log_in_at_once() {
    let dovecot = Dovecot::start_default().unwrap();
    dovecot.add_user("alice", "a").unwrap();
    let _alice = dovecot.checker("alice", "a").unwrap();
    dovecot.add_user("bob", "b").unwrap();
    let _bob = dovecot
        .checker("bob", "b")
        .map_err(|e| format!("{e:#}\n{}", dovecot.log()))
        .unwrap();
    // A changed password of the same length, within the same second.
    dovecot.add_user("bob", "c").unwrap();
    assert!(dovecot.checker("bob", "b").is_err());
    dovecot
        .checker("bob", "c")
        .map_err(|e| format!("{e:#}\n{}", dovecot.log()))
        .unwrap();
    assert!(dovecot.checker("nobody-here", "x").is_err());
    assert!(dovecot.add_user("bad:name", "x").is_err());
}

#[test]
fn tls_and_pop3_ports_answer() {
    let dovecot = Dovecot::start_default().unwrap();
    dovecot.add_user("gina", "pw").unwrap();

    let pem = std::fs::read_to_string(dovecot.ca_pem()).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");

    // Plaintext IMAP offers STARTTLS.
    let mut checker = dovecot.checker("gina", "pw").unwrap();
    let capability = String::from_utf8(checker.raw("CAPABILITY").unwrap()).unwrap();
    assert!(capability.contains("IMAP4rev1"), "{capability}");
    let stream = TcpStream::connect((dovecot.host(), dovecot.imap_port())).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    assert!(read_line(&mut reader).contains("STARTTLS"));

    // Plaintext POP3 offers STLS and lets a user in.
    let mut stream = TcpStream::connect((dovecot.host(), dovecot.pop3_port())).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    assert!(read_line(&mut reader).starts_with("+OK"));
    stream.write_all(b"CAPA\r\n").unwrap();
    let mut capa = String::new();
    loop {
        let line = read_line(&mut reader);
        if line == ".\r\n" || line.is_empty() {
            break;
        }
        capa.push_str(&line);
    }
    assert!(capa.contains("STLS"), "{capa}");
    stream.write_all(b"USER gina\r\n").unwrap();
    assert!(read_line(&mut reader).starts_with("+OK"));
    stream.write_all(b"PASS pw\r\n").unwrap();
    assert!(read_line(&mut reader).starts_with("+OK"));

    // The implicit-TLS ports accept connections.
    TcpStream::connect((dovecot.host(), dovecot.imaps_port())).unwrap();
    TcpStream::connect((dovecot.host(), dovecot.pop3s_port())).unwrap();

    // Where openssl is installed, check the chain and both SANs for real.
    for (port, check) in [
        (dovecot.imaps_port(), ["-verify_hostname", "localhost"]),
        (dovecot.pop3s_port(), ["-verify_ip", "127.0.0.1"]),
    ] {
        let output = match Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .arg("-CAfile")
            .arg(dovecot.ca_pem())
            .args(check)
            .arg("-verify_return_error")
            .stdin(std::process::Stdio::null())
            .output()
        {
            Ok(output) => output,
            Err(_) => {
                eprintln!("openssl not installed; TLS chain not verified");
                return;
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains("Verify return code: 0 (ok)"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn instances_are_independent() {
    let first = Dovecot::start_default().unwrap();
    let second = Dovecot::start_default().unwrap();
    assert_ne!(first.imap_port(), second.imap_port());
    first.add_user("hank", "pw").unwrap();
    second.add_user("hank", "pw").unwrap();
    first
        .checker("hank", "pw")
        .unwrap()
        .append("INBOX", &[], None, &messages::simple("i@x", "I", 50))
        .unwrap();
    assert_eq!(
        first
            .checker("hank", "pw")
            .unwrap()
            .fetch_all("INBOX")
            .unwrap()
            .len(),
        1
    );
    assert!(
        second
            .checker("hank", "pw")
            .unwrap()
            .fetch_all("INBOX")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_master_user_logs_in_as_any_user_with_login_or_plain() {
    let dovecot = Dovecot::start(DovecotOptions {
        master_user: Some(MasterUser {
            name: "admin".to_string(),
            password: "admin-secret".to_string(),
        }),
        ..DovecotOptions::default()
    })
    .unwrap();
    dovecot.add_user("alice", "secret").unwrap();
    let (host, port) = (dovecot.host(), dovecot.imap_port());

    let mut checker = Checker::connect(host, port, "alice*admin", "admin-secret").unwrap();
    let uid = checker
        .append(
            "INBOX",
            &[],
            None,
            &messages::simple("m@example.com", "Hi", 500),
        )
        .unwrap();
    let plain = |authzid: &str, authcid: &str, password: &str| Sasl::Plain {
        authzid: authzid.to_string(),
        authcid: authcid.to_string(),
        password: password.to_string(),
    };
    let mut checker =
        Checker::authenticate(host, port, &plain("alice", "admin", "admin-secret")).unwrap();
    assert_eq!(checker.fetch_all("INBOX").unwrap()[0].uid, uid);
    // PLAIN without an authorization identity is an ordinary login.
    Checker::authenticate(host, port, &plain("", "alice", "secret")).unwrap();

    // Refused: a wrong master password, a user that does not exist, a user's own
    // password used as if it were a master's, and the master logging in as itself.
    for sasl in [
        plain("alice", "admin", "guess"),
        plain("nobody", "admin", "admin-secret"),
        plain("admin", "alice", "secret"),
        plain("", "admin", "admin-secret"),
    ] {
        let refusal = Checker::try_authenticate(host, port, &sasl).unwrap().err();
        assert!(refusal.is_some(), "{sasl:?} logged in");
    }
    assert!(Checker::connect(host, port, "nobody*admin", "admin-secret").is_err());
}
