//! The EWS client: the operations a migration needs, on top of one [`Transport`], with
//! Exchange's throttling (ErrorServerBusy with BackOffMilliseconds, HTTP 429/503 with
//! Retry-After) absorbed up to a total wait per request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mailmove_model::Secret;
use tracing::info;
use url::Url;

use crate::error::{Error, ItemError};
use crate::request::{self, FolderRef};
use crate::response::{self, RawFolder};
use crate::transport::{Transport, check_url, offers};
use crate::types::{
    Folder, FolderId, ItemId, ItemSummary, MimeItem, NewItem, Options, Role, SyncPage,
};
use crate::xml::{Document, read_document, read_document_within};

/// Entries asked for per FindFolder / FindItem page. Exchange caps a page at 1,000 by
/// default (EWSFindCountLimit).
const PAGE: u32 = 500;
/// Deepest folder nesting followed when building paths.
const MAX_DEPTH: usize = 64;
const MSG_FOLDER_ROOT: &str = "msgfolderroot";

/// A logged-in EWS session. Cloning is cheap: clones share one connection pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    root: FolderId,
    max_throttle_wait: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.transport.url().as_str())
            .field("login", &self.inner.transport.login())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Checks the URL (https, or http only to a loopback host or with
    /// `allow_plaintext`; otherwise an error before any password is sent), then reads
    /// the message folder root to prove the login.
    pub async fn connect(
        url: &Url,
        login: &str,
        password: &Secret<String>,
        options: &Options,
    ) -> Result<Client, Error> {
        check_url(url, login, options)?;
        let transport = Transport::new(url, login, password, options)?;
        let mut throttle = Throttle::new(options.max_throttle_wait);
        let body = request::get_folder(&[FolderRef::Distinguished(MSG_FOLDER_ROOT)]);
        let doc = call(&transport, body, &mut throttle).await?;
        let message = response::single(&doc.root)?;
        let root = response::folders_in(message.node)
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol("GetFolder answered without the folder".into()))?;
        Ok(Client {
            inner: Arc::new(Inner {
                transport,
                root: root.id,
                max_throttle_wait: options.max_throttle_wait,
            }),
        })
    }

    pub fn url(&self) -> &Url {
        self.inner.transport.url()
    }

    /// The id of the message folder root (`msgfolderroot`).
    pub fn root(&self) -> &FolderId {
        &self.inner.root
    }

    /// Mail folders below the message folder root, at any depth, sorted by path:
    /// FolderClass `IPF.Note` or `IPF.Note.*`, or no class at all (Outlook shows those
    /// as mail folders), and not hidden (PidTagAttributeHidden, which Outlook does not
    /// show either). Paths run through every parent, mail or not.
    pub async fn mail_folders(&self) -> Result<Vec<Folder>, Error> {
        let mut all = Vec::new();
        let mut offset = 0;
        loop {
            let body = request::find_folder(
                FolderRef::Distinguished(MSG_FOLDER_ROOT),
                true,
                offset,
                PAGE,
                None,
            );
            let doc = self.call(body).await?;
            let root_folder = root_folder(&doc)?;
            let page = response::folders_in(root_folder);
            let paging = response::paging(root_folder)?;
            let count = page.len() as u32;
            all.extend(page);
            if all.len() > MAX_LISTED_FOLDERS {
                return Err(Error::Protocol(format!(
                    "more than {MAX_LISTED_FOLDERS} folders (a mailbox with more is not supported)"
                )));
            }
            match next_offset(offset, count, paging) {
                Some(next) => offset = next,
                None => break,
            }
        }
        let roles = self.roles().await?;
        let by_id: HashMap<&FolderId, &RawFolder> = all.iter().map(|f| (&f.id, f)).collect();
        let mut folders: Vec<Folder> = all
            .iter()
            .filter(|f| !f.hidden && is_mail_class(f.class.as_deref()))
            .map(|f| Folder {
                id: f.id.clone(),
                parent: f.parent.clone().filter(|p| *p != self.inner.root),
                path: path_of(f, &by_id, &self.inner.root),
                class: f.class.clone().unwrap_or_default(),
                role: roles.get(&f.id).copied(),
                total_count: f.total_count,
            })
            .collect();
        folders.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(folders)
    }

    /// Creates a mail folder (`IPF.Note`) below `parent`, or below the message folder
    /// root for `None`. A folder of that name already there is returned instead, so
    /// creating twice is harmless.
    pub async fn create_folder(
        &self,
        parent: Option<&FolderId>,
        name: &str,
    ) -> Result<Folder, Error> {
        let parent_ref = match parent {
            Some(id) => FolderRef::Id(id),
            None => FolderRef::Distinguished(MSG_FOLDER_ROOT),
        };
        let doc = self.call(request::create_folder(parent_ref, name)).await?;
        let (id, class, total_count) = match response::single(&doc.root) {
            Ok(message) => {
                let created = response::folders_in(message.node)
                    .into_iter()
                    .next()
                    .ok_or_else(|| Error::Protocol("CreateFolder answered without an id".into()))?;
                (created.id, "IPF.Note".to_string(), 0)
            }
            Err(Error::Fault { code, .. }) if code == "ErrorFolderExists" => {
                let existing = self.child_named(parent_ref, name).await?;
                (
                    existing.id,
                    existing.class.unwrap_or_default(),
                    existing.total_count,
                )
            }
            Err(error) => return Err(error),
        };
        let mut path = match parent {
            Some(parent) => self.folder_path(parent).await?,
            None => Vec::new(),
        };
        path.push(name.to_string());
        Ok(Folder {
            id,
            parent: parent.cloned().filter(|p| *p != self.inner.root),
            path,
            class,
            role: None,
            total_count,
        })
    }

    /// Every item in a folder, in pages, with the summary properties and our named
    /// property.
    pub async fn list_items(&self, folder: &FolderId) -> Result<Vec<ItemSummary>, Error> {
        let mut items = Vec::new();
        let mut offset = 0;
        loop {
            let doc = self
                .call(request::find_item(folder, offset, PAGE, None))
                .await?;
            let root_folder = root_folder(&doc)?;
            let page = response::item_summaries(root_folder);
            let paging = response::paging(root_folder)?;
            let count = page.len() as u32;
            items.extend(page);
            check_listed(items.len())?;
            match next_offset(offset, count, paging) {
                Some(next) => offset = next,
                None => break,
            }
        }
        Ok(items)
    }

    /// The items of `folder` whose named property holds `identity`: finds an item whose
    /// creation was not recorded before a crash.
    pub async fn find_by_source_identity(
        &self,
        folder: &FolderId,
        identity: &str,
    ) -> Result<Vec<ItemId>, Error> {
        let mut ids = Vec::new();
        let mut offset = 0;
        loop {
            let doc = self
                .call(request::find_item(folder, offset, PAGE, Some(identity)))
                .await?;
            let root_folder = root_folder(&doc)?;
            let page = response::item_ids(root_folder, "Items");
            let paging = response::paging(root_folder)?;
            let count = page.len() as u32;
            ids.extend(page);
            check_listed(ids.len())?;
            match next_offset(offset, count, paging) {
                Some(next) => offset = next,
                None => break,
            }
        }
        Ok(ids)
    }

    /// Reads items with their MIME content, in one request. Each item has its own
    /// result: a missing item is an [`ItemError`], not an `Err`. Items Exchange was
    /// too busy for are asked for again after its back-off.
    pub async fn get_mime(
        &self,
        ids: &[ItemId],
    ) -> Result<Vec<(ItemId, Result<MimeItem, ItemError>)>, Error> {
        let mut results: Vec<Option<Result<MimeItem, ItemError>>> = vec![None; ids.len()];
        let mut pending: Vec<usize> = (0..ids.len()).collect();
        let mut throttle = Throttle::new(self.inner.max_throttle_wait);
        while !pending.is_empty() {
            let asked: Vec<ItemId> = pending.iter().map(|&i| ids[i].clone()).collect();
            let Document { root, mut blobs } = call(
                &self.inner.transport,
                request::get_mime(&asked),
                &mut throttle,
            )
            .await?;
            let messages = response::messages(&root)?;
            check_count(messages.len(), pending.len())?;
            let mut busy = Busy::default();
            for (message, &index) in messages.iter().zip(&pending) {
                if message.is_busy() {
                    busy.add(index, message.back_off);
                } else if message.success {
                    let max = self.inner.transport.max_message_size();
                    results[index] = Some(response::mime_item(&mut blobs, message.node, max));
                } else {
                    results[index] = Some(Err(message.to_item_error()));
                }
            }
            pending = busy.retry(&mut throttle, self.url()).await?;
        }
        Ok(ids
            .iter()
            .cloned()
            .zip(
                results
                    .into_iter()
                    .map(|r| r.unwrap_or_else(|| Err(lost()))),
            )
            .collect())
    }

    /// Creates messages from MIME in `folder` (MessageDisposition SaveOnly), several per
    /// request, each made to look received: PR_MESSAGE_FLAGS read-or-not (never
    /// unsent), delivery and submit times, read state, flag, categories, and our named
    /// property holding `source_identity`. Each item has its own result.
    pub async fn create_items(
        &self,
        folder: &FolderId,
        items: &[NewItem<'_>],
    ) -> Result<Vec<Result<ItemId, ItemError>>, Error> {
        let mut results: Vec<Option<Result<ItemId, ItemError>>> = vec![None; items.len()];
        let mut pending: Vec<usize> = (0..items.len()).collect();
        let mut throttle = Throttle::new(self.inner.max_throttle_wait);
        while !pending.is_empty() {
            let batch: Vec<NewItem<'_>> = pending.iter().map(|&i| items[i]).collect();
            let body = request::create_items(folder, &batch);
            drop(batch);
            let doc = call(&self.inner.transport, body, &mut throttle).await?;
            let messages = response::messages(&doc.root)?;
            check_count(messages.len(), pending.len())?;
            let mut busy = Busy::default();
            for (message, &index) in messages.iter().zip(&pending) {
                if message.is_busy() {
                    busy.add(index, message.back_off);
                } else if message.success {
                    let id = response::item_ids(message.node, "Items").into_iter().next();
                    results[index] = Some(id.ok_or_else(|| ItemError {
                        code: "ErrorNoItemId".into(),
                        message: "Exchange created the item but returned no id for it".into(),
                    }));
                } else {
                    results[index] = Some(Err(message.to_item_error()));
                }
            }
            pending = busy.retry(&mut throttle, self.url()).await?;
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(lost())))
            .collect())
    }

    /// One page of changes since `state` (`None`: from the start), at most `max`
    /// (1 to 512).
    pub async fn sync_items(
        &self,
        folder: &FolderId,
        state: Option<&str>,
        max: u32,
    ) -> Result<SyncPage, Error> {
        let doc = self
            .call(request::sync_folder_items(folder, state, max))
            .await?;
        response::sync_page(response::single(&doc.root)?.node)
    }

    async fn call(&self, body: String) -> Result<Document, Error> {
        let mut throttle = Throttle::new(self.inner.max_throttle_wait);
        call(&self.inner.transport, body, &mut throttle).await
    }

    /// The folder ids of the distinguished mail folders; one the mailbox lacks is left
    /// out.
    async fn roles(&self) -> Result<HashMap<FolderId, Role>, Error> {
        let refs: Vec<FolderRef<'_>> = Role::ALL
            .iter()
            .map(|r| FolderRef::Distinguished(r.distinguished_id()))
            .collect();
        let doc = self.call(request::get_folder(&refs)).await?;
        let messages = response::messages(&doc.root)?;
        Ok(messages
            .iter()
            .zip(Role::ALL)
            .filter(|(m, _)| m.success)
            .filter_map(|(m, role)| {
                let folder = response::folders_in(m.node).into_iter().next()?;
                Some((folder.id, role))
            })
            .collect())
    }

    /// Display names from the top down to `id`.
    async fn folder_path(&self, id: &FolderId) -> Result<Vec<String>, Error> {
        let mut names = Vec::new();
        let mut current = id.clone();
        for _ in 0..MAX_DEPTH {
            if current == self.inner.root {
                break;
            }
            let doc = self
                .call(request::get_folder(&[FolderRef::Id(&current)]))
                .await?;
            let message = response::single(&doc.root)?;
            let folder = response::folders_in(message.node)
                .into_iter()
                .next()
                .ok_or_else(|| Error::Protocol("GetFolder answered without the folder".into()))?;
            names.push(folder.name);
            match folder.parent {
                Some(parent) => current = parent,
                None => break,
            }
        }
        names.reverse();
        Ok(names)
    }

    async fn child_named(&self, parent: FolderRef<'_>, name: &str) -> Result<RawFolder, Error> {
        let doc = self
            .call(request::find_folder(parent, false, 0, 10, Some(name)))
            .await?;
        response::folders_in(root_folder(&doc)?)
            .into_iter()
            .find(|f| f.name == name)
            .ok_or_else(|| Error::Fault {
                code: "ErrorFolderExists".into(),
                message: format!("a folder named {name:?} exists but cannot be found"),
            })
    }
}

