//! Behaviour no real server shows on demand, against a scripted fake: bytes injected
//! after the STLS answer, a server without CAPA, UIDL and TOP that ends lines with bare
//! LF, a SASL server that ignores the initial response, and a connection cut inside a
//! message.

use mailmove_model::{Endpoint, Secret};
use mailmove_pop3::{Client, ConnectOptions, Error, NetError};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How the fake answers one command line.
enum Answer {
    Send(Vec<u8>),
    /// Sends the bytes, then closes the connection.
    SendAndHangUp(Vec<u8>),
}

/// A one-connection server: sends `greeting`, then answers each command line with
/// `answer(line)` until the client goes or the server hangs up. Returns every line it
/// received.
async fn fake_server(
    greeting: &'static str,
    answer: fn(&str) -> Answer,
) -> (Endpoint, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let endpoint = Endpoint::parse(&format!("pop3://alice@127.0.0.1:{port}")).unwrap();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(greeting.as_bytes()).await.unwrap();
        let mut received = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            received.push(line.clone());
            let (bytes, hang_up) = match answer(&line) {
                Answer::Send(bytes) => (bytes, false),
                Answer::SendAndHangUp(bytes) => (bytes, true),
            };
            if write.write_all(&bytes).await.is_err() || hang_up {
                break;
            }
        }
        received
    });
    (endpoint, server)
}

fn password() -> Secret<String> {
    Secret::new("s3cret pass".to_string())
}

#[tokio::test]
async fn bytes_injected_after_the_stls_answer_are_refused() {
    let (endpoint, _server) = fake_server("+OK fake\r\n", |line| {
        Answer::Send(match line {
            "CAPA" => b"+OK\r\nSTLS\r\nSASL PLAIN\r\n.\r\n".to_vec(),
            // The answer and an injected one in a single write, before any handshake.
            "STLS" => b"+OK Begin TLS\r\n+OK injected\r\n".to_vec(),
            _ => b"-ERR unexpected\r\n".to_vec(),
        })
    })
    .await;
    let result = Client::connect(&endpoint, &ConnectOptions::default()).await;
    assert!(
        matches!(result, Err(Error::Net(NetError::DataBeforeTls { .. }))),
        "{:?}",
        result.err()
    );
}

#[tokio::test]
async fn a_bare_rfc_1939_server_with_bare_lf_lines() {
    let (endpoint, server) = fake_server("+OK hello\n", |line| {
        Answer::Send(match line {
            "CAPA" => b"-ERR unknown command\n".to_vec(),
            "USER alice" | "PASS s3cret pass" => b"+ok\n".to_vec(),
            "UIDL" => b"-ERR no UIDL here\n".to_vec(),
            // The STAT answer comes early, in the same write: it must stay buffered
            // for the STAT that follows.
            "LIST" => b"+OK 2 messages\n1 11\n2 9 extra\n.\n+OK 2 20\n".to_vec(),
            "STAT" => Vec::new(),
            "TOP 1 0" => b"-ERR TOP not supported\n".to_vec(),
            // No size announced and no final line break: the added CRLF stays.
            "RETR 1" => b"+OK message follows\n..x\r\nabc\r\n.\r\n".to_vec(),
            "RETR 2" => b"+OK\nbare\nlf\n..\n.\n".to_vec(),
            "QUIT" => b"+OK bye\n".to_vec(),
            _ => b"-ERR unexpected\n".to_vec(),
        })
    })
    .await;
    let mut client = Client::connect(&endpoint, &ConnectOptions::default())
        .await
        .unwrap();
    assert!(client.capabilities().is_empty());
    client.login("alice", &password()).await.unwrap();
    assert_eq!(client.uidl().await.unwrap(), None);
    assert_eq!(client.list().await.unwrap(), [(1, 11), (2, 9)]);
    assert_eq!(client.stat().await.unwrap(), (2, 20));
    let top = client.top_headers(1).await.unwrap_err();
    assert!(matches!(top, Error::Err { .. }), "{top:?}");
    let first = client.retr(1).await.unwrap().into_vec().unwrap();
    assert_eq!(first, b".x\r\nabc\r\n");
    let second = client.retr(2).await.unwrap().into_vec().unwrap();
    assert_eq!(second, b"bare\nlf\n.\n");
    client.quit().await;

    let received = server.await.unwrap();
    assert_eq!(
        received,
        [
            "CAPA",
            "USER alice",
            "PASS s3cret pass",
            "CAPA",
            "UIDL",
            "LIST",
            "STAT",
            "TOP 1 0",
            "RETR 1",
            "RETR 2",
            "QUIT"
        ]
    );
}

#[tokio::test]
async fn auth_plain_answers_a_server_that_ignored_the_initial_response() {
    let (endpoint, server) = fake_server("+OK\r\n", |line| {
        Answer::Send(if line == "CAPA" {
            b"+OK\r\nUSER\r\nSASL LOGIN PLAIN\r\n.\r\n".to_vec()
        } else if line.starts_with("AUTH PLAIN ") {
            b"+ \r\n".to_vec()
        } else {
            // The token again, alone: the mailbox is busy.
            b"-ERR [IN-USE] Mailbox locked by another session\r\n".to_vec()
        })
    })
    .await;
    let mut client = Client::connect(&endpoint, &ConnectOptions::default())
        .await
        .unwrap();
    let error = client.login("alice", &password()).await.unwrap_err();
    assert!(matches!(error, Error::Err { .. }), "{error:?}");
    assert!(error.is_transient());
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains("s3cret"), "{shown}");
    }
    drop(client);

    let received = server.await.unwrap();
    // "\0alice\0s3cret pass" in base64.
    let token = "AGFsaWNlAHMzY3JldCBwYXNz";
    assert_eq!(
        received,
        [
            "CAPA".to_string(),
            format!("AUTH PLAIN {token}"),
            token.to_string()
        ]
    );
}

