//! The POP3 client against real Dovecot servers, each test with its own instance:
//! byte-exact RETR checked against what IMAP returns for the same messages, UIDL, TOP,
//! STLS and implicit TLS with verified certificates, refused logins, and proof that a
//! session leaves every message in place.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use mailmove_model::{Endpoint, Secret};
use mailmove_net::{Body, NetError, TlsOptions};
use mailmove_pop3::{Client, ConnectOptions, Error};
use mailmove_testkit::{Dovecot, messages};

const USER: &str = "alice";
const PASSWORD: &str = "correct horse";

fn server() -> Dovecot {
    let dovecot = Dovecot::start_default().expect("dovecot starts");
    dovecot.add_user(USER, PASSWORD).expect("user added");
    dovecot
}

fn seed(dovecot: &Dovecot, bodies: &[&[u8]]) {
    let mut checker = dovecot.checker(USER, PASSWORD).unwrap();
    for body in bodies {
        checker.append("INBOX", &[], None, body).unwrap();
    }
}

/// `pop3://` (STLS) on the plain port, or `pop3s://` on the implicit-TLS port.
fn endpoint(dovecot: &Dovecot, implicit_tls: bool) -> Endpoint {
    let (scheme, port) = if implicit_tls {
        ("pop3s", dovecot.pop3s_port())
    } else {
        ("pop3", dovecot.pop3_port())
    };
    Endpoint::parse(&format!("{scheme}://{USER}@{}:{port}", dovecot.host())).unwrap()
}

fn trusting(dovecot: &Dovecot) -> ConnectOptions {
    ConnectOptions {
        tls: TlsOptions {
            extra_ca: Some(dovecot.ca_pem().to_path_buf()),
            accept_invalid_certs: false,
        },
        connect_timeout: Duration::from_secs(10),
        response_timeout: Duration::from_secs(60),
        ..ConnectOptions::default()
    }
}

async fn logged_in(dovecot: &Dovecot, options: &ConnectOptions) -> Client {
    let mut client = Client::connect(&endpoint(dovecot, false), options)
        .await
        .unwrap();
    client
        .login(USER, &Secret::new(PASSWORD.to_string()))
        .await
        .unwrap();
    client
}

#[tokio::test]
async fn retr_is_byte_exact_for_tricky_messages() {
    let dovecot = server();
    let tricky: Vec<Vec<u8>> = vec![
        b"Subject: dots\r\n\r\n.leading\r\n..two\r\n.\r\n...\r\nend\r\n".to_vec(),
        b"Subject: terminator inside\r\n\r\nbefore\r\n.\r\nafter\r\n".to_vec(),
        messages::eight_bit_headers("8bit@example.com"),
        b"Subject: no final line break\r\n\r\nthe last line".to_vec(),
        b"Subject: a final dot\r\n\r\nbody\r\n.".to_vec(),
        b"Subject: blank last line\r\n\r\nbody\r\n\r\n".to_vec(),
        // Dovecot stores bare LFs as CRLF: compared with what IMAP returns below.
        b"Subject: bare LF\n\nbare\nlf\n.dot after lf\n".to_vec(),
    ];
    seed(
        &dovecot,
        &tricky.iter().map(Vec::as_slice).collect::<Vec<_>>(),
    );
    let stored = dovecot
        .checker(USER, PASSWORD)
        .unwrap()
        .fetch_all("INBOX")
        .unwrap();
    // The CRLF messages are stored exactly as appended.
    for (original, stored) in tricky.iter().zip(&stored).take(6) {
        assert_eq!(&stored.body, original);
    }

    let mut client = logged_in(&dovecot, &trusting(&dovecot)).await;
    for (index, stored) in stored.iter().enumerate() {
        let body = client.retr(index as u32 + 1).await.unwrap();
        assert!(
            matches!(body, Body::Memory(_)),
            "a small message stays in memory"
        );
        assert_eq!(
            String::from_utf8_lossy(&body.into_vec().unwrap()),
            String::from_utf8_lossy(&stored.body),
            "message {}",
            index + 1
        );
    }
    client.quit().await;
}

#[tokio::test]
async fn a_large_message_is_spooled_to_disk_and_byte_exact() {
    let dovecot = server();
    // About 10 MB once base64-encoded.
    let big = messages::with_attachment("big@example.com", 7_500_000, 7);
    assert!(big.len() > 10_000_000);
    // Spooled too, and without a final line break: the CRLF Dovecot adds is cut
    // from the file.
    let mut unterminated = messages::with_attachment("cut@example.com", 300_000, 8);
    unterminated.truncate(unterminated.len() - 2);
    seed(&dovecot, &[&big, &unterminated]);
    let stored = dovecot
        .checker(USER, PASSWORD)
        .unwrap()
        .fetch_all("INBOX")
        .unwrap();

    let options = ConnectOptions {
        spill_threshold: 64 * 1024,
        ..trusting(&dovecot)
    };
    let mut client = logged_in(&dovecot, &options).await;
    let listed = client.list().await.unwrap();
    assert_eq!(
        listed,
        [(1, big.len() as u64), (2, unterminated.len() as u64)]
    );
    for (msgno, (original, stored)) in [&big, &unterminated].into_iter().zip(&stored).enumerate() {
        let body = client.retr(msgno as u32 + 1).await.unwrap();
        assert!(
            matches!(body, Body::File { len, .. } if len == original.len() as u64),
            "message {} spooled to a file of the right length",
            msgno + 1
        );
        let bytes = body.into_vec().unwrap();
        assert!(bytes == stored.body, "RETR differs from IMAP BODY[]");
        assert!(&bytes == original, "RETR differs from what was appended");
    }
    // The connection is still in step after 10 MB.
    let total = (big.len() + unterminated.len()) as u64;
    assert_eq!(client.stat().await.unwrap(), (2, total));
    client.quit().await;
}