/// Sends one EWS request and reads the answer, sleeping through Exchange's throttling
/// while the budget lasts. A SOAP fault, or a single response message that failed, is
/// returned as the document for the caller to read; ErrorServerBusy is retried here.
async fn call(
    transport: &Transport,
    body: String,
    throttle: &mut Throttle,
) -> Result<Document, Error> {
    let body = Bytes::from(transport.request_body(body));
    loop {
        let mut answer = transport.post(body.clone()).await?;
        let doc = match answer.status {
            200 => read_document_within(&mut answer.body, transport.max_message_size()).await?,
            500 => {
                let bytes = answer.body.bytes().await;
                match read_document(&bytes[..]).await {
                    Ok(doc) if response::fault(&doc.root).is_some() => doc,
                    _ => {
                        return Err(Error::Http {
                            status: 500,
                            text: summary(&bytes),
                        });
                    }
                }
            }
            401 => {
                answer.body.drain().await;
                let text = if transport.uses_bearer() {
                    "the access token was refused: it may have expired".to_string()
                } else {
                    login_hint(transport.login(), &offers(&answer.headers))
                };
                return Err(Error::AuthFailed {
                    login: transport.login().to_string(),
                    text,
                });
            }
            429 | 503 => {
                let wait = retry_after(&answer.headers);
                answer.body.drain().await;
                throttle
                    .wait(wait, &format!("HTTP {}", answer.status), transport.url())
                    .await?;
                continue;
            }
            status => {
                let mut text = summary(&answer.body.bytes().await);
                if let Some(location) = answer.headers.get(http::header::LOCATION) {
                    text = format!("to {}", String::from_utf8_lossy(location.as_bytes()));
                }
                return Err(Error::Http { status, text });
            }
        };
        if let Some(fault) = response::fault(&doc.root) {
            if fault.code == "ErrorServerBusy" {
                throttle
                    .wait(fault.back_off, "ErrorServerBusy", transport.url())
                    .await?;
                continue;
            }
            return Err(Error::Fault {
                code: fault.code,
                message: fault.message,
            });
        }
        let messages = response::messages(&doc.root)?;
        if !messages.is_empty() && messages.iter().all(|m| m.is_busy()) {
            let back_off = messages.iter().filter_map(|m| m.back_off).max();
            throttle
                .wait(back_off, "ErrorServerBusy", transport.url())
                .await?;
            continue;
        }
        drop(messages);
        return Ok(doc);
    }
}

