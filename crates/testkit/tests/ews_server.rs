//! The EWS test server spoken to with raw HTTP/1.1 and hand-written SOAP, so each answer
//! is checked as bytes on the wire, the way a client sees it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailmove_testkit::ews::{EwsConfig, EwsServer, FlagStatus, Seed, ntlm_client};

const USER: &str = "alice@example.com";
const PASSWORD: &str = "s3cret";

// ---------------------------------------------------------------------------------------
// A minimal blocking HTTP/1.1 client: one keep-alive connection, Content-Length bodies.

struct Connection {
    reader: BufReader<TcpStream>,
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl Connection {
    fn open(server: &EwsServer) -> Connection {
        let stream = TcpStream::connect(server.addr()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Connection {
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, method: &str, path: &str, headers: &[(&str, String)], body: &str) -> Reply {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        let stream = self.reader.get_mut();
        stream.write_all(request.as_bytes()).expect("write");

        let mut status_line = String::new();
        self.reader
            .read_line(&mut status_line)
            .expect("status line");
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header line");
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).expect("body");
        Reply {
            status,
            headers,
            body: String::from_utf8(body).expect("utf-8 body"),
        }
    }

    fn soap(&mut self, auth: &[(&str, String)], operation_xml: &str) -> Reply {
        self.send("POST", "/EWS/Exchange.asmx", auth, &envelope(operation_xml))
    }
}

fn basic(user: &str, password: &str) -> Vec<(&'static str, String)> {
    vec![(
        "Authorization",
        format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))),
    )]
}

fn envelope(operation_xml: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"><soap:Header><t:RequestServerVersion Version="Exchange2016"/></soap:Header><soap:Body>{operation_xml}</soap:Body></soap:Envelope>"#
    )
}

/// Calls one operation with Basic auth on a fresh connection and expects HTTP 200.
fn call(server: &EwsServer, operation_xml: &str) -> String {
    let reply = Connection::open(server).soap(&basic(USER, PASSWORD), operation_xml);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

fn started() -> EwsServer {
    let server = EwsServer::start(EwsConfig::default()).expect("server starts");
    server.add_user(USER, PASSWORD);
    server
}

/// Every value of `attribute` on elements named `element` (with any prefix).
fn attributes(xml: &str, element: &str, attribute: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in xml.match_indices(&format!(":{element} ")) {
        let tag_end = xml[at..].find('>').map(|e| at + e).unwrap_or(xml.len());
        let tag = &xml[at..tag_end];
        let needle = format!(" {attribute}=\"");
        if let Some(start) = tag.find(&needle) {
            let value_start = start + needle.len();
            let value_end = tag[value_start..].find('"').unwrap() + value_start;
            out.push(tag[value_start..value_end].to_string());
        }
    }
    out
}

/// Every text of elements named `element` (with any prefix).
fn texts(xml: &str, element: &str) -> Vec<String> {
    let name = format!(":{element}>");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = xml[from..].find(&name) {
        let at = from + found;
        from = at + name.len();
        let tag_start = xml[..at].rfind('<').unwrap_or(0);
        if xml[tag_start..].starts_with("</") {
            continue;
        }
        let after = &xml[from..];
        let end = after.find("</").unwrap_or(after.len());
        out.push(after[..end].to_string());
    }
    out
}

fn mime(n: usize) -> Vec<u8> {
    format!(
        "From: Bob <bob@example.com>\r\nTo: {USER}\r\nSubject: Message {n}\r\nMessage-ID: <m{n}@example.com>\r\nDate: Mon, 1 Jan 2024 10:00:0{} +0000\r\n\r\nBody {n}\r\n",
        n % 10
    )
    .into_bytes()
}

fn seeded_at(minute: u8) -> Seed {
    Seed {
        received: time::Date::from_calendar_date(2024, time::Month::March, 1)
            .unwrap()
            .with_hms(10, minute, 0)
            .unwrap()
            .assume_utc(),
        ..Seed::default()
    }
}

const INBOX: &str = r#"<t:DistinguishedFolderId Id="inbox"/>"#;

fn create_item(folder_xml: &str, messages_xml: &str) -> String {
    format!(
        r#"<m:CreateItem MessageDisposition="SaveOnly"><m:SavedItemFolderId>{folder_xml}</m:SavedItemFolderId><m:Items>{messages_xml}</m:Items></m:CreateItem>"#
    )
}

fn message_xml(mime: &[u8], extra: &str) -> String {
    format!(
        r#"<t:Message><t:MimeContent CharacterSet="UTF-8">{}</t:MimeContent>{extra}</t:Message>"#,
        STANDARD.encode(mime)
    )
}

// ---------------------------------------------------------------------------------------
// Authentication

#[test]
fn wrong_password_gets_401_listing_the_offered_schemes() {
    let server = EwsServer::start(EwsConfig::any("token-123")).unwrap();
    server.add_user(USER, PASSWORD);
    let get_inbox = format!(
        r#"<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape><m:FolderIds>{INBOX}</m:FolderIds></m:GetFolder>"#
    );
    let mut connection = Connection::open(&server);

    let reply = connection.soap(&basic(USER, "wrong"), &get_inbox);
    assert_eq!(reply.status, 401);
    let offered = reply.header_values("WWW-Authenticate");
    assert!(
        offered.iter().any(|v| v.starts_with("Basic")),
        "{offered:?}"
    );
    assert!(offered.contains(&"NTLM"), "{offered:?}");
    assert!(
        offered.iter().any(|v| v.starts_with("Bearer")),
        "{offered:?}"
    );

    let reply = connection.soap(&[], &get_inbox);
    assert_eq!(reply.status, 401);

    // The same connection still works once the password is right, with the address or
    // a down-level login.
    assert_eq!(
        connection.soap(&basic(USER, PASSWORD), &get_inbox).status,
        200
    );
    assert_eq!(
        connection
            .soap(&basic("MAILMOVE\\alice", PASSWORD), &get_inbox)
            .status,
        200
    );
    let bearer = vec![("Authorization", "Bearer token-123".to_string())];
    assert_eq!(connection.soap(&bearer, &get_inbox).status, 200);
    let wrong_bearer = vec![("Authorization", "Bearer nope".to_string())];
    assert_eq!(connection.soap(&wrong_bearer, &get_inbox).status, 401);

    server.set_password(USER, "changed").unwrap();
    assert_eq!(
        connection.soap(&basic(USER, PASSWORD), &get_inbox).status,
        401
    );
    // Only authenticated requests are counted.
    assert_eq!(server.requests("GetFolder"), 3);
}

#[test]
fn basic_passwords_may_come_in_utf8_or_latin1() {
    let server = EwsServer::start(EwsConfig::basic()).unwrap();
    server.add_user(USER, "pässword");
    let get_inbox = format!(
        r#"<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape><m:FolderIds>{INBOX}</m:FolderIds></m:GetFolder>"#
    );
    let mut connection = Connection::open(&server);
    let utf8 = b"alice@example.com:p\xc3\xa4ssword".to_vec();
    let latin1 = b"alice@example.com:p\xe4ssword".to_vec();
    for credentials in [utf8, latin1] {
        let header = vec![(
            "Authorization",
            format!("Basic {}", STANDARD.encode(credentials)),
        )];
        assert_eq!(connection.soap(&header, &get_inbox).status, 200);
    }
}

#[test]
fn bearer_tokens_act_for_the_anchor_mailbox() {
    let server = EwsServer::start(EwsConfig::bearer("tok")).unwrap();
    server.add_user(USER, PASSWORD);
    server.add_user("bob@example.com", "pw");
    server
        .add_message("bob@example.com", &["Inbox"], &mime(1), Seed::default())
        .unwrap();
    let get_inbox = format!(
        r#"<m:GetFolder><m:FolderShape><t:BaseShape>Default</t:BaseShape></m:FolderShape><m:FolderIds>{INBOX}</m:FolderIds></m:GetFolder>"#
    );
    let mut connection = Connection::open(&server);
    let token = ("Authorization", "Bearer tok".to_string());
    // With two mailboxes the token alone does not say whose.
    assert_eq!(
        connection
            .soap(std::slice::from_ref(&token), &get_inbox)
            .status,
        401
    );
    let reply = connection.soap(
        &[token, ("X-AnchorMailbox", "bob@example.com".to_string())],
        &get_inbox,
    );
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("<t:TotalCount>1</t:TotalCount>"));
}