/// What Dovecot 2.3 does with a message that has no final line break: it sends CRLF
/// before the terminator (RFC 1939) but announces and lists the size without it. The
/// client removes that CRLF by the announced size, so RETR is byte-exact here too.
#[tokio::test]
async fn a_message_without_a_final_line_break_comes_back_without_one() {
    let dovecot = server();
    let message = b"Subject: a\r\n\r\nno final crlf";
    seed(&dovecot, &[message]);

    let mut raw = TcpStream::connect((dovecot.host(), dovecot.pop3_port())).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(
        format!("USER {USER}\r\nPASS {PASSWORD}\r\nLIST\r\nRETR 1\r\nQUIT\r\n").as_bytes(),
    )
    .unwrap();
    let mut wire = Vec::new();
    raw.read_to_end(&mut wire).unwrap();
    let wire = String::from_utf8_lossy(&wire);
    assert!(wire.contains("\r\n1 27\r\n.\r\n"), "{wire}");
    assert!(
        wire.contains("+OK 27 octets\r\nSubject: a\r\n\r\nno final crlf\r\n.\r\n"),
        "{wire}"
    );

    let mut client = logged_in(&dovecot, &trusting(&dovecot)).await;
    let body = client.retr(1).await.unwrap();
    assert_eq!(body.into_vec().unwrap(), message);
    client.quit().await;
}

#[tokio::test]
async fn uidl_is_stable_across_sessions_and_agrees_with_stat_and_list() {
    let dovecot = server();
    let bodies: Vec<Vec<u8>> = (0..5)
        .map(|i| messages::simple(&format!("m{i}@example.com"), "Hello", 100 + i * 37))
        .collect();
    seed(
        &dovecot,
        &bodies.iter().map(Vec::as_slice).collect::<Vec<_>>(),
    );
    let options = trusting(&dovecot);

    let mut first = logged_in(&dovecot, &options).await;
    let (count, octets) = first.stat().await.unwrap();
    let listed = first.list().await.unwrap();
    let ids = first.uidl().await.unwrap().expect("Dovecot has UIDL");
    first.quit().await;

    assert_eq!(count, 5);
    let expected: Vec<(u32, u64)> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| (i as u32 + 1, body.len() as u64))
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(octets, listed.iter().map(|(_, size)| size).sum::<u64>());
    assert_eq!(
        ids.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let mut distinct: Vec<&String> = ids.iter().map(|(_, id)| id).collect();
    distinct.dedup();
    assert_eq!(distinct.len(), 5, "{ids:?}");

    let mut second = logged_in(&dovecot, &options).await;
    assert_eq!(second.uidl().await.unwrap(), Some(ids));
    assert_eq!(second.list().await.unwrap(), expected);
    second.quit().await;
}

#[tokio::test]
async fn top_returns_just_the_headers_and_leaves_the_flags_alone() {
    let dovecot = server();
    let body = messages::simple("top@example.com", "Headers only", 5_000);
    seed(&dovecot, &[&body]);
    let header_end = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;

    let mut client = logged_in(&dovecot, &trusting(&dovecot)).await;
    assert!(client.has_capability("TOP"));
    let headers = client.top_headers(1).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&headers),
        String::from_utf8_lossy(&body[..header_end])
    );
    let missing = client.top_headers(9).await.unwrap_err();
    assert!(
        matches!(&missing, Error::Err { command, .. } if command == "TOP 9 0"),
        "{missing:?}"
    );
    assert!(!missing.is_transient());
    client.quit().await;

    let stored = dovecot
        .checker(USER, PASSWORD)
        .unwrap()
        .fetch_all("INBOX")
        .unwrap();
    assert!(stored[0].flags.is_empty(), "{:?}", stored[0].flags);
}

#[tokio::test]
async fn stls_upgrades_the_plain_port() {
    let dovecot = server();
    seed(&dovecot, &[&messages::simple("tls@example.com", "Hi", 100)]);
    let mut client = Client::connect(&endpoint(&dovecot, false), &trusting(&dovecot))
        .await
        .unwrap();
    // Dovecot offers STLS only before TLS is up.
    assert!(
        !client.has_capability("STLS"),
        "{:?}",
        client.capabilities()
    );
    assert!(client.has_capability("UIDL"));
    client
        .login(USER, &Secret::new(PASSWORD.to_string()))
        .await
        .unwrap();
    assert_eq!(client.stat().await.unwrap().0, 1);
    client.quit().await;
    let log = dovecot.log();
    assert!(
        log.lines()
            .any(|line| line.contains("pop3-login: Info: Login:") && line.contains("TLS")),
        "{log}"
    );
}

