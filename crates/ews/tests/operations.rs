//! The client's operations against a scripted server: paging, roles and paths of mail
//! folders, an existing folder on create, per-item results of CreateItem, the named
//! property restriction, SyncFolderItems.

mod fake_exchange;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use fake_exchange::{FakeExchange, Reply, failure, response, root_folder, success};
use mailmove_ews::{
    AuthKind, Client, FlagStatus, FolderId, ItemId, NewItem, Options, Role, SOURCE_PROPERTY_NAME,
};
use mailmove_model::Secret;

async fn connect(server: &FakeExchange) -> Client {
    let options = Options {
        auth: AuthKind::Basic,
        ..Options::default()
    };
    Client::connect(&server.url(), "alice", &Secret::new("pw".into()), &options)
        .await
        .unwrap()
}

fn folder(id: &str, parent: &str, class: Option<&str>, name: &str, total: u32) -> String {
    let class = class
        .map(|c| format!("<t:FolderClass>{c}</t:FolderClass>"))
        .unwrap_or_default();
    format!(
        r#"<t:Folder><t:FolderId Id="{id}" ChangeKey="AQ"/><t:ParentFolderId Id="{parent}" ChangeKey="AQ"/>{class}<t:DisplayName>{name}</t:DisplayName><t:TotalCount>{total}</t:TotalCount></t:Folder>"#
    )
}

fn find_folder_page(offset: u32, last: bool, folders: &[String]) -> String {
    response(
        "FindFolder",
        &[success(
            "FindFolder",
            &format!(
                r#"<m:RootFolder IndexedPagingOffset="{offset}" TotalItemsInView="5" IncludesLastItemInRange="{last}"><t:Folders>{}</t:Folders></m:RootFolder>"#,
                folders.concat()
            ),
        )],
    )
}

