//! Reading EWS answers (already parsed into a [`Document`]) into the crate's values:
//! SOAP faults, the per-request response messages, and each operation's payload.

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{Error, ItemError};
use crate::request::{PR_ATTR_HIDDEN, PR_FLAG_STATUS, SOURCE_PROPERTY_NAME, SOURCE_PROPERTY_SET};
use crate::types::{FlagStatus, FolderId, ItemId, ItemSummary, MimeItem, SyncPage};
use crate::xml::{Node, OVERSIZED, take_blob};

/// A SOAP fault in the body, with its back-off hint when it is ErrorServerBusy.
#[derive(Debug)]
pub(crate) struct Fault {
    pub code: String,
    pub message: String,
    pub back_off: Option<Duration>,
}

/// One `*ResponseMessage` element.
#[derive(Debug)]
pub(crate) struct Message<'a> {
    pub code: String,
    pub text: String,
    pub back_off: Option<Duration>,
    pub success: bool,
    pub node: &'a Node,
}

impl Message<'_> {
    pub fn is_busy(&self) -> bool {
        self.code == "ErrorServerBusy"
    }

    pub fn to_error(&self) -> Error {
        Error::Fault {
            code: self.code.clone(),
            message: self.text.clone(),
        }
    }

    pub fn to_item_error(&self) -> ItemError {
        ItemError {
            code: self.code.clone(),
            message: self.text.clone(),
        }
    }
}

fn body(root: &Node) -> Result<&Node, Error> {
    if root.name != "Envelope" {
        return Err(Error::Protocol(format!(
            "expected a SOAP envelope, got <{}>",
            root.name
        )));
    }
    root.child("Body")
        .ok_or_else(|| Error::Protocol("SOAP envelope without a body".into()))
}

/// The SOAP fault in the body, if the answer is one.
pub(crate) fn fault(root: &Node) -> Option<Fault> {
    let fault = body(root).ok()?.child("Fault")?;
    let detail = fault.child("detail");
    let detail_code = detail.and_then(|d| d.child_text("ResponseCode"));
    let code = match detail_code {
        Some(code) => code.trim().to_string(),
        None => {
            let raw = fault.child_text("faultcode").unwrap_or("").trim();
            raw.rsplit(':').next().unwrap_or(raw).to_string()
        }
    };
    let message = fault
        .child_text("faultstring")
        .or_else(|| detail.and_then(|d| d.child_text("Message")))
        .unwrap_or("")
        .trim()
        .to_string();
    let back_off = detail.and_then(back_off);
    Some(Fault {
        code,
        message,
        back_off,
    })
}

/// `MessageXml/Value[@Name="BackOffMilliseconds"]` below `node`.
fn back_off(node: &Node) -> Option<Duration> {
    node.child("MessageXml")?
        .children_named("Value")
        .find(|v| v.attr("Name") == Some("BackOffMilliseconds"))
        .and_then(|v| v.text.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
}

/// The response messages of an operation answer, in request order.
pub(crate) fn messages(root: &Node) -> Result<Vec<Message<'_>>, Error> {
    let body = body(root)?;
    let operation = body
        .children
        .first()
        .ok_or_else(|| Error::Protocol("empty SOAP body".into()))?;
    let list = operation
        .child("ResponseMessages")
        .ok_or_else(|| Error::Protocol(format!("<{}> without ResponseMessages", operation.name)))?;
    Ok(list
        .children
        .iter()
        .map(|node| {
            let class = node.attr("ResponseClass").unwrap_or("Error");
            let code = node
                .child_text("ResponseCode")
                .unwrap_or(if class == "Success" {
                    "NoError"
                } else {
                    "ErrorUnknown"
                })
                .trim()
                .to_string();
            Message {
                success: class == "Success" || code == "NoError",
                text: node.child_text("MessageText").unwrap_or("").trim().into(),
                back_off: back_off(node),
                code,
                node,
            }
        })
        .collect())
}

/// The single response message of a one-target request, as a value or an error.
pub(crate) fn single(root: &Node) -> Result<Message<'_>, Error> {
    let mut list = messages(root)?;
    if list.len() != 1 {
        return Err(Error::Protocol(format!(
            "expected one response message, got {}",
            list.len()
        )));
    }
    let message = list.remove(0);
    if message.success {
        Ok(message)
    } else {
        Err(message.to_error())
    }
}

