//! An Exchange mailbox over EWS, as a migration source or destination.
//!
//! The planner sees EWS folders as an IMAP-like tree: display names joined by `/`, the
//! inbox (found by its role, whatever its display name) as `INBOX`, the distinguished
//! folders' roles as special-use attributes, so mapping by role and by name works
//! unchanged. Items have no UIDs: each gets a stable number through the ledger (as a
//! POP3 message does), keyed by its ItemId. A folder's "UIDVALIDITY" is a hash of its
//! FolderId, so a folder deleted and created again under the same name is new.
//!
//! As a destination, every item carries its origin ([`crate::plan::origin`]) in a
//! named property of ours: after a crash, an item whose creation was not recorded is
//! found by that mark before it is created again.

use std::collections::HashMap;

use mailmove_ews::{Client, FlagStatus, Folder, FolderId, ItemSummary, NewItem, Role};
use mailmove_model::{Secret, mutf7};
use mailmove_net::Body;
use mailmove_store::Ledger;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::connector::{
    ConnectorError, DestFolder, Destination, Failure, FetchedMessage, FolderEntry, KeptFlags,
    OpenedFolder, Refusal, Side, SideError, Sink, Source, WriteRequest, Writer, Written,
};
use crate::connectors::{Account, WebAuth, connector_error, judge};
use crate::dates::{internal_date, internal_date_from_header, parse_internal_date};
use crate::folders::FolderTree;
use crate::identity::Headers;
use crate::plan::{DestMessage, SourceMessage};

/// Items per GetItem or CreateItem request, and the bytes one request may carry.
const BATCH_ITEMS: usize = 16;
const BATCH_BYTES: u64 = 8 * 1024 * 1024;

/// The flags an Exchange item keeps: read state, the follow-up flag, and keywords as
/// categories (except `$`-keywords, which are IMAP clients' private markers).
pub fn kept_flags() -> KeptFlags {
    KeptFlags {
        listed: vec!["\\Seen".into(), "\\Flagged".into()],
        new_keywords: true,
        dollar_keywords: false,
    }
}

impl From<mailmove_ews::Error> for ConnectorError {
    fn from(error: mailmove_ews::Error) -> ConnectorError {
        let failure = match &error {
            mailmove_ews::Error::Throttled { .. } => Some(Failure::Throttled),
            _ => None,
        };
        let failure = failure.unwrap_or_else(|| {
            let net = match &error {
                mailmove_ews::Error::Net(e) => Some(e),
                _ => None,
            };
            judge(net, error.is_transient(), error.is_connection_setup())
        });
        let remedy = error.remedy();
        connector_error(failure, remedy, error)
    }
}

pub struct EwsSide {
    client: Client,
    side: Side,
    ledger: Option<Ledger>,
    /// Raw name -> folder, as last listed.
    folders: HashMap<Vec<u8>, Folder>,
    /// The open folder's raw name and id.
    open: Option<(Vec<u8>, FolderId)>,
    /// The open folder's items by our number.
    items: HashMap<u32, ItemSummary>,
}

impl EwsSide {
    pub async fn connect(
        account: &Account,
        side: Side,
        ledger: Option<&Ledger>,
    ) -> Result<EwsSide, SideError> {
        let wrap = |error: mailmove_ews::Error| SideError::new(side, error);
        if account.admin.is_some() {
            // Logging in as the administrator would open the administrator's own
            // mailbox: refuse rather than copy the wrong one.
            return Err(SideError::new(
                side,
                ConnectorError::new(
                    Failure::Setup,
                    "an administrator cannot sign in for a mailbox over Exchange Web \
                     Services yet (impersonation): use the mailbox's own login",
                ),
            ));
        }
        let bearer_token = account
            .bearer_token()
            .await
            .map_err(|e| SideError::new(side, e))?;
        let options = options(account, bearer_token);
        let url = match account.endpoint.web_url() {
            Some(url) => url::Url::parse(&url).map_err(|e| {
                wrap(mailmove_ews::Error::Protocol(format!(
                    "the Exchange address {url} is not a URL: {e}"
                )))
            })?,
            None => discover(account, &options).await.map_err(wrap)?,
        };
        let client = Client::connect(&url, &account.login, &account.password, &options)
            .await
            .map_err(wrap)?;
        Ok(EwsSide {
            client,
            side,
            ledger: ledger.cloned(),
            folders: HashMap::new(),
            open: None,
            items: HashMap::new(),
        })
    }