#[tokio::test]
async fn a_connection_cut_inside_a_message_is_lost_and_stays_lost() {
    let (endpoint, _server) = fake_server("+OK\r\n", |line| match line {
        "CAPA" => Answer::Send(b"+OK\r\n.\r\n".to_vec()),
        "RETR 1" => {
            Answer::SendAndHangUp(b"+OK 100 octets\r\nSubject: cut\r\n\r\nhalf a mes".to_vec())
        }
        _ => Answer::Send(b"+OK\r\n".to_vec()),
    })
    .await;
    let mut client = Client::connect(&endpoint, &ConnectOptions::default())
        .await
        .unwrap();
    client.login("alice", &password()).await.unwrap();
    let cut = client.retr(1).await.unwrap_err();
    assert!(matches!(cut, Error::ConnectionLost(_)), "{cut:?}");
    assert!(cut.is_transient());
    // The session is unusable from then on, without waiting for a timeout.
    let after = client.stat().await.unwrap_err();
    assert!(matches!(after, Error::ConnectionLost(_)), "{after:?}");
}

#[tokio::test]
async fn a_server_that_never_greets_or_never_shakes_hands_fails_within_the_connect_timeout() {
    // Accepts connections and never sends a byte: no greeting, no TLS handshake.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let options = ConnectOptions {
        connect_timeout: std::time::Duration::from_millis(500),
        ..ConnectOptions::default()
    };
    for (scheme, expected) in [
        ("pop3", "sent no greeting within 0.5 s"),
        ("pop3s", "the TLS handshake timed out"),
    ] {
        let endpoint = Endpoint::parse(&format!("{scheme}://alice@127.0.0.1:{port}")).unwrap();
        let started = std::time::Instant::now();
        let error = Client::connect(&endpoint, &options).await.err().unwrap();
        let waited = started.elapsed();
        assert!(
            waited < std::time::Duration::from_secs(3),
            "{scheme}: {waited:?}"
        );
        assert!(error.to_string().contains(expected), "{scheme}: {error}");
    }
}

/// 20 MB of message lines, dot-stuffed already (no line starts with a dot).
fn huge_answer() -> Vec<u8> {
    let mut answer = b"+OK\r\nSubject: huge\r\n\r\n".to_vec();
    let line = [b"x".repeat(998), b"\r\n".to_vec()].concat();
    while answer.len() < 20_000_000 {
        answer.extend_from_slice(&line);
    }
    answer.extend_from_slice(b".\r\n");
    answer
}

#[tokio::test]
async fn a_message_far_larger_than_listed_is_too_large_and_the_session_goes_on() {
    let (endpoint, _server) = fake_server("+OK\r\n", |line| match line {
        "CAPA" => Answer::Send(b"+OK\r\nUIDL\r\n.\r\n".to_vec()),
        "RETR 1" => Answer::Send(huge_answer()),
        "RETR 2" => Answer::Send(b"+OK\r\nSubject: small\r\n\r\nhello\r\n.\r\n".to_vec()),
        _ => Answer::Send(b"+OK\r\n".to_vec()),
    })
    .await;
    let mut client = Client::connect(&endpoint, &ConnectOptions::default())
        .await
        .unwrap();
    client.login("alice", &password()).await.unwrap();
    let error = client.retrieve_unflagged(1, 10_000).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::TooLarge {
                announced: Some(10_000),
                whole: true,
                ..
            }
        ),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("10000 bytes") && text.contains("200"),
        "{text}"
    );
    // Read to its end and thrown away: the next message comes in step.
    let small = client.retrieve_unflagged(2, 30).await.unwrap();
    assert_eq!(
        small.into_vec().unwrap(),
        b"Subject: small\r\n\r\nhello\r\n"
    );
}

#[tokio::test]
async fn a_message_past_the_maximum_is_cut_off_and_the_connection_dropped() {
    let (endpoint, _server) = fake_server("+OK\r\n", |line| match line {
        "CAPA" => Answer::Send(b"+OK\r\nUIDL\r\n.\r\n".to_vec()),
        "RETR 1" => Answer::Send(huge_answer()),
        _ => Answer::Send(b"+OK\r\n".to_vec()),
    })
    .await;
    let options = ConnectOptions {
        max_message_size: 1_000_000,
        ..ConnectOptions::default()
    };
    let mut client = Client::connect(&endpoint, &options).await.unwrap();
    client.login("alice", &password()).await.unwrap();
    let error = client.retr(1).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::TooLarge {
                bound: 1_000_000,
                whole: false,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("larger than the maximum message size of 1000000 bytes"),
        "{error}"
    );
    assert!(matches!(client.stat().await, Err(Error::ConnectionLost(_))));
}

#[tokio::test]
async fn another_services_banner_is_not_repeated_in_the_error() {
    let (endpoint, _server) = fake_server("SSH-2.0-OpenSSH_9.6p1 Debian-3\r\n", |_| {
        Answer::Send(Vec::new())
    })
    .await;
    let error = Client::connect(&endpoint, &ConnectOptions::default())
        .await
        .err()
        .expect("no POP3 session with an SSH server");
    let text = error.to_string();
    assert!(
        text.contains("127.0.0.1 did not greet as a POP3 server does: is the port right?"),
        "{text}"
    );
    assert!(!text.contains("SSH") && !text.contains("OpenSSH"), "{text}");
}
