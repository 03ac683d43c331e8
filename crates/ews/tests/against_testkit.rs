//! The client against the testkit's EWS server (an independent implementation of the
//! documents, with its own NTLM): login, folders, items created and read back byte for
//! byte, the named property, synchronisation, throttling, TLS and autodiscover.

use std::time::Duration;

use mailmove_ews::{
    AuthKind, Client, ConnectOptions, Error, FlagStatus, FolderId, NewItem, Options, Role,
    SOURCE_PROPERTY_NAME, SOURCE_PROPERTY_SET, TlsOptions, autodiscover_at,
};
use mailmove_model::Secret;
use mailmove_testkit::ews::{self as kit, EwsConfig, EwsServer, Seed};
use time::macros::datetime;
use url::Url;

const ALICE: &str = "alice@example.com";

fn password() -> Secret<String> {
    Secret::new("secret".into())
}

fn url(server: &EwsServer) -> Url {
    Url::parse(&server.url()).unwrap()
}

fn message(subject: &str, filler: usize) -> Vec<u8> {
    let mut mime = format!(
        "From: Bob <bob@example.com>\r\nTo: alice@example.com\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@example.com>\r\nDate: Tue, 02 Jan 2024 10:00:00 +0000\r\n\r\n"
    )
    .into_bytes();
    // 8-bit bytes, a lone LF and a line starting with a dot: all must survive.
    mime.extend_from_slice(b"caf\xc3\xa9\n.dot line\r\n");
    mime.extend(std::iter::repeat_n(b'x', filler));
    mime.extend_from_slice(b"\r\n");
    mime
}