    fn wrap(&self) -> impl Fn(mailmove_ews::Error) -> SideError + use<> {
        let side = self.side;
        move |error| SideError::new(side, error)
    }

    /// Lists the mail folders again and shows them as a tree.
    async fn tree(&mut self) -> Result<FolderTree, SideError> {
        let folders = self.client.mail_folders().await.map_err(self.wrap())?;
        let inbox_path = folders
            .iter()
            .find(|f| f.role == Some(Role::Inbox))
            .map(|f| f.path.clone());
        self.folders.clear();
        let mut entries = Vec::with_capacity(folders.len());
        for folder in folders {
            let mut levels = folder.path.clone();
            if let Some(inbox) = &inbox_path
                && levels.starts_with(inbox)
            {
                levels.splice(0..inbox.len(), ["INBOX".to_string()]);
            }
            let raw = raw_name(&levels);
            let attributes = match folder.role {
                Some(Role::SentItems) => vec!["\\Sent".to_string()],
                Some(Role::Drafts) => vec!["\\Drafts".to_string()],
                Some(Role::DeletedItems) => vec!["\\Trash".to_string()],
                Some(Role::JunkEmail) => vec!["\\Junk".to_string()],
                _ => Vec::new(),
            };
            entries.push(FolderEntry {
                name: raw.clone(),
                delimiter: Some('/'),
                attributes,
            });
            self.folders.insert(raw, folder);
        }
        // Exchange has no subscriptions: every folder shows.
        let subscribed = entries.iter().map(|e| e.name.clone()).collect();
        Ok(FolderTree {
            entries,
            prefix: Vec::new(),
            delimiter: Some('/'),
            subscribed,
        })
    }

    /// The folder of a raw name, listing again once if another connection created it.
    async fn folder(&mut self, raw: &[u8]) -> Result<Folder, SideError> {
        if !self.folders.contains_key(raw) {
            self.tree().await?;
        }
        self.folders.get(raw).cloned().ok_or_else(|| {
            (self.wrap())(mailmove_ews::Error::Protocol(format!(
                "the folder {} is not in the mailbox",
                mutf7::decode_lenient(raw)
            )))
        })
    }

    /// Stable numbers for the items of a folder (positions without a ledger).
    async fn number(&self, scope: &str, items: &[ItemSummary]) -> Result<Vec<u32>, SideError> {
        match &self.ledger {
            Some(ledger) => {
                let keys: Vec<String> = items.iter().map(|i| i.id.0.clone()).collect();
                ledger.assign_source_uids(scope, &keys).await.map_err(|e| {
                    (self.wrap())(mailmove_ews::Error::Protocol(format!(
                        "the state file: {e}"
                    )))
                })
            }
            None => Ok((1..=items.len() as u32).collect()),
        }
    }

    async fn list(&mut self, scope: String) -> Result<Vec<(u32, ItemSummary)>, SideError> {
        let Some((_, id)) = self.open.clone() else {
            return Ok(Vec::new());
        };
        let items = self.client.list_items(&id).await.map_err(self.wrap())?;
        let numbers = self.number(&scope, &items).await?;
        let listed: Vec<(u32, ItemSummary)> = numbers.into_iter().zip(items).collect();
        self.items = listed.iter().cloned().collect();
        Ok(listed)
    }

    /// Opens a folder on either side: its items are listed and numbered on demand.
    async fn open_folder(&mut self, raw: &[u8]) -> Result<Folder, SideError> {
        let folder = self.folder(raw).await?;
        self.open = Some((raw.to_vec(), folder.id.clone()));
        self.items.clear();
        Ok(folder)
    }
}

impl Source for EwsSide {
    async fn folders(&mut self) -> Result<FolderTree, SideError> {
        self.tree().await
    }

    /// A folder's message count as last listed.
    async fn folder_size(&mut self, raw: &[u8]) -> u64 {
        self.folders
            .get(raw)
            .map_or(0, |folder| u64::from(folder.total_count))
    }

    async fn open(&mut self, raw: &[u8]) -> Result<OpenedFolder, SideError> {
        let folder = self.open_folder(raw).await?;
        Ok(OpenedFolder {
            uidvalidity: validity(&folder.id),
            exists: folder.total_count,
        })
    }