#[tokio::test]
async fn mail_folders_pages_filters_and_names_roles() {
    let server = FakeExchange::start(|seen, _| match seen.operation() {
        "FindFolder" if seen.body.contains(r#"Offset="0""#) => Reply::ok(find_folder_page(
            3,
            false,
            &[
                folder("INBOX", "ROOT", Some("IPF.Note"), "Inbox", 7),
                folder("CAL", "ROOT", Some("IPF.Appointment"), "Calendar", 2),
                folder("P", "INBOX", Some("IPF.Note"), "Projects", 1),
            ],
        )),
        "FindFolder" => Reply::ok(find_folder_page(
            5,
            true,
            &[
                folder("SENT", "ROOT", Some("IPF.Note"), "Sent Items", 4),
                folder("OLD", "P", None, "2019", 0),
            ],
        )),
        "GetFolder" if seen.body.contains(r#"Id="inbox""#) => Reply::ok(response(
            "GetFolder",
            &[
                success(
                    "GetFolder",
                    r#"<m:Folders><t:Folder><t:FolderId Id="INBOX"/></t:Folder></m:Folders>"#,
                ),
                success(
                    "GetFolder",
                    r#"<m:Folders><t:Folder><t:FolderId Id="SENT"/></t:Folder></m:Folders>"#,
                ),
                success(
                    "GetFolder",
                    r#"<m:Folders><t:Folder><t:FolderId Id="DRAFTS"/></t:Folder></m:Folders>"#,
                ),
                success(
                    "GetFolder",
                    r#"<m:Folders><t:Folder><t:FolderId Id="DEL"/></t:Folder></m:Folders>"#,
                ),
                failure(
                    "GetFolder",
                    "ErrorFolderNotFound",
                    "The specified folder could not be found in the store.",
                ),
            ],
        )),
        _ => Reply::ok(root_folder()),
    })
    .await;
    let client = connect(&server).await;
    let folders = client.mail_folders().await.unwrap();
    type Row = (Vec<String>, Option<Role>, Option<FolderId>, u32);
    let summary: Vec<Row> = folders
        .iter()
        .map(|f| (f.path.clone(), f.role, f.parent.clone(), f.total_count))
        .collect();
    let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        summary,
        vec![
            (path(&["Inbox"]), Some(Role::Inbox), None, 7),
            (
                path(&["Inbox", "Projects"]),
                None,
                Some(FolderId("INBOX".into())),
                1
            ),
            (
                path(&["Inbox", "Projects", "2019"]),
                None,
                Some(FolderId("P".into())),
                0
            ),
            (path(&["Sent Items"]), Some(Role::SentItems), None, 4),
        ]
    );
    let pages: Vec<_> = server
        .seen()
        .into_iter()
        .filter(|s| s.operation() == "FindFolder")
        .collect();
    assert_eq!(pages.len(), 2);
    assert!(pages[1].body.contains(r#"Offset="3""#));
    assert!(pages[0].body.contains(r#"Traversal="Deep""#));
}

#[tokio::test]
async fn creating_an_existing_folder_returns_it() {
    let server = FakeExchange::start(|seen, _| match seen.operation() {
        "CreateFolder" if seen.body.contains("<t:DisplayName>Archive</t:DisplayName>") => {
            Reply::ok(response(
                "CreateFolder",
                &[failure("CreateFolder", "ErrorFolderExists", "A folder with the specified name already exists.")],
            ))
        }
        "CreateFolder" => Reply::ok(response(
            "CreateFolder",
            &[success("CreateFolder", r#"<m:Folders><t:Folder><t:FolderId Id="NEW" ChangeKey="AQ"/></t:Folder></m:Folders>"#)],
        )),
        "FindFolder" => Reply::ok(find_folder_page(
            1,
            true,
            &[folder("ARCH", "INBOX", Some("IPF.Note"), "Archive", 9)],
        )),
        "GetFolder" if seen.body.contains(r#"Id="INBOX""#) => Reply::ok(response(
            "GetFolder",
            &[success("GetFolder", &format!("<m:Folders>{}</m:Folders>", folder("INBOX", "ROOT", Some("IPF.Note"), "Inbox", 7)))],
        )),
        _ => Reply::ok(root_folder()),
    })
    .await;
    let client = connect(&server).await;
    let inbox = FolderId("INBOX".into());
    let archive = client.create_folder(Some(&inbox), "Archive").await.unwrap();
    assert_eq!(archive.id, FolderId("ARCH".into()));
    assert_eq!(
        archive.path,
        vec!["Inbox".to_string(), "Archive".to_string()]
    );
    assert_eq!(archive.total_count, 9);
    assert_eq!(archive.parent, Some(inbox));
    let top = client
        .create_folder(None, "Projects & Plans")
        .await
        .unwrap();
    assert_eq!(top.id, FolderId("NEW".into()));
    assert_eq!(top.path, vec!["Projects & Plans".to_string()]);
    assert_eq!(top.parent, None);
    assert_eq!(top.class, "IPF.Note");
    let created = server
        .seen()
        .into_iter()
        .find(|s| s.body.contains("Projects &amp; Plans"))
        .unwrap();
    assert!(
        created
            .body
            .contains(r#"<t:DistinguishedFolderId Id="msgfolderroot"/>"#)
    );
}

#[tokio::test]
async fn created_items_have_their_own_results() {
    let server = FakeExchange::start(|seen, _| match seen.operation() {
        "CreateItem" => Reply::ok(response(
            "CreateItem",
            &[
                success("CreateItem", r#"<m:Items><t:Message><t:ItemId Id="N1" ChangeKey="CQ"/></t:Message></m:Items>"#),
                failure("CreateItem", "ErrorMessageSizeExceeded", "The message exceeds the maximum supported size."),
            ],
        )),
        _ => Reply::ok(root_folder()),
    })
    .await;
    let client = connect(&server).await;
    let categories = vec!["Blue".to_string()];
    let item = |mime: &'static [u8], identity: &'static str| NewItem {
        mime,
        is_read: true,
        flag: FlagStatus::Flagged,
        categories: &categories,
        received: None,
        sent: None,
        source_identity: identity,
    };
    let results = client
        .create_items(&FolderId("F".into()), &[item(b"a", "s1"), item(b"b", "s2")])
        .await
        .unwrap();
    assert_eq!(results[0], Ok(ItemId("N1".into())));
    let error = results[1].as_ref().unwrap_err();
    assert_eq!(error.code, "ErrorMessageSizeExceeded");
    let request = server
        .seen()
        .into_iter()
        .find(|s| s.operation() == "CreateItem")
        .unwrap();
    assert!(request.body.contains(&format!(
        "<t:MimeContent>{}</t:MimeContent>",
        BASE64.encode("a")
    )));
    assert!(request.body.contains(r#"MessageDisposition="SaveOnly""#));
    assert!(request.body.contains(SOURCE_PROPERTY_NAME));
}

#[tokio::test]
async fn items_are_listed_in_pages_and_found_by_source_identity() {
    let server = FakeExchange::start(|seen, _| {
        if seen.operation() != "FindItem" {
            return Reply::ok(root_folder());
        }
        let restricted = seen.body.contains("<m:Restriction>");
        let (items, offset, last) = if restricted {
            (r#"<t:Message><t:ItemId Id="FOUND"/></t:Message>"#.to_string(), 1, true)
        } else if seen.body.contains(r#"Offset="0""#) {
            (
                r#"<t:Message><t:ItemId Id="A"/><t:Size>10</t:Size><t:IsRead>true</t:IsRead></t:Message>"#.to_string(),
                1,
                false,
            )
        } else {
            (
                r#"<t:Message><t:ItemId Id="B"/><t:Size>20</t:Size><t:IsRead>false</t:IsRead></t:Message>"#.to_string(),
                2,
                true,
            )
        };
        Reply::ok(response(
            "FindItem",
            &[success(
                "FindItem",
                &format!(
                    r#"<m:RootFolder IndexedPagingOffset="{offset}" TotalItemsInView="2" IncludesLastItemInRange="{last}"><t:Items>{items}</t:Items></m:RootFolder>"#
                ),
            )],
        ))
    })
    .await;
    let client = connect(&server).await;
    let items = client.list_items(&FolderId("F".into())).await.unwrap();
    let ids: Vec<(&str, u64, bool)> = items
        .iter()
        .map(|i| (i.id.as_str(), i.size, i.is_read))
        .collect();
    assert_eq!(ids, vec![("A", 10, true), ("B", 20, false)]);
    let found = client
        .find_by_source_identity(&FolderId("F".into()), "imap:7:42")
        .await
        .unwrap();
    assert_eq!(found, vec![ItemId("FOUND".into())]);
    let request = server
        .seen()
        .into_iter()
        .find(|s| s.body.contains("<m:Restriction>"))
        .unwrap();
    assert!(request.body.contains(r#"<t:Constant Value="imap:7:42"/>"#));
}