async fn connect(server: &EwsServer, login: &str, options: &Options) -> Client {
    Client::connect(&url(server), login, &password(), options)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_mailbox_read_and_written_over_basic() {
    let server = EwsServer::start(EwsConfig::basic()).unwrap();
    server.add_user(ALICE, "secret");
    server.create_folder(ALICE, &["Inbox", "Projects"]).unwrap();
    let original = message("first", 300_000);
    server
        .add_message(
            ALICE,
            &["Inbox"],
            &original,
            Seed {
                is_read: true,
                flag: kit::FlagStatus::Flagged,
                categories: vec!["Red".into()],
                received: datetime!(2024-01-02 10:05:00 UTC),
            },
        )
        .unwrap();
    let client = connect(&server, ALICE, &Options::default()).await;

    // Folders: mail only, with roles and paths.
    let folders = client.mail_folders().await.unwrap();
    let find = |path: &[&str]| {
        folders
            .iter()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("{path:?} missing from {folders:#?}"))
    };
    let inbox = find(&["Inbox"]);
    assert_eq!(inbox.role, Some(Role::Inbox));
    assert_eq!(inbox.total_count, 1);
    assert_eq!(find(&["Sent Items"]).role, Some(Role::SentItems));
    assert_eq!(find(&["Junk Email"]).role, Some(Role::JunkEmail));
    assert_eq!(find(&["Inbox", "Projects"]).parent, Some(inbox.id.clone()));
    assert!(folders.iter().all(|f| f.path != ["Calendar"]));

    // Reading: the listing and the MIME, byte for byte.
    let items = client.list_items(&inbox.id).await.unwrap();
    assert_eq!(items.len(), 1);
    let summary = &items[0];
    assert!(summary.is_read);
    assert_eq!(summary.flag, FlagStatus::Flagged);
    assert_eq!(summary.categories, vec!["Red".to_string()]);
    assert_eq!(summary.received, Some(datetime!(2024-01-02 10:05:00 UTC)));
    assert_eq!(summary.subject.as_deref(), Some("first"));
    assert_eq!(
        summary.internet_message_id.as_deref(),
        Some("<first@example.com>")
    );
    assert_eq!(summary.source_identity, None);
    let read = client
        .get_mime(std::slice::from_ref(&summary.id))
        .await
        .unwrap();
    let mime = read[0].1.as_ref().unwrap();
    assert!(mime.mime == original, "MIME differs from what was stored");
    assert!(mime.is_read);
    assert_eq!(mime.flag, FlagStatus::Flagged);
    assert_eq!(mime.categories, vec!["Red".to_string()]);

    // A missing item is an item error, not a failed request.
    let missing = client
        .get_mime(&[
            mailmove_ews::ItemId("AAMkAGMissing".into()),
            summary.id.clone(),
        ])
        .await
        .unwrap();
    assert!(missing[0].1.is_err());
    assert!(missing[1].1.is_ok());

    // Writing: a folder (twice is harmless) and items that look received.
    let target = client.create_folder(None, "Migrated").await.unwrap();
    assert_eq!(target.path, vec!["Migrated".to_string()]);
    let again = client.create_folder(None, "Migrated").await.unwrap();
    assert_eq!(again.id, target.id);
    let nested = client
        .create_folder(Some(&target.id), "2024")
        .await
        .unwrap();
    assert_eq!(
        nested.path,
        vec!["Migrated".to_string(), "2024".to_string()]
    );

    let second = message("second", 10);
    let categories = vec!["Blue".to_string(), "Green".to_string()];
    let new_items = [
        NewItem {
            mime: &original,
            is_read: true,
            flag: FlagStatus::Flagged,
            categories: &categories,
            received: Some(datetime!(2024-01-02 10:05:00 UTC)),
            sent: Some(datetime!(2024-01-02 10:00:00 UTC)),
            source_identity: "imap:1:7",
        },
        NewItem {
            mime: &second,
            is_read: false,
            flag: FlagStatus::NotFlagged,
            categories: &[],
            received: Some(datetime!(2023-06-01 08:00:00 UTC)),
            sent: None,
            source_identity: "imap:1:8",
        },
    ];
    let created = client.create_items(&target.id, &new_items).await.unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");

    let stored = server.messages(ALICE, &["Migrated"]);
    assert_eq!(stored.len(), 2);
    assert!(stored[0].mime == original);
    assert!(stored[1].mime == second);
    assert!(
        !stored[0].is_draft && !stored[1].is_draft,
        "created items must not be drafts"
    );
    assert_eq!(stored[0].message_flags & 0x8, 0);
    assert!(stored[0].is_read);
    assert!(!stored[1].is_read);
    assert_eq!(stored[0].flag, kit::FlagStatus::Flagged);
    assert_eq!(stored[0].categories, categories);
    assert_eq!(stored[0].received, datetime!(2024-01-02 10:05:00 UTC));
    assert_eq!(stored[1].received, datetime!(2023-06-01 08:00:00 UTC));
    assert_eq!(stored[0].sent, Some(datetime!(2024-01-02 10:00:00 UTC)));
    let ours = stored[0]
        .extended
        .iter()
        .find(|p| p.property_name.as_deref() == Some(SOURCE_PROPERTY_NAME))
        .expect("the named property is stored");
    assert_eq!(ours.property_set_id.as_deref(), Some(SOURCE_PROPERTY_SET));
    assert_eq!(ours.values, vec!["imap:1:7".to_string()]);

    // Found again by the named property, and listed with it.
    let found = client
        .find_by_source_identity(&target.id, "imap:1:8")
        .await
        .unwrap();
    assert_eq!(found, vec![created[1].clone().unwrap()]);
    let listed = client.list_items(&target.id).await.unwrap();
    let mut identities: Vec<_> = listed
        .iter()
        .filter_map(|i| i.source_identity.clone())
        .collect();
    identities.sort();
    assert_eq!(identities, vec!["imap:1:7", "imap:1:8"]);
}