#[test]
fn ntlm_handshake_authenticates_its_connection_only() {
    let server = EwsServer::start(EwsConfig::ntlm()).unwrap();
    server.add_user(USER, PASSWORD);
    let get_inbox = format!(
        r#"<m:GetFolder><m:FolderShape><t:BaseShape>Default</t:BaseShape></m:FolderShape><m:FolderIds>{INBOX}</m:FolderIds></m:GetFolder>"#
    );

    let mut connection = Connection::open(&server);
    let reply = connection.soap(&[], &get_inbox);
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header_values("WWW-Authenticate"), vec!["NTLM"]);
    // Basic is not offered, so it is refused even with the right password.
    assert_eq!(
        connection.soap(&basic(USER, PASSWORD), &get_inbox).status,
        401
    );

    let negotiate = format!("NTLM {}", STANDARD.encode(ntlm_client::negotiate()));
    let reply = connection.soap(&[("Authorization", negotiate.clone())], &get_inbox);
    assert_eq!(reply.status, 401);
    let challenge = reply.header_values("WWW-Authenticate")[0]
        .strip_prefix("NTLM ")
        .expect("an NTLM challenge")
        .to_string();
    let challenge = STANDARD.decode(challenge).unwrap();
    let authenticate =
        ntlm_client::authenticate(&challenge, "alice", "MAILMOVE", PASSWORD).unwrap();
    let reply = connection.soap(
        &[(
            "Authorization",
            format!("NTLM {}", STANDARD.encode(authenticate)),
        )],
        &get_inbox,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("<t:DisplayName>Inbox</t:DisplayName>"));

    // Later requests on the authenticated connection need no header…
    assert_eq!(connection.soap(&[], &get_inbox).status, 200);
    // …but another connection does.
    assert_eq!(Connection::open(&server).soap(&[], &get_inbox).status, 401);

    // The address as user name with an empty domain works too; a wrong password fails.
    for (user, password, expected) in [(USER, PASSWORD, 200), ("alice", "wrong", 401)] {
        let mut connection = Connection::open(&server);
        let reply = connection.soap(&[("Authorization", negotiate.clone())], &get_inbox);
        let challenge = STANDARD
            .decode(
                reply.header_values("WWW-Authenticate")[0]
                    .strip_prefix("NTLM ")
                    .unwrap(),
            )
            .unwrap();
        let domain = if user.contains('@') { "" } else { "MAILMOVE" };
        let authenticate = ntlm_client::authenticate(&challenge, user, domain, password).unwrap();
        let reply = connection.soap(
            &[(
                "Authorization",
                format!("NTLM {}", STANDARD.encode(authenticate)),
            )],
            &get_inbox,
        );
        assert_eq!(reply.status, expected, "{user}");
    }
}

