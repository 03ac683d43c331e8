//! The SOAP requests, written as text. Exchange validates element order against
//! messages.xsd and types.xsd, so every builder writes its elements in schema order;
//! the order is stated beside each one.

use std::fmt::Write as _;

use base64::Engine;
use time::OffsetDateTime;

use crate::types::{FlagStatus, FolderId, ItemId, NewItem};
use crate::xml::escape;

/// The version every request asks for: 2013 is the oldest server mailmove supports,
/// and the newest schema it needs (`t:Flag`).
pub(crate) const SERVER_VERSION: &str = "Exchange2013";

/// Our named property's property set (a GUID of mailmove's own).
pub const SOURCE_PROPERTY_SET: &str = "6f0b2c1e-5d44-4b8e-9a57-3c1d2e8f7a90";
/// Our named property's name: where mailmove stores the source identity of an item it
/// created.
pub const SOURCE_PROPERTY_NAME: &str = "MailmoveSource";

/// PidTagMessageFlags: MSGFLAG_READ is 0x1; MSGFLAG_UNSENT (0x8) is never set, so a
/// created item is not a draft.
const PR_MESSAGE_FLAGS: &str = "0x0E07";
const PR_MESSAGE_DELIVERY_TIME: &str = "0x0E06";
const PR_CLIENT_SUBMIT_TIME: &str = "0x0039";
/// PidTagFlagStatus, read instead of `item:Flag` because FindItem returns it on every
/// version.
pub(crate) const PR_FLAG_STATUS: &str = "0x1090";

pub(crate) fn envelope(body: &str) -> String {
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?>"#,
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/""#,
            r#" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types""#,
            r#" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">"#,
            r#"<soap:Header><t:RequestServerVersion Version="{version}"/></soap:Header>"#,
            r#"<soap:Body>{body}</soap:Body></soap:Envelope>"#
        ),
        version = SERVER_VERSION,
        body = body
    )
}

/// `envelope` acting for `mailbox` through Exchange impersonation: the
/// `ExchangeImpersonation` SOAP header naming the mailbox by its primary SMTP address
/// (Microsoft Learn, "ExchangeImpersonation" and "Configure impersonation").
pub(crate) fn impersonating(envelope: String, mailbox: &str) -> String {
    let header = format!(
        "<soap:Header><t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>{}\
         </t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>",
        escape(mailbox)
    );
    envelope.replacen("<soap:Header>", &header, 1)
}