#[tokio::test]
async fn sync_reports_creations_and_deletions_from_a_saved_state() {
    let server = EwsServer::start(EwsConfig::basic()).unwrap();
    server.add_user(ALICE, "secret");
    let first = server
        .add_message(ALICE, &["Inbox"], &message("a", 1), Seed::default())
        .unwrap();
    let client = connect(&server, ALICE, &Options::default()).await;
    let inbox = client
        .mail_folders()
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.role == Some(Role::Inbox))
        .unwrap();

    let page = client.sync_items(&inbox.id, None, 100).await.unwrap();
    assert_eq!(page.created.len(), 1);
    assert_eq!(page.created[0].as_str(), first);
    assert!(!page.more);

    let later = server
        .add_message(ALICE, &["Inbox"], &message("b", 1), Seed::default())
        .unwrap();
    server.delete_message(ALICE, &first).unwrap();
    let next = client
        .sync_items(&inbox.id, Some(&page.state), 100)
        .await
        .unwrap();
    assert_eq!(
        next.created.iter().map(|i| i.as_str()).collect::<Vec<_>>(),
        vec![later.as_str()]
    );
    assert_eq!(
        next.deleted.iter().map(|i| i.as_str()).collect::<Vec<_>>(),
        vec![first.as_str()]
    );
}

#[tokio::test]
async fn ntlm_logs_in_and_keeps_working_on_parallel_connections() {
    let server = EwsServer::start(EwsConfig::ntlm()).unwrap();
    server.add_user(ALICE, "secret");
    for n in 0..3 {
        server
            .add_message(
                ALICE,
                &["Inbox"],
                &message(&format!("m{n}"), 100),
                Seed::default(),
            )
            .unwrap();
    }
    let client = connect(&server, "MAILMOVE\\alice", &Options::default()).await;
    let inbox = client
        .mail_folders()
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.role == Some(Role::Inbox))
        .unwrap();
    // Parallel requests need more connections, each logged in on its own.
    let clone = client.clone();
    let (a, b, c) = tokio::join!(
        client.list_items(&inbox.id),
        clone.list_items(&inbox.id),
        client.list_items(&inbox.id)
    );
    assert_eq!(a.unwrap().len(), 3);
    assert_eq!(b.unwrap().len(), 3);
    let ids: Vec<_> = c.unwrap().into_iter().map(|i| i.id).collect();
    let read = client.get_mime(&ids).await.unwrap();
    assert!(read.iter().all(|(_, r)| r.is_ok()));

    let explicit = Options {
        auth: AuthKind::Ntlm,
        ..Options::default()
    };
    connect(&server, ALICE, &explicit).await;
    let wrong = Client::connect(
        &url(&server),
        "MAILMOVE\\alice",
        &Secret::new("nope".into()),
        &explicit,
    )
    .await
    .unwrap_err();
    assert!(matches!(wrong, Error::AuthFailed { .. }), "{wrong:?}");
}

#[tokio::test]
async fn throttling_and_size_limits_from_the_server() {
    let server = EwsServer::start(EwsConfig::basic()).unwrap();
    server.add_user(ALICE, "secret");
    let client = connect(&server, ALICE, &Options::default()).await;
    let inbox = FolderId(server.create_folder(ALICE, &["Inbox"]).unwrap());

    server.set_busy(2, 50);
    assert!(client.list_items(&inbox).await.unwrap().is_empty());
    server.set_http_throttle(1, 503, 0);
    assert!(client.list_items(&inbox).await.unwrap().is_empty());

    let impatient = Client::connect(
        &url(&server),
        ALICE,
        &password(),
        &Options {
            max_throttle_wait: Duration::from_millis(100),
            ..Options::default()
        },
    )
    .await
    .unwrap();
    server.set_busy(5, 80);
    let error = impatient.list_items(&inbox).await.unwrap_err();
    assert!(matches!(error, Error::Throttled { .. }), "{error:?}");
    assert!(error.is_transient());
    server.set_busy(0, 0);

    server.set_max_message_size(1000);
    let big = message("big", 5000);
    let small = message("small", 10);
    let results = client
        .create_items(&inbox, &[plain(&big), plain(&small)])
        .await
        .unwrap();
    assert_eq!(
        results[0].as_ref().unwrap_err().code,
        "ErrorMessageSizeExceeded"
    );
    assert!(results[1].is_ok());
}

