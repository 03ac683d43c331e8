//! Servers that misbehave on purpose, which no real server does on demand: the
//! command must end, with bounded memory and disk, and say what happened.

mod common;

use common::{Setup, bodies};

/// What the hostile source holds: (UID, the size it announces, the bytes it sends).
/// A body of `None` is a literal of `HUGE` filler bytes.
type Message = (u32, u64, Option<Vec<u8>>);

const HUGE: u64 = 100 * 1000 * 1000;

/// An IMAP source with one folder, INBOX, that announces each message's size in its
/// listing and then sends what the test says, however large.
fn hostile_imap_source(messages: Vec<Message>) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let messages = messages.clone();
            std::thread::spawn(move || {
                let mut out = std::io::BufWriter::new(stream.try_clone().unwrap());
                let mut reader = BufReader::new(stream);
                let _ = out.write_all(b"* OK [CAPABILITY IMAP4rev1] hostile ready\r\n");
                let _ = out.flush();
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    let (tag, command) = line.trim_end().split_once(' ').unwrap();
                    let upper = command.to_ascii_uppercase();
                    let mut reply = Vec::new();
                    if upper.starts_with("CAPABILITY") {
                        reply.extend(b"* CAPABILITY IMAP4rev1\r\n");
                    } else if upper.starts_with("LIST") {
                        reply.extend(b"* LIST () \"/\" INBOX\r\n");
                    } else if upper.starts_with("STATUS") {
                        reply.extend(
                            format!("* STATUS INBOX (MESSAGES {})\r\n", messages.len()).bytes(),
                        );
                    } else if upper.starts_with("EXAMINE") || upper.starts_with("SELECT") {
                        reply.extend(
                            format!(
                                "* {} EXISTS\r\n* OK [UIDVALIDITY 42] ok\r\n* OK [UIDNEXT 100] ok\r\n",
                                messages.len()
                            )
                            .bytes(),
                        );
                    } else if upper.starts_with("UID FETCH") && upper.contains("HEADER.FIELDS") {
                        for (i, (uid, size, _)) in messages.iter().enumerate() {
                            let header = format!("Message-ID: <m{uid}@hostile>\r\n\r\n");
                            reply.extend(
                                format!(
                                    "* {} FETCH (UID {uid} FLAGS () INTERNALDATE \"01-Jan-2024 10:00:00 +0000\" RFC822.SIZE {size} BODY[HEADER.FIELDS (MESSAGE-ID)] {{{}}}\r\n{header})\r\n",
                                    i + 1,
                                    header.len()
                                )
                                .bytes(),
                            );
                        }
                    } else if upper.starts_with("UID FETCH") {
                        let set = command.split(' ').nth(2).unwrap();
                        for (i, (uid, _, body)) in messages.iter().enumerate() {
                            if !in_set(set, *uid) {
                                continue;
                            }
                            let len = body.as_ref().map_or(HUGE, |b| b.len() as u64);
                            let head = format!(
                                "* {} FETCH (UID {uid} FLAGS () INTERNALDATE \"01-Jan-2024 10:00:00 +0000\" BODY[] {{{len}}}\r\n",
                                i + 1
                            );
                            if out.write_all(head.as_bytes()).is_err() {
                                return;
                            }
                            match body {
                                Some(body) => out.write_all(body).unwrap_or(()),
                                None => {
                                    let chunk = vec![b'x'; 64 * 1024];
                                    let mut left = HUGE;
                                    while left > 0 {
                                        let take = left.min(chunk.len() as u64) as usize;
                                        if out.write_all(&chunk[..take]).is_err() {
                                            return;
                                        }
                                        left -= take as u64;
                                    }
                                }
                            }
                            reply.extend(b")\r\n");
                            let _ = out.write_all(&reply);
                            reply.clear();
                        }
                    }
                    reply.extend(format!("{tag} OK done\r\n").bytes());
                    if out.write_all(&reply).and_then(|()| out.flush()).is_err() {
                        return;
                    }
                    if upper.starts_with("LOGOUT") {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
    port
}

/// Whether `uid` is in an IMAP UID set such as `1:3,7`.
fn in_set(set: &str, uid: u32) -> bool {
    set.split(',').any(|range| match range.split_once(':') {
        Some((low, high)) => {
            let low: u32 = low.parse().unwrap();
            let high = if high == "*" {
                u32::MAX
            } else {
                high.parse().unwrap()
            };
            (low.min(high)..=low.max(high)).contains(&uid)
        }
        None => range.parse::<u32>().unwrap() == uid,
    })
}

fn message(uid: u32) -> Vec<u8> {
    format!("Message-ID: <m{uid}@hostile>\r\nSubject: number {uid}\r\n\r\nbody {uid}\r\n")
        .into_bytes()
}

#[test]
fn a_literal_of_100_mb_for_a_message_announced_at_10_kb_is_an_item_error_and_never_appended() {
    let setup = Setup::new();
    let (first, third) = (message(1), message(3));
    let port = hostile_imap_source(vec![
        (1, first.len() as u64, Some(first.clone())),
        (2, 10_000, None),
        (3, third.len() as u64, Some(third.clone())),
    ]);
    let source = format!("imap://alice@127.0.0.1:{port}");
    let run = setup.run_via(&source, &setup.dest_url(), "migrate", &[]);
    assert_eq!(run.code, 1, "{}", run.everything());
    assert_eq!(run.counts(), (2, 0, 0, 1), "{}", run.everything());
    let report = run.report.as_ref().unwrap();
    let everything = report.to_string();
    assert!(
        everything.contains("100000000 bytes") && everything.contains("10000 bytes"),
        "the item error names both sizes: {everything}"
    );
    assert_eq!(
        report["bytes_copied"].as_u64(),
        Some((first.len() + third.len()) as u64),
        "{everything}"
    );
    let mut expected = vec![first, third];
    expected.sort();
    assert_eq!(bodies(&mut setup.dst(), "INBOX"), expected);
    // The message stays an item error on the next pass, never a retry loop.
    let again = setup.run_via(&source, &setup.dest_url(), "migrate", &[]);
    assert_eq!(again.code, 1, "{}", again.everything());
    assert_eq!(setup.dst().fetch_all("INBOX").unwrap().len(), 2);
}

/// A listener that accepts connections and never sends a byte.
fn silent_listener() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

#[test]
fn check_against_a_server_that_never_greets_or_never_shakes_hands_ends_within_the_connect_timeout()
{
    let setup = Setup::new();
    let port = silent_listener();
    let cases = [
        ("imap", "sent no greeting within 30 s"),
        ("imaps", "the TLS handshake timed out"),
        ("pop3s", "the TLS handshake timed out"),
    ];
    std::thread::scope(|scope| {
        for (scheme, expected) in cases {
            let setup = &setup;
            scope.spawn(move || {
                let source = format!("{scheme}://alice@127.0.0.1:{port}");
                let started = std::time::Instant::now();
                let output = setup
                    .command_via(&source, &setup.dest_url(), "check")
                    .output()
                    .unwrap();
                let run = common::finish(output, None);
                let waited = started.elapsed();
                assert!(
                    waited < std::time::Duration::from_secs(45),
                    "{scheme}: {waited:?}"
                );
                assert_eq!(run.code, 3, "{scheme}: {}", run.everything());
                assert!(
                    run.stderr.contains(expected),
                    "{scheme}: {}",
                    run.everything()
                );
            });
        }
    });
}
