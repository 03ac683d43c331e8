//! The EWS operations: read a SOAP request (leniently: children are found by name, in
//! any order), act on the mailbox, answer with messages.xsd shapes in schema order, one
//! response message per requested object, and SOAP faults where Exchange sends them.

use std::cmp::Ordering;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper::StatusCode;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::store::{
    self, CreateFolderError, ExtendedValue, Item, MSGFLAG_READ, MSGFLAG_UNSENT, Mailbox, PropKey,
    Store,
};
use super::xml::{Element, escape};
use super::{FlagStatus, Shared};

pub(crate) const NS_SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub(crate) const NS_MESSAGES: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
pub(crate) const NS_TYPES: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
const NS_ERRORS: &str = "http://schemas.microsoft.com/exchange/services/2006/errors";

/// What a build of Exchange 2016 CU23 says about itself in every response header.
const SERVER_VERSION_INFO: &str = r#"<h:ServerVersionInfo MajorVersion="15" MinorVersion="1" MajorBuildNumber="2507" MinorBuildNumber="6" Version="V2017_07_11" xmlns:h="http://schemas.microsoft.com/exchange/services/2006/types" xmlns="http://schemas.microsoft.com/exchange/services/2006/types" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/>"#;

/// SyncFolderItems returns at most this many changes, whatever is asked.
const MAX_SYNC_CHANGES: usize = 512;

/// An HTTP status and a body, for faults.
pub(crate) type Fault = (StatusCode, String);

/// The operation a request names: the first element of the SOAP body.
pub(crate) fn operation_name(envelope: &Element) -> Option<&str> {
    envelope
        .child("Body")
        .and_then(|body| body.children.first())
        .map(|op| op.name.as_str())
}

/// Answers one SOAP request for an authenticated user.
pub(crate) fn handle(shared: &Shared, user: &str, envelope: &Element) -> Fault {
    if envelope.name != "Envelope" {
        return schema_fault("The root element is not a SOAP Envelope.");
    }
    if let Some(version) = envelope
        .path(&["Header", "RequestServerVersion"])
        .and_then(|v| v.attr("Version"))
        && !(version.starts_with("Exchange20") || version.starts_with("V20"))
    {
        return fault(
            "ErrorInvalidServerVersion",
            "The specified server version is invalid.",
            "",
        );
    }
    let Some(operation) = envelope.child("Body").and_then(|b| b.children.first()) else {
        return schema_fault("The SOAP Body is empty.");
    };
    let max_message_size = shared.faults().max_message_size;
    let mut store = shared.store();
    let user = match acting_user(&store, user, envelope) {
        Ok(user) => user,
        Err(fault) => return fault,
    };
    let mut ctx = Ctx {
        store: &mut store,
        user,
        max_message_size,
    };
    let name = operation.name.as_str();
    let result = match name {
        "GetFolder" => ctx.get_folder(operation),
        "FindFolder" => ctx.find_folder(operation),
        "CreateFolder" => ctx.create_folder(operation),
        "FindItem" => ctx.find_item(operation),
        "GetItem" => ctx.get_item(operation),
        "CreateItem" => ctx.create_item(operation),
        "UpdateItem" => ctx.update_item(operation),
        "DeleteItem" => ctx.delete_item(operation),
        "SyncFolderItems" => ctx.sync_folder_items(operation),
        "SyncFolderHierarchy" => ctx.sync_folder_hierarchy(operation),
        "ResolveNames" => ctx.resolve_names(operation),
        "ConvertId" => ctx.convert_id(operation),
        _ => Err(schema_fault(&format!(
            "The element 'Body' has an invalid child element '{name}' for this server."
        ))),
    };
    match result {
        Ok(messages) => (StatusCode::OK, envelope_with(name, &messages)),
        Err(fault) => fault,
    }
}

/// Whom a request acts for: the authenticated user, or the mailbox its
/// `ExchangeImpersonation` header names, if the user holds the ApplicationImpersonation
/// role (Microsoft Learn, "ExchangeImpersonation", "Impersonation and EWS in
/// Exchange"): `ErrorImpersonateUserDenied` otherwise, `ErrorNonExistentMailbox` for
/// an address with no mailbox.
fn acting_user(store: &Store, user: &str, envelope: &Element) -> Result<String, Fault> {
    let user = user.to_lowercase();
    let Some(sid) = envelope.path(&["Header", "ExchangeImpersonation", "ConnectingSID"]) else {
        return Ok(user);
    };
    let Some(target) = sid
        .child_text("PrimarySmtpAddress")
        .or_else(|| sid.child_text("SmtpAddress"))
        .map(|t| t.trim().to_lowercase())
    else {
        return Err(schema_fault(
            "ConnectingSID names no PrimarySmtpAddress or SmtpAddress.",
        ));
    };
    if target != user && !store.impersonators.contains(&user) {
        return Err(fault(
            "ErrorImpersonateUserDenied",
            "The account does not have permission to impersonate the requested user.",
            "",
        ));
    }
    if !store.users.contains_key(&target) {
        return Err(fault(
            "ErrorNonExistentMailbox",
            "The SMTP address has no mailbox associated with it.",
            "",
        ));
    }
    Ok(target)
}

fn envelope_with(operation: &str, messages: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{NS_SOAP}"><s:Header>{SERVER_VERSION_INFO}</s:Header><s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema"><m:{operation}Response xmlns:m="{NS_MESSAGES}" xmlns:t="{NS_TYPES}"><m:ResponseMessages>{messages}</m:ResponseMessages></m:{operation}Response></s:Body></s:Envelope>"#
    )
}

/// A SOAP fault as Exchange sends it: HTTP 500, the code in the types namespace, and a
/// detail with ResponseCode, Message and MessageXml.
pub(crate) fn fault(code: &str, text: &str, message_xml: &str) -> Fault {
    let body = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{NS_SOAP}"><s:Body><s:Fault><faultcode xmlns:a="{NS_TYPES}">a:{code}</faultcode><faultstring xml:lang="en-US">{text}</faultstring><detail><e:ResponseCode xmlns:e="{NS_ERRORS}">{code}</e:ResponseCode><e:Message xmlns:e="{NS_ERRORS}">{text}</e:Message>{message_xml}</detail></s:Fault></s:Body></s:Envelope>"#,
        text = escape(text),
    );
    (StatusCode::INTERNAL_SERVER_ERROR, body)
}

/// ErrorSchemaValidation, the fault for a request this server cannot read.
pub(crate) fn schema_fault(violation: &str) -> Fault {
    fault(
        "ErrorSchemaValidation",
        "The request failed schema validation.",
        &format!(
            r#"<t:MessageXml xmlns:t="{NS_TYPES}"><t:LineNumber>1</t:LineNumber><t:LinePosition>1</t:LinePosition><t:Violation>{}</t:Violation></t:MessageXml>"#,
            escape(violation)
        ),
    )
}

/// The ErrorServerBusy fault with its back-off hint.
pub(crate) fn server_busy(backoff_ms: u64) -> String {
    fault(
        "ErrorServerBusy",
        "The server cannot service this request right now. Try again later.",
        &format!(
            r#"<t:MessageXml xmlns:t="{NS_TYPES}"><t:Value Name="BackOffMilliseconds">{backoff_ms}</t:Value></t:MessageXml>"#
        ),
    )
    .1
}

/// The MessageText Exchange gives with a response code.
fn message_text(code: &str) -> &'static str {
    match code {
        "ErrorItemNotFound" => "The specified object was not found in the store.",
        "ErrorFolderNotFound" => "The specified folder could not be found in the store.",
        "ErrorFolderExists" => "A folder with the specified name already exists.",
        "ErrorInvalidIdMalformed" => "Id is malformed.",
        "ErrorMessageSizeExceeded" => "The message exceeds the maximum supported size.",
        "ErrorInvalidSyncStateData" => {
            "Synchronization state data is corrupt or otherwise invalid."
        }
        "ErrorInvalidExtendedProperty" => "The extended property attribute combination is invalid.",
        "ErrorInvalidExtendedPropertyValue" => {
            "The extended property value is inconsistent with its type."
        }
        "ErrorInvalidPropertyRequest" => "The property can't be used in this request.",
        "ErrorInvalidPropertySet" => "Set action is invalid for property.",
        "ErrorMimeContentInvalidBase64String" => "The MIME content is not a valid Base64 string.",
        "ErrorMessageDispositionRequired" => {
            "MessageDisposition attribute is required for Message items."
        }
        "ErrorInvalidOperation" => "The operation is not valid here.",
        "ErrorObjectTypeChanged" => "This item type cannot be used in this operation.",
        "ErrorNonExistentMailbox" => "The SMTP address has no mailbox associated with it.",
        "ErrorAccessDenied" => "Access is denied. Check credentials and try again.",
        "ErrorInvalidFolderId" => "The folder id is invalid.",
        "ErrorNameResolutionNoResults" => "No results were found.",
        "ErrorInvalidRequest" => "The request is invalid.",
        _ => "The request failed.",
    }
}