/// Where a request points: a folder by id, or a distinguished folder.
#[derive(Clone, Copy, Debug)]
pub(crate) enum FolderRef<'a> {
    Id(&'a FolderId),
    Distinguished(&'a str),
}

impl FolderRef<'_> {
    fn write(self, out: &mut String) {
        match self {
            FolderRef::Id(id) => {
                let _ = write!(out, r#"<t:FolderId Id="{}"/>"#, escape(id.as_str()));
            }
            FolderRef::Distinguished(name) => {
                let _ = write!(out, r#"<t:DistinguishedFolderId Id="{}"/>"#, escape(name));
            }
        }
    }
}

fn field(out: &mut String, uri: &str) {
    let _ = write!(out, r#"<t:FieldURI FieldURI="{uri}"/>"#);
}

fn tagged_property(out: &mut String, tag: &str, kind: &str) {
    let _ = write!(
        out,
        r#"<t:ExtendedFieldURI PropertyTag="{tag}" PropertyType="{kind}"/>"#
    );
}

fn source_property(out: &mut String) {
    let _ = write!(
        out,
        r#"<t:ExtendedFieldURI PropertySetId="{SOURCE_PROPERTY_SET}" PropertyName="{SOURCE_PROPERTY_NAME}" PropertyType="String"/>"#
    );
}

const FOLDER_PROPERTIES: [&str; 4] = [
    "folder:ParentFolderId",
    "folder:DisplayName",
    "folder:FolderClass",
    "folder:TotalCount",
];

/// PidTagAttributeHidden: folders Outlook does not show (sync state, conversation
/// settings, ...).
pub(crate) const PR_ATTR_HIDDEN: &str = "0x10F4";

/// FolderResponseShapeType: BaseShape, AdditionalProperties.
fn folder_shape(out: &mut String) {
    out.push_str("<m:FolderShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties>");
    for uri in FOLDER_PROPERTIES {
        field(out, uri);
    }
    tagged_property(out, PR_ATTR_HIDDEN, "Boolean");
    out.push_str("</t:AdditionalProperties></m:FolderShape>");
}

/// GetFolderType: FolderShape, FolderIds.
pub(crate) fn get_folder(folders: &[FolderRef<'_>]) -> String {
    let mut out = String::from("<m:GetFolder>");
    folder_shape(&mut out);
    out.push_str("<m:FolderIds>");
    for folder in folders {
        folder.write(&mut out);
    }
    out.push_str("</m:FolderIds></m:GetFolder>");
    envelope(&out)
}

/// FindFolderType: FolderShape, IndexedPageFolderView, Restriction, ParentFolderIds.
pub(crate) fn find_folder(
    parent: FolderRef<'_>,
    deep: bool,
    offset: u32,
    page: u32,
    display_name: Option<&str>,
) -> String {
    let traversal = if deep { "Deep" } else { "Shallow" };
    let mut out = format!(r#"<m:FindFolder Traversal="{traversal}">"#);
    folder_shape(&mut out);
    let _ = write!(
        out,
        r#"<m:IndexedPageFolderView MaxEntriesReturned="{page}" Offset="{offset}" BasePoint="Beginning"/>"#
    );
    if let Some(name) = display_name {
        out.push_str("<m:Restriction><t:IsEqualTo>");
        field(&mut out, "folder:DisplayName");
        let _ = write!(
            out,
            r#"<t:FieldURIOrConstant><t:Constant Value="{}"/></t:FieldURIOrConstant>"#,
            escape(name)
        );
        out.push_str("</t:IsEqualTo></m:Restriction>");
    }
    out.push_str("<m:ParentFolderIds>");
    parent.write(&mut out);
    out.push_str("</m:ParentFolderIds></m:FindFolder>");
    envelope(&out)
}

/// CreateFolderType: ParentFolderId, Folders. FolderType: FolderClass, DisplayName.
pub(crate) fn create_folder(parent: FolderRef<'_>, name: &str) -> String {
    let mut out = String::from("<m:CreateFolder><m:ParentFolderId>");
    parent.write(&mut out);
    let _ = write!(
        out,
        "</m:ParentFolderId><m:Folders><t:Folder><t:FolderClass>IPF.Note</t:FolderClass>\
         <t:DisplayName>{}</t:DisplayName></t:Folder></m:Folders></m:CreateFolder>",
        escape(name)
    );
    envelope(&out)
}

/// The summary properties of a listing (ItemSummary).
fn summary_properties(out: &mut String) {
    for uri in [
        "item:Subject",
        "item:DateTimeReceived",
        "item:Size",
        "item:Categories",
        "item:DateTimeSent",
        "message:InternetMessageId",
        "message:IsRead",
    ] {
        field(out, uri);
    }
    tagged_property(out, PR_FLAG_STATUS, "Integer");
    source_property(out);
}

/// FindItemType: ItemShape, IndexedPageItemView, Restriction, ParentFolderIds.
/// ItemResponseShapeType: BaseShape, AdditionalProperties.
pub(crate) fn find_item(
    folder: &FolderId,
    offset: u32,
    page: u32,
    source_identity: Option<&str>,
) -> String {
    let mut out = String::from(
        r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>"#,
    );
    if source_identity.is_none() {
        out.push_str("<t:AdditionalProperties>");
        summary_properties(&mut out);
        out.push_str("</t:AdditionalProperties>");
    }
    out.push_str("</m:ItemShape>");
    let _ = write!(
        out,
        r#"<m:IndexedPageItemView MaxEntriesReturned="{page}" Offset="{offset}" BasePoint="Beginning"/>"#
    );
    if let Some(identity) = source_identity {
        out.push_str("<m:Restriction><t:IsEqualTo>");
        source_property(&mut out);
        let _ = write!(
            out,
            r#"<t:FieldURIOrConstant><t:Constant Value="{}"/></t:FieldURIOrConstant>"#,
            escape(identity)
        );
        out.push_str("</t:IsEqualTo></m:Restriction>");
    }
    out.push_str("<m:ParentFolderIds>");
    FolderRef::Id(folder).write(&mut out);
    out.push_str("</m:ParentFolderIds></m:FindItem>");
    envelope(&out)
}

/// GetItemType: ItemShape, ItemIds. ItemResponseShapeType: BaseShape,
/// IncludeMimeContent, AdditionalProperties.
pub(crate) fn get_mime(ids: &[ItemId]) -> String {
    let mut out = String::from(
        "<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>\
         <t:IncludeMimeContent>true</t:IncludeMimeContent><t:AdditionalProperties>",
    );
    for uri in ["item:DateTimeReceived", "item:Categories", "message:IsRead"] {
        field(&mut out, uri);
    }
    tagged_property(&mut out, PR_FLAG_STATUS, "Integer");
    out.push_str("</t:AdditionalProperties></m:ItemShape><m:ItemIds>");
    for id in ids {
        let _ = write!(out, r#"<t:ItemId Id="{}"/>"#, escape(id.as_str()));
    }
    out.push_str("</m:ItemIds></m:GetItem>");
    envelope(&out)
}

/// CreateItemType (attribute MessageDisposition): SavedItemFolderId, Items.
/// In a `t:Message`, ItemType's elements come first in their order (MimeContent,
/// Categories, ExtendedProperty, Flag), then MessageType's (IsRead).
pub(crate) fn create_items(folder: &FolderId, items: &[NewItem<'_>]) -> String {
    let base64_len: usize = items.iter().map(|i| i.mime.len() / 3 * 4 + 4).sum();
    let mut out = String::with_capacity(base64_len + items.len() * 1024 + 1024);
    out.push_str(r#"<m:CreateItem MessageDisposition="SaveOnly"><m:SavedItemFolderId>"#);
    FolderRef::Id(folder).write(&mut out);
    out.push_str("</m:SavedItemFolderId><m:Items>");
    for item in items {
        new_message(&mut out, item);
    }
    out.push_str("</m:Items></m:CreateItem>");
    envelope(&out)
}

fn new_message(out: &mut String, item: &NewItem<'_>) {
    out.push_str("<t:Message><t:MimeContent>");
    base64::engine::general_purpose::STANDARD.encode_string(item.mime, out);
    out.push_str("</t:MimeContent>");
    if !item.categories.is_empty() {
        out.push_str("<t:Categories>");
        for category in item.categories {
            let _ = write!(out, "<t:String>{}</t:String>", escape(category));
        }
        out.push_str("</t:Categories>");
    }
    let flags = if item.is_read { "1" } else { "0" };
    extended_value(out, PR_MESSAGE_FLAGS, "Integer", flags);
    if let Some(received) = item.received {
        extended_value(
            out,
            PR_MESSAGE_DELIVERY_TIME,
            "SystemTime",
            &format_time(received),
        );
    }
    if let Some(submitted) = item.sent.or(item.received) {
        extended_value(
            out,
            PR_CLIENT_SUBMIT_TIME,
            "SystemTime",
            &format_time(submitted),
        );
    }
    out.push_str("<t:ExtendedProperty>");
    source_property(out);
    let _ = write!(
        out,
        "<t:Value>{}</t:Value></t:ExtendedProperty>",
        escape(item.source_identity)
    );
    if item.flag != FlagStatus::NotFlagged {
        let _ = write!(
            out,
            "<t:Flag><t:FlagStatus>{}</t:FlagStatus></t:Flag>",
            item.flag.element_text()
        );
    }
    let _ = write!(out, "<t:IsRead>{}</t:IsRead></t:Message>", item.is_read);
}

fn extended_value(out: &mut String, tag: &str, kind: &str, value: &str) {
    out.push_str("<t:ExtendedProperty>");
    tagged_property(out, tag, kind);
    let _ = write!(out, "<t:Value>{value}</t:Value></t:ExtendedProperty>");
}

/// SyncFolderItemsType: ItemShape, SyncFolderId, SyncState, Ignore, MaxChangesReturned,
/// SyncScope.
pub(crate) fn sync_folder_items(folder: &FolderId, state: Option<&str>, max: u32) -> String {
    let mut out = String::from(
        "<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>\
         <m:SyncFolderId>",
    );
    FolderRef::Id(folder).write(&mut out);
    out.push_str("</m:SyncFolderId>");
    if let Some(state) = state {
        let _ = write!(out, "<m:SyncState>{}</m:SyncState>", escape(state));
    }
    let _ = write!(
        out,
        "<m:MaxChangesReturned>{}</m:MaxChangesReturned><m:SyncScope>NormalItems</m:SyncScope>\
         </m:SyncFolderItems>",
        max.clamp(1, 512)
    );
    envelope(&out)
}

/// xs:dateTime in UTC to the second, as Exchange writes it: `2024-01-02T03:04:05Z`.
pub(crate) fn format_time(time: OffsetDateTime) -> String {
    let utc = time.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impersonation_names_the_mailbox_in_the_header_before_the_version() {
        let xml = impersonating(
            get_folder(&[FolderRef::Distinguished("inbox")]),
            "a&b@x.test",
        );
        assert_in_order(
            &xml,
            &[
                "<soap:Header><t:ExchangeImpersonation><t:ConnectingSID>",
                "<t:PrimarySmtpAddress>a&amp;b@x.test</t:PrimarySmtpAddress>",
                "</t:ExchangeImpersonation>",
                "<t:RequestServerVersion",
                "<soap:Body>",
            ],
        );
    }
    use time::macros::datetime;

    /// The local names of the elements in document order, for order checks.
    fn positions(xml: &str, names: &[&str]) -> Vec<usize> {
        names
            .iter()
            .map(|n| {
                xml.find(n)
                    .unwrap_or_else(|| panic!("{n} missing from {xml}"))
            })
            .collect()
    }

    fn assert_in_order(xml: &str, names: &[&str]) {
        let found = positions(xml, names);
        let mut sorted = found.clone();
        sorted.sort_unstable();
        assert_eq!(found, sorted, "elements out of schema order in {xml}");
    }

    #[test]
    fn create_item_elements_follow_the_schema() {
        let categories = vec!["Red & Blue".to_string()];
        let item = NewItem {
            mime: b"Subject: hi\r\n\r\nbody",
            is_read: true,
            flag: FlagStatus::Flagged,
            categories: &categories,
            received: Some(datetime!(2024-01-02 03:04:05.678 UTC)),
            sent: None,
            source_identity: "src:1<2>",
        };
        let xml = create_items(&FolderId("F1".into()), &[item]);
        assert_in_order(
            &xml,
            &[
                "<soap:Header>",
                r#"<m:CreateItem MessageDisposition="SaveOnly">"#,
                "<m:SavedItemFolderId>",
                r#"<t:FolderId Id="F1"/>"#,
                "<m:Items>",
                "<t:Message>",
                "<t:MimeContent>U3ViamVjdDogaGkNCg0KYm9keQ==</t:MimeContent>",
                "<t:Categories><t:String>Red &amp; Blue</t:String></t:Categories>",
                r#"PropertyTag="0x0E07" PropertyType="Integer"/><t:Value>1</t:Value>"#,
                r#"PropertyTag="0x0E06" PropertyType="SystemTime"/><t:Value>2024-01-02T03:04:05Z</t:Value>"#,
                r#"PropertyTag="0x0039" PropertyType="SystemTime"/><t:Value>2024-01-02T03:04:05Z</t:Value>"#,
                r#"PropertyName="MailmoveSource" PropertyType="String"/><t:Value>src:1&lt;2&gt;</t:Value>"#,
                "<t:Flag><t:FlagStatus>Flagged</t:FlagStatus></t:Flag>",
                "<t:IsRead>true</t:IsRead>",
                "</t:Message>",
            ],
        );
    }

    #[test]
    fn an_unread_unflagged_item_has_message_flags_zero_and_no_flag() {
        let item = NewItem {
            mime: b"x",
            is_read: false,
            flag: FlagStatus::NotFlagged,
            categories: &[],
            received: None,
            sent: Some(datetime!(2020-05-06 07:08:09 +2)),
            source_identity: "s",
        };
        let xml = create_items(&FolderId("F".into()), &[item]);
        assert!(
            xml.contains(r#"PropertyTag="0x0E07" PropertyType="Integer"/><t:Value>0</t:Value>"#)
        );
        assert!(!xml.contains("0x0E06"));
        assert!(xml.contains("<t:Value>2020-05-06T05:08:09Z</t:Value>"));
        assert!(!xml.contains("<t:Flag>"));
        assert!(!xml.contains("<t:Categories>"));
        assert!(xml.contains("<t:IsRead>false</t:IsRead>"));
    }

    #[test]
    fn find_item_elements_follow_the_schema() {
        let xml = find_item(&FolderId("F".into()), 500, 250, None);
        assert_in_order(
            &xml,
            &[
                r#"<m:FindItem Traversal="Shallow">"#,
                "<m:ItemShape>",
                "<t:BaseShape>IdOnly</t:BaseShape>",
                "<t:AdditionalProperties>",
                r#"FieldURI="item:Size""#,
                r#"PropertyTag="0x1090""#,
                r#"PropertyName="MailmoveSource""#,
                "</m:ItemShape>",
                r#"<m:IndexedPageItemView MaxEntriesReturned="250" Offset="500" BasePoint="Beginning"/>"#,
                "<m:ParentFolderIds>",
            ],
        );
        let xml = find_item(&FolderId("F".into()), 0, 10, Some("a\"b"));
        assert_in_order(
            &xml,
            &[
                "</m:ItemShape>",
                "<m:IndexedPageItemView",
                "<m:Restriction><t:IsEqualTo><t:ExtendedFieldURI PropertySetId=",
                r#"<t:FieldURIOrConstant><t:Constant Value="a&quot;b"/></t:FieldURIOrConstant>"#,
                "</m:Restriction>",
                "<m:ParentFolderIds>",
            ],
        );
    }

    #[test]
    fn find_folder_and_get_item_follow_the_schema() {
        let xml = find_folder(
            FolderRef::Distinguished("msgfolderroot"),
            true,
            0,
            100,
            None,
        );
        assert_in_order(
            &xml,
            &[
                r#"<m:FindFolder Traversal="Deep">"#,
                "<m:FolderShape>",
                "<t:BaseShape>IdOnly</t:BaseShape>",
                "<t:AdditionalProperties>",
                "</m:FolderShape>",
                "<m:IndexedPageFolderView",
                r#"<m:ParentFolderIds><t:DistinguishedFolderId Id="msgfolderroot"/>"#,
            ],
        );
        let xml = get_mime(&[ItemId("A".into()), ItemId("B".into())]);
        assert_in_order(
            &xml,
            &[
                "<t:BaseShape>IdOnly</t:BaseShape>",
                "<t:IncludeMimeContent>true</t:IncludeMimeContent>",
                "<t:AdditionalProperties>",
                "</m:ItemShape>",
                r#"<m:ItemIds><t:ItemId Id="A"/><t:ItemId Id="B"/></m:ItemIds>"#,
            ],
        );
        let xml = create_folder(FolderRef::Distinguished("msgfolderroot"), "Äpfel & Birnen");
        assert_in_order(
            &xml,
            &[
                "<m:ParentFolderId>",
                "<m:Folders><t:Folder>",
                "<t:FolderClass>IPF.Note</t:FolderClass>",
                "<t:DisplayName>Äpfel &amp; Birnen</t:DisplayName>",
            ],
        );
        let xml = sync_folder_items(&FolderId("F".into()), Some("H4sI"), 1000);
        assert_in_order(
            &xml,
            &[
                "<m:ItemShape>",
                "<m:SyncFolderId>",
                "<m:SyncState>H4sI</m:SyncState>",
                "<m:MaxChangesReturned>512</m:MaxChangesReturned>",
                "<m:SyncScope>NormalItems</m:SyncScope>",
            ],
        );
    }
}
