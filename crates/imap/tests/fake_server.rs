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

/// Held by the tests that make the process grow (an endless line takes the 64 MiB the
/// cap allows), so that none grows while another measures its peak.
static MEMORY_HUNGRY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The process's peak resident memory so far (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A hostile server: greets, takes any LOGIN, tells its capabilities, and answers
/// every other command line
/// with `answer(tag, command, write)`, which may send as much as it likes.
async fn hostile_server<F>(answer: F) -> Endpoint
where
    F: Fn(String, String, OwnedWriteHalf) -> tokio::task::JoinHandle<OwnedWriteHalf>
        + Send
        + 'static,
{
    let (listener, endpoint) = listen().await;
    tokio::spawn(async move {
        let (reader, write) = accept(&listener, "* OK [CAPABILITY IMAP4rev1] hostile\r\n").await;
        let mut write = Some(write);
        let mut lines = reader.lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let (tag, command) = line.split_once(' ').unwrap();
            let (tag, command) = (tag.to_string(), command.to_string());
            let mut out = write.take().unwrap();
            if ["LOGIN", "LOGOUT", "CAPABILITY"]
                .iter()
                .any(|verb| command.starts_with(verb))
            {
                out.write_all(format!("* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n").as_bytes())
                    .await
                    .unwrap();
                write = Some(out);
            } else {
                write = Some(answer(tag, command, out).await.unwrap());
            }
        }
    });
    endpoint
}

/// Sends `len` bytes of `x`, 64 KiB at a time, never holding them all.
async fn send_filler(out: &mut OwnedWriteHalf, mut len: u64) {
    let chunk = vec![b'x'; 64 * 1024];
    while len > 0 {
        let take = len.min(chunk.len() as u64) as usize;
        if out.write_all(&chunk[..take]).await.is_err() {
            return;
        }
        len -= take as u64;
    }
}

async fn signed_in(endpoint: &Endpoint) -> Client {
    let mut client = Client::connect(endpoint, &ConnectOptions::default())
        .await
        .unwrap();
    client
        .login("tester", &Secret::new("pw".to_string()))
        .await
        .unwrap();
    client
}

#[tokio::test]
async fn a_literal_of_100_mb_for_a_message_announced_at_10_kb_is_read_past_and_never_kept() {
    let _alone = MEMORY_HUNGRY.lock().await;
    const HUGE: u64 = 100 * 1000 * 1000;
    let endpoint = hostile_server(|tag, _command, mut out| {
        tokio::spawn(async move {
            out.write_all(format!("* 1 FETCH (UID 1 BODY[] {{{HUGE}}}\r\n").as_bytes())
                .await
                .unwrap();
            send_filler(&mut out, HUGE).await;
            out.write_all(b")\r\n* 2 FETCH (UID 2 BODY[] {5}\r\nhello)\r\n")
                .await
                .unwrap();
            out.write_all(format!("{tag} OK done\r\n").as_bytes())
                .await
                .unwrap();
            out
        })
    })
    .await;
    let mut client = signed_in(&endpoint).await;
    let before = peak_rss();
    let sizes = std::collections::HashMap::from([(1, 10_000), (2, 5)]);
    let bound = mailmove_imap::LiteralBound::Announced(std::sync::Arc::new(sizes));
    let mut stream = client
        .uid_fetch_bounded("1:2", "UID BODY.PEEK[]", bound)
        .await
        .unwrap();
    let first = stream.next().await.unwrap().unwrap();
    let oversized = first.oversized.expect("the literal over its bound");
    assert_eq!((oversized.len, oversized.announced), (HUGE, Some(10_000)));
    assert!(first.body.is_none());
    let second = stream.next().await.unwrap().unwrap();
    assert_eq!(second.body.unwrap().into_vec().unwrap(), b"hello");
    assert!(stream.next().await.unwrap().is_none());
    let grown = peak_rss().saturating_sub(before);
    eprintln!(
        "peak RSS grew by {} KiB reading a 100 MB literal",
        grown / 1024
    );
    assert!(grown < 32 * 1024 * 1024, "peak RSS grew by {grown} bytes");
    // Nothing was spooled either: the answer carries no body at all, and the
    // session goes on.
    client.logout().await;
}