/// The throttling budget of one request.
struct Throttle {
    waited: Duration,
    max: Duration,
    attempts: u32,
}

impl Throttle {
    fn new(max: Duration) -> Throttle {
        Throttle {
            waited: Duration::ZERO,
            max,
            attempts: 0,
        }
    }

    /// Sleeps as long as Exchange asked (or a growing default when it did not say),
    /// unless that would exceed the budget: then fails as [`Error::Throttled`].
    async fn wait(&mut self, asked: Option<Duration>, why: &str, url: &Url) -> Result<(), Error> {
        let default = Duration::from_secs(1u64 << self.attempts.min(6));
        let wait = asked.unwrap_or(default);
        self.attempts += 1;
        if self.waited + wait > self.max {
            return Err(Error::Throttled {
                waited: self.waited,
            });
        }
        info!(
            %url,
            wait_ms = wait.as_millis() as u64,
            waited_ms = self.waited.as_millis() as u64,
            "Exchange is throttling ({why}): waiting before sending the request again"
        );
        tokio::time::sleep(wait).await;
        self.waited += wait;
        Ok(())
    }
}

/// Items of a batch that Exchange was too busy for.
#[derive(Default)]
struct Busy {
    indices: Vec<usize>,
    back_off: Option<Duration>,
}

impl Busy {
    fn add(&mut self, index: usize, back_off: Option<Duration>) {
        self.indices.push(index);
        self.back_off = self.back_off.max(back_off);
    }