#[tokio::test]
async fn implicit_tls_on_the_pop3s_port() {
    let dovecot = server();
    let body = messages::simple("pop3s@example.com", "Hi", 300);
    seed(&dovecot, &[&body]);
    let mut client = Client::connect(&endpoint(&dovecot, true), &trusting(&dovecot))
        .await
        .unwrap();
    client
        .login(USER, &Secret::new(PASSWORD.to_string()))
        .await
        .unwrap();
    assert_eq!(client.retr(1).await.unwrap().into_vec().unwrap(), body);
    client.quit().await;
}

#[tokio::test]
async fn a_certificate_from_an_unknown_authority_is_refused() {
    let dovecot = server();
    let untrusting = ConnectOptions {
        connect_timeout: Duration::from_secs(10),
        response_timeout: Duration::from_secs(60),
        ..ConnectOptions::default()
    };
    for implicit_tls in [true, false] {
        let result = Client::connect(&endpoint(&dovecot, implicit_tls), &untrusting).await;
        let error = result.err().expect("the handshake fails");
        assert!(
            matches!(error, Error::Net(NetError::UntrustedCertificate { .. })),
            "implicit TLS {implicit_tls}: {error:?}"
        );
        assert!(error.is_connection_setup());
    }
}

#[tokio::test]
async fn a_wrong_password_is_auth_failed_and_never_shown() {
    let dovecot = server();
    let mut client = Client::connect(&endpoint(&dovecot, false), &trusting(&dovecot))
        .await
        .unwrap();
    let wrong = Secret::new("hunter2-wrong".to_string());
    let error = client.login(USER, &wrong).await.unwrap_err();
    assert!(
        matches!(&error, Error::AuthFailed { login, .. } if login == USER),
        "{error:?}"
    );
    assert!(error.is_connection_setup() && !error.is_transient());
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains("hunter2"), "{shown}");
    }
    assert!(
        error
            .to_string()
            .starts_with("login refused for alice: check the password")
    );
    client.quit().await;
}

/// The source is never changed by deletion: a whole session (every command, RETR of
/// every message, QUIT) leaves every message in place. Dovecot does mark what RETR
/// sent as `\Seen`; that is the server's own side effect, pinned here so a change to
/// it is noticed.
#[tokio::test]
async fn a_session_leaves_every_message_in_place() {
    let dovecot = server();
    let bodies: Vec<Vec<u8>> = (0..3)
        .map(|i| messages::simple(&format!("keep{i}@example.com"), "Keep", 500))
        .collect();
    seed(
        &dovecot,
        &bodies.iter().map(Vec::as_slice).collect::<Vec<_>>(),
    );
    let options = trusting(&dovecot);

    let mut client = logged_in(&dovecot, &options).await;
    client.stat().await.unwrap();
    client.list().await.unwrap();
    client.uidl().await.unwrap();
    client.noop().await.unwrap();
    for msgno in 1..=3 {
        client.top_headers(msgno).await.unwrap();
        client.retr(msgno).await.unwrap();
    }
    client.quit().await;

    let stored = dovecot
        .checker(USER, PASSWORD)
        .unwrap()
        .fetch_all("INBOX")
        .unwrap();
    assert_eq!(stored.len(), 3);
    for (stored, body) in stored.iter().zip(&bodies) {
        assert_eq!(&stored.body, body);
        assert_eq!(stored.flags, ["\\Seen"]);
    }
    let mut again = logged_in(&dovecot, &options).await;
    let total: u64 = bodies.iter().map(|b| b.len() as u64).sum();
    assert_eq!(again.stat().await.unwrap(), (3, total));
    again.quit().await;
}

#[tokio::test]
async fn retrieve_unflagged_is_byte_exact_and_leaves_messages_unread() {
    let dovecot = server();
    let leading_dots = b"Subject: dots\r\n\r\n.one\r\n..two\r\n.\r\nend\r\n".to_vec();
    let no_final_break = b"Subject: open\r\n\r\nno line break at the end".to_vec();
    let big = messages::with_attachment("big@example.com", 3_000_000, 5);
    seed(&dovecot, &[&leading_dots, &no_final_break, &big]);
    let mut client = logged_in(&dovecot, &trusting(&dovecot)).await;
    let sizes = client.list().await.unwrap();
    let mut got = Vec::new();
    for (msgno, size) in sizes {
        got.push(
            client
                .retrieve_unflagged(msgno, size)
                .await
                .unwrap()
                .into_vec()
                .unwrap(),
        );
    }
    client.quit().await;
    let stored = dovecot
        .checker(USER, PASSWORD)
        .unwrap()
        .fetch_all("INBOX")
        .unwrap();
    for (message, body) in stored.iter().zip(&got) {
        assert_eq!(&message.body, body);
        assert!(
            message.flags.is_empty(),
            "flags changed: {:?}",
            message.flags
        );
    }
    assert_eq!(got.len(), 3);
}