    async fn messages(&mut self) -> Result<Vec<SourceMessage>, SideError> {
        let Some((raw, _)) = self.open.clone() else {
            return Ok(Vec::new());
        };
        let mut messages: Vec<SourceMessage> = self
            .list(String::from_utf8_lossy(&raw).into_owned())
            .await?
            .into_iter()
            .map(|(uid, item)| SourceMessage {
                uid,
                flags: flags_of(item.is_read, item.flag, &item.categories),
                internal_date: item.received.map(internal_date),
                size: item.size,
                content_key: listed_key(&item),
                message_id: item.internet_message_id,
                subject: item.subject,
            })
            .collect();
        messages.sort_by_key(|m| m.uid);
        Ok(messages)
    }

    async fn fetch(&mut self, uids: &[u32], sink: &Sink) -> Result<(), SideError> {
        let wanted: Vec<(u32, ItemSummary)> = uids
            .iter()
            .filter_map(|uid| Some((*uid, self.items.get(uid)?.clone())))
            .collect();
        let mut start = 0;
        while start < wanted.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < wanted.len()
                && end - start < BATCH_ITEMS
                && (end == start || bytes + wanted[end].1.size <= BATCH_BYTES)
            {
                bytes += wanted[end].1.size;
                end += 1;
            }
            let batch = &wanted[start..end];
            start = end;
            let ids: Vec<_> = batch.iter().map(|(_, item)| item.id.clone()).collect();
            let found = self.client.get_mime(&ids).await.map_err(self.wrap())?;
            let by_id: HashMap<String, u32> = batch
                .iter()
                .map(|(uid, i)| (i.id.0.clone(), *uid))
                .collect();
            for (id, result) in found {
                if let (Some(uid), Err(error)) = (by_id.get(&id.0), &result)
                    && error.code == mailmove_ews::MIME_TOO_LARGE
                {
                    sink.withhold(*uid, error.to_string());
                    continue;
                }
                let (Some(uid), Ok(item)) = (by_id.get(&id.0), result) else {
                    // Gone since the listing, or unreadable: the engine records it
                    // as not returned.
                    continue;
                };
                let headers = Headers::parse(header_part(&item.mime));
                let size = item.mime.len() as u64;
                let message = FetchedMessage::new(
                    *uid,
                    flags_of(item.is_read, item.flag, &item.categories),
                    item.received.map(internal_date),
                    Body::Memory(item.mime),
                )
                .with_content_key(headers.content_key(size));
                if sink.send(message).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

impl Destination for EwsSide {
    type Writer<'a> = EwsWriter;

    async fn folders(&mut self) -> Result<FolderTree, SideError> {
        self.tree().await
    }

    async fn create(&mut self, raw: &[u8]) -> Result<(), SideError> {
        let levels: Vec<String> = raw
            .split(|b| *b == b'/')
            .map(mutf7::decode_lenient)
            .collect();
        let mut parent: Option<FolderId> = None;
        for depth in 1..=levels.len() {
            let path = raw_name(&levels[..depth]);
            if let Some(folder) = self.folders.get(&path) {
                parent = Some(folder.id.clone());
                continue;
            }
            let name = &levels[depth - 1];
            let created = match self.client.create_folder(parent.as_ref(), name).await {
                Ok(folder) => folder,
                // Another connection got there first.
                Err(mailmove_ews::Error::Fault { code, .. }) if code == "ErrorFolderExists" => {
                    self.tree().await?;
                    match self.folders.get(&path) {
                        Some(folder) => folder.clone(),
                        None => {
                            return Err((self.wrap())(mailmove_ews::Error::Protocol(format!(
                                "Exchange says the folder {name} exists but does not list it"
                            ))));
                        }
                    }
                }
                Err(e) => return Err((self.wrap())(e)),
            };
            parent = Some(created.id.clone());
            self.folders.insert(path, created);
        }
        Ok(())
    }

    async fn open(&mut self, raw: &[u8]) -> Result<DestFolder, SideError> {
        let folder = self.open_folder(raw).await?;
        Ok(DestFolder {
            exists: folder.total_count,
            uidvalidity: validity(&folder.id),
            uidnext: None,
            kept_flags: kept_flags(),
        })
    }

    async fn messages(&mut self) -> Result<Vec<DestMessage>, SideError> {
        let Some((raw, _)) = self.open.clone() else {
            return Ok(Vec::new());
        };
        let scope = format!("ews-dest/{}", String::from_utf8_lossy(&raw));
        Ok(self
            .list(scope)
            .await?
            .into_iter()
            .map(|(uid, item)| DestMessage {
                uid,
                content_key: listed_key(&item),
                origin: item.source_identity,
            })
            .collect())
    }

    /// Creates items in the open destination folder, a batch per request (the window
    /// is the batch's: EWS answers a whole request at once).
    fn writer(&mut self, _window: usize, folder: &[u8]) -> EwsWriter {
        EwsWriter {
            client: self.client.clone(),
            folder: self
                .folders
                .get(folder)
                .map(|f| f.id.clone())
                .or_else(|| self.open.as_ref().map(|(_, id)| id.clone())),
            pending: Vec::new(),
            pending_bytes: 0,
        }
    }
}

/// Items waiting to be created together.
pub struct EwsWriter {
    client: Client,
    folder: Option<FolderId>,
    pending: Vec<Pending>,
    pending_bytes: u64,
}

struct Pending {
    token: u64,
    mime: Vec<u8>,
    is_read: bool,
    flagged: bool,
    categories: Vec<String>,
    received: Option<OffsetDateTime>,
    sent: Option<OffsetDateTime>,
    origin: String,
}

impl Writer for EwsWriter {
    async fn send(&mut self, request: WriteRequest) -> Result<Vec<Written>, SideError> {
        let mime = request.body.into_vec().map_err(|e| {
            SideError::new(
                Side::Source,
                mailmove_ews::Error::Protocol(format!("cannot read a spooled message back: {e}")),
            )
        })?;
        let has = |name: &str| request.flags.iter().any(|f| f.eq_ignore_ascii_case(name));
        let sent = Headers::parse(header_part(&mime))
            .date
            .and_then(|date| internal_date_from_header(&date))
            .and_then(|date| parse_internal_date(&date));
        self.pending_bytes += mime.len() as u64;
        self.pending.push(Pending {
            token: request.token,
            is_read: has("\\Seen"),
            flagged: has("\\Flagged"),
            categories: request
                .flags
                .iter()
                .filter(|f| !f.starts_with('\\'))
                .cloned()
                .collect(),
            received: request
                .internal_date
                .as_deref()
                .and_then(parse_internal_date),
            sent,
            origin: request.origin,
            mime,
        });
        if self.pending.len() >= BATCH_ITEMS || self.pending_bytes >= BATCH_BYTES {
            self.flush().await
        } else {
            Ok(Vec::new())
        }
    }

    async fn finish(mut self) -> Result<Vec<Written>, SideError> {
        self.flush().await
    }

    /// Creates what is waiting now, rather than when the batch is full.
    async fn idle(&mut self) -> Result<Vec<Written>, SideError> {
        self.flush().await
    }
}

impl EwsWriter {
    async fn flush(&mut self) -> Result<Vec<Written>, SideError> {
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let wrap = |error| SideError::new(Side::Destination, error);
        let folder = self.folder.clone().ok_or_else(|| {
            wrap(mailmove_ews::Error::Protocol(
                "no destination folder is open".into(),
            ))
        })?;
        let items: Vec<NewItem<'_>> = pending
            .iter()
            .map(|p| NewItem {
                mime: &p.mime,
                is_read: p.is_read,
                flag: if p.flagged {
                    FlagStatus::Flagged
                } else {
                    FlagStatus::NotFlagged
                },
                categories: &p.categories,
                received: p.received,
                sent: p.sent,
                source_identity: &p.origin,
            })
            .collect();
        let results = self
            .client
            .create_items(&folder, &items)
            .await
            .map_err(wrap)?;
        Ok(pending
            .iter()
            .zip(results)
            .map(|(p, result)| Written {
                token: p.token,
                result: result.map(|_| None).map_err(|e| Refusal {
                    throttled: e.code == "ErrorServerBusy",
                    text: format!("{} ({})", e.message, e.code),
                }),
            })
            .collect())
    }
}

fn options(account: &Account, bearer_token: Option<Secret<String>>) -> mailmove_ews::Options {
    mailmove_ews::Options {
        connect: account.options.clone(),
        auth: match account.web_auth {
            _ if bearer_token.is_some() => mailmove_ews::AuthKind::Bearer,
            WebAuth::Auto => mailmove_ews::AuthKind::Auto,
            WebAuth::Basic => mailmove_ews::AuthKind::Basic,
            WebAuth::Ntlm => mailmove_ews::AuthKind::Ntlm,
            WebAuth::Bearer => mailmove_ews::AuthKind::Bearer,
        },
        bearer_token,
        ..mailmove_ews::Options::default()
    }
}

/// Finds the EWS address from the login's email address: autodiscover on the server
/// named in the URL first, then at the places Exchange publishes it for the domain.
async fn discover(
    account: &Account,
    options: &mailmove_ews::Options,
) -> Result<url::Url, mailmove_ews::Error> {
    let endpoint = &account.endpoint;
    let email = if account.login.contains('@') {
        account.login.clone()
    } else {
        format!("{}@{}", account.login, endpoint.host)
    };
    let base = url::Url::parse(&format!("{}/", endpoint.web_origin()))
        .map_err(|e| mailmove_ews::Error::Protocol(e.to_string()))?;
    match mailmove_ews::autodiscover_at(&[base], &email, &account.login, &account.password, options)
        .await
    {
        Ok(url) => Ok(url),
        Err(e @ mailmove_ews::Error::AuthFailed { .. }) => Err(e),
        Err(_) => {
            mailmove_ews::autodiscover(&email, &account.login, &account.password, options).await
        }
    }
}

/// The content key a listing gives: the Message-ID and Exchange's item size, which is
/// not the MIME size on a real Exchange (the key of the bytes read replaces it).
fn listed_key(item: &ItemSummary) -> String {
    Headers {
        message_id: item.internet_message_id.clone(),
        subject: item.subject.clone(),
        ..Headers::default()
    }
    .content_key(item.size)
}

/// Levels joined by `/`, each in modified UTF-7 as an IMAP server would name them.
fn raw_name(levels: &[String]) -> Vec<u8> {
    levels
        .iter()
        .map(|level| mutf7::encode(&level.replace('/', "_")))
        .collect::<Vec<_>>()
        .join("/")
        .into_bytes()
}

/// A folder's stand-in for UIDVALIDITY: a hash of its FolderId, never 0.
fn validity(id: &FolderId) -> u32 {
    let digest = Sha256::digest(id.0.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]).max(1)
}

/// IMAP flags for an item's state: read, flagged, categories as keywords (an IMAP
/// keyword is an atom, so characters it cannot hold become `_`).
fn flags_of(is_read: bool, flag: FlagStatus, categories: &[String]) -> Vec<String> {
    let mut flags = Vec::new();
    if is_read {
        flags.push("\\Seen".to_string());
    }
    if flag == FlagStatus::Flagged {
        flags.push("\\Flagged".to_string());
    }
    for category in categories {
        let keyword: String = category
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() && !"(){%*\"\\]".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if !keyword.is_empty() {
            flags.push(keyword);
        }
    }
    flags
}

/// The header part of a message (up to the first empty line).
fn header_part(mime: &[u8]) -> &[u8] {
    let end = mime
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| mime.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))
        .unwrap_or(mime.len());
    &mime[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_become_keywords_an_imap_server_accepts() {
        let flags = flags_of(
            true,
            FlagStatus::Flagged,
            &["Red category".to_string(), "Projekt (alt)".to_string()],
        );
        assert_eq!(
            flags,
            vec!["\\Seen", "\\Flagged", "Red_category", "Projekt__alt_"]
        );
    }

    #[test]
    fn exchange_keeps_read_flagged_and_plain_keywords() {
        let kept = kept_flags();
        assert!(kept.keeps("\\Seen"));
        assert!(kept.keeps("\\Flagged"));
        assert!(kept.keeps("Project"));
        assert!(!kept.keeps("\\Answered"));
        assert!(!kept.keeps("$Forwarded"));
    }

    #[test]
    fn raw_names_encode_levels_like_an_imap_server() {
        assert_eq!(raw_name(&["INBOX".into(), "Sub".into()]), b"INBOX/Sub");
        assert_eq!(raw_name(&["Entwürfe".into()]), b"Entw&APw-rfe");
        assert_eq!(raw_name(&["a/b".into()]), b"a_b");
    }
}