    /// Waits for the back-off when some items must be sent again; returns them.
    async fn retry(self, throttle: &mut Throttle, url: &Url) -> Result<Vec<usize>, Error> {
        if !self.indices.is_empty() {
            throttle.wait(self.back_off, "ErrorServerBusy", url).await?;
        }
        Ok(self.indices)
    }
}

fn root_folder(doc: &Document) -> Result<&crate::xml::Node, Error> {
    response::single(&doc.root)?
        .node
        .child("RootFolder")
        .ok_or_else(|| Error::Protocol("a Find answer without RootFolder".into()))
}

/// The offset of the next page, or `None` after the last one. A server that does not
/// move forward ends the listing rather than looping.
fn next_offset(offset: u32, count: u32, paging: response::Paging) -> Option<u32> {
    if paging.last || count == 0 {
        return None;
    }
    let next = if paging.next_offset > offset {
        paging.next_offset
    } else {
        offset.checked_add(count)?
    };
    Some(next)
}

/// The most folders listed, as over IMAP: past it, the server is paging without end.
const MAX_LISTED_FOLDERS: usize = 100_000;

/// The most items listed in one folder: past it, the server is paging without end.
const MAX_LISTED_ITEMS: usize = 5_000_000;

fn check_listed(listed: usize) -> Result<(), Error> {
    if listed > MAX_LISTED_ITEMS {
        return Err(Error::Protocol(format!(
            "the listing of one folder passed {MAX_LISTED_ITEMS} items"
        )));
    }
    Ok(())
}