#[tokio::test]
async fn a_list_of_a_million_folders_is_refused_not_collected() {
    let _alone = MEMORY_HUNGRY.lock().await;
    let endpoint = hostile_server(|tag, command, mut out| {
        tokio::spawn(async move {
            if command.starts_with("LIST") {
                let mut batch = String::new();
                for i in 0..1_000_000 {
                    batch.push_str(&format!("* LIST () \"/\" folder{i}\r\n"));
                    if batch.len() > 60_000 {
                        if out.write_all(batch.as_bytes()).await.is_err() {
                            return out;
                        }
                        batch.clear();
                    }
                }
                let _ = out.write_all(batch.as_bytes()).await;
            }
            let _ = out.write_all(format!("{tag} OK done\r\n").as_bytes()).await;
            out
        })
    })
    .await;
    let mut client = signed_in(&endpoint).await;
    let started = std::time::Instant::now();
    let error = client.list().await.unwrap_err();
    eprintln!("refused after {:?}: {error}", started.elapsed());
    assert!(matches!(error, Error::Protocol(_)), "{error}");
    assert!(
        error
            .to_string()
            .contains(&mailmove_imap::MAX_UNTAGGED.to_string()),
        "{error}"
    );
}

#[tokio::test]
async fn an_endless_line_is_refused_at_the_response_cap() {
    let _alone = MEMORY_HUNGRY.lock().await;
    let endpoint = hostile_server(|_tag, _command, mut out| {
        tokio::spawn(async move {
            let _ = out.write_all(b"* OK ").await;
            send_filler(&mut out, u64::MAX).await;
            out
        })
    })
    .await;
    let mut client = signed_in(&endpoint).await;
    let error = client.run("NOOP").await.unwrap_err();
    assert!(error.to_string().contains("longer than"), "{error}");
}

#[tokio::test]
async fn another_services_banner_is_not_repeated_in_the_error() {
    let (listener, endpoint) = listen().await;
    tokio::spawn(async move {
        let (_reader, _write) = accept(&listener, "SSH-2.0-OpenSSH_9.6p1 Debian-3\r\n").await;
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    });
    let error = Client::connect(&endpoint, &ConnectOptions::default())
        .await
        .err()
        .expect("no IMAP session with an SSH server");
    let text = error.to_string();
    assert!(
        text.contains("127.0.0.1 did not greet as an IMAP server does: is the port right?"),
        "{text}"
    );
    assert!(!text.contains("SSH") && !text.contains("OpenSSH"), "{text}");
}

/// A server that answers every FETCH with a message of 32 KiB sent 1 KiB at a time,
/// `pause` between pieces, and stops for good before the last piece when `stall`.
fn trickling_server(
    pause: std::time::Duration,
    stall: bool,
) -> impl Fn(String, String, OwnedWriteHalf) -> tokio::task::JoinHandle<OwnedWriteHalf> {
    move |tag, _command, mut out| {
        tokio::spawn(async move {
            out.write_all(b"* 1 FETCH (UID 1 BODY[] {32768}\r\n")
                .await
                .unwrap();
            for piece in 0..32 {
                if stall && piece == 31 {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(pause).await;
                out.write_all(&[b'x'; 1024]).await.unwrap();
            }
            out.write_all(format!(")\r\n{tag} OK done\r\n").as_bytes())
                .await
                .unwrap();
            out
        })
    }
}

/// Signed in with a response timeout of one second.
async fn impatient_client(endpoint: &Endpoint) -> Client {
    let options = ConnectOptions {
        response_timeout: std::time::Duration::from_secs(1),
        ..ConnectOptions::default()
    };
    let mut client = Client::connect(endpoint, &options).await.unwrap();
    client
        .login("tester", &Secret::new("pw".to_string()))
        .await
        .unwrap();
    client
}

#[tokio::test]
async fn a_message_arriving_slowly_but_steadily_is_read_to_its_end() {
    // 32 pieces a tenth of a second apart: over three seconds for one answer, three
    // times the response timeout, but never a second without bytes.
    let pause = std::time::Duration::from_millis(100);
    let endpoint = hostile_server(trickling_server(pause, false)).await;
    let mut client = impatient_client(&endpoint).await;
    let mut stream = client
        .uid_fetch_bounded("1", "UID BODY.PEEK[]", mailmove_imap::LiteralBound::Maximum)
        .await
        .unwrap();
    let message = stream.next().await.unwrap().unwrap();
    assert_eq!(
        message.body.unwrap().into_vec().unwrap(),
        vec![b'x'; 32 * 1024]
    );
    assert!(stream.next().await.unwrap().is_none());
}

#[tokio::test]
async fn a_server_silent_in_the_middle_of_a_message_is_given_up_after_the_response_timeout() {
    let pause = std::time::Duration::from_millis(10);
    let endpoint = hostile_server(trickling_server(pause, true)).await;
    let mut client = impatient_client(&endpoint).await;
    let mut stream = client
        .uid_fetch_bounded("1", "UID BODY.PEEK[]", mailmove_imap::LiteralBound::Maximum)
        .await
        .unwrap();
    let error = stream.next().await.expect_err("the silence is an error");
    assert!(matches!(error, Error::ConnectionLost(_)), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("no answer from 127.0.0.1 for 1 s"),
        "{error}"
    );
}