/// A folder as FindFolder / GetFolder / CreateFolder return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawFolder {
    pub id: FolderId,
    pub parent: Option<FolderId>,
    pub name: String,
    pub class: Option<String>,
    pub total_count: u32,
    /// PidTagAttributeHidden is true.
    pub hidden: bool,
}

/// Folder element names of MS-OXWSFOLD (any of them may appear in a listing).
const FOLDER_ELEMENTS: [&str; 5] = [
    "Folder",
    "CalendarFolder",
    "ContactsFolder",
    "SearchFolder",
    "TasksFolder",
];

pub(crate) fn folders_in(node: &Node) -> Vec<RawFolder> {
    let Some(list) = node.child("Folders") else {
        return Vec::new();
    };
    list.children
        .iter()
        .filter(|c| FOLDER_ELEMENTS.contains(&c.name.as_str()))
        .filter_map(|f| {
            let id = f.child("FolderId")?.attr("Id")?.to_string();
            Some(RawFolder {
                id: FolderId(id),
                parent: f
                    .child("ParentFolderId")
                    .and_then(|p| p.attr("Id"))
                    .map(|id| FolderId(id.to_string())),
                name: f.child_text("DisplayName").unwrap_or("").to_string(),
                class: f
                    .child_text("FolderClass")
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty()),
                total_count: f
                    .child_text("TotalCount")
                    .and_then(|t| t.trim().parse().ok())
                    .unwrap_or(0),
                hidden: ExtendedProperties::of(f).hidden,
            })
        })
        .collect()
}

/// Paging state of a FindFolder / FindItem answer (`RootFolder` attributes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Paging {
    pub next_offset: u32,
    pub last: bool,
}

pub(crate) fn paging(root_folder: &Node) -> Result<Paging, Error> {
    let last = root_folder
        .attr("IncludesLastItemInRange")
        .map(|v| v.trim() == "true")
        .ok_or_else(|| Error::Protocol("RootFolder without IncludesLastItemInRange".into()))?;
    let next_offset = root_folder
        .attr("IndexedPagingOffset")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok(Paging { next_offset, last })
}

/// The items of a FindItem `RootFolder` (any item element: Message, MeetingRequest,
/// PostItem, Item, ...).
pub(crate) fn item_summaries(root_folder: &Node) -> Vec<ItemSummary> {
    let Some(items) = root_folder.child("Items") else {
        return Vec::new();
    };
    items.children.iter().filter_map(item_summary).collect()
}

fn item_summary(item: &Node) -> Option<ItemSummary> {
    let id = item.child("ItemId")?.attr("Id")?.to_string();
    let properties = ExtendedProperties::of(item);
    Some(ItemSummary {
        id: ItemId(id),
        size: item
            .child_text("Size")
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
        received: item.child_text("DateTimeReceived").and_then(parse_time),
        sent: item.child_text("DateTimeSent").and_then(parse_time),
        is_read: is_read(item),
        flag: flag(item, &properties),
        categories: categories(item),
        internet_message_id: item
            .child_text("InternetMessageId")
            .map(|s| s.trim().to_string()),
        subject: item.child_text("Subject").map(str::to_string),
        source_identity: properties.source_identity,
    })
}

