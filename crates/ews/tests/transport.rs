//! Transport behaviour against a tiny scripted HTTP server: login failures, NTLM on
//! one connection, throttling waited out or given up, plaintext refused, and a large
//! MIME answer streamed in chunks.

mod fake_exchange;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use fake_exchange::{FakeExchange, Reply, Seen, busy, busy_fault, response, root_folder, success};
use mailmove_ews::{AuthKind, Client, Error, ItemId, Options};
use mailmove_model::Secret;

fn password() -> Secret<String> {
    Secret::new("s3cret".into())
}

fn basic() -> Options {
    Options {
        auth: AuthKind::Basic,
        ..Options::default()
    }
}

#[tokio::test]
async fn a_401_is_auth_failed_and_says_to_check_the_password() {
    let server = FakeExchange::start(|_, _| {
        Reply::status(401).header("WWW-Authenticate", "Basic realm=\"mail.example.com\"")
    })
    .await;
    let error = Client::connect(
        &server.url(),
        "alice@example.com",
        &password(),
        &Options::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, Error::AuthFailed { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "Exchange refused the login for alice@example.com: check the password"
    );
    assert!(error.is_connection_setup());
    assert!(!error.is_transient());
    // Auto asked without credentials first, then sent what the 401 offered.
    let seen = server.seen();
    assert_eq!(seen[0].authorization, None);
    let expected = format!("Basic {}", BASE64.encode("alice@example.com:s3cret"));
    assert_eq!(seen[1].authorization.as_deref(), Some(expected.as_str()));
}

#[tokio::test]
async fn basic_login_then_requests_share_the_connection() {
    let server = FakeExchange::start(|seen, _| match &seen.authorization {
        Some(a) if a.starts_with("Basic ") => Reply::ok(root_folder()),
        _ => Reply::status(401).header("WWW-Authenticate", "Basic realm=\"x\""),
    })
    .await;
    let client = Client::connect(&server.url(), "alice", &password(), &basic())
        .await
        .unwrap();
    assert_eq!(client.root().as_str(), "ROOT");
    let again = Client::clone(&client);
    let _ = again.sync_items(client.root(), None, 10).await;
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].connection, seen[1].connection, "keep-alive reuse");
}

#[tokio::test]
async fn http_429_and_503_are_waited_out_as_retry_after_says() {
    let server = FakeExchange::start(|_, earlier| match earlier.len() {
        0 => Reply::status(429).header("Retry-After", "1"),
        1 => Reply::status(503)
            .header("Retry-After", "0")
            .with_body("busy"),
        _ => Reply::ok(root_folder()),
    })
    .await;
    let started = Instant::now();
    Client::connect(&server.url(), "alice", &password(), &basic())
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn server_busy_is_waited_out_as_back_off_milliseconds_says() {
    let server = FakeExchange::start(|_, earlier| match earlier.len() {
        0 => busy_fault(300),
        1 => Reply::ok(response("GetFolder", &[busy("GetFolder", 200)])),
        _ => Reply::ok(root_folder()),
    })
    .await;
    let started = Instant::now();
    Client::connect(&server.url(), "alice", &password(), &basic())
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(500));
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter().all(|s| s.body == seen[0].body),
        "the same request again"
    );
}

#[tokio::test]
async fn throttling_beyond_the_budget_is_a_transient_throttled() {
    let server = FakeExchange::start(|_, _| busy_fault(200)).await;
    let options = Options {
        max_throttle_wait: Duration::from_millis(500),
        ..basic()
    };
    let error = Client::connect(&server.url(), "alice", &password(), &options)
        .await
        .unwrap_err();
    match &error {
        Error::Throttled { waited } => assert_eq!(*waited, Duration::from_millis(400)),
        other => panic!("expected Throttled, got {other:?}"),
    }
    assert!(error.is_transient());
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn plain_http_to_a_remote_host_is_refused_before_any_request() {
    // No server at all: the refusal must come before any connection attempt.
    let url = url::Url::parse("http://mail.example.com/EWS/Exchange.asmx").unwrap();
    let error = Client::connect(&url, "alice", &password(), &Options::default())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::PlaintextRefused { .. }), "{error:?}");
    assert!(error.to_string().contains("https://"));
    assert!(error.is_connection_setup());
}

#[tokio::test]
async fn an_unreachable_server_names_its_address() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = url::Url::parse(&format!("http://127.0.0.1:{port}/EWS/Exchange.asmx")).unwrap();
    let error = Client::connect(&url, "alice", &password(), &basic())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Net(_)), "{error:?}");
    assert!(error.to_string().contains(&format!("127.0.0.1:{port}")));
}