fn plain(mime: &[u8]) -> NewItem<'_> {
    NewItem {
        mime,
        is_read: false,
        flag: FlagStatus::NotFlagged,
        categories: &[],
        received: None,
        sent: None,
        source_identity: "s",
    }
}

#[tokio::test]
async fn https_with_the_test_ca_and_refused_without_it() {
    let server = EwsServer::start(EwsConfig::basic().with_https()).unwrap();
    server.add_user(ALICE, "secret");
    let trusted = Options {
        connect: ConnectOptions {
            tls: TlsOptions {
                extra_ca: server.ca_pem().map(|p| p.to_path_buf()),
                ..TlsOptions::default()
            },
            ..ConnectOptions::default()
        },
        ..Options::default()
    };
    let client = connect(&server, ALICE, &trusted).await;
    assert!(!client.mail_folders().await.unwrap().is_empty());

    let error = Client::connect(&url(&server), ALICE, &password(), &Options::default())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Net(_)), "{error:?}");
    assert!(error.to_string().contains("not trusted"), "{error}");
}

#[tokio::test]
async fn autodiscover_finds_the_ews_url() {
    let server = EwsServer::start(EwsConfig::basic()).unwrap();
    server.add_user(ALICE, "secret");
    let base = Url::parse(&format!("{}/", server.base_url())).unwrap();
    let found = autodiscover_at(
        std::slice::from_ref(&base),
        ALICE,
        ALICE,
        &password(),
        &Options::default(),
    )
    .await
    .unwrap();
    assert_eq!(found, url(&server));
    let refused = autodiscover_at(
        &[base],
        ALICE,
        ALICE,
        &Secret::new("wrong".into()),
        &Options::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(refused, Error::AuthFailed { .. }), "{refused:?}");
}

#[tokio::test]
async fn a_bearer_token_is_used_when_given() {
    let server = EwsServer::start(EwsConfig::bearer("tok-123")).unwrap();
    server.add_user(ALICE, "secret");
    let with_token = |token: &str| Options {
        bearer_token: Some(Secret::new(token.to_string())),
        ..Options::default()
    };
    let client = connect(&server, ALICE, &with_token("tok-123")).await;
    assert!(!client.mail_folders().await.unwrap().is_empty());
    let error = Client::connect(&url(&server), ALICE, &password(), &with_token("stale"))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::AuthFailed { .. }), "{error:?}");
    assert!(error.to_string().contains("access token"), "{error}");
}

#[tokio::test]
async fn mime_content_over_the_maximum_message_size_is_an_item_error_and_not_kept() {
    let server = EwsServer::start(EwsConfig::basic()).unwrap();
    server.add_user(ALICE, "secret");
    for (subject, filler) in [("big", 2_000_000), ("small", 100)] {
        server
            .add_message(
                ALICE,
                &["Inbox"],
                &message(subject, filler),
                Seed::default(),
            )
            .unwrap();
    }
    let options = Options {
        connect: ConnectOptions {
            max_message_size: 1_000_000,
            ..ConnectOptions::default()
        },
        ..Options::default()
    };
    let client = connect(&server, ALICE, &options).await;
    let inbox = client
        .mail_folders()
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.role == Some(Role::Inbox))
        .unwrap();
    let mut items = client.list_items(&inbox.id).await.unwrap();
    items.sort_by_key(|i| std::cmp::Reverse(i.size));
    let ids: Vec<_> = items.into_iter().map(|i| i.id).collect();
    let read = client.get_mime(&ids).await.unwrap();
    let big = read[0].1.as_ref().unwrap_err();
    assert_eq!(big.code, mailmove_ews::MIME_TOO_LARGE);
    assert!(
        big.to_string()
            .contains("larger than the maximum message size of 1000000 bytes"),
        "{big}"
    );
    let small = read[1].1.as_ref().unwrap();
    assert_eq!(small.mime, message("small", 100));
}