fn success(operation: &str, inner: &str) -> String {
    format!(
        r#"<m:{operation}ResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>{inner}</m:{operation}ResponseMessage>"#
    )
}

fn error(operation: &str, code: &str, message_xml: &str, empty_containers: &str) -> String {
    let message_xml = if message_xml.is_empty() {
        String::new()
    } else {
        format!("<m:MessageXml>{message_xml}</m:MessageXml>")
    };
    format!(
        r#"<m:{operation}ResponseMessage ResponseClass="Error"><m:MessageText>{}</m:MessageText><m:ResponseCode>{code}</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>{message_xml}{empty_containers}</m:{operation}ResponseMessage>"#,
        message_text(code)
    )
}

/// The request's view of the server: the store and the authenticated mailbox.
struct Ctx<'a> {
    store: &'a mut Store,
    user: String,
    max_message_size: Option<usize>,
}

type Code = &'static str;

impl Ctx<'_> {
    fn mailbox(&mut self) -> &mut Mailbox {
        // The user was found when the request was authenticated and users are never removed.
        self.store
            .users
            .get_mut(&self.user)
            .expect("the authenticated user exists")
    }

    /// The folder a FolderId or DistinguishedFolderId names.
    fn resolve_folder(&mut self, target: &Element) -> Result<usize, Code> {
        match target.name.as_str() {
            "FolderId" => {
                let id = target.attr("Id").unwrap_or_default();
                match self.mailbox().folder_by_id(id) {
                    Some(ix) => Ok(ix),
                    None if store::is_well_formed_id(id) => Err("ErrorFolderNotFound"),
                    None => Err("ErrorInvalidIdMalformed"),
                }
            }
            "DistinguishedFolderId" => {
                if let Some(address) = target.path(&["Mailbox", "EmailAddress"]) {
                    let address = address.text.trim().to_lowercase();
                    if !address.is_empty() && address != self.user {
                        return Err(if self.store.users.contains_key(&address) {
                            "ErrorAccessDenied"
                        } else {
                            "ErrorNonExistentMailbox"
                        });
                    }
                }
                let id = target.attr("Id").unwrap_or_default();
                self.mailbox()
                    .distinguished(id)
                    .ok_or("ErrorFolderNotFound")
            }
            _ => Err("ErrorInvalidFolderId"),
        }
    }

    fn get_folder(&mut self, op: &Element) -> Result<String, Fault> {
        let shape = FolderShape::parse(op.child("FolderShape"));
        let ids = op
            .child("FolderIds")
            .ok_or_else(|| schema_fault("GetFolder needs FolderIds."))?;
        let mut out = String::new();
        for target in &ids.children {
            match self.resolve_folder(target) {
                Ok(ix) => {
                    let folder = folder_xml(self.mailbox(), ix, &shape);
                    out.push_str(&success(
                        "GetFolder",
                        &format!("<m:Folders>{folder}</m:Folders>"),
                    ));
                }
                Err(code) => out.push_str(&error("GetFolder", code, "", "<m:Folders/>")),
            }
        }
        Ok(out)
    }

    fn find_folder(&mut self, op: &Element) -> Result<String, Fault> {
        let shape = FolderShape::parse(op.child("FolderShape"));
        let deep = op.attr("Traversal") == Some("Deep");
        let page = Page::parse(op.child("IndexedPageFolderView"));
        let restriction = op.child("Restriction").and_then(|r| r.children.first());
        let parents = op
            .child("ParentFolderIds")
            .ok_or_else(|| schema_fault("FindFolder needs ParentFolderIds."))?;
        let mut out = String::new();
        for target in &parents.children {
            let parent = match self.resolve_folder(target) {
                Ok(ix) => ix,
                Err(code) => {
                    out.push_str(&error("FindFolder", code, "", ""));
                    continue;
                }
            };
            let mailbox = self.mailbox();
            let mut found = if deep {
                mailbox.descendants(parent)
            } else {
                mailbox.children(parent)
            };
            if let Some(restriction) = restriction {
                found.retain(|&ix| evaluate(restriction, &|path| folder_value(mailbox, ix, path)));
            }
            let (shown, paging) = page.apply(found);
            let folders: String = shown
                .iter()
                .map(|&ix| folder_xml(mailbox, ix, &shape))
                .collect();
            out.push_str(&success(
                "FindFolder",
                &format!(
                    r#"<m:RootFolder {paging}><t:Folders>{folders}</t:Folders></m:RootFolder>"#
                ),
            ));
        }
        Ok(out)
    }

    fn create_folder(&mut self, op: &Element) -> Result<String, Fault> {
        let parent_target = op
            .child("ParentFolderId")
            .and_then(|p| p.children.first())
            .ok_or_else(|| schema_fault("CreateFolder needs ParentFolderId."))?;
        let folders = op
            .child("Folders")
            .ok_or_else(|| schema_fault("CreateFolder needs Folders."))?;
        let parent = self.resolve_folder(parent_target);
        let mut out = String::new();
        for folder in &folders.children {
            let parent = match parent {
                Ok(ix) => ix,
                Err(code) => {
                    out.push_str(&error("CreateFolder", code, "", "<m:Folders/>"));
                    continue;
                }
            };
            let class = folder
                .child_text("FolderClass")
                .map(str::to_string)
                .or_else(|| match folder.name.as_str() {
                    "CalendarFolder" => Some("IPF.Appointment".to_string()),
                    "ContactsFolder" => Some("IPF.Contact".to_string()),
                    "TasksFolder" => Some("IPF.Task".to_string()),
                    _ => None,
                });
            let name = folder
                .child_text("DisplayName")
                .unwrap_or_default()
                .to_string();
            let key = self.store.key();
            let mailbox = self.mailbox();
            match mailbox.create_folder(key, parent, &name, class) {
                Ok(ix) => {
                    let element = folder_element(mailbox.folders[ix].class.as_deref());
                    let id = folder_id_xml("FolderId", mailbox, ix);
                    out.push_str(&success(
                        "CreateFolder",
                        &format!("<m:Folders><t:{element}>{id}</t:{element}></m:Folders>"),
                    ));
                }
                Err(CreateFolderError::Exists) => out.push_str(&error(
                    "CreateFolder",
                    "ErrorFolderExists",
                    "",
                    "<m:Folders/>",
                )),
                Err(CreateFolderError::InvalidName) => out.push_str(&error(
                    "CreateFolder",
                    "ErrorInvalidOperation",
                    "",
                    "<m:Folders/>",
                )),
            }
        }
        Ok(out)
    }

    fn find_item(&mut self, op: &Element) -> Result<String, Fault> {
        let shape = ItemShape::parse(op.child("ItemShape"))?;
        let page = Page::parse(op.child("IndexedPageItemView"));
        let restriction = op.child("Restriction").and_then(|r| r.children.first());
        let sort = op.child("SortOrder");
        let associated = op.attr("Traversal") == Some("Associated");
        let parents = op
            .child("ParentFolderIds")
            .ok_or_else(|| schema_fault("FindItem needs ParentFolderIds."))?;
        let mut out = String::new();
        for target in &parents.children {
            let folder = match self.resolve_folder(target) {
                Ok(ix) => ix,
                Err(code) => {
                    out.push_str(&error("FindItem", code, "", ""));
                    continue;
                }
            };
            if shape.include_mime {
                // Exchange refuses MimeContent in FindItem; clients must GetItem it.
                out.push_str(&error(
                    "FindItem",
                    "ErrorInvalidPropertyRequest",
                    r#"<t:FieldURI FieldURI="item:MimeContent"/>"#,
                    "",
                ));
                continue;
            }
            let mailbox = self.mailbox();
            let mut keys = if associated {
                Vec::new()
            } else {
                mailbox.items_in(folder)
            };
            if let Some(restriction) = restriction {
                keys.retain(|key| {
                    let item = &mailbox.items[key];
                    evaluate(restriction, &|path| item_value(item, path))
                });
            }
            sort_items(mailbox, &mut keys, sort);
            let (shown, paging) = page.apply(keys);
            let items: String = shown
                .iter()
                .map(|key| item_xml(mailbox, &mailbox.items[key], &shape))
                .collect();
            out.push_str(&success(
                "FindItem",
                &format!(r#"<m:RootFolder {paging}><t:Items>{items}</t:Items></m:RootFolder>"#),
            ));
        }
        Ok(out)
    }

    fn get_item(&mut self, op: &Element) -> Result<String, Fault> {
        let shape = ItemShape::parse(op.child("ItemShape"))?;
        let ids = op
            .child("ItemIds")
            .ok_or_else(|| schema_fault("GetItem needs ItemIds."))?;
        let mailbox = self.mailbox();
        let mut out = String::new();
        for id in &ids.children {
            match item_target(mailbox, id) {
                Ok(key) => {
                    let item = item_xml(mailbox, &mailbox.items[&key], &shape);
                    out.push_str(&success("GetItem", &format!("<m:Items>{item}</m:Items>")));
                }
                Err(code) => out.push_str(&error("GetItem", code, "", "<m:Items/>")),
            }
        }
        Ok(out)
    }

    fn create_item(&mut self, op: &Element) -> Result<String, Fault> {
        let disposition = op.attr("MessageDisposition");
        let items = op
            .child("Items")
            .ok_or_else(|| schema_fault("CreateItem needs Items."))?;
        let folder = match op
            .child("SavedItemFolderId")
            .and_then(|s| s.children.first())
        {
            Some(target) => self.resolve_folder(target),
            None => self
                .mailbox()
                .distinguished("drafts")
                .ok_or("ErrorFolderNotFound"),
        };
        let mut out = String::new();
        for element in &items.children {
            let result = match (&folder, disposition) {
                (Err(code), _) => Err((*code, String::new())),
                (_, None) => Err(("ErrorMessageDispositionRequired", String::new())),
                (_, Some(d)) if d != "SaveOnly" => Err(("ErrorInvalidOperation", String::new())),
                (Ok(folder), Some(_)) => self.create_message(*folder, element),
            };
            match result {
                Ok(key) => {
                    let mailbox = self.mailbox();
                    let id = item_id_xml(mailbox, &mailbox.items[&key]);
                    out.push_str(&success(
                        "CreateItem",
                        &format!("<m:Items><t:Message>{id}</t:Message></m:Items>"),
                    ));
                }
                Err((code, message_xml)) => {
                    out.push_str(&error("CreateItem", code, &message_xml, "<m:Items/>"))
                }
            }
        }
        Ok(out)
    }

    /// One Message of a CreateItem with SaveOnly.
    fn create_message(&mut self, folder: usize, element: &Element) -> Result<u64, (Code, String)> {
        if element.name != "Message" && element.name != "Item" {
            return Err(("ErrorObjectTypeChanged", String::new()));
        }
        let mime = match element.child("MimeContent") {
            Some(content) => STANDARD
                .decode(content.text.split_whitespace().collect::<String>())
                .map_err(|_| ("ErrorMimeContentInvalidBase64String", String::new()))?,
            None => synthesize_mime(element),
        };
        if let Some(max) = self.max_message_size
            && mime.len() > max
        {
            return Err(("ErrorMessageSizeExceeded", String::new()));
        }

        let summary = store::summarize_mime(&mime);
        let now = OffsetDateTime::now_utc();
        let mut message_flags = MSGFLAG_READ | MSGFLAG_UNSENT;
        let mut received = now;
        let mut sent = summary.date;
        let mut extended = Vec::new();
        for property in element.children_named("ExtendedProperty") {
            let value = parse_extended_property(property)?;
            match (&value.key, value.values.first()) {
                (PropKey::Tag(0x0E07), Some(v)) => message_flags = v.parse().unwrap_or(0),
                (PropKey::Tag(0x0E06), Some(v)) => received = parse_time(v).unwrap_or(now),
                (PropKey::Tag(0x0039), Some(v)) => sent = parse_time(v),
                _ => extended.push(value),
            }
        }
        let flag = match element.path(&["Flag", "FlagStatus"]) {
            Some(status) => FlagStatus::parse(&status.text)
                .ok_or(("ErrorInvalidPropertySet", field_uri_xml("item:Flag")))?,
            None => FlagStatus::NotFlagged,
        };
        let categories = element
            .child("Categories")
            .map(|c| {
                c.children
                    .iter()
                    .map(|s| s.text.trim().to_string())
                    .collect()
            })
            .unwrap_or_default();

        let key = self.store.key();
        let mailbox = self.mailbox();
        let change = mailbox.bump();
        let mut item = Item {
            key,
            folder,
            item_class: element
                .child_text("ItemClass")
                .unwrap_or("IPM.Note")
                .to_string(),
            subject: element
                .child_text("Subject")
                .map(str::to_string)
                .or(summary.subject),
            message_id: element
                .child_text("InternetMessageId")
                .map(str::to_string)
                .or(summary.message_id),
            from: summary.from,
            mime,
            sent,
            received,
            created: now,
            modified: now,
            message_flags,
            flag,
            categories,
            extended: Vec::new(),
            created_change: change,
            content_change: change,
            change,
        };
        for value in extended {
            item.set_extended(value);
        }
        if let Some(read) = element.child_text("IsRead").and_then(parse_bool) {
            item.set_read(read);
        }
        mailbox.items.insert(key, item);
        Ok(key)
    }

    fn update_item(&mut self, op: &Element) -> Result<String, Fault> {
        let changes = op
            .child("ItemChanges")
            .ok_or_else(|| schema_fault("UpdateItem needs ItemChanges."))?;
        let mut out = String::new();
        for change in changes.children_named("ItemChange") {
            let mailbox = self.mailbox();
            let key = match change
                .children
                .iter()
                .find(|c| c.name == "ItemId")
                .ok_or("ErrorInvalidIdMalformed")
                .and_then(|id| item_target(mailbox, id))
            {
                Ok(key) => key,
                Err(code) => {
                    out.push_str(&error("UpdateItem", code, "", "<m:Items/>"));
                    continue;
                }
            };
            match apply_updates(mailbox, key, change.child("Updates")) {
                Ok(()) => {
                    let id = item_id_xml(mailbox, &mailbox.items[&key]);
                    out.push_str(&success(
                        "UpdateItem",
                        &format!(
                            "<m:Items><t:Message>{id}</t:Message></m:Items><m:ConflictResults><t:Count>0</t:Count></m:ConflictResults>"
                        ),
                    ));
                }
                Err((code, message_xml)) => {
                    out.push_str(&error("UpdateItem", code, &message_xml, "<m:Items/>"))
                }
            }
        }
        Ok(out)
    }

    fn delete_item(&mut self, op: &Element) -> Result<String, Fault> {
        let ids = op
            .child("ItemIds")
            .ok_or_else(|| schema_fault("DeleteItem needs ItemIds."))?;
        let to_deleted_items = op.attr("DeleteType") == Some("MoveToDeletedItems");
        let mut out = String::new();
        for id in &ids.children {
            let new_key = self.store.key();
            let mailbox = self.mailbox();
            match item_target(mailbox, id) {
                Ok(key) => {
                    let moved = mailbox.items.get(&key).cloned();
                    mailbox.delete_item(key);
                    if to_deleted_items
                        && let (Some(mut item), Some(trash)) =
                            (moved, mailbox.distinguished("deleteditems"))
                        && item.folder != trash
                    {
                        let change = mailbox.bump();
                        item.key = new_key;
                        item.folder = trash;
                        item.created_change = change;
                        item.content_change = change;
                        item.change = change;
                        mailbox.items.insert(new_key, item);
                    }
                    out.push_str(&success("DeleteItem", ""));
                }
                Err(code) => out.push_str(&error("DeleteItem", code, "", "")),
            }
        }
        Ok(out)
    }

    fn sync_folder_items(&mut self, op: &Element) -> Result<String, Fault> {
        let shape = ItemShape::parse(op.child("ItemShape"))?;
        let target = op
            .child("SyncFolderId")
            .and_then(|s| s.children.first())
            .ok_or_else(|| schema_fault("SyncFolderItems needs SyncFolderId."))?;
        let max = op
            .child_text("MaxChangesReturned")
            .and_then(|m| m.parse::<usize>().ok())
            .unwrap_or(MAX_SYNC_CHANGES)
            .clamp(1, MAX_SYNC_CHANGES);
        let folder = match self.resolve_folder(target) {
            Ok(ix) => ix,
            Err(code) => return Ok(error("SyncFolderItems", code, "", "")),
        };
        let mailbox = self.mailbox();
        let folder_key = mailbox.folders[folder].key;
        let watermark = match op.child_text("SyncState").filter(|s| !s.is_empty()) {
            None => 0,
            Some(state) => match decode_sync_state(state, "items", mailbox.tag, folder_key) {
                Some(watermark) => watermark,
                None => {
                    return Ok(error(
                        "SyncFolderItems",
                        "ErrorInvalidSyncStateData",
                        "",
                        "",
                    ));
                }
            },
        };
        let ignored: Vec<u64> = op
            .child("Ignore")
            .map(|ignore| {
                ignore
                    .children
                    .iter()
                    .filter_map(|id| mailbox.item_by_id(id.attr("Id").unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();

        // Every change has its own number, so ordering by it and cutting after `max`
        // leaves a watermark from which the next call resumes exactly.
        let mut changes: Vec<(u64, String)> = Vec::new();
        for item in mailbox.items.values() {
            if item.folder != folder || item.change <= watermark || ignored.contains(&item.key) {
                continue;
            }
            let xml = if item.created_change > watermark {
                format!("<t:Create>{}</t:Create>", item_xml(mailbox, item, &shape))
            } else if item.content_change > watermark {
                format!("<t:Update>{}</t:Update>", item_xml(mailbox, item, &shape))
            } else {
                format!(
                    "<t:ReadFlagChange>{}<t:IsRead>{}</t:IsRead></t:ReadFlagChange>",
                    item_id_xml(mailbox, item),
                    item.is_read()
                )
            };
            changes.push((item.change, xml));
        }
        for tombstone in &mailbox.tombstones {
            if tombstone.folder == folder
                && tombstone.change > watermark
                && tombstone.created_change <= watermark
            {
                changes.push((
                    tombstone.change,
                    format!(
                        r#"<t:Delete><t:ItemId Id="{}"/></t:Delete>"#,
                        mailbox.item_id(tombstone.key)
                    ),
                ));
            }
        }
        changes.sort_by_key(|(change, _)| *change);
        let includes_last = changes.len() <= max;
        changes.truncate(max);
        let new_watermark = if includes_last {
            mailbox.change
        } else {
            changes.last().map(|(c, _)| *c).unwrap_or(watermark)
        };
        let state = encode_sync_state("items", mailbox.tag, folder_key, new_watermark);
        let body: String = changes.into_iter().map(|(_, xml)| xml).collect();
        Ok(success(
            "SyncFolderItems",
            &format!(
                "<m:SyncState>{state}</m:SyncState><m:IncludesLastItemInRange>{includes_last}</m:IncludesLastItemInRange><m:Changes>{body}</m:Changes>"
            ),
        ))
    }

    fn sync_folder_hierarchy(&mut self, op: &Element) -> Result<String, Fault> {
        let shape = FolderShape::parse(op.child("FolderShape"));
        let folder = match op.child("SyncFolderId").and_then(|s| s.children.first()) {
            Some(target) => match self.resolve_folder(target) {
                Ok(ix) => ix,
                Err(code) => return Ok(error("SyncFolderHierarchy", code, "", "")),
            },
            None => self
                .mailbox()
                .distinguished("root")
                .ok_or_else(|| schema_fault("no root"))?,
        };
        let mailbox = self.mailbox();
        let folder_key = mailbox.folders[folder].key;
        let watermark = match op.child_text("SyncState").filter(|s| !s.is_empty()) {
            None => 0,
            Some(state) => match decode_sync_state(state, "folders", mailbox.tag, folder_key) {
                Some(watermark) => watermark,
                None => {
                    return Ok(error(
                        "SyncFolderHierarchy",
                        "ErrorInvalidSyncStateData",
                        "",
                        "",
                    ));
                }
            },
        };
        let changes: String = mailbox
            .descendants(folder)
            .into_iter()
            .filter(|&ix| mailbox.folders[ix].change > watermark)
            .map(|ix| format!("<t:Create>{}</t:Create>", folder_xml(mailbox, ix, &shape)))
            .collect();
        let state = encode_sync_state("folders", mailbox.tag, folder_key, mailbox.change);
        Ok(success(
            "SyncFolderHierarchy",
            &format!(
                "<m:SyncState>{state}</m:SyncState><m:IncludesLastFolderInRange>true</m:IncludesLastFolderInRange><m:Changes>{changes}</m:Changes>"
            ),
        ))
    }

    /// Resolves the server's own users by address or local part; nothing else is in the
    /// directory.
    fn resolve_names(&mut self, op: &Element) -> Result<String, Fault> {
        let wanted = op
            .child_text("UnresolvedEntry")
            .unwrap_or_default()
            .trim_start_matches("smtp:")
            .trim_start_matches("SMTP:")
            .to_lowercase();
        let found: Vec<&Mailbox> = self
            .store
            .users
            .values()
            .filter(|m| {
                let email = m.email.to_lowercase();
                !wanted.is_empty()
                    && (email == wanted || email.split('@').next() == Some(wanted.as_str()))
            })
            .collect();
        if found.is_empty() {
            return Ok(error(
                "ResolveNames",
                "ErrorNameResolutionNoResults",
                "",
                "",
            ));
        }
        let resolutions: String = found
            .iter()
            .map(|m| {
                let name = escape(m.email.split('@').next().unwrap_or_default());
                format!(
                    "<t:Resolution><t:Mailbox><t:Name>{name}</t:Name><t:EmailAddress>{}</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType><t:MailboxType>Mailbox</t:MailboxType></t:Mailbox></t:Resolution>",
                    escape(&m.email)
                )
            })
            .collect();
        Ok(success(
            "ResolveNames",
            &format!(
                r#"<m:ResolutionSet TotalItemsInView="{n}" IncludesLastItemInRange="true">{resolutions}</m:ResolutionSet>"#,
                n = found.len()
            ),
        ))
    }

    /// This server has one id format, so every conversion returns the id it was given.
    fn convert_id(&mut self, op: &Element) -> Result<String, Fault> {
        let format = op.attr("DestinationFormat").unwrap_or("EwsId");
        let ids = op
            .child("SourceIds")
            .ok_or_else(|| schema_fault("ConvertId needs SourceIds."))?;
        let mut out = String::new();
        for id in &ids.children {
            let value = escape(id.attr("Id").unwrap_or_default());
            let mailbox = escape(id.attr("Mailbox").unwrap_or(&self.user));
            out.push_str(&success(
                "ConvertId",
                &format!(
                    r#"<m:AlternateId xsi:type="t:AlternateIdType" Format="{format}" Id="{value}" Mailbox="{mailbox}"/>"#,
                    format = escape(format)
                ),
            ));
        }
        Ok(out)
    }
}

/// The item an ItemId element names.
fn item_target(mailbox: &Mailbox, id_element: &Element) -> Result<u64, Code> {
    let id = id_element.attr("Id").unwrap_or_default();
    match mailbox.item_by_id(id) {
        Some(key) => Ok(key),
        None if store::is_well_formed_id(id) => Err("ErrorItemNotFound"),
        None => Err("ErrorInvalidIdMalformed"),
    }
}

fn synthesize_mime(element: &Element) -> Vec<u8> {
    let subject = element.child_text("Subject").unwrap_or_default();
    let body = element.child("Body").map(|b| b.text.as_str()).unwrap_or("");
    format!(
        "Subject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// Applies the SetItemField / AppendToItemField / DeleteItemField of one ItemChange.
fn apply_updates(
    mailbox: &mut Mailbox,
    key: u64,
    updates: Option<&Element>,
) -> Result<(), (Code, String)> {
    let Some(updates) = updates else {
        return Ok(());
    };
    let mut read_only_change = true;
    let mut item = mailbox.items[&key].clone();
    for update in &updates.children {
        let Some(path) = update.children.iter().find(|c| {
            matches!(
                c.name.as_str(),
                "FieldURI" | "ExtendedFieldURI" | "IndexedFieldURI"
            )
        }) else {
            return Err(("ErrorInvalidPropertySet", String::new()));
        };
        let carrier = update.children.iter().find(|c| {
            !matches!(
                c.name.as_str(),
                "FieldURI" | "ExtendedFieldURI" | "IndexedFieldURI"
            )
        });
        let deleting = update.name == "DeleteItemField";
        let appending = update.name == "AppendToItemField";
        if path.name == "ExtendedFieldURI" {
            let (prop_key, _) = parse_prop_uri(path)?;
            read_only_change = false;
            if deleting {
                item.extended.retain(|e| e.key != prop_key);
                continue;
            }
            let property = carrier
                .and_then(|c| c.child("ExtendedProperty"))
                .ok_or(("ErrorInvalidPropertySet", String::new()))?;
            let value = parse_extended_property(property)?;
            let first = value.values.first().cloned().unwrap_or_default();
            match prop_key {
                // Only the read bit of PR_MESSAGE_FLAGS can change after creation.
                PropKey::Tag(0x0E07) => {
                    let flags: i32 = first.parse().unwrap_or(0);
                    item.set_read(flags & MSGFLAG_READ != 0);
                    read_only_change = item.is_read() != mailbox.items[&key].is_read();
                }
                PropKey::Tag(0x0E06) => item.received = parse_time(&first).unwrap_or(item.received),
                PropKey::Tag(0x0039) => item.sent = parse_time(&first),
                _ => item.set_extended(value),
            }
            continue;
        }
        let uri = path.attr("FieldURI").unwrap_or_default();
        let value = |name: &str| carrier.and_then(|c| c.child(name));
        match uri {
            "message:IsRead" => {
                let read = if deleting {
                    false
                } else {
                    value("IsRead")
                        .and_then(|v| parse_bool(&v.text))
                        .ok_or(("ErrorInvalidPropertySet", field_uri_xml(uri)))?
                };
                item.set_read(read);
            }
            "item:Categories" => {
                read_only_change = false;
                let new: Vec<String> = value("Categories")
                    .map(|c| {
                        c.children
                            .iter()
                            .map(|s| s.text.trim().to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                if deleting {
                    item.categories.clear();
                } else if appending {
                    item.categories.extend(new);
                } else {
                    item.categories = new;
                }
            }
            "item:Flag" => {
                read_only_change = false;
                item.flag = if deleting {
                    FlagStatus::NotFlagged
                } else {
                    value("Flag")
                        .and_then(|f| f.child_text("FlagStatus"))
                        .and_then(FlagStatus::parse)
                        .ok_or(("ErrorInvalidPropertySet", field_uri_xml(uri)))?
                };
            }
            "item:Subject" => {
                read_only_change = false;
                item.subject = if deleting {
                    None
                } else {
                    value("Subject").map(|s| s.text.clone())
                };
            }
            _ => return Err(("ErrorInvalidPropertySet", field_uri_xml(uri))),
        }
    }
    let change = mailbox.bump();
    item.change = change;
    if !read_only_change {
        item.content_change = change;
    }
    item.modified = OffsetDateTime::now_utc();
    mailbox.items.insert(key, item);
    Ok(())
}

fn field_uri_xml(uri: &str) -> String {
    format!(r#"<t:FieldURI FieldURI="{}"/>"#, escape(uri))
}

// ---------------------------------------------------------------------------------------
// Shapes

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BaseShape {
    IdOnly,
    Default,
    AllProperties,
}

impl BaseShape {
    fn parse(shape: Option<&Element>) -> BaseShape {
        match shape.and_then(|s| s.child_text("BaseShape")) {
            Some("IdOnly") => BaseShape::IdOnly,
            Some("AllProperties") => BaseShape::AllProperties,
            _ => BaseShape::Default,
        }
    }
}

fn additional_field_uris(shape: Option<&Element>) -> Vec<String> {
    shape
        .and_then(|s| s.child("AdditionalProperties"))
        .map(|a| {
            a.children_named("FieldURI")
                .filter_map(|f| f.attr("FieldURI"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// What to show of a folder.
struct FolderShape {
    base: BaseShape,
    fields: Vec<String>,
}

impl FolderShape {
    fn parse(shape: Option<&Element>) -> FolderShape {
        FolderShape {
            base: BaseShape::parse(shape),
            fields: additional_field_uris(shape),
        }
    }

    fn wants(&self, field: &str) -> bool {
        let by_base = match self.base {
            BaseShape::IdOnly => false,
            BaseShape::Default => matches!(
                field,
                "DisplayName" | "TotalCount" | "ChildFolderCount" | "UnreadCount"
            ),
            BaseShape::AllProperties => field != "DistinguishedFolderId",
        };
        by_base || self.fields.iter().any(|f| f == &format!("folder:{field}"))
    }
}

/// The element name of a folder of this class, as Exchange picks it.
fn folder_element(class: Option<&str>) -> &'static str {
    match class {
        Some(c) if c.starts_with("IPF.Appointment") => "CalendarFolder",
        Some(c) if c.starts_with("IPF.Contact") => "ContactsFolder",
        Some(c) if c.starts_with("IPF.Task") => "TasksFolder",
        _ => "Folder",
    }
}

fn folder_id_xml(element: &str, mailbox: &Mailbox, ix: usize) -> String {
    format!(
        r#"<t:{element} Id="{}" ChangeKey="{}"/>"#,
        mailbox.folder_id(ix),
        store::change_key(mailbox.folders[ix].change)
    )
}

/// A folder in types.xsd order: BaseFolderType's elements, then UnreadCount for the
/// types derived from FolderType.
fn folder_xml(mailbox: &Mailbox, ix: usize, shape: &FolderShape) -> String {
    let folder = &mailbox.folders[ix];
    let element = folder_element(folder.class.as_deref());
    let mut out = format!("<t:{element}>");
    out.push_str(&folder_id_xml("FolderId", mailbox, ix));
    if shape.wants("ParentFolderId")
        && let Some(parent) = folder.parent
    {
        out.push_str(&folder_id_xml("ParentFolderId", mailbox, parent));
    }
    if shape.wants("FolderClass")
        && let Some(class) = &folder.class
    {
        out.push_str(&format!("<t:FolderClass>{}</t:FolderClass>", escape(class)));
    }
    let (total, unread) = mailbox.counts(ix);
    if shape.wants("DisplayName") {
        out.push_str(&format!(
            "<t:DisplayName>{}</t:DisplayName>",
            escape(&folder.name)
        ));
    }
    if shape.wants("TotalCount") {
        out.push_str(&format!("<t:TotalCount>{total}</t:TotalCount>"));
    }
    if shape.wants("ChildFolderCount") {
        out.push_str(&format!(
            "<t:ChildFolderCount>{}</t:ChildFolderCount>",
            mailbox.children(ix).len()
        ));
    }
    if shape.wants("EffectiveRights") {
        out.push_str("<t:EffectiveRights><t:CreateAssociated>true</t:CreateAssociated><t:CreateContents>true</t:CreateContents><t:CreateHierarchy>true</t:CreateHierarchy><t:Delete>true</t:Delete><t:Modify>true</t:Modify><t:Read>true</t:Read><t:ViewPrivateItems>true</t:ViewPrivateItems></t:EffectiveRights>");
    }
    if shape.wants("DistinguishedFolderId")
        && let Some(distinguished) = folder.distinguished
    {
        out.push_str(&format!(
            "<t:DistinguishedFolderId>{distinguished}</t:DistinguishedFolderId>"
        ));
    }
    if matches!(element, "Folder" | "TasksFolder") && shape.wants("UnreadCount") {
        out.push_str(&format!("<t:UnreadCount>{unread}</t:UnreadCount>"));
    }
    out.push_str(&format!("</t:{element}>"));
    out
}

/// A requested extended property: its key and the ExtendedFieldURI to echo.
struct RequestedProperty {
    key: PropKey,
    uri_xml: String,
    property_type: String,
}

/// What to show of an item.
struct ItemShape {
    base: BaseShape,
    fields: Vec<String>,
    extended: Vec<RequestedProperty>,
    include_mime: bool,
}

impl ItemShape {
    fn parse(shape: Option<&Element>) -> Result<ItemShape, Fault> {
        let fields = additional_field_uris(shape);
        let include_mime = shape
            .and_then(|s| s.child_text("IncludeMimeContent"))
            .and_then(parse_bool)
            .unwrap_or(false)
            || fields.iter().any(|f| f == "item:MimeContent");
        let mut extended = Vec::new();
        if let Some(additional) = shape.and_then(|s| s.child("AdditionalProperties")) {
            for uri in additional.children_named("ExtendedFieldURI") {
                let (key, property_type) = parse_prop_uri(uri).map_err(|_| {
                    fault(
                        "ErrorInvalidExtendedProperty",
                        message_text("ErrorInvalidExtendedProperty"),
                        "",
                    )
                })?;
                extended.push(RequestedProperty {
                    key,
                    uri_xml: echo_prop_uri(uri),
                    property_type,
                });
            }
        }
        Ok(ItemShape {
            base: BaseShape::parse(shape),
            fields,
            extended,
            include_mime,
        })
    }

    fn wants(&self, field: &str) -> bool {
        let by_base = match self.base {
            BaseShape::IdOnly => false,
            BaseShape::Default => matches!(
                field,
                "item:ParentFolderId"
                    | "item:ItemClass"
                    | "item:Subject"
                    | "item:DateTimeReceived"
                    | "item:Size"
                    | "item:DateTimeSent"
                    | "item:DateTimeCreated"
                    | "item:HasAttachments"
                    | "message:From"
                    | "message:IsRead"
            ),
            BaseShape::AllProperties => true,
        };
        by_base || self.fields.iter().any(|f| f == field)
    }
}

fn item_id_xml(mailbox: &Mailbox, item: &Item) -> String {
    format!(
        r#"<t:ItemId Id="{}" ChangeKey="{}"/>"#,
        mailbox.item_id(item.key),
        store::change_key(item.change)
    )
}

/// A message in types.xsd order (ItemType's elements, then MessageType's).
fn item_xml(mailbox: &Mailbox, item: &Item, shape: &ItemShape) -> String {
    let mut out = String::from("<t:Message>");
    if shape.include_mime {
        out.push_str(&format!(
            r#"<t:MimeContent CharacterSet="UTF-8">{}</t:MimeContent>"#,
            STANDARD.encode(&item.mime)
        ));
    }
    out.push_str(&item_id_xml(mailbox, item));
    if shape.wants("item:ParentFolderId") {
        out.push_str(&folder_id_xml("ParentFolderId", mailbox, item.folder));
    }
    if shape.wants("item:ItemClass") {
        out.push_str(&format!(
            "<t:ItemClass>{}</t:ItemClass>",
            escape(&item.item_class)
        ));
    }
    if shape.wants("item:Subject")
        && let Some(subject) = &item.subject
    {
        out.push_str(&format!("<t:Subject>{}</t:Subject>", escape(subject)));
    }
    if shape.wants("item:DateTimeReceived") {
        out.push_str(&format!(
            "<t:DateTimeReceived>{}</t:DateTimeReceived>",
            ews_time(item.received)
        ));
    }
    if shape.wants("item:Size") {
        out.push_str(&format!("<t:Size>{}</t:Size>", item.mime.len()));
    }
    if shape.wants("item:Categories") && !item.categories.is_empty() {
        out.push_str("<t:Categories>");
        for category in &item.categories {
            out.push_str(&format!("<t:String>{}</t:String>", escape(category)));
        }
        out.push_str("</t:Categories>");
    }
    if shape.wants("item:IsDraft") {
        out.push_str(&format!("<t:IsDraft>{}</t:IsDraft>", item.is_draft()));
    }
    if shape.wants("item:DateTimeSent")
        && let Some(sent) = item.sent
    {
        out.push_str(&format!(
            "<t:DateTimeSent>{}</t:DateTimeSent>",
            ews_time(sent)
        ));
    }
    if shape.wants("item:DateTimeCreated") {
        out.push_str(&format!(
            "<t:DateTimeCreated>{}</t:DateTimeCreated>",
            ews_time(item.created)
        ));
    }
    if shape.wants("item:HasAttachments") {
        out.push_str(&format!(
            "<t:HasAttachments>{}</t:HasAttachments>",
            has_attachments(&item.mime)
        ));
    }
    for requested in &shape.extended {
        if let Some(values) = extended_values(item, &requested.key) {
            out.push_str("<t:ExtendedProperty>");
            out.push_str(&requested.uri_xml);
            if requested.property_type.ends_with("Array") {
                out.push_str("<t:Values>");
                for value in &values {
                    out.push_str(&format!("<t:Value>{}</t:Value>", escape(value)));
                }
                out.push_str("</t:Values>");
            } else {
                let value = values.first().map(String::as_str).unwrap_or_default();
                out.push_str(&format!("<t:Value>{}</t:Value>", escape(value)));
            }
            out.push_str("</t:ExtendedProperty>");
        }
    }
    if shape.wants("item:LastModifiedTime") {
        out.push_str(&format!(
            "<t:LastModifiedTime>{}</t:LastModifiedTime>",
            ews_time(item.modified)
        ));
    }
    if shape.wants("item:Flag") {
        out.push_str(&format!(
            "<t:Flag><t:FlagStatus>{}</t:FlagStatus></t:Flag>",
            item.flag.as_str()
        ));
    }
    if shape.wants("message:From")
        && let Some(from) = &item.from
    {
        let (name, address) = split_address(from);
        out.push_str(&format!(
            "<t:From><t:Mailbox><t:Name>{}</t:Name><t:EmailAddress>{}</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType></t:Mailbox></t:From>",
            escape(&name),
            escape(&address)
        ));
    }
    if shape.wants("message:InternetMessageId")
        && let Some(message_id) = &item.message_id
    {
        out.push_str(&format!(
            "<t:InternetMessageId>{}</t:InternetMessageId>",
            escape(message_id)
        ));
    }
    if shape.wants("message:IsRead") {
        out.push_str(&format!("<t:IsRead>{}</t:IsRead>", item.is_read()));
    }
    out.push_str("</t:Message>");
    out
}

fn has_attachments(mime: &[u8]) -> bool {
    let needle = b"content-disposition: attachment";
    mime.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// `"Name" <address>` into its parts; a bare address is its own name.
fn split_address(from: &str) -> (String, String) {
    match (from.rfind('<'), from.rfind('>')) {
        (Some(open), Some(close)) if open < close => {
            let name = from[..open].trim().trim_matches('"').trim().to_string();
            let address = from[open + 1..close].trim().to_string();
            let name = if name.is_empty() {
                address.clone()
            } else {
                name
            };
            (name, address)
        }
        _ => (from.trim().to_string(), from.trim().to_string()),
    }
}

// ---------------------------------------------------------------------------------------
// Extended properties

/// GUIDs of the DistinguishedPropertySetId names.
fn distinguished_set(name: &str) -> Option<&'static str> {
    Some(match name {
        "Meeting" => "6ed8da90-450b-101b-98da-00aa003f1305",
        "Appointment" => "00062002-0000-0000-c000-000000000046",
        "Common" => "00062008-0000-0000-c000-000000000046",
        "PublicStrings" => "00020329-0000-0000-c000-000000000046",
        "Address" => "00062004-0000-0000-c000-000000000046",
        "InternetHeaders" => "00020386-0000-0000-c000-000000000046",
        "CalendarAssistant" => "11000e07-b51b-40d6-af21-caa85edab1d0",
        "UnifiedMessaging" => "4442858e-a9e3-4e80-b900-317a210cc15b",
        "Task" => "00062003-0000-0000-c000-000000000046",
        "Sharing" => "00062040-0000-0000-c000-000000000046",
        _ => return None,
    })
}

const PROPERTY_TYPES: &[&str] = &[
    "ApplicationTime",
    "ApplicationTimeArray",
    "Binary",
    "BinaryArray",
    "Boolean",
    "CLSID",
    "CLSIDArray",
    "Currency",
    "CurrencyArray",
    "Double",
    "DoubleArray",
    "Error",
    "Float",
    "FloatArray",
    "Integer",
    "IntegerArray",
    "Long",
    "LongArray",
    "Null",
    "Object",
    "ObjectArray",
    "Short",
    "ShortArray",
    "SystemTime",
    "SystemTimeArray",
    "String",
    "StringArray",
];

/// Reads an ExtendedFieldURI: either a PropertyTag alone, or a property set with a
/// PropertyName or PropertyId; always a PropertyType.
fn parse_prop_uri(uri: &Element) -> Result<(PropKey, String), (Code, String)> {
    let invalid = || ("ErrorInvalidExtendedProperty", String::new());
    let property_type = uri.attr("PropertyType").ok_or_else(invalid)?;
    if !PROPERTY_TYPES.contains(&property_type) {
        return Err(invalid());
    }
    let set = match (
        uri.attr("DistinguishedPropertySetId"),
        uri.attr("PropertySetId"),
    ) {
        (Some(name), None) => Some(distinguished_set(name).ok_or_else(invalid)?.to_string()),
        (None, Some(guid)) => Some(
            guid.trim()
                .trim_start_matches('{')
                .trim_end_matches('}')
                .to_lowercase(),
        ),
        (None, None) => None,
        (Some(_), Some(_)) => return Err(invalid()),
    };
    let key = match (
        set,
        uri.attr("PropertyTag"),
        uri.attr("PropertyName"),
        uri.attr("PropertyId"),
    ) {
        (None, Some(tag), None, None) => PropKey::Tag(parse_tag(tag).ok_or_else(invalid)?),
        (Some(set), None, Some(name), None) => PropKey::Name {
            set,
            name: name.to_string(),
        },
        (Some(set), None, None, Some(id)) => PropKey::Id {
            set,
            id: parse_number(id).ok_or_else(invalid)?,
        },
        _ => return Err(invalid()),
    };
    Ok((key, property_type.to_string()))
}

/// `0x0E07`, `0xe07`, `3591`, or a whole 32-bit tag such as `0x0E070003`.
fn parse_tag(tag: &str) -> Option<u16> {
    let value = parse_number(tag)?;
    Some(if value > 0xFFFF {
        (value >> 16) as u16
    } else {
        value as u16
    })
}

fn parse_number(text: &str) -> Option<u32> {
    let text = text.trim();
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// The ExtendedFieldURI as a response carries it: the request's attributes, with the
/// tag in Exchange's lowercase `0xe07` form.
fn echo_prop_uri(uri: &Element) -> String {
    let mut out = String::from("<t:ExtendedFieldURI");
    for name in [
        "DistinguishedPropertySetId",
        "PropertySetId",
        "PropertyTag",
        "PropertyName",
        "PropertyId",
        "PropertyType",
    ] {
        if let Some(value) = uri.attr(name) {
            let value = if name == "PropertyTag" {
                parse_tag(value)
                    .map(|t| format!("0x{t:x}"))
                    .unwrap_or_else(|| value.to_string())
            } else {
                value.to_string()
            };
            out.push_str(&format!(r#" {name}="{}""#, escape(&value)));
        }
    }
    out.push_str("/>");
    out
}

/// An ExtendedProperty element (URI and Value or Values), checked against its type.
fn parse_extended_property(property: &Element) -> Result<ExtendedValue, (Code, String)> {
    let uri = property
        .child("ExtendedFieldURI")
        .ok_or(("ErrorInvalidExtendedProperty", String::new()))?;
    let (key, property_type) = parse_prop_uri(uri)?;
    let raw: Vec<String> = match (property.child("Value"), property.child("Values")) {
        (Some(value), _) => vec![value.text.clone()],
        (None, Some(values)) => values
            .children_named("Value")
            .map(|v| v.text.clone())
            .collect(),
        (None, None) => return Err(("ErrorInvalidExtendedPropertyValue", String::new())),
    };
    let is_array = property_type.ends_with("Array");
    if !is_array && raw.len() != 1 {
        return Err(("ErrorInvalidExtendedPropertyValue", String::new()));
    }
    let base_type = property_type.trim_end_matches("Array");
    let mut values = Vec::with_capacity(raw.len());
    for value in raw {
        values.push(
            normalize_value(base_type, &value)
                .ok_or(("ErrorInvalidExtendedPropertyValue", String::new()))?,
        );
    }
    Ok(ExtendedValue {
        key,
        property_type,
        values,
    })
}

/// A value in its canonical text form, or `None` when it does not fit its type.
fn normalize_value(base_type: &str, value: &str) -> Option<String> {
    let trimmed = value.trim();
    Some(match base_type {
        "Integer" | "Long" | "Short" | "Currency" => trimmed.parse::<i64>().ok()?.to_string(),
        "Double" | "Float" | "ApplicationTime" => {
            trimmed.parse::<f64>().ok()?;
            trimmed.to_string()
        }
        "Boolean" => parse_bool(trimmed)?.to_string(),
        "SystemTime" => ews_time(parse_time(trimmed)?),
        "Binary" => {
            STANDARD.decode(trimmed).ok()?;
            trimmed.to_string()
        }
        _ => value.to_string(),
    })
}

/// The values of an extended property on an item: the properties EWS exposes as fields
/// are computed from them, others come from what was stored.
fn extended_values(item: &Item, key: &PropKey) -> Option<Vec<String>> {
    let computed = match key {
        PropKey::Tag(0x0E07) => Some(item.message_flags.to_string()),
        PropKey::Tag(0x0E06) => Some(ews_time(item.received)),
        PropKey::Tag(0x0039) => item.sent.map(ews_time),
        PropKey::Tag(0x0E08) => Some(item.mime.len().to_string()),
        PropKey::Tag(0x1035) => item.message_id.clone(),
        PropKey::Tag(0x0037) => item.subject.clone(),
        PropKey::Tag(0x001A) => Some(item.item_class.clone()),
        PropKey::Tag(0x1090) => Some(item.flag.mapi_value().to_string()),
        _ => return item.extended(key).map(|e| e.values.clone()),
    };
    computed.map(|v| vec![v])
}

// ---------------------------------------------------------------------------------------
// Restrictions, sorting, paging

/// A property value a restriction compares.
#[derive(Debug, Clone)]
enum Value {
    Text(String),
    Int(i64),
    Bool(bool),
    Time(OffsetDateTime),
    Texts(Vec<String>),
}

/// Evaluates a restriction expression. Unknown fields have no value (so `Exists` is false
/// and comparisons fail), unknown operators match nothing.
fn evaluate(expression: &Element, lookup: &dyn Fn(&Element) -> Option<Value>) -> bool {
    let path = || {
        expression.children.iter().find(|c| {
            matches!(
                c.name.as_str(),
                "FieldURI" | "ExtendedFieldURI" | "IndexedFieldURI"
            )
        })
    };
    let constant = || {
        expression
            .child("FieldURIOrConstant")
            .and_then(|f| f.child("Constant"))
            .or_else(|| expression.child("Constant"))
            .and_then(|c| c.attr("Value"))
    };
    match expression.name.as_str() {
        "And" => expression.children.iter().all(|c| evaluate(c, lookup)),
        "Or" => expression.children.iter().any(|c| evaluate(c, lookup)),
        "Not" => !expression
            .children
            .first()
            .is_some_and(|c| evaluate(c, lookup)),
        "Exists" => path().and_then(lookup).is_some(),
        "Contains" => {
            let (Some(value), Some(wanted)) = (path().and_then(lookup), constant()) else {
                return false;
            };
            let ignore_case = expression
                .attr("ContainmentComparison")
                .is_some_and(|c| c.contains("IgnoreCase"));
            let mode = expression.attr("ContainmentMode").unwrap_or("FullString");
            let test = |text: &str| {
                let (text, wanted) = if ignore_case {
                    (text.to_lowercase(), wanted.to_lowercase())
                } else {
                    (text.to_string(), wanted.to_string())
                };
                match mode {
                    "Prefixed" => text.starts_with(&wanted),
                    "Substring" | "PrefixOnWords" | "ExactPhrase" => text.contains(&wanted),
                    _ => text == wanted,
                }
            };
            match value {
                Value::Text(text) => test(&text),
                Value::Texts(texts) => texts.iter().any(|t| test(t)),
                _ => false,
            }
        }
        comparison @ ("IsEqualTo"
        | "IsNotEqualTo"
        | "IsGreaterThan"
        | "IsGreaterThanOrEqualTo"
        | "IsLessThan"
        | "IsLessThanOrEqualTo") => {
            let (Some(value), Some(constant)) = (path().and_then(lookup), constant()) else {
                return false;
            };
            let Some(ordering) = compare(&value, constant) else {
                return false;
            };
            match comparison {
                "IsEqualTo" => ordering == Ordering::Equal,
                "IsNotEqualTo" => ordering != Ordering::Equal,
                "IsGreaterThan" => ordering == Ordering::Greater,
                "IsGreaterThanOrEqualTo" => ordering != Ordering::Less,
                "IsLessThan" => ordering == Ordering::Less,
                _ => ordering != Ordering::Greater,
            }
        }
        _ => false,
    }
}

/// Compares a value with a constant read in the value's type; text compares ignoring
/// case, as Exchange's default collation does.
fn compare(value: &Value, constant: &str) -> Option<Ordering> {
    match value {
        Value::Text(text) => Some(text.to_lowercase().cmp(&constant.to_lowercase())),
        Value::Int(n) => Some(n.cmp(&constant.trim().parse::<i64>().ok()?)),
        Value::Bool(b) => Some(b.cmp(&parse_bool(constant)?)),
        Value::Time(t) => Some(t.cmp(&parse_time(constant)?)),
        Value::Texts(texts) => Some(if texts.iter().any(|t| t.eq_ignore_ascii_case(constant)) {
            Ordering::Equal
        } else {
            Ordering::Less
        }),
    }
}

fn item_value(item: &Item, path: &Element) -> Option<Value> {
    if path.name == "ExtendedFieldURI" {
        let (key, property_type) = parse_prop_uri(path).ok()?;
        let values = extended_values(item, &key)?;
        let first = values.first().cloned().unwrap_or_default();
        return Some(match property_type.as_str() {
            "Integer" | "Long" | "Short" => Value::Int(first.parse().ok()?),
            "Boolean" => Value::Bool(parse_bool(&first)?),
            "SystemTime" => Value::Time(parse_time(&first)?),
            t if t.ends_with("Array") => Value::Texts(values),
            _ => Value::Text(first),
        });
    }
    Some(match path.attr("FieldURI")? {
        "item:Subject" => Value::Text(item.subject.clone()?),
        "message:InternetMessageId" => Value::Text(item.message_id.clone()?),
        "item:ItemClass" => Value::Text(item.item_class.clone()),
        "message:IsRead" => Value::Bool(item.is_read()),
        "item:IsDraft" => Value::Bool(item.is_draft()),
        "item:HasAttachments" => Value::Bool(has_attachments(&item.mime)),
        "item:DateTimeReceived" => Value::Time(item.received),
        "item:DateTimeSent" => Value::Time(item.sent?),
        "item:DateTimeCreated" => Value::Time(item.created),
        "item:LastModifiedTime" => Value::Time(item.modified),
        "item:Size" => Value::Int(item.mime.len() as i64),
        "item:Categories" => Value::Texts(item.categories.clone()),
        _ => return None,
    })
}

fn folder_value(mailbox: &Mailbox, ix: usize, path: &Element) -> Option<Value> {
    let folder = &mailbox.folders[ix];
    Some(match path.attr("FieldURI")? {
        "folder:DisplayName" => Value::Text(folder.name.clone()),
        "folder:FolderClass" => Value::Text(folder.class.clone()?),
        "folder:TotalCount" => Value::Int(mailbox.counts(ix).0 as i64),
        "folder:UnreadCount" => Value::Int(mailbox.counts(ix).1 as i64),
        "folder:ChildFolderCount" => Value::Int(mailbox.children(ix).len() as i64),
        _ => return None,
    })
}

/// Newest received first unless a SortOrder says otherwise; ties keep creation order.
fn sort_items(mailbox: &Mailbox, keys: &mut [u64], sort: Option<&Element>) {
    let orders: Vec<(String, bool)> = sort
        .map(|s| {
            s.children_named("FieldOrder")
                .filter_map(|order| {
                    let field = order.child("FieldURI")?.attr("FieldURI")?.to_string();
                    Some((field, order.attr("Order") != Some("Ascending")))
                })
                .collect()
        })
        .unwrap_or_default();
    let orders = if orders.is_empty() {
        vec![("item:DateTimeReceived".to_string(), true)]
    } else {
        orders
    };
    keys.sort_by(|a, b| {
        let (a, b) = (&mailbox.items[a], &mailbox.items[b]);
        for (field, descending) in &orders {
            let ordering = match field.as_str() {
                "item:DateTimeReceived" => a.received.cmp(&b.received),
                "item:DateTimeSent" => a.sent.cmp(&b.sent),
                "item:DateTimeCreated" => a.created.cmp(&b.created),
                "item:Size" => a.mime.len().cmp(&b.mime.len()),
                "item:Subject" => a.subject.cmp(&b.subject),
                _ => Ordering::Equal,
            };
            let ordering = if *descending {
                ordering.reverse()
            } else {
                ordering
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        a.key.cmp(&b.key)
    });
}

/// An IndexedPage(Item|Folder)View.
struct Page {
    max: Option<usize>,
    offset: usize,
    from_end: bool,
}

impl Page {
    fn parse(view: Option<&Element>) -> Page {
        Page {
            max: view
                .and_then(|v| v.attr("MaxEntriesReturned"))
                .and_then(|m| m.parse().ok()),
            offset: view
                .and_then(|v| v.attr("Offset"))
                .and_then(|o| o.parse().ok())
                .unwrap_or(0),
            from_end: view.and_then(|v| v.attr("BasePoint")) == Some("End"),
        }
    }

    /// The page's share of `all`, and the RootFolder attributes describing it.
    fn apply<T: Clone>(&self, all: Vec<T>) -> (Vec<T>, String) {
        let total = all.len();
        let max = self.max.unwrap_or(usize::MAX);
        let (start, end) = if self.from_end {
            let end = total.saturating_sub(self.offset);
            (end.saturating_sub(max), end)
        } else {
            let start = self.offset.min(total);
            (start, start.saturating_add(max).min(total))
        };
        let includes_last = if self.from_end {
            start == 0
        } else {
            end >= total
        };
        let next_offset = self.offset + (end - start);
        let attributes = format!(
            r#"IndexedPagingOffset="{next_offset}" TotalItemsInView="{total}" IncludesLastItemInRange="{includes_last}""#
        );
        (all[start..end].to_vec(), attributes)
    }
}

// ---------------------------------------------------------------------------------------
// Small formats

/// SyncState: opaque to clients, here base64 of kind, mailbox, folder and watermark.
fn encode_sync_state(kind: &str, tag: u32, folder_key: u64, watermark: u64) -> String {
    STANDARD.encode(format!(
        "mailmove-sync:{kind}:{tag}:{folder_key}:{watermark}"
    ))
}

fn decode_sync_state(state: &str, kind: &str, tag: u32, folder_key: u64) -> Option<u64> {
    let text = String::from_utf8(STANDARD.decode(state.trim()).ok()?).ok()?;
    let rest = text.strip_prefix("mailmove-sync:")?;
    let parts: Vec<&str> = rest.split(':').collect();
    match parts.as_slice() {
        [k, t, f, w] if *k == kind && t.parse() == Ok(tag) && f.parse() == Ok(folder_key) => {
            w.parse().ok()
        }
        _ => None,
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim() {
        "true" | "True" | "1" => Some(true),
        "false" | "False" | "0" => Some(false),
        _ => None,
    }
}

/// xs:dateTime, with or without a zone (without: UTC).
fn parse_time(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(&format!("{text}Z"), &Rfc3339))
        .ok()
}

/// UTC with a `Z`, whole seconds, as Exchange writes dates.
fn ews_time(time: OffsetDateTime) -> String {
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
    use crate::ews::xml::parse;

    #[test]
    fn tags_are_read_in_every_spelling_and_echoed_like_exchange() {
        assert_eq!(parse_tag("0x0E07"), Some(0x0E07));
        assert_eq!(parse_tag("3591"), Some(0x0E07));
        assert_eq!(parse_tag("0x0E070003"), Some(0x0E07));
        let uri =
            parse(r#"<ExtendedFieldURI PropertyTag="0x0E07" PropertyType="Integer"/>"#).unwrap();
        assert_eq!(
            echo_prop_uri(&uri),
            r#"<t:ExtendedFieldURI PropertyTag="0xe07" PropertyType="Integer"/>"#
        );
    }

    #[test]
    fn named_properties_need_a_set() {
        let bad = parse(r#"<ExtendedFieldURI PropertyName="x" PropertyType="String"/>"#).unwrap();
        assert!(parse_prop_uri(&bad).is_err());
        let good = parse(
            r#"<ExtendedFieldURI DistinguishedPropertySetId="PublicStrings" PropertyName="x" PropertyType="String"/>"#,
        )
        .unwrap();
        assert_eq!(
            parse_prop_uri(&good).unwrap().0,
            PropKey::Name {
                set: "00020329-0000-0000-c000-000000000046".into(),
                name: "x".into()
            }
        );
    }

    #[test]
    fn pages_from_the_beginning_and_the_end() {
        let page = Page {
            max: Some(2),
            offset: 2,
            from_end: false,
        };
        let (shown, attributes) = page.apply(vec![1, 2, 3, 4, 5]);
        assert_eq!(shown, vec![3, 4]);
        assert!(attributes.contains(r#"IndexedPagingOffset="4""#));
        assert!(attributes.contains(r#"IncludesLastItemInRange="false""#));
        let page = Page {
            max: Some(2),
            offset: 0,
            from_end: true,
        };
        assert_eq!(page.apply(vec![1, 2, 3]).0, vec![2, 3]);
    }

    #[test]
    fn sync_states_are_bound_to_their_folder() {
        let state = encode_sync_state("items", 1, 7, 42);
        assert_eq!(decode_sync_state(&state, "items", 1, 7), Some(42));
        assert_eq!(decode_sync_state(&state, "items", 1, 8), None);
        assert_eq!(decode_sync_state("garbage", "items", 1, 7), None);
    }

    #[test]
    fn times_are_utc_with_z() {
        let t = parse_time("2020-05-06T07:08:09+02:00").unwrap();
        assert_eq!(ews_time(t), "2020-05-06T05:08:09Z");
        assert_eq!(
            ews_time(parse_time("2020-05-06T07:08:09").unwrap()),
            "2020-05-06T07:08:09Z"
        );
    }
}