/// A CHALLENGE message: Unicode, NTLM, TargetInfo with MsvAvNbDomainName "CORP".
fn challenge() -> Vec<u8> {
    let info: Vec<u8> = [2u8, 0, 8, 0, b'C', 0, b'O', 0, b'R', 0, b'P', 0, 0, 0, 0, 0].to_vec();
    let mut m = b"NTLMSSP\0".to_vec();
    m.extend_from_slice(&2u32.to_le_bytes());
    m.extend_from_slice(&[0, 0, 0, 0, 48, 0, 0, 0]);
    m.extend_from_slice(&0x0080_0201u32.to_le_bytes());
    m.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    m.extend_from_slice(&[0; 8]);
    m.extend_from_slice(&(info.len() as u16).to_le_bytes());
    m.extend_from_slice(&(info.len() as u16).to_le_bytes());
    m.extend_from_slice(&48u32.to_le_bytes());
    m.extend_from_slice(&info);
    m
}

fn ntlm_message(seen: &Seen) -> Option<Vec<u8>> {
    let token = seen.authorization.as_deref()?.strip_prefix("NTLM ")?;
    BASE64.decode(token).ok()
}

fn field(message: &[u8], at: usize) -> String {
    let len = u16::from_le_bytes([message[at], message[at + 1]]) as usize;
    let offset = u32::from_le_bytes(message[at + 4..at + 8].try_into().unwrap()) as usize;
    let units: Vec<u16> = message[offset..offset + len]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).unwrap()
}

/// An NTLM-only server that accepts a connection once it saw NEGOTIATE and
/// AUTHENTICATE on it, and remembers it like IIS does.
fn ntlm_server(seen: &Seen, earlier: &[Seen]) -> Reply {
    let logged_in = earlier
        .iter()
        .any(|e| e.connection == seen.connection && ntlm_message(e).is_some_and(|m| m[8] == 3));
    match ntlm_message(seen) {
        Some(m) if m[8] == 1 => Reply::status(401).header(
            "WWW-Authenticate",
            &format!("NTLM {}", BASE64.encode(challenge())),
        ),
        Some(m) if m[8] == 3 => {
            let negotiated_here = earlier.last().is_some_and(|e| {
                e.connection == seen.connection && ntlm_message(e).is_some_and(|m| m[8] == 1)
            });
            if negotiated_here && field(&m, 28) == "CORP" && field(&m, 36) == "alice" {
                Reply::ok(root_folder())
            } else {
                Reply::status(401).header("WWW-Authenticate", "NTLM")
            }
        }
        None if logged_in => Reply::ok(response(
            "SyncFolderItems",
            &[success(
                "SyncFolderItems",
                "<m:SyncState>S1</m:SyncState><m:IncludesLastItemInRange>true</m:IncludesLastItemInRange><m:Changes/>",
            )],
        )),
        _ => Reply::status(401)
            .header("WWW-Authenticate", "Negotiate")
            .header("WWW-Authenticate", "NTLM"),
    }
}

#[tokio::test]
async fn ntlm_runs_on_one_connection_and_keeps_it_logged_in() {
    let server = FakeExchange::start(ntlm_server).await;
    let client = Client::connect(
        &server.url(),
        "CORP\\alice",
        &password(),
        &Options::default(),
    )
    .await
    .unwrap();
    let page = client.sync_items(client.root(), None, 100).await.unwrap();
    assert_eq!(page.state, "S1");
    let seen = server.seen();
    // probe, NEGOTIATE (empty POST), AUTHENTICATE with the request, then a request
    // on the logged-in connection without a header.
    assert_eq!(seen.len(), 4, "{seen:#?}");
    assert_eq!(seen[1].body, "");
    assert_eq!(seen[2].operation(), "GetFolder");
    assert_eq!(seen[1].connection, seen[2].connection);
    assert_eq!(seen[3].connection, seen[2].connection);
    assert_eq!(seen[3].authorization, None);
}

#[tokio::test]
async fn a_wrong_ntlm_login_is_auth_failed() {
    let server = FakeExchange::start(ntlm_server).await;
    let options = Options {
        auth: AuthKind::Ntlm,
        ..Options::default()
    };
    let error = Client::connect(&server.url(), "CORP\\mallory", &password(), &options)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::AuthFailed { .. }), "{error:?}");
}

/// Pseudo-random bytes, every value 0..=255 present, including CR, LF and NUL.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_u32;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn large_mime_streams_through_chunked_answers_byte_exact() {
    let mime = noise(3 * 1024 * 1024 + 7);
    let encoded = BASE64.encode(&mime);
    let server = FakeExchange::start(move |seen, _| match seen.operation() {
        "GetItem" => {
            let item = format!(
                r#"<m:Items><t:Message><t:MimeContent CharacterSet="UTF-8">{encoded}</t:MimeContent><t:ItemId Id="I1"/><t:IsRead>false</t:IsRead></t:Message></m:Items>"#
            );
            Reply {
                chunked: Some(16 * 1024 + 3),
                ..Reply::ok(response("GetItem", &[success("GetItem", &item)]))
            }
        }
        _ => Reply::ok(root_folder()),
    })
    .await;
    let client = Client::connect(&server.url(), "alice", &password(), &basic())
        .await
        .unwrap();
    let results = client.get_mime(&[ItemId("I1".into())]).await.unwrap();
    let item = results[0].1.as_ref().unwrap();
    assert_eq!(item.mime.len(), mime.len());
    assert!(item.mime == mime, "MIME must come back byte for byte");
    assert!(!item.is_read);
}