// ---------------------------------------------------------------------------------------
// Folders

#[test]
fn find_folder_deep_lists_mail_and_non_mail_folders_with_classes() {
    let server = started();
    server
        .create_folder(USER, &["Inbox", "Projects", "2024"])
        .unwrap();
    let body = call(
        &server,
        r#"<m:FindFolder Traversal="Deep"><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI FieldURI="folder:DisplayName"/><t:FieldURI FieldURI="folder:FolderClass"/><t:FieldURI FieldURI="folder:ParentFolderId"/><t:FieldURI FieldURI="folder:ChildFolderCount"/><t:FieldURI FieldURI="folder:NoSuchField"/></t:AdditionalProperties></m:FolderShape><m:ParentFolderIds><t:DistinguishedFolderId Id="msgfolderroot"/></m:ParentFolderIds></m:FindFolder>"#,
    );
    let names = texts(&body, "DisplayName");
    for expected in [
        "Inbox",
        "Projects",
        "2024",
        "Sent Items",
        "Drafts",
        "Deleted Items",
        "Junk Email",
        "Calendar",
        "Contacts",
        "Tasks",
    ] {
        assert!(
            names.contains(&expected.to_string()),
            "{expected} in {names:?}"
        );
    }
    assert!(body.contains("<t:CalendarFolder><t:FolderId"));
    assert!(body.contains("<t:FolderClass>IPF.Appointment</t:FolderClass><t:DisplayName>Calendar"));
    assert!(body.contains("<t:ContactsFolder>"));
    assert!(body.contains("<t:FolderClass>IPF.Contact</t:FolderClass>"));
    assert!(body.contains("<t:TasksFolder>"));
    assert!(body.contains("<t:FolderClass>IPF.Task</t:FolderClass>"));
    assert!(body.contains("<t:FolderClass>IPF.Note</t:FolderClass><t:DisplayName>Inbox"));
    assert!(body.contains(r#"TotalItemsInView="10" IncludesLastItemInRange="true""#));

    let shallow = call(
        &server,
        r#"<m:FindFolder Traversal="Shallow"><m:FolderShape><t:BaseShape>AllProperties</t:BaseShape></m:FolderShape><m:IndexedPageFolderView MaxEntriesReturned="3" Offset="0" BasePoint="Beginning"/><m:ParentFolderIds><t:DistinguishedFolderId Id="msgfolderroot"/></m:ParentFolderIds></m:FindFolder>"#,
    );
    assert_eq!(texts(&shallow, "DisplayName").len(), 3);
    assert!(shallow.contains(
        r#"IndexedPagingOffset="3" TotalItemsInView="8" IncludesLastItemInRange="false""#
    ));

    let snapshot = server.folders(USER);
    let projects = snapshot
        .iter()
        .find(|f| f.path == ["Inbox", "Projects"])
        .unwrap();
    assert_eq!(projects.class.as_deref(), Some("IPF.Note"));
    let calendar = snapshot.iter().find(|f| f.path == ["Calendar"]).unwrap();
    assert_eq!(calendar.distinguished.as_deref(), Some("calendar"));
}

#[test]
fn get_folder_answers_each_id_and_unknown_distinguished_ones_with_folder_not_found() {
    let server = started();
    server
        .add_message(USER, &["Inbox"], &mime(1), Seed::default())
        .unwrap();
    let body = call(
        &server,
        r#"<m:GetFolder><m:FolderShape><t:BaseShape>AllProperties</t:BaseShape></m:FolderShape><m:FolderIds><t:DistinguishedFolderId Id="inbox"><t:Mailbox><t:EmailAddress>alice@example.com</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId><t:DistinguishedFolderId Id="outbox"/><t:FolderId Id="not an id"/></m:FolderIds></m:GetFolder>"#,
    );
    assert!(body.contains(r#"<h:ServerVersionInfo MajorVersion="15" MinorVersion="1""#));
    let codes = texts(&body, "ResponseCode");
    assert_eq!(
        codes,
        vec!["NoError", "ErrorFolderNotFound", "ErrorInvalidIdMalformed"]
    );
    assert!(
        body.contains("<t:TotalCount>1</t:TotalCount><t:ChildFolderCount>0</t:ChildFolderCount>")
    );
    assert!(body.contains("<t:UnreadCount>1</t:UnreadCount>"));
}

#[test]
fn create_folder_refuses_a_duplicate_name_with_folder_exists() {
    let server = started();
    let create = r#"<m:CreateFolder><m:ParentFolderId><t:DistinguishedFolderId Id="inbox"/></m:ParentFolderId><m:Folders><t:Folder><t:FolderClass>IPF.Note</t:FolderClass><t:DisplayName>Archive 2020</t:DisplayName></t:Folder></m:Folders></m:CreateFolder>"#;
    let body = call(&server, create);
    assert_eq!(texts(&body, "ResponseCode"), vec!["NoError"]);
    let id = attributes(&body, "FolderId", "Id").remove(0);
    let again = call(&server, &create.replace("Archive 2020", "archive 2020"));
    assert_eq!(texts(&again, "ResponseCode"), vec!["ErrorFolderExists"]);

    let folders = server.folders(USER);
    let created = folders.iter().find(|f| f.id == id).unwrap();
    assert_eq!(created.path, ["Inbox", "Archive 2020"]);
    assert_eq!(created.class.as_deref(), Some("IPF.Note"));
}

// ---------------------------------------------------------------------------------------
// Items

#[test]
fn create_item_save_only_without_flags_makes_a_draft() {
    let server = started();
    let body = call(&server, &create_item(INBOX, &message_xml(&mime(1), "")));
    assert_eq!(texts(&body, "ResponseCode"), vec!["NoError"]);
    let id = attributes(&body, "ItemId", "Id").remove(0);

    let stored = server.messages(USER, &["Inbox"]);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, id);
    assert!(stored[0].is_draft);
    assert_eq!(stored[0].message_flags & 0x8, 0x8);
    // MS-OXCMSG: a new message starts read and unsent (0x9).
    assert_eq!(stored[0].message_flags, 0x9);
    assert!(stored[0].is_read);
    assert_eq!(stored[0].subject.as_deref(), Some("Message 1"));

    let get = call(
        &server,
        &format!(
            r#"<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI FieldURI="item:IsDraft"/><t:FieldURI FieldURI="message:IsRead"/></t:AdditionalProperties></m:ItemShape><m:ItemIds><t:ItemId Id="{id}"/></m:ItemIds></m:GetItem>"#
        ),
    );
    assert!(get.contains("<t:IsDraft>true</t:IsDraft>"), "{get}");
}

#[test]
fn create_item_with_message_flags_is_read_not_a_draft_and_received_when_delivered() {
    let server = started();
    server.create_folder(USER, &["Imported"]).unwrap();
    let folder_id = server
        .folders(USER)
        .into_iter()
        .find(|f| f.path == ["Imported"])
        .unwrap()
        .id;
    let extra = r#"<t:ExtendedProperty><t:ExtendedFieldURI PropertyTag="0x0E07" PropertyType="Integer"/><t:Value>1</t:Value></t:ExtendedProperty><t:ExtendedProperty><t:ExtendedFieldURI PropertyTag="0x0E06" PropertyType="SystemTime"/><t:Value>2019-07-04T12:30:00Z</t:Value></t:ExtendedProperty><t:ExtendedProperty><t:ExtendedFieldURI PropertyTag="0x0039" PropertyType="SystemTime"/><t:Value>2019-07-04T12:29:00Z</t:Value></t:ExtendedProperty><t:ExtendedProperty><t:ExtendedFieldURI DistinguishedPropertySetId="PublicStrings" PropertyName="SourceId" PropertyType="String"/><t:Value>src-42</t:Value></t:ExtendedProperty><t:Categories><t:String>Blue</t:String><t:String>Work</t:String></t:Categories><t:Flag><t:FlagStatus>Flagged</t:FlagStatus></t:Flag>"#;
    let body = call(
        &server,
        &create_item(
            &format!(r#"<t:FolderId Id="{folder_id}"/>"#),
            &message_xml(&mime(7), extra),
        ),
    );
    assert_eq!(texts(&body, "ResponseCode"), vec!["NoError"], "{body}");
    let id = attributes(&body, "ItemId", "Id").remove(0);

    let stored = &server.messages(USER, &["Imported"])[0];
    assert!(stored.is_read);
    assert!(!stored.is_draft);
    assert_eq!(stored.message_flags, 1);
    assert_eq!(stored.received.unix_timestamp(), 1_562_243_400);
    assert_eq!(stored.sent.unwrap().unix_timestamp(), 1_562_243_340);
    assert_eq!(stored.flag, FlagStatus::Flagged);
    assert_eq!(stored.categories, ["Blue", "Work"]);
    assert_eq!(stored.extended.len(), 1);
    assert_eq!(
        stored.extended[0].property_name.as_deref(),
        Some("SourceId")
    );
    assert_eq!(stored.extended[0].values, ["src-42"]);

    let get = call(
        &server,
        &format!(
            r#"<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI FieldURI="item:DateTimeReceived"/><t:ExtendedFieldURI PropertyTag="0x0E07" PropertyType="Integer"/><t:ExtendedFieldURI DistinguishedPropertySetId="PublicStrings" PropertyName="SourceId" PropertyType="String"/></t:AdditionalProperties></m:ItemShape><m:ItemIds><t:ItemId Id="{id}"/></m:ItemIds></m:GetItem>"#
        ),
    );
    assert!(
        get.contains("<t:DateTimeReceived>2019-07-04T12:30:00Z</t:DateTimeReceived>"),
        "{get}"
    );
    assert!(get.contains(r#"<t:ExtendedFieldURI PropertyTag="0xe07" PropertyType="Integer"/><t:Value>1</t:Value>"#), "{get}");
    assert!(get.contains("<t:Value>src-42</t:Value>"));
}

#[test]
fn create_item_answers_each_message_and_rejects_malformed_ones() {
    let server = started();
    let messages = [
        message_xml(&mime(1), ""),
        r#"<t:Message><t:MimeContent>!!not base64!!</t:MimeContent></t:Message>"#.to_string(),
        message_xml(
            &mime(2),
            r#"<t:ExtendedProperty><t:ExtendedFieldURI PropertyTag="0x0E07" PropertyType="Integer"/><t:Value>one</t:Value></t:ExtendedProperty>"#,
        ),
        message_xml(
            &mime(3),
            r#"<t:ExtendedProperty><t:ExtendedFieldURI PropertyName="x" PropertyType="String"/><t:Value>v</t:Value></t:ExtendedProperty>"#,
        ),
    ]
    .concat();
    let body = call(&server, &create_item(INBOX, &messages));
    assert_eq!(
        texts(&body, "ResponseCode"),
        vec![
            "NoError",
            "ErrorMimeContentInvalidBase64String",
            "ErrorInvalidExtendedPropertyValue",
            "ErrorInvalidExtendedProperty"
        ]
    );
    assert_eq!(server.messages(USER, &["Inbox"]).len(), 1);

    let missing_disposition = call(
        &server,
        &format!(
            r#"<m:CreateItem><m:Items>{}</m:Items></m:CreateItem>"#,
            message_xml(&mime(4), "")
        ),
    );
    assert_eq!(
        texts(&missing_disposition, "ResponseCode"),
        vec!["ErrorMessageDispositionRequired"]
    );
}

#[test]
fn get_item_mime_content_round_trips_the_bytes_exactly() {
    let server = started();
    // 8-bit bytes, a bare LF, trailing whitespace and no final newline: nothing may be
    // normalised on the way.
    let mut odd = b"Subject: =?utf-8?q?caf=C3=A9?=\r\nMessage-ID: <odd@example.com>\r\n\r\nline one  \nline two \xe9\xff\x00 end".to_vec();
    odd.extend(std::iter::repeat_n(b'x', 70_000));
    let id = server
        .add_message(USER, &["Inbox"], &odd, Seed::default())
        .unwrap();
    let unknown = id.replace("AAAAAA", "AAAAAB");
    let body = call(
        &server,
        &format!(
            r#"<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:IncludeMimeContent>true</t:IncludeMimeContent><t:AdditionalProperties><t:FieldURI FieldURI="item:Subject"/><t:FieldURI FieldURI="item:Size"/></t:AdditionalProperties></m:ItemShape><m:ItemIds><t:ItemId Id="{id}"/><t:ItemId Id="{unknown}"/><t:ItemId Id="garbage"/></m:ItemIds></m:GetItem>"#
        ),
    );
    assert_eq!(
        texts(&body, "ResponseCode"),
        vec!["NoError", "ErrorItemNotFound", "ErrorInvalidIdMalformed"]
    );
    assert_eq!(
        attributes(&body, "MimeContent", "CharacterSet"),
        vec!["UTF-8"]
    );
    let start = body.find("<t:MimeContent CharacterSet=\"UTF-8\">").unwrap();
    let encoded = &body[start..];
    let encoded =
        &encoded[encoded.find('>').unwrap() + 1..encoded.find("</t:MimeContent>").unwrap()];
    assert_eq!(STANDARD.decode(encoded).unwrap(), odd);
    assert_eq!(texts(&body, "Subject"), vec!["café"]);
    assert_eq!(texts(&body, "Size"), vec![odd.len().to_string()]);
}

#[test]
fn find_item_pages_and_never_returns_mime_content() {
    let server = started();
    for n in 0..5u8 {
        server
            .add_message(USER, &["Inbox"], &mime(n as usize), seeded_at(n))
            .unwrap();
    }
    let find = |view: &str| {
        call(
            &server,
            &format!(
                r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>Default</t:BaseShape></m:ItemShape>{view}<m:ParentFolderIds>{INBOX}</m:ParentFolderIds></m:FindItem>"#
            ),
        )
    };
    let first =
        find(r#"<m:IndexedPageItemView MaxEntriesReturned="2" Offset="0" BasePoint="Beginning"/>"#);
    assert!(
        first.contains(
            r#"IndexedPagingOffset="2" TotalItemsInView="5" IncludesLastItemInRange="false""#
        ),
        "{first}"
    );
    // Newest received first.
    assert_eq!(texts(&first, "Subject"), vec!["Message 4", "Message 3"]);
    let last =
        find(r#"<m:IndexedPageItemView MaxEntriesReturned="2" Offset="4" BasePoint="Beginning"/>"#);
    assert!(last.contains(
        r#"IndexedPagingOffset="5" TotalItemsInView="5" IncludesLastItemInRange="true""#
    ));
    assert_eq!(texts(&last, "Subject"), vec!["Message 0"]);
    assert!(!first.contains("MimeContent"));

    let with_mime = call(
        &server,
        &format!(
            r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI FieldURI="item:MimeContent"/></t:AdditionalProperties></m:ItemShape><m:ParentFolderIds>{INBOX}</m:ParentFolderIds></m:FindItem>"#
        ),
    );
    assert_eq!(
        texts(&with_mime, "ResponseCode"),
        vec!["ErrorInvalidPropertyRequest"]
    );
}

#[test]
fn find_item_restricts_on_extended_properties_and_subject() {
    let server = started();
    let tagged = |n: usize, source: &str| {
        message_xml(
            &mime(n),
            &format!(
                r#"<t:ExtendedProperty><t:ExtendedFieldURI PropertySetId="7b6a9f4e-3c1d-4e8b-9a2f-6d5c4b3a2910" PropertyName="SourceId" PropertyType="String"/><t:Value>{source}</t:Value></t:ExtendedProperty>"#
            ),
        )
    };
    call(
        &server,
        &create_item(
            INBOX,
            &[tagged(1, "a"), tagged(2, "b"), tagged(3, "c")].concat(),
        ),
    );
    let uri = r#"<t:ExtendedFieldURI PropertySetId="7b6a9f4e-3c1d-4e8b-9a2f-6d5c4b3a2910" PropertyName="SourceId" PropertyType="String"/>"#;
    let body = call(
        &server,
        &format!(
            r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI FieldURI="item:Subject"/>{uri}</t:AdditionalProperties></m:ItemShape><m:Restriction><t:IsEqualTo>{uri}<t:FieldURIOrConstant><t:Constant Value="b"/></t:FieldURIOrConstant></t:IsEqualTo></m:Restriction><m:ParentFolderIds>{INBOX}</m:ParentFolderIds></m:FindItem>"#
        ),
    );
    assert_eq!(texts(&body, "Subject"), vec!["Message 2"]);
    assert!(
        body.contains(&format!("{uri}<t:Value>b</t:Value>")),
        "{body}"
    );

    let by_subject = call(
        &server,
        &format!(
            r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI FieldURI="item:Subject"/></t:AdditionalProperties></m:ItemShape><m:Restriction><t:Or><t:IsEqualTo><t:FieldURI FieldURI="item:Subject"/><t:FieldURIOrConstant><t:Constant Value="message 3"/></t:FieldURIOrConstant></t:IsEqualTo><t:IsEqualTo><t:FieldURI FieldURI="item:Subject"/><t:FieldURIOrConstant><t:Constant Value="Message 1"/></t:FieldURIOrConstant></t:IsEqualTo></t:Or></m:Restriction><m:ParentFolderIds>{INBOX}</m:ParentFolderIds></m:FindItem>"#
        ),
    );
    let mut subjects = texts(&by_subject, "Subject");
    subjects.sort();
    assert_eq!(subjects, vec!["Message 1", "Message 3"]);
}

#[test]
fn update_item_sets_read_state_flag_categories_and_extended_but_not_unsent() {
    let server = started();
    let body = call(&server, &create_item(INBOX, &message_xml(&mime(1), "")));
    let id = attributes(&body, "ItemId", "Id").remove(0);
    let set = |path: &str, value: &str| {
        format!(r#"<t:SetItemField>{path}<t:Message>{value}</t:Message></t:SetItemField>"#)
    };
    let updates = [
        set(
            r#"<t:ExtendedFieldURI PropertyTag="0x0E07" PropertyType="Integer"/>"#,
            r#"<t:ExtendedProperty><t:ExtendedFieldURI PropertyTag="0x0E07" PropertyType="Integer"/><t:Value>0</t:Value></t:ExtendedProperty>"#,
        ),
        set(
            r#"<t:FieldURI FieldURI="item:Categories"/>"#,
            "<t:Categories><t:String>Red</t:String></t:Categories>",
        ),
        set(
            r#"<t:FieldURI FieldURI="item:Flag"/>"#,
            "<t:Flag><t:FlagStatus>Complete</t:FlagStatus></t:Flag>",
        ),
        set(
            r#"<t:ExtendedFieldURI DistinguishedPropertySetId="PublicStrings" PropertyName="Note" PropertyType="String"/>"#,
            r#"<t:ExtendedProperty><t:ExtendedFieldURI DistinguishedPropertySetId="PublicStrings" PropertyName="Note" PropertyType="String"/><t:Value>kept</t:Value></t:ExtendedProperty>"#,
        ),
    ]
    .concat();
    let body = call(
        &server,
        &format!(
            r#"<m:UpdateItem MessageDisposition="SaveOnly" ConflictResolution="AutoResolve"><m:ItemChanges><t:ItemChange><t:ItemId Id="{id}"/><t:Updates>{updates}</t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>"#
        ),
    );
    assert_eq!(texts(&body, "ResponseCode"), vec!["NoError"], "{body}");
    let stored = &server.messages(USER, &["Inbox"])[0];
    assert!(!stored.is_read);
    assert!(
        stored.is_draft,
        "the unsent bit cannot be cleared after creation"
    );
    assert_eq!(stored.message_flags, 0x8);
    assert_eq!(stored.categories, ["Red"]);
    assert_eq!(stored.flag, FlagStatus::Complete);
    assert_eq!(stored.extended[0].values, ["kept"]);

    let body = call(
        &server,
        &format!(
            r#"<m:UpdateItem MessageDisposition="SaveOnly" ConflictResolution="AutoResolve"><m:ItemChanges><t:ItemChange><t:ItemId Id="{id}"/><t:Updates>{}</t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>"#,
            set(
                r#"<t:FieldURI FieldURI="message:IsRead"/>"#,
                "<t:IsRead>true</t:IsRead>"
            )
        ),
    );
    assert_eq!(texts(&body, "ResponseCode"), vec!["NoError"]);
    assert_eq!(server.messages(USER, &["Inbox"])[0].message_flags, 0x9);
}

#[test]
fn sync_folder_items_returns_only_the_changes_after_a_state() {
    let server = started();
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            server
                .add_message(USER, &["Inbox"], &mime(n), seeded_at(n as u8))
                .unwrap(),
        );
    }
    let sync = |state: Option<&str>, max: usize| {
        let state = state
            .map(|s| format!("<m:SyncState>{s}</m:SyncState>"))
            .unwrap_or_default();
        call(
            &server,
            &format!(
                r#"<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:SyncFolderId>{INBOX}</m:SyncFolderId>{state}<m:MaxChangesReturned>{max}</m:MaxChangesReturned></m:SyncFolderItems>"#
            ),
        )
    };
    let first = sync(None, 512);
    assert_eq!(first.matches("<t:Create>").count(), 3);
    assert_eq!(texts(&first, "IncludesLastItemInRange"), vec!["true"]);
    let state = texts(&first, "SyncState").remove(0);

    let unchanged = sync(Some(&state), 512);
    assert!(unchanged.contains("<m:Changes></m:Changes>"), "{unchanged}");

    let new_id = server
        .add_message(USER, &["Inbox"], &mime(9), seeded_at(9))
        .unwrap();
    server.delete_message(USER, &ids[0]).unwrap();
    call(
        &server,
        &format!(
            r#"<m:UpdateItem MessageDisposition="SaveOnly" ConflictResolution="AutoResolve"><m:ItemChanges><t:ItemChange><t:ItemId Id="{}"/><t:Updates><t:SetItemField><t:FieldURI FieldURI="message:IsRead"/><t:Message><t:IsRead>true</t:IsRead></t:Message></t:SetItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>"#,
            ids[1]
        ),
    );
    let changes = sync(Some(&state), 512);
    assert_eq!(changes.matches("<t:Create>").count(), 1, "{changes}");
    assert!(changes.contains(&format!(r#"<t:Create><t:Message><t:ItemId Id="{new_id}""#)));
    assert!(changes.contains(&format!(
        r#"<t:Delete><t:ItemId Id="{}"/></t:Delete>"#,
        ids[0]
    )));
    assert!(changes.contains(&format!(r#"<t:ReadFlagChange><t:ItemId Id="{}""#, ids[1])));
    assert!(changes.contains("<t:IsRead>true</t:IsRead></t:ReadFlagChange>"));

    // One change at a time, resuming from each state, gives the same three changes.
    let mut state_now = state.clone();
    let mut seen = 0;
    loop {
        let page = sync(Some(&state_now), 1);
        seen += ["<t:Create>", "<t:Delete>", "<t:ReadFlagChange>"]
            .iter()
            .map(|c| page.matches(c).count())
            .sum::<usize>();
        state_now = texts(&page, "SyncState").remove(0);
        if texts(&page, "IncludesLastItemInRange") == ["true"] {
            break;
        }
    }
    assert_eq!(seen, 3);

    // A state belongs to its folder.
    let other = call(
        &server,
        &format!(
            r#"<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:SyncFolderId><t:DistinguishedFolderId Id="drafts"/></m:SyncFolderId><m:SyncState>{state}</m:SyncState><m:MaxChangesReturned>10</m:MaxChangesReturned></m:SyncFolderItems>"#
        ),
    );
    assert_eq!(
        texts(&other, "ResponseCode"),
        vec!["ErrorInvalidSyncStateData"]
    );
}

#[test]
fn sync_folder_hierarchy_lists_folders_then_only_new_ones() {
    let server = started();
    let sync = |state: &str| {
        call(
            &server,
            &format!(
                r#"<m:SyncFolderHierarchy><m:FolderShape><t:BaseShape>AllProperties</t:BaseShape></m:FolderShape><m:SyncFolderId><t:DistinguishedFolderId Id="msgfolderroot"/></m:SyncFolderId>{state}</m:SyncFolderHierarchy>"#
            ),
        )
    };
    let first = sync("");
    assert_eq!(first.matches("<t:Create>").count(), 8);
    let state = texts(&first, "SyncState").remove(0);
    server.create_folder(USER, &["New"]).unwrap();
    let next = sync(&format!("<m:SyncState>{state}</m:SyncState>"));
    assert_eq!(texts(&next, "DisplayName"), vec!["New"]);
}

// ---------------------------------------------------------------------------------------
// Faults

#[test]
fn server_busy_is_a_soap_fault_with_a_back_off() {
    let server = started();
    server.set_busy(1, 1234);
    let get_inbox = format!(
        r#"<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape><m:FolderIds>{INBOX}</m:FolderIds></m:GetFolder>"#
    );
    let mut connection = Connection::open(&server);
    let reply = connection.soap(&basic(USER, PASSWORD), &get_inbox);
    assert_eq!(reply.status, 500);
    assert!(
        reply.body.contains(">a:ErrorServerBusy</faultcode>"),
        "{}",
        reply.body
    );
    assert!(reply.body.contains(
        r#"<e:ResponseCode xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">ErrorServerBusy</e:ResponseCode>"#
    ));
    assert!(
        reply
            .body
            .contains(r#"<t:Value Name="BackOffMilliseconds">1234</t:Value>"#)
    );
    // The connection stays usable, and the next request is served.
    assert_eq!(
        connection.soap(&basic(USER, PASSWORD), &get_inbox).status,
        200
    );
    assert_eq!(server.requests("GetFolder"), 2);
}

#[test]
fn http_throttling_answers_the_status_with_retry_after() {
    let server = started();
    let get_inbox = format!(
        r#"<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape><m:FolderIds>{INBOX}</m:FolderIds></m:GetFolder>"#
    );
    for status in [429, 503] {
        server.set_http_throttle(2, status, 7);
        let mut connection = Connection::open(&server);
        for _ in 0..2 {
            let reply = connection.soap(&basic(USER, PASSWORD), &get_inbox);
            assert_eq!(reply.status, status);
            assert_eq!(reply.header_values("Retry-After"), vec!["7"]);
        }
        assert_eq!(
            connection.soap(&basic(USER, PASSWORD), &get_inbox).status,
            200
        );
    }
    assert_eq!(server.requests("GetFolder"), 6);
}

#[test]
fn an_oversized_message_is_refused_for_that_item_only() {
    let server = started();
    server.set_max_message_size(300);
    let mut big = mime(2);
    big.extend(std::iter::repeat_n(b'y', 400));
    let body = call(
        &server,
        &create_item(
            INBOX,
            &[message_xml(&mime(1), ""), message_xml(&big, "")].concat(),
        ),
    );
    assert_eq!(
        texts(&body, "ResponseCode"),
        vec!["NoError", "ErrorMessageSizeExceeded"]
    );
    assert!(body.contains(r#"ResponseClass="Error""#));
    assert_eq!(server.messages(USER, &["Inbox"]).len(), 1);
}

#[test]
fn a_delay_slows_every_request() {
    let server = started();
    server.set_delay(Duration::from_millis(300));
    let started_at = Instant::now();
    call(
        &server,
        &format!(
            r#"<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape><m:FolderIds>{INBOX}</m:FolderIds></m:GetFolder>"#
        ),
    );
    assert!(started_at.elapsed() >= Duration::from_millis(300));
}

#[test]
fn unknown_operations_and_bad_xml_are_soap_faults() {
    let server = started();
    let reply = Connection::open(&server).soap(&basic(USER, PASSWORD), "<m:GetTeleporter/>");
    assert_eq!(reply.status, 500);
    assert!(reply.body.contains("<s:Fault>"));
    assert!(reply.body.contains(">a:ErrorSchemaValidation</faultcode>"));
    assert_eq!(server.requests("GetTeleporter"), 1);

    let reply = Connection::open(&server).send(
        "POST",
        "/EWS/Exchange.asmx",
        &basic(USER, PASSWORD),
        "<not xml",
    );
    assert_eq!(reply.status, 500);
    assert!(reply.body.contains("ErrorSchemaValidation"));
}

// ---------------------------------------------------------------------------------------
// Other endpoints

#[test]
fn autodiscover_points_at_the_ews_url_behind_the_same_auth() {
    let server = started();
    let pox = r#"<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>alice@example.com</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>"#;
    let mut connection = Connection::open(&server);
    let reply = connection.send("POST", "/autodiscover/autodiscover.xml", &[], pox);
    assert_eq!(reply.status, 401);
    let reply = connection.send(
        "POST",
        "/autodiscover/autodiscover.xml",
        &basic(USER, PASSWORD),
        pox,
    );
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("<Type>EXCH</Type>"));
    assert!(reply.body.contains("<Type>EXPR</Type>"));
    assert_eq!(
        reply
            .body
            .matches(&format!("<EwsUrl>{}</EwsUrl>", server.url()))
            .count(),
        2
    );
    let unknown = connection.send(
        "POST",
        "/autodiscover/autodiscover.xml",
        &basic(USER, PASSWORD),
        &pox.replace("alice@", "nobody@"),
    );
    assert!(unknown.body.contains("<ErrorCode>500</ErrorCode>"));

    let soap = r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:a="http://schemas.microsoft.com/exchange/2010/Autodiscover" xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header><a:RequestedServerVersion>Exchange2013</a:RequestedServerVersion></soap:Header><soap:Body><a:GetUserSettingsRequestMessage><a:Request><a:Users><a:User><a:Mailbox>alice@example.com</a:Mailbox></a:User></a:Users><a:RequestedSettings><a:Setting>ExternalEwsUrl</a:Setting><a:Setting>InternalEwsUrl</a:Setting><a:Setting>PublicFolderServer</a:Setting></a:RequestedSettings></a:Request></a:GetUserSettingsRequestMessage></soap:Body></soap:Envelope>"#;
    let reply = connection.send(
        "POST",
        "/autodiscover/autodiscover.svc",
        &basic(USER, PASSWORD),
        soap,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains(&format!(
        "<Name>ExternalEwsUrl</Name><Value>{}</Value>",
        server.url()
    )));
    assert!(reply.body.contains(&format!(
        "<Name>InternalEwsUrl</Name><Value>{}</Value>",
        server.url()
    )));
    assert!(
        reply
            .body
            .contains("<SettingName>PublicFolderServer</SettingName>")
    );
}

#[test]
fn owa_answers_without_authentication() {
    let server = started();
    let reply = Connection::open(&server).send("GET", "/owa", &[], "");
    assert_eq!(reply.status, 200);
    let reply = Connection::open(&server).send("GET", "/nowhere", &[], "");
    assert_eq!(reply.status, 404);
}
