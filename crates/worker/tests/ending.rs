//! How passes end without any server: what the worker decides before it connects.

use std::time::Duration;

use mailmove_model::Secret;
use mailmove_projects::{Side, secret_context};
use mailmove_secrets::Keyring;
use mailmove_store::{Claimer, Db, MailboxStatus, NewMailbox, PassKind, PassRecord, PassState};
use mailmove_worker::{Worker, WorkerConfig};

async fn database() -> (Db, Keyring, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_sqlite(&dir.path().join("mailmove.sqlite"))
        .await
        .unwrap();
    let keyring = Keyring::from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap();
    (db, keyring, dir)
}

fn config() -> WorkerConfig {
    WorkerConfig {
        poll: Duration::from_millis(20),
        ..WorkerConfig::named("test")
    }
}

/// A project from `source` to `dest` with one mailbox pair (passwords sealed when
/// `sealed`) and a full pass queued for it: (project id, mailbox id, pass id).
async fn one_pass(
    db: &Db,
    keyring: &Keyring,
    (source, dest): (&str, &str),
    settings: &str,
    sealed: bool,
) -> (i64, i64, i64) {
    let project = db
        .create_project("a@x", "p", source, dest, settings)
        .await
        .unwrap();
    let secret = |side| {
        sealed.then(|| {
            keyring.seal(
                &Secret::new("pw".to_string()),
                &secret_context(project.id, "a@old.example", side),
            )
        })
    };
    let ids = db
        .add_mailboxes(
            project.id,
            &[NewMailbox {
                source_email: "a@old.example".into(),
                source_login: "a".into(),
                source_secret: secret(Side::Source),
                dest_email: "a@new.example".into(),
                dest_login: "a".into(),
                dest_secret: secret(Side::Destination),
            }],
        )
        .await
        .unwrap();
    let pass = db.queue_pass(ids[0], PassKind::Full).await.unwrap();
    (project.id, ids[0], pass)
}

/// Settings the worker cannot understand fail the pass with the reason, rather than
/// running it with defaults (which would drop a CA or a POP3 folder without a word).
#[tokio::test]
async fn settings_that_cannot_be_read_fail_the_pass_with_the_reason() {
    let (db, keyring, _dir) = database().await;
    let (project, mailbox, pass) = one_pass(
        &db,
        &keyring,
        ("imaps://127.0.0.1:1", "imaps://127.0.0.1:2"),
        r#"{"allow_plaintext": "yes"}"#,
        true,
    )
    .await;
    Worker::new(db.clone(), keyring, config())
        .run_until_done(project)
        .await;
    let ended = db.pass(pass).await.unwrap();
    assert_eq!(ended.state, PassState::Failed);
    let mailbox = db.mailbox(mailbox).await.unwrap();
    assert_eq!(mailbox.status, MailboxStatus::Failed);
    let reason = mailbox.last_error.unwrap();
    assert!(
        reason.starts_with("the project's settings cannot be used: invalid type"),
        "{reason}"
    );
    assert_eq!(ended.error.as_deref(), Some(reason.as_str()));
}

/// A pass whose lease ran out again and again (it crashed every worker that took it)
/// is failed with the reason instead of being handed to the next worker forever.
#[tokio::test]
async fn a_pass_that_keeps_stopping_its_workers_is_failed_not_claimed_forever() {
    let (db, keyring, _dir) = database().await;
    let (project, mailbox, pass) = one_pass(
        &db,
        &keyring,
        ("imaps://127.0.0.1:1", "imaps://127.0.0.1:2"),
        "{}",
        false,
    )
    .await;
    let config = config();
    // Workers that died with it: each claim's lease is already over.
    for _ in 0..config.max_attempts {
        let claimed = db.claim_pass("doomed", -10).await.unwrap().unwrap();
        assert_eq!(claimed.id, pass);
    }
    Worker::new(db.clone(), keyring, config)
        .run_until_done(project)
        .await;
    let ended = db.pass(pass).await.unwrap();
    assert_eq!(ended.state, PassState::Failed);
    let reason = db.mailbox(mailbox).await.unwrap().last_error.unwrap();
    assert!(reason.contains("stopped its worker 5 times"), "{reason}");
    assert!(db.claim_pass("next", 30).await.unwrap().is_none());
}