fn check_count(got: usize, asked: usize) -> Result<(), Error> {
    if got == asked {
        Ok(())
    } else {
        Err(Error::Protocol(format!(
            "asked about {asked} items, got {got} answers"
        )))
    }
}

fn lost() -> ItemError {
    ItemError {
        code: "ErrorNoResponse".into(),
        message: "Exchange gave no answer for this item".into(),
    }
}

pub(crate) fn is_mail_class(class: Option<&str>) -> bool {
    match class {
        None => true,
        Some(class) => class == "IPF.Note" || class.starts_with("IPF.Note."),
    }
}

fn path_of(
    folder: &RawFolder,
    by_id: &HashMap<&FolderId, &RawFolder>,
    root: &FolderId,
) -> Vec<String> {
    let mut names = vec![folder.name.clone()];
    let mut parent = folder.parent.as_ref();
    while let Some(id) = parent {
        if id == root || names.len() > MAX_DEPTH {
            break;
        }
        let Some(up) = by_id.get(id) else { break };
        names.push(up.name.clone());
        parent = up.parent.as_ref();
    }
    names.reverse();
    names
}

/// Seconds from `Retry-After` (the HTTP-date form is not used by Exchange).
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn login_hint(login: &str, offered: &[String]) -> String {
    let ntlm = offered
        .iter()
        .any(|o| o.eq_ignore_ascii_case("NTLM") || o.eq_ignore_ascii_case("Negotiate"));
    if ntlm && !login.contains('\\') && !login.contains('@') {
        "for a domain account, log in as DOMAIN\\user or user@domain".into()
    } else {
        String::new()
    }
}

