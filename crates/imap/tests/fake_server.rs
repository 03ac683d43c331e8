//! Behaviour no real server shows on demand, against a scripted fake: bytes injected
//! after the STARTTLS answer, and a server without LITERAL+ that answers APPENDs one
//! continuation at a time and refuses one before its literal is sent.

use mailmove_imap::{AppendRequest, Body, Client, ConnectOptions, Error};
use mailmove_model::{Endpoint, Secret};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

async fn listen() -> (TcpListener, Endpoint) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let endpoint = Endpoint::parse(&format!("imap://tester@127.0.0.1:{port}")).unwrap();
    (listener, endpoint)
}

#[tokio::test]
async fn bytes_injected_after_the_starttls_answer_are_refused() {
    let (listener, endpoint) = listen().await;
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        write
            .write_all(b"* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] fake ready\r\n")
            .await
            .unwrap();
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
        matches!(result, Err(Error::StartTlsInjection)),
        "{:?}",
        result.err()
    );
}

#[tokio::test]
async fn appends_without_literal_plus_wait_for_each_continuation_and_survive_a_refusal() {
    let (listener, endpoint) = listen().await;
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut reader = BufReader::new(read);
        write
            .write_all(b"* OK [CAPABILITY IMAP4rev1 UIDPLUS] no literal+ here\r\n")
            .await
            .unwrap();
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
                let len: usize = line
                    .rsplit('{')
                    .next()
                    .unwrap()
                    .trim_end()
                    .trim_end_matches('}')
                    .parse()
                    .unwrap();
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