/// Stopping a worker (Ctrl-C, SIGTERM) drops its running passes at once rather than
/// waiting for them, and gives them back to the queue with their leases and slots, so
/// the next worker takes them over without waiting for a lease to run out.
#[tokio::test]
async fn a_stopped_worker_gives_its_running_passes_back_at_once() {
    let (db, keyring, _dir) = database().await;
    // A server that accepts and never greets: the pass would sit there for the whole
    // greeting deadline.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let url = format!("imap://127.0.0.1:{port}");
    let (_, _, pass) = one_pass(
        &db,
        &keyring,
        (&url, &url),
        r#"{"allow_plaintext": true}"#,
        true,
    )
    .await;
    let worker = Worker::new(db.clone(), keyring, config());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(async move { worker.run(stopped).await });
    while db.pass(pass).await.unwrap().state != PassState::Running {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the worker stops at once, not after the pass")
        .unwrap();
    let given_back = db.pass(pass).await.unwrap();
    assert_eq!(given_back.state, PassState::Queued);
    assert_eq!(given_back.worker, None);
    assert_eq!(given_back.attempts, 0, "a stop is not a failed attempt");
    // Another worker takes it at once, its connection slots free.
    let next = db
        .claim_pass("next", 30)
        .await
        .unwrap()
        .expect("claimable now");
    assert_eq!(next.id, pass);
    drop(silent);
}

/// A server that answers the login with a refusal of a million characters: the reason
/// stored for the mailbox is cut, whatever the server chose.
#[tokio::test]
async fn a_servers_endless_refusal_is_stored_cut() {
    use std::io::{BufRead, BufReader, Write};
    let (db, keyring, _dir) = database().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut out = stream.try_clone().unwrap();
                let _ = out.write_all(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n");
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let tag = line.split(' ').next().unwrap_or("*").to_string();
                    let refusal = format!("{tag} NO {}\r\n", "no ".repeat(300_000));
                    if out.write_all(refusal.as_bytes()).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let url = format!("imap://127.0.0.1:{port}");
    let (project, mailbox, _) = one_pass(&db, &keyring, (&url, &url), "{}", true).await;
    Worker::new(db.clone(), keyring, config())
        .run_until_done(project)
        .await;
    let reason = db.mailbox(mailbox).await.unwrap().last_error.unwrap();
    assert!(
        reason.starts_with("source: the server refused"),
        "{}",
        &reason[..200]
    );
    assert!(
        reason.ends_with('…'),
        "cut: {} characters",
        reason.chars().count()
    );
    assert!(reason.chars().count() <= mailmove_model::SERVER_TEXT_LIMIT + 1);
}

/// Runs a worker until `done` says the pass is where the test wants it, then stops it.
async fn run_until(
    db: &Db,
    keyring: Keyring,
    config: WorkerConfig,
    pass: i64,
    done: fn(&PassRecord) -> bool,
) {
    let worker = Worker::new(db.clone(), keyring, config);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(async move { worker.run(stopped).await });
    while !done(&db.pass(pass).await.unwrap()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    running.await.unwrap();
}

/// A server nobody can connect to does not keep the connection slots other passes
/// need: the pass gives them back as soon as connecting failed and waits out its
/// backoff in the queue, while a pass of another project to the same server runs.
#[tokio::test]
async fn a_pass_that_cannot_connect_gives_its_slots_back_and_waits() {
    let (db, keyring, _dir) = database().await;
    // Nothing listens on a port just closed: connections are refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("imaps://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let (_, _, pass) = one_pass(&db, &keyring, (&down, "imaps://new.example"), "{}", true).await;
    let config = WorkerConfig {
        connections_per_host: 1,
        retry_delay_seconds: 3600,
        ..config()
    };
    run_until(&db, keyring, config, pass, |p| {
        p.state == PassState::Queued && p.error.is_some()
    })
    .await;
    let waiting = db.pass(pass).await.unwrap();
    assert_eq!(waiting.attempts, 1, "counted as an attempt");
    assert!(
        waiting.error.unwrap().contains("127.0.0.1"),
        "says which server"
    );
    // new.example's only slot is free for another project's pass at once.
    let other = db
        .create_project(
            "b@x",
            "q",
            "imaps://old.example",
            "imaps://new.example",
            "{}",
        )
        .await
        .unwrap();
    let rows = [NewMailbox {
        source_email: "b@old.example".into(),
        source_login: "b".into(),
        source_secret: None,
        dest_email: "b@new.example".into(),
        dest_login: "b".into(),
        dest_secret: None,
    }];
    db.add_mailboxes(other.id, &rows).await.unwrap();
    let queued = db
        .queue_passes(other.id, None, PassKind::Full)
        .await
        .unwrap();
    let claimer = Claimer {
        connections_per_host: 1,
        ..Claimer::new("next", 30)
    };
    let next = db.claim(&claimer).await.unwrap().expect("the slot is free");
    assert_eq!(next.id, queued[0]);
}

/// A server that greets, lets the client log in and then stops answering without
/// closing: the pass makes no progress, ends as interrupted after the configured time
/// (long before any answer deadline), and is tried again later, each time counted, until
/// its attempts run out.
#[tokio::test]
async fn a_pass_that_makes_no_progress_is_interrupted_and_tried_again() {
    use std::io::{BufRead, BufReader, Write};
    let (db, keyring, _dir) = database().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = std::sync::Arc::clone(&connections);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut out = stream.try_clone().unwrap();
                let _ = out.write_all(b"* OK [CAPABILITY IMAP4rev1] ready\r\n");
                let mut lines = BufReader::new(stream).lines().map_while(Result::ok);
                for line in lines.by_ref() {
                    let tag = line.split(' ').next().unwrap_or("*").to_string();
                    let command = line.split(' ').nth(1).unwrap_or("").to_ascii_uppercase();
                    let answer = match command.as_str() {
                        "CAPABILITY" => format!("* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n"),
                        "LOGIN" => format!("{tag} OK [CAPABILITY IMAP4rev1] in\r\n"),
                        // From here on, silence: the connection stays open.
                        _ => break,
                    };
                    if out.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
                for _ in lines {}
            });
        }
    });
    let url = format!("imap://127.0.0.1:{port}");
    let (project, mailbox, pass) = one_pass(
        &db,
        &keyring,
        (&url, &url),
        r#"{"allow_plaintext": true}"#,
        true,
    )
    .await;
    let config = WorkerConfig {
        stall_timeout: Duration::from_millis(500),
        max_attempts: 2,
        retry_delay_seconds: 0,
        ..config()
    };
    Worker::new(db.clone(), keyring, config)
        .run_until_done(project)
        .await;
    let ended = db.pass(pass).await.unwrap();
    assert_eq!(ended.state, PassState::Failed);
    assert_eq!(ended.attempts, 2, "tried again once");
    let reason = db.mailbox(mailbox).await.unwrap().last_error.unwrap();
    assert!(
        reason.contains("made no progress") && reason.contains("gave up after 2 attempts"),
        "{reason}"
    );
    assert!(connections.load(std::sync::atomic::Ordering::SeqCst) >= 2);
}