/// The readable part of an error page: tags dropped, whitespace collapsed, shortened.
fn summary(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let words: Vec<&str> = out.split_whitespace().collect();
    let mut text = words.join(" ");
    if text.chars().count() > 300 {
        text = text.chars().take(300).collect::<String>() + "…";
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::Paging;

    #[test]
    fn mail_classes() {
        assert!(is_mail_class(Some("IPF.Note")));
        assert!(is_mail_class(Some("IPF.Note.OutlookHomepage")));
        assert!(is_mail_class(None));
        assert!(!is_mail_class(Some("IPF.Appointment")));
        assert!(!is_mail_class(Some("IPF.Notes")));
    }

    #[test]
    fn paths_run_through_every_parent() {
        let root = FolderId("R".into());
        let folder = |id: &str, parent: &str, name: &str, class: Option<&str>| RawFolder {
            id: FolderId(id.into()),
            parent: Some(FolderId(parent.into())),
            name: name.into(),
            class: class.map(str::to_string),
            total_count: 0,
            hidden: false,
        };
        let all = [
            folder("A", "R", "Inbox", Some("IPF.Note")),
            folder("B", "A", "Projects", Some("IPF.Note")),
            folder("C", "B", "2024", Some("IPF.Note")),
        ];
        let by_id: HashMap<&FolderId, &RawFolder> = all.iter().map(|f| (&f.id, f)).collect();
        assert_eq!(
            path_of(&all[2], &by_id, &root),
            vec!["Inbox", "Projects", "2024"]
        );
        assert_eq!(path_of(&all[0], &by_id, &root), vec!["Inbox"]);
    }

    #[test]
    fn paging_moves_forward_or_stops() {
        let more = |next_offset| Paging {
            next_offset,
            last: false,
        };
        assert_eq!(next_offset(0, 500, more(500)), Some(500));
        assert_eq!(next_offset(500, 10, more(0)), Some(510));
        assert_eq!(next_offset(0, 0, more(0)), None);
        // A server paging past the last offset there is ends the listing.
        assert_eq!(next_offset(u32::MAX, 5, more(0)), None);
        assert!(check_listed(MAX_LISTED_ITEMS).is_ok());
        assert!(check_listed(MAX_LISTED_ITEMS + 1).is_err());
        assert_eq!(
            next_offset(
                0,
                5,
                Paging {
                    next_offset: 5,
                    last: true
                }
            ),
            None
        );
    }

    #[test]
    fn error_pages_are_summarised() {
        assert_eq!(
            summary(b"<html><body><h1>Service\n Unavailable</h1></body></html>"),
            "Service Unavailable"
        );
        assert_eq!(
            login_hint("alice", &["NTLM".into()]),
            "for a domain account, log in as DOMAIN\\user or user@domain"
        );
        assert_eq!(login_hint("CORP\\alice", &["NTLM".into()]), "");
    }
}