pub(crate) fn item_ids(root: &Node, container: &str) -> Vec<ItemId> {
    root.child(container)
        .map(|items| {
            items
                .children
                .iter()
                .filter_map(|item| item.child("ItemId")?.attr("Id"))
                .map(|id| ItemId(id.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// A GetItem item with its MIME content (the bytes are taken out of the document).
pub(crate) fn mime_item(
    blobs: &mut [Vec<u8>],
    message: &Node,
    max_mime: u64,
) -> Result<MimeItem, ItemError> {
    let item = message
        .child("Items")
        .and_then(|items| items.children.first())
        .ok_or_else(|| missing("the answer holds no item"))?;
    let content = item
        .child("MimeContent")
        .ok_or_else(|| missing("Exchange returned no MIME content for this item"))?;
    if let Some(size) = content.attr(OVERSIZED) {
        return Err(ItemError {
            code: crate::error::MIME_TOO_LARGE.into(),
            message: format!(
                "the message is at least {size} bytes, larger than the maximum message size \
                 of {max_mime} bytes; not copied"
            ),
        });
    }
    let mime = take_blob(blobs, content)
        .ok_or_else(|| missing("Exchange returned empty MIME content for this item"))?;
    let properties = ExtendedProperties::of(item);
    Ok(MimeItem {
        mime,
        is_read: is_read(item),
        flag: flag(item, &properties),
        categories: categories(item),
        received: item.child_text("DateTimeReceived").and_then(parse_time),
    })
}

fn missing(message: &str) -> ItemError {
    ItemError {
        code: "ErrorNoMimeContent".into(),
        message: message.into(),
    }
}

pub(crate) fn sync_page(message: &Node) -> Result<SyncPage, Error> {
    let state = message
        .child_text("SyncState")
        .ok_or_else(|| Error::Protocol("SyncFolderItems answer without SyncState".into()))?
        .trim()
        .to_string();
    let last = message
        .child_text("IncludesLastItemInRange")
        .map(|v| v.trim() == "true")
        .unwrap_or(true);
    let mut page = SyncPage {
        state,
        more: !last,
        ..SyncPage::default()
    };
    let Some(changes) = message.child("Changes") else {
        return Ok(page);
    };
    for change in &changes.children {
        let direct_id = change
            .child("ItemId")
            .and_then(|i| i.attr("Id"))
            .map(|id| ItemId(id.to_string()));
        // Create and Update wrap an item element; Delete and ReadFlagChange hold ItemId.
        let wrapped_id = || {
            change
                .children
                .iter()
                .find_map(|item| item.child("ItemId")?.attr("Id"))
                .map(|id| ItemId(id.to_string()))
        };
        match change.name.as_str() {
            "Create" => page.created.extend(wrapped_id()),
            "Update" => page.updated.extend(wrapped_id()),
            "Delete" => page.deleted.extend(direct_id),
            "ReadFlagChange" => {
                if let Some(id) = direct_id {
                    let read = change.child_text("IsRead").map(|v| v.trim() == "true");
                    page.read_changed.push((id, read.unwrap_or(false)));
                }
            }
            _ => {}
        }
    }
    Ok(page)
}

/// The extended properties mailmove asks for.
#[derive(Default)]
struct ExtendedProperties {
    flag_status: Option<i64>,
    hidden: bool,
    source_identity: Option<String>,
}

impl ExtendedProperties {
    fn of(item: &Node) -> ExtendedProperties {
        let mut found = ExtendedProperties::default();
        for property in item.children_named("ExtendedProperty") {
            let Some(uri) = property.child("ExtendedFieldURI") else {
                continue;
            };
            let value = property.child_text("Value").unwrap_or("");
            let tag = uri.attr("PropertyTag").map(normalise_tag);
            if tag.as_deref() == Some(&normalise_tag(PR_FLAG_STATUS)) {
                found.flag_status = value.trim().parse().ok();
            } else if tag.as_deref() == Some(&normalise_tag(PR_ATTR_HIDDEN)) {
                found.hidden = value.trim().eq_ignore_ascii_case("true");
            } else if uri.attr("PropertyName") == Some(SOURCE_PROPERTY_NAME)
                && uri
                    .attr("PropertySetId")
                    .is_some_and(|s| s.eq_ignore_ascii_case(SOURCE_PROPERTY_SET))
            {
                found.source_identity = Some(value.to_string());
            }
        }
        found
    }
}

/// `0x1090`, `0x01090` and `4240` all name the same tag.
fn normalise_tag(tag: &str) -> String {
    let tag = tag.trim();
    let number = match tag.strip_prefix("0x").or_else(|| tag.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => tag.parse().ok(),
    };
    number.map_or_else(|| tag.to_string(), |n| format!("{n:#x}"))
}

fn is_read(item: &Node) -> bool {
    item.child_text("IsRead").map(|v| v.trim() == "true") == Some(true)
}

fn flag(item: &Node, properties: &ExtendedProperties) -> FlagStatus {
    match properties.flag_status {
        Some(value) => FlagStatus::from_property(value),
        None => item
            .child("Flag")
            .and_then(|f| f.child_text("FlagStatus"))
            .map(FlagStatus::from_element)
            .unwrap_or_default(),
    }
}

fn categories(item: &Node) -> Vec<String> {
    item.child("Categories")
        .map(|c| c.children_named("String").map(|s| s.text.clone()).collect())
        .unwrap_or_default()
}

/// xs:dateTime as Exchange writes it; without a zone it is taken as UTC.
pub(crate) fn parse_time(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(&format!("{text}Z"), &Rfc3339))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{Document, read_document};
    use time::macros::datetime;

    const ENVELOPE_START: &str = concat!(
        r#"<?xml version="1.0" encoding="utf-8"?>"#,
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">"#,
        r#"<s:Header><h:ServerVersionInfo MajorVersion="15" MinorVersion="2" MajorBuildNumber="1544" MinorBuildNumber="4" xmlns:h="http://schemas.microsoft.com/exchange/services/2006/types"/></s:Header>"#,
        r#"<s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">"#
    );

    async fn doc(body: &str) -> Document {
        let xml = format!("{ENVELOPE_START}{body}</s:Body></s:Envelope>");
        read_document(xml.as_bytes()).await.unwrap()
    }

    #[tokio::test]
    async fn find_folder_page() {
        let doc = doc(concat!(
            r#"<m:FindFolderResponse xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">"#,
            r#"<m:ResponseMessages><m:FindFolderResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>"#,
            r#"<m:RootFolder IndexedPagingOffset="2" TotalItemsInView="5" IncludesLastItemInRange="false"><t:Folders>"#,
            r#"<t:Folder><t:FolderId Id="AAMk1" ChangeKey="AQ"/><t:ParentFolderId Id="ROOT" ChangeKey="AQ"/><t:FolderClass>IPF.Note</t:FolderClass><t:DisplayName>Inbox</t:DisplayName><t:TotalCount>12</t:TotalCount></t:Folder>"#,
            r#"<t:Folder><t:FolderId Id="AAMk3"/><t:ParentFolderId Id="ROOT"/><t:FolderClass>IPF.Note</t:FolderClass><t:DisplayName>Sync Issues</t:DisplayName><t:TotalCount>0</t:TotalCount><t:ExtendedProperty><t:ExtendedFieldURI PropertyTag="0x10f4" PropertyType="Boolean"/><t:Value>true</t:Value></t:ExtendedProperty></t:Folder>"#,
            r#"<t:CalendarFolder><t:FolderId Id="AAMk2"/><t:ParentFolderId Id="ROOT"/><t:FolderClass>IPF.Appointment</t:FolderClass><t:DisplayName>Calendar</t:DisplayName><t:TotalCount>3</t:TotalCount></t:CalendarFolder>"#,
            r#"</t:Folders></m:RootFolder></m:FindFolderResponseMessage></m:ResponseMessages></m:FindFolderResponse>"#
        ))
        .await;
        let message = single(&doc.root).unwrap();
        let root = message.node.child("RootFolder").unwrap();
        assert_eq!(
            paging(root).unwrap(),
            Paging {
                next_offset: 2,
                last: false
            }
        );
        let folders = folders_in(root);
        assert_eq!(folders.len(), 3);
        assert!(folders[1].hidden);
        assert_eq!(
            folders[0],
            RawFolder {
                id: FolderId("AAMk1".into()),
                parent: Some(FolderId("ROOT".into())),
                name: "Inbox".into(),
                class: Some("IPF.Note".into()),
                total_count: 12,
                hidden: false,
            }
        );
        assert_eq!(folders[2].class.as_deref(), Some("IPF.Appointment"));
    }

    #[tokio::test]
    async fn find_item_page_with_properties() {
        let doc = doc(&format!(
            concat!(
                r#"<m:FindItemResponse xmlns:m="m" xmlns:t="t"><m:ResponseMessages><m:FindItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>"#,
                r#"<m:RootFolder IndexedPagingOffset="2" TotalItemsInView="2" IncludesLastItemInRange="true"><t:Items>"#,
                r#"<t:Message><t:ItemId Id="I1" ChangeKey="CQ"/><t:Subject>Hello &amp; bye</t:Subject><t:DateTimeReceived>2024-03-04T05:06:07Z</t:DateTimeReceived><t:Size>2048</t:Size>"#,
                r#"<t:Categories><t:String>Red</t:String><t:String>Blue</t:String></t:Categories><t:DateTimeSent>2024-03-04T05:00:00Z</t:DateTimeSent>"#,
                r#"<t:ExtendedProperty><t:ExtendedFieldURI PropertyTag="0x1090" PropertyType="Integer"/><t:Value>2</t:Value></t:ExtendedProperty>"#,
                r#"<t:ExtendedProperty><t:ExtendedFieldURI PropertySetId="{set}" PropertyName="MailmoveSource" PropertyType="String"/><t:Value>imap:1:42</t:Value></t:ExtendedProperty>"#,
                r#"<t:InternetMessageId>&lt;a@b&gt;</t:InternetMessageId><t:IsRead>true</t:IsRead></t:Message>"#,
                r#"<t:MeetingRequest><t:ItemId Id="I2"/><t:Size>10</t:Size><t:IsRead>false</t:IsRead></t:MeetingRequest>"#,
                r#"</t:Items></m:RootFolder></m:FindItemResponseMessage></m:ResponseMessages></m:FindItemResponse>"#
            ),
            set = SOURCE_PROPERTY_SET.to_uppercase()
        ))
        .await;
        let message = single(&doc.root).unwrap();
        let root = message.node.child("RootFolder").unwrap();
        assert!(paging(root).unwrap().last);
        let items = item_summaries(root);
        assert_eq!(
            items[0],
            ItemSummary {
                id: ItemId("I1".into()),
                size: 2048,
                received: Some(datetime!(2024-03-04 05:06:07 UTC)),
                sent: Some(datetime!(2024-03-04 05:00:00 UTC)),
                is_read: true,
                flag: FlagStatus::Flagged,
                categories: vec!["Red".into(), "Blue".into()],
                internet_message_id: Some("<a@b>".into()),
                subject: Some("Hello & bye".into()),
                source_identity: Some("imap:1:42".into()),
            }
        );
        assert_eq!(items[1].id, ItemId("I2".into()));
        assert!(!items[1].is_read);
        assert_eq!(items[1].flag, FlagStatus::NotFlagged);
        assert_eq!(items[1].source_identity, None);
    }

    #[tokio::test]
    async fn get_item_with_mime_and_a_missing_item() {
        let mut doc = doc(concat!(
            r#"<m:GetItemResponse xmlns:m="m" xmlns:t="t"><m:ResponseMessages>"#,
            r#"<m:GetItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:Items><t:Message>"#,
            r#"<t:MimeContent CharacterSet="UTF-8">U3ViamVjdDogaGkNCg0KYm9keQ0K</t:MimeContent><t:ItemId Id="I1"/>"#,
            r#"<t:DateTimeReceived>2024-03-04T05:06:07Z</t:DateTimeReceived><t:Categories><t:String>Red</t:String></t:Categories>"#,
            r#"<t:ExtendedProperty><t:ExtendedFieldURI PropertyTag="0x1090" PropertyType="Integer"/><t:Value>1</t:Value></t:ExtendedProperty>"#,
            r#"<t:IsRead>true</t:IsRead></t:Message></m:Items></m:GetItemResponseMessage>"#,
            r#"<m:GetItemResponseMessage ResponseClass="Error"><m:MessageText>The specified object was not found in the store.</m:MessageText><m:ResponseCode>ErrorItemNotFound</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey><m:Items/></m:GetItemResponseMessage>"#,
            r#"</m:ResponseMessages></m:GetItemResponse>"#
        ))
        .await;
        let list = messages(&doc.root).unwrap();
        assert!(list[0].success);
        let item = mime_item(&mut doc.blobs, list[0].node, 1 << 20).unwrap();
        assert_eq!(item.mime, b"Subject: hi\r\n\r\nbody\r\n");
        assert!(item.is_read);
        assert_eq!(item.flag, FlagStatus::Complete);
        assert_eq!(item.categories, vec!["Red".to_string()]);
        assert_eq!(item.received, Some(datetime!(2024-03-04 05:06:07 UTC)));
        assert!(!list[1].success);
        assert_eq!(list[1].to_item_error().code, "ErrorItemNotFound");
    }

    #[tokio::test]
    async fn create_item_per_item_errors() {
        let doc = doc(concat!(
            r#"<m:CreateItemResponse xmlns:m="m" xmlns:t="t"><m:ResponseMessages>"#,
            r#"<m:CreateItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:Items><t:Message><t:ItemId Id="NEW1" ChangeKey="CQ"/></t:Message></m:Items></m:CreateItemResponseMessage>"#,
            r#"<m:CreateItemResponseMessage ResponseClass="Error"><m:MessageText>The message exceeds the maximum supported size.</m:MessageText><m:ResponseCode>ErrorMessageSizeExceeded</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey><m:Items/></m:CreateItemResponseMessage>"#,
            r#"</m:ResponseMessages></m:CreateItemResponse>"#
        ))
        .await;
        let list = messages(&doc.root).unwrap();
        assert_eq!(list.len(), 2);
        assert!(list[0].success);
        assert_eq!(item_ids(list[0].node, "Items"), vec![ItemId("NEW1".into())]);
        assert!(!list[1].success);
        let error = list[1].to_item_error();
        assert_eq!(error.code, "ErrorMessageSizeExceeded");
        assert!(error.to_string().contains("larger than Exchange accepts"));
    }

    #[tokio::test]
    async fn server_busy_fault_carries_the_back_off() {
        let doc = doc(concat!(
            r#"<s:Fault><faultcode xmlns:a="http://schemas.microsoft.com/exchange/services/2006/types">a:ErrorServerBusy</faultcode>"#,
            r#"<faultstring xml:lang="en-US">The server cannot service this request right now. Try again later.</faultstring>"#,
            r#"<detail><e:ResponseCode xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">ErrorServerBusy</e:ResponseCode>"#,
            r#"<e:Message xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">The server cannot service this request right now. Try again later.</e:Message>"#,
            r#"<t:MessageXml xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><t:Value Name="BackOffMilliseconds">29000</t:Value></t:MessageXml></detail></s:Fault>"#
        ))
        .await;
        let fault = fault(&doc.root).unwrap();
        assert_eq!(fault.code, "ErrorServerBusy");
        assert_eq!(fault.back_off, Some(Duration::from_millis(29000)));
        assert!(fault.message.starts_with("The server cannot service"));
    }

    #[tokio::test]
    async fn a_response_message_can_be_busy_too() {
        let doc = doc(concat!(
            r#"<m:FindItemResponse xmlns:m="m" xmlns:t="t"><m:ResponseMessages><m:FindItemResponseMessage ResponseClass="Error">"#,
            r#"<m:MessageText>The server cannot service this request right now. Try again later.</m:MessageText><m:ResponseCode>ErrorServerBusy</m:ResponseCode>"#,
            r#"<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey><m:MessageXml><t:Value Name="BackOffMilliseconds">500</t:Value></m:MessageXml>"#,
            r#"</m:FindItemResponseMessage></m:ResponseMessages></m:FindItemResponse>"#
        ))
        .await;
        let list = messages(&doc.root).unwrap();
        assert!(list[0].is_busy());
        assert_eq!(list[0].back_off, Some(Duration::from_millis(500)));
        assert!(
            matches!(single(&doc.root), Err(Error::Fault { code, .. }) if code == "ErrorServerBusy")
        );
    }

    #[tokio::test]
    async fn sync_folder_items_changes() {
        let doc = doc(concat!(
            r#"<m:SyncFolderItemsResponse xmlns:m="m" xmlns:t="t"><m:ResponseMessages><m:SyncFolderItemsResponseMessage ResponseClass="Success">"#,
            r#"<m:ResponseCode>NoError</m:ResponseCode><m:SyncState>H4sIAAA=</m:SyncState><m:IncludesLastItemInRange>false</m:IncludesLastItemInRange><m:Changes>"#,
            r#"<t:Create><t:Message><t:ItemId Id="C1" ChangeKey="x"/></t:Message></t:Create>"#,
            r#"<t:Update><t:Message><t:ItemId Id="U1"/></t:Message></t:Update>"#,
            r#"<t:Delete><t:ItemId Id="D1"/></t:Delete>"#,
            r#"<t:ReadFlagChange><t:ItemId Id="R1"/><t:IsRead>true</t:IsRead></t:ReadFlagChange>"#,
            r#"</m:Changes></m:SyncFolderItemsResponseMessage></m:ResponseMessages></m:SyncFolderItemsResponse>"#
        ))
        .await;
        let page = sync_page(single(&doc.root).unwrap().node).unwrap();
        assert_eq!(
            page,
            SyncPage {
                created: vec![ItemId("C1".into())],
                updated: vec![ItemId("U1".into())],
                deleted: vec![ItemId("D1".into())],
                read_changed: vec![(ItemId("R1".into()), true)],
                state: "H4sIAAA=".into(),
                more: true,
            }
        );
    }

    #[test]
    fn times_and_tags() {
        assert_eq!(
            parse_time("2024-01-02T03:04:05Z"),
            Some(datetime!(2024-01-02 03:04:05 UTC))
        );
        assert_eq!(
            parse_time("2024-01-02T03:04:05"),
            Some(datetime!(2024-01-02 03:04:05 UTC))
        );
        assert_eq!(
            parse_time("2024-01-02T03:04:05.5+01:00"),
            Some(datetime!(2024-01-02 02:04:05.5 UTC))
        );
        assert_eq!(normalise_tag("0x01090"), normalise_tag("4240"));
    }
}
