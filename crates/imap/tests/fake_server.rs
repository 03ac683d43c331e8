//! Behaviour no real server shows on demand, against a scripted fake: bytes injected
//! after the STARTTLS answer, and a server without LITERAL+ that answers APPENDs one
//! continuation at a time and refuses one before its literal is sent, and a MULTIAPPEND
//! server that refuses a whole group because of one message.

use mailmove_imap::{AppendRequest, Body, Client, ConnectOptions, Error, NetError};
use mailmove_model::{Endpoint, Secret};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

async fn listen() -> (TcpListener, Endpoint) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let endpoint = Endpoint::parse(&format!("imap://tester@127.0.0.1:{port}")).unwrap();
    (listener, endpoint)
}

/// Accepts the client and greets it with `greeting` (a whole line).
async fn accept(
    listener: &TcpListener,
    greeting: &str,
) -> (BufReader<OwnedReadHalf>, OwnedWriteHalf) {
    let (socket, _) = listener.accept().await.unwrap();
    let (read, mut write) = socket.into_split();
    write.write_all(greeting.as_bytes()).await.unwrap();
    (BufReader::new(read), write)
}

/// The size a command line's literal announces, `{12}` or `{12+}`.
fn literal_len(line: &str) -> usize {
    line.trim_end()
        .rsplit('{')
        .next()
        .unwrap()
        .trim_end_matches('}')
        .trim_end_matches('+')
        .parse()
        .unwrap()
}

#[tokio::test]
async fn bytes_injected_after_the_starttls_answer_are_refused() {
    let (listener, endpoint) = listen().await;
    tokio::spawn(async move {
        let (reader, mut write) = accept(
            &listener,
            "* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] fake ready\r\n",
        )
        .await;
        let mut lines = reader.lines();
        let line = lines.next_line().await.unwrap().unwrap();
        let tag = line.split(' ').next().unwrap().to_string();
        // The answer and an injected response in one write, before any handshake.
        let answer =
            format!("{tag} OK Begin TLS\r\n* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] injected\r\n");
        write.write_all(answer.as_bytes()).await.unwrap();
        let _ = lines.next_line().await;
    });
    let result = Client::connect(&endpoint, &ConnectOptions::default()).await;
    assert!(
        matches!(result, Err(Error::Net(NetError::DataBeforeTls { .. }))),
        "{:?}",
        result.err()
    );
}

#[tokio::test]
async fn appends_without_literal_plus_wait_for_each_continuation_and_survive_a_refusal() {
    let (listener, endpoint) = listen().await;
    let server = tokio::spawn(async move {
        let (mut reader, mut write) = accept(
            &listener,
            "* OK [CAPABILITY IMAP4rev1 UIDPLUS] no literal+ here\r\n",
        )
        .await;
        let mut received = Vec::new();
        let mut uid = 100;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap() == 0 {
                return received;
            }
            let tag = line.split(' ').next().unwrap().to_string();
            if line.contains(" APPEND ") {
                assert!(
                    !line.contains("+}"),
                    "a non-synchronising literal was sent: {line}"
                );
                let len = literal_len(&line);
                if len > 1000 {
                    // Refused before the literal: the client must not send it.
                    let answer = format!("{tag} NO [LIMIT] too big\r\n");
                    write.write_all(answer.as_bytes()).await.unwrap();
                    continue;
                }
                write.write_all(b"+ go ahead\r\n").await.unwrap();
                let mut body = vec![0; len + 2];
                reader.read_exact(&mut body).await.unwrap();
                assert!(body.ends_with(b"\r\n"));
                body.truncate(len);
                received.push(body);
                uid += 1;
                let answer = format!("{tag} OK [APPENDUID 7 {uid}] done\r\n");
                write.write_all(answer.as_bytes()).await.unwrap();
            } else {
                let answer = format!("{tag} OK done\r\n");
                write.write_all(answer.as_bytes()).await.unwrap();
            }
        }
    });
    let mut client = Client::connect(&endpoint, &ConnectOptions::default())
        .await
        .unwrap();
    client
        .login("tester", &Secret::new("pw".to_string()))
        .await
        .unwrap();
    let bodies: Vec<Vec<u8>> = vec![
        b"first\r\n".to_vec(),
        vec![b'x'; 5000],
        b"third\r\n".to_vec(),
    ];
    let mut outcomes = Vec::new();
    {
        let mut appender = client.appender(8);
        for (token, body) in bodies.iter().enumerate() {
            let request = AppendRequest {
                mailbox: b"INBOX".to_vec(),
                flags: vec!["\\Seen".into()],
                internal_date: Some("01-Jan-2020 10:00:00 +0000".into()),
                body: Body::Memory(body.clone()),
                token: token as u64,
            };
            outcomes.extend(appender.send(request).await.unwrap());
        }
        outcomes.extend(appender.finish().await.unwrap());
    }
    outcomes.sort_by_key(|o| o.token);
    assert_eq!(outcomes.len(), 3);
    assert_eq!(outcomes[0].result.as_ref().unwrap(), &Some((7, 101)));
    let refusal = outcomes[1].result.as_ref().unwrap_err();
    assert_eq!(refusal.describe(), "[LIMIT] too big");
    assert_eq!(outcomes[2].result.as_ref().unwrap(), &Some((7, 102)));
    // The connection is still in step afterwards.
    client.run("NOOP").await.unwrap();
    client.logout().await;
    let received = server.await.unwrap();
    assert_eq!(received, vec![bodies[0].clone(), bodies[2].clone()]);
}