#[tokio::test]
async fn items_exchange_was_busy_for_are_asked_again_alone() {
    let server = FakeExchange::start(|seen, earlier| {
        if seen.operation() != "GetItem" {
            return Reply::ok(root_folder());
        }
        let first = !earlier.iter().any(|e| e.operation() == "GetItem");
        let mime = |text: &str| {
            format!(
                r#"<m:Items><t:Message><t:MimeContent>{}</t:MimeContent><t:ItemId Id="x"/></t:Message></m:Items>"#,
                BASE64.encode(text)
            )
        };
        if first {
            Reply::ok(response(
                "GetItem",
                &[success("GetItem", &mime("first")), busy("GetItem", 100)],
            ))
        } else if seen.body.contains(r#"<t:ItemId Id="B"/>"#) && !seen.body.contains(r#"Id="A""#) {
            Reply::ok(response("GetItem", &[success("GetItem", &mime("second"))]))
        } else {
            Reply::status(400)
        }
    })
    .await;
    let client = Client::connect(&server.url(), "alice", &password(), &basic())
        .await
        .unwrap();
    let results = client
        .get_mime(&[ItemId("A".into()), ItemId("B".into())])
        .await
        .unwrap();
    assert_eq!(results[0].0, ItemId("A".into()));
    assert_eq!(results[0].1.as_ref().unwrap().mime, b"first");
    assert_eq!(results[1].0, ItemId("B".into()));
    assert_eq!(results[1].1.as_ref().unwrap().mime, b"second");
}

#[tokio::test]
async fn a_soap_fault_is_a_fault_with_its_code() {
    let server = FakeExchange::start(|seen, _| {
        if seen.operation() == "GetFolder" {
            Reply::ok(response(
                "GetFolder",
                &[fake_exchange::failure(
                    "GetFolder",
                    "ErrorAccessDenied",
                    "Access is denied. Check credentials and try again.",
                )],
            ))
        } else {
            Reply::status(400)
        }
    })
    .await;
    let error = Client::connect(&server.url(), "alice", &password(), &basic())
        .await
        .unwrap_err();
    assert_eq!(error.fault_code(), Some("ErrorAccessDenied"));
    assert!(error.to_string().contains("lacks access to this mailbox"));
    assert!(error.is_connection_setup());
}

#[tokio::test]
async fn a_redirect_to_a_login_page_says_the_url_is_wrong() {
    let server = FakeExchange::start(|_, _| {
        Reply::status(302).header("Location", "https://mail.example.com/owa/auth/logon.aspx")
    })
    .await;
    let error = Client::connect(&server.url(), "alice", &password(), &basic())
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Http { status: 302, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("/EWS/Exchange.asmx"));
}

#[tokio::test]
async fn a_server_that_never_answers_or_never_shakes_hands_fails_within_its_deadlines() {
    // Accepts connections and never sends a byte: no TLS handshake, no HTTP answer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let options = Options {
        connect: mailmove_ews::ConnectOptions {
            connect_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_millis(700),
            ..mailmove_ews::ConnectOptions::default()
        },
        ..basic()
    };
    for (scheme, expected) in [
        ("http", "no answer"),
        ("https", "the TLS handshake timed out"),
    ] {
        let url =
            url::Url::parse(&format!("{scheme}://127.0.0.1:{port}/EWS/Exchange.asmx")).unwrap();
        let started = Instant::now();
        let error = Client::connect(&url, "alice", &password(), &options)
            .await
            .unwrap_err();
        let waited = started.elapsed();
        assert!(waited < Duration::from_secs(4), "{scheme}: {waited:?}");
        assert!(error.to_string().contains(expected), "{scheme}: {error}");
    }
}

#[tokio::test]
async fn an_address_the_network_policy_refuses_is_never_contacted() {
    let server = FakeExchange::start(|_, _| Reply::ok(root_folder())).await;
    let options = Options {
        connect: mailmove_net::ConnectOptions {
            network: mailmove_net::NetworkPolicy::public_only(vec![]),
            ..basic().connect
        },
        ..basic()
    };
    let error = Client::connect(&server.url(), "alice", &password(), &options)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Net(mailmove_net::NetError::NotAllowed { .. })),
        "{error:?}"
    );
    assert!(error.is_connection_setup());
    assert!(server.seen().is_empty(), "nothing reached the server");
    // The operator's network is allowed: the same server answers.
    let allowed = Options {
        connect: mailmove_net::ConnectOptions {
            network: mailmove_net::NetworkPolicy::public_only(vec!["127.0.0.0/8".parse().unwrap()]),
            ..basic().connect
        },
        ..basic()
    };
    Client::connect(&server.url(), "alice", &password(), &allowed)
        .await
        .unwrap();
}