/// Reads one APPEND command of a LITERAL+ client, however many messages it carries
/// (RFC 3502 MULTIAPPEND): the tag and each message's bytes.
async fn read_append<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> Option<(String, Vec<Vec<u8>>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.unwrap() == 0 {
        return None;
    }
    let tag = line.split(' ').next().unwrap().to_string();
    let mut messages = Vec::new();
    while line.trim_end().ends_with("+}") {
        let len = literal_len(&line);
        let mut body = vec![0; len];
        reader.read_exact(&mut body).await.unwrap();
        messages.push(body);
        line.clear();
        reader.read_line(&mut line).await.unwrap();
    }
    Some((tag, messages))
}

#[tokio::test]
async fn multiappend_groups_messages_and_a_refused_group_is_sent_again_one_by_one() {
    let (listener, endpoint) = listen().await;
    let server = tokio::spawn(async move {
        let (mut reader, mut write) = accept(
            &listener,
            "* OK [CAPABILITY IMAP4rev1 LITERAL+ MULTIAPPEND UIDPLUS] ready\r\n",
        )
        .await;
        let mut commands = Vec::new();
        let mut stored = Vec::new();
        let mut next_uid = 100;
        while let Some((tag, messages)) = read_append(&mut reader).await {
            let answer = if messages.is_empty() {
                // LOGIN (which tells the capabilities again), NOOP, LOGOUT
                format!("{tag} OK [CAPABILITY IMAP4rev1 LITERAL+ MULTIAPPEND UIDPLUS] done\r\n")
            } else if messages.iter().any(|m| m.len() > 1000) {
                // Atomic: one message too big refuses the whole command.
                format!("{tag} NO [TOOBIG] too big\r\n")
            } else {
                let first = next_uid + 1;
                next_uid += messages.len() as u32;
                stored.extend(messages.iter().cloned());
                format!("{tag} OK [APPENDUID 7 {first}:{next_uid}] done\r\n")
            };
            commands.push(messages.len());
            write.write_all(answer.as_bytes()).await.unwrap();
        }
        (commands, stored)
    });
    let mut client = Client::connect(&endpoint, &ConnectOptions::default())
        .await
        .unwrap();
    client
        .login("tester", &Secret::new("pw".to_string()))
        .await
        .unwrap();
    let bodies: Vec<Vec<u8>> = vec![
        b"one\r\n".to_vec(),
        vec![b'x'; 5000],
        b"three\r\n".to_vec(),
        b"four\r\n".to_vec(),
    ];
    let request = |token: usize, body: &Vec<u8>| AppendRequest {
        mailbox: b"INBOX".to_vec(),
        flags: vec!["\\Seen".into()],
        internal_date: Some("01-Jan-2020 10:00:00 +0000".into()),
        body: Body::Memory(body.clone()),
        token: token as u64,
    };
    let mut outcomes = Vec::new();
    {
        let mut appender = client.appender(8);
        for (token, body) in bodies.iter().enumerate() {
            outcomes.extend(appender.send(request(token, body)).await.unwrap());
        }
        outcomes.extend(appender.finish().await.unwrap());
    }
    outcomes.sort_by_key(|o| o.token);
    assert_eq!(outcomes.len(), 4, "{outcomes:?}");
    // The group of four was refused, then each went alone: one refusal, three stored.
    assert_eq!(outcomes[0].result.as_ref().unwrap(), &Some((7, 101)));
    let refusal = outcomes[1].result.as_ref().unwrap_err();
    assert_eq!(refusal.describe(), "[TOOBIG] too big");
    assert_eq!(outcomes[2].result.as_ref().unwrap(), &Some((7, 102)));
    assert_eq!(outcomes[3].result.as_ref().unwrap(), &Some((7, 103)));

    // A group the server takes: one command, each message with its own UID.
    let more = [b"five\r\n".to_vec(), b"six\r\n".to_vec()];
    let mut outcomes = Vec::new();
    {
        let mut appender = client.appender(8);
        for (token, body) in more.iter().enumerate() {
            outcomes.extend(appender.send(request(token, body)).await.unwrap());
        }
        outcomes.extend(appender.finish().await.unwrap());
    }
    outcomes.sort_by_key(|o| o.token);
    assert_eq!(outcomes[0].result.as_ref().unwrap(), &Some((7, 104)));
    assert_eq!(outcomes[1].result.as_ref().unwrap(), &Some((7, 105)));
    client.run("NOOP").await.unwrap();
    client.logout().await;
    let (commands, stored) = server.await.unwrap();
    // LOGIN, the group of 4, the 4 again alone, the group of 2, NOOP, LOGOUT.
    assert_eq!(commands, vec![0, 4, 1, 1, 1, 1, 2, 0, 0]);
    assert_eq!(
        stored,
        vec![
            bodies[0].clone(),
            bodies[2].clone(),
            bodies[3].clone(),
            more[0].clone(),
            more[1].clone()
        ]
    );
}

/// A listener that accepts connections and never sends a byte: neither a greeting nor
/// a TLS handshake. Its sockets stay open as long as the test runs.
async fn silent_listener() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    port
}

#[tokio::test]
async fn a_server_that_never_greets_or_never_shakes_hands_fails_within_the_connect_timeout() {
    let port = silent_listener().await;
    let options = ConnectOptions {
        connect_timeout: std::time::Duration::from_millis(500),
        ..ConnectOptions::default()
    };
    for (scheme, expected) in [
        ("imap", "sent no greeting within 0.5 s"),
        ("imaps", "the TLS handshake timed out"),
    ] {
        let endpoint = Endpoint::parse(&format!("{scheme}://tester@127.0.0.1:{port}")).unwrap();
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
