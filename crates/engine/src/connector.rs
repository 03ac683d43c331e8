//! The two sides of a migration behind interfaces the engine drives, and their IMAP
//! implementations. Another protocol (POP3, EWS) plugs in by implementing
//! [`Source`] or [`Destination`].

use std::future::Future;

use mailmove_imap::{
    Appender, Body, Client, ConnectOptions, Error as ImapError, Fetch, MailboxInfo,
};
use mailmove_model::{Endpoint, Secret};
use tokio::sync::mpsc;

use crate::folders::FolderTree;
use crate::identity::{HEADER_FIELDS, Headers};
use crate::plan::{DestMessage, SourceMessage};

/// Which side, for messages people read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Source,
    Destination,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Destination => "destination",
        })
    }
}

/// A connector's failure, whatever the protocol.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error(transparent)]
    Imap(#[from] ImapError),
    #[error(transparent)]
    Pop3(#[from] mailmove_pop3::Error),
}

impl ConnectorError {
    pub fn is_transient(&self) -> bool {
        match self {
            ConnectorError::Imap(e) => e.is_transient(),
            ConnectorError::Pop3(e) => e.is_transient(),
        }
    }

    pub fn is_connection_setup(&self) -> bool {
        match self {
            ConnectorError::Imap(e) => e.is_connection_setup(),
            ConnectorError::Pop3(e) => e.is_connection_setup(),
        }
    }

    fn net(&self) -> Option<&mailmove_net::NetError> {
        match self {
            ConnectorError::Imap(ImapError::Net(e)) => Some(e),
            ConnectorError::Pop3(mailmove_pop3::Error::Net(e)) => Some(e),
            _ => None,
        }
    }

    fn auth_failed(&self) -> Option<(&str, &str)> {
        match self {
            ConnectorError::Imap(ImapError::AuthFailed { login, text }) => Some((login, text)),
            ConnectorError::Pop3(mailmove_pop3::Error::AuthFailed { login, text }) => {
                Some((login, text))
            }
            _ => None,
        }
    }
}

/// A failure on one side, with the side named.
#[derive(Debug, thiserror::Error)]
#[error("{}", describe(*side, error))]
pub struct SideError {
    pub side: Side,
    pub error: ConnectorError,
}

impl SideError {
    pub fn is_transient(&self) -> bool {
        self.error.is_transient()
    }

    pub fn is_connection_setup(&self) -> bool {
        self.error.is_connection_setup()
    }

    /// The server could not be reached at all (refused, timed out, no route).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self.error.net(),
            Some(mailmove_net::NetError::Unreachable { .. })
        )
    }
}

fn describe(side: Side, error: &ConnectorError) -> String {
    if let Some(mailmove_net::NetError::Unreachable { address, reason }) = error.net() {
        return format!("cannot reach the {side} server {address}: {reason}");
    }
    if let Some((login, text)) = error.auth_failed() {
        return format!(
            "{side} login refused for {login}: check the password (the server said: {text})"
        );
    }
    format!("{side}: {error}")
}

/// How to reach one side: endpoint, login, password and connection options.
#[derive(Clone, Debug)]
pub struct Account {
    pub endpoint: Endpoint,
    pub login: String,
    pub password: Secret<String>,
    pub options: ConnectOptions,
}

impl Account {
    pub async fn connect(&self, side: Side) -> Result<Client, SideError> {
        let wrap = |error: ImapError| SideError {
            side,
            error: error.into(),
        };
        let mut client = Client::connect(&self.endpoint, &self.options)
            .await
            .map_err(wrap)?;
        client
            .login(&self.login, &self.password)
            .await
            .map_err(wrap)?;
        client.identify().await.map_err(wrap)?;
        Ok(client)
    }
}

/// A folder as opened for reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenedFolder {
    pub uidvalidity: u32,
    pub exists: u32,
}

/// One message's bytes and metadata as fetched for copying.
#[derive(Debug)]
pub struct FetchedMessage {
    pub uid: u32,
    pub flags: Vec<String>,
    pub internal_date: Option<String>,
    pub body: Body,
    /// Its share of the memory budget, given back when the message is dropped.
    pub(crate) permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Where a source puts fetched messages: a queue bounded by count and by the bytes
/// the queued messages hold in memory (spooled ones count little), so fetching runs
/// ahead of the destination without holding more than the budget.
#[derive(Clone, Debug)]
pub struct Sink {
    queue: mpsc::Sender<FetchedMessage>,
    budget: std::sync::Arc<tokio::sync::Semaphore>,
    budget_kib: u32,
}

impl Sink {
    pub fn new(queue: mpsc::Sender<FetchedMessage>, budget_bytes: u64) -> Sink {
        let budget_kib = (budget_bytes / 1024).clamp(1, u64::from(u32::MAX >> 4)) as u32;
        Sink {
            queue,
            budget: std::sync::Arc::new(tokio::sync::Semaphore::new(budget_kib as usize)),
            budget_kib,
        }
    }

    /// Waits for room, then queues the message. `Err` means the receiver is gone.
    pub async fn send(&self, mut message: FetchedMessage) -> Result<(), ()> {
        let in_memory = match &message.body {
            Body::Memory(bytes) => bytes.len() as u64,
            Body::File { .. } => 0,
        };
        let kib = ((in_memory / 1024) as u32).clamp(1, self.budget_kib);
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(kib)
            .await
            .map_err(drop)?;
        message.permit = Some(permit);
        self.queue.send(message).await.map_err(drop)
    }
}

/// Where messages come from. Read-only: nothing at the source is ever changed.
pub trait Source: Send {
    fn folders(&mut self) -> impl Future<Output = Result<FolderTree, SideError>> + Send;
    fn open(
        &mut self,
        folder: &[u8],
    ) -> impl Future<Output = Result<OpenedFolder, SideError>> + Send;
    /// Metadata of every message in the open folder.
    fn messages(&mut self) -> impl Future<Output = Result<Vec<SourceMessage>, SideError>> + Send;
    /// Streams the given messages of the open folder into `sink`, in any order. A
    /// message the server does not return is simply absent.
    fn fetch(
        &mut self,
        uids: &[u32],
        sink: &Sink,
    ) -> impl Future<Output = Result<(), SideError>> + Send;
}

/// Where messages go. Nothing there is ever deleted.
pub trait Destination: Send {
    fn folders(&mut self) -> impl Future<Output = Result<FolderTree, SideError>> + Send;
    fn create(&mut self, folder: &[u8]) -> impl Future<Output = Result<(), SideError>> + Send;
    fn subscribe(&mut self, folder: &[u8]) -> impl Future<Output = Result<(), SideError>> + Send;
    /// Opens a folder for appending; tells its UIDVALIDITY and which flags it keeps.
    fn open(
        &mut self,
        folder: &[u8],
    ) -> impl Future<Output = Result<MailboxInfo, SideError>> + Send;
    /// Identity of every message in the open folder, for matching by content.
    fn messages(&mut self) -> impl Future<Output = Result<Vec<DestMessage>, SideError>> + Send;
}

/// An IMAP server on either side.
pub struct ImapSide {
    pub client: Client,
    pub side: Side,
}

impl ImapSide {
    pub async fn connect(account: &Account, side: Side) -> Result<ImapSide, SideError> {
        Ok(ImapSide {
            client: account.connect(side).await?,
            side,
        })
    }

    fn wrap(&self) -> impl Fn(ImapError) -> SideError + use<> {
        let side = self.side;
        move |error| SideError {
            side,
            error: ConnectorError::Imap(error),
        }
    }

    pub fn appender(&mut self, window: usize) -> Appender<'_> {
        self.client.appender(window)
    }

    async fn tree(&mut self) -> Result<FolderTree, SideError> {
        let wrap = self.wrap();
        let namespaces = self.client.namespace().await.map_err(&wrap)?;
        let entries = self.client.list().await.map_err(&wrap)?;
        let subscribed = self.client.subscriptions().await.map_err(&wrap)?;
        let (prefix, delimiter) = namespaces
            .personal
            .first()
            .cloned()
            .unwrap_or((Vec::new(), None));
        Ok(FolderTree {
            entries,
            prefix,
            delimiter,
            subscribed,
        })
    }

    async fn header_scan(&mut self, with_flags: bool) -> Result<Vec<Fetch>, SideError> {
        let wrap = self.wrap();
        let items = if with_flags {
            format!("UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS ({HEADER_FIELDS})]")
        } else {
            format!("UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS ({HEADER_FIELDS})]")
        };
        let mut stream = self.client.uid_fetch("1:*", &items).await.map_err(&wrap)?;
        let mut out = Vec::new();
        while let Some(fetch) = stream.next().await.map_err(&wrap)? {
            out.push(fetch);
        }
        Ok(out)
    }
}

impl Source for ImapSide {
    async fn folders(&mut self) -> Result<FolderTree, SideError> {
        self.tree().await
    }

    async fn open(&mut self, folder: &[u8]) -> Result<OpenedFolder, SideError> {
        let info = self.client.examine(folder).await.map_err(self.wrap())?;
        Ok(OpenedFolder {
            uidvalidity: info.uidvalidity.unwrap_or(0),
            exists: info.exists,
        })
    }

    async fn messages(&mut self) -> Result<Vec<SourceMessage>, SideError> {
        let mut messages: Vec<SourceMessage> = self
            .header_scan(true)
            .await?
            .into_iter()
            .filter_map(|fetch| {
                let uid = fetch.uid?;
                let size = fetch.size.unwrap_or(0);
                let headers = Headers::parse(fetch.header.as_deref().unwrap_or_default());
                Some(SourceMessage {
                    uid,
                    flags: fetch.flags.unwrap_or_default(),
                    internal_date: fetch.internal_date,
                    size,
                    content_key: headers.content_key(size),
                    message_id: headers.message_id,
                    subject: headers.subject,
                })
            })
            .collect();
        messages.sort_by_key(|m| m.uid);
        messages.dedup_by_key(|m| m.uid);
        Ok(messages)
    }

    async fn fetch(&mut self, uids: &[u32], sink: &Sink) -> Result<(), SideError> {
        let wrap = self.wrap();
        let set = uid_set(uids);
        let mut stream = self
            .client
            .uid_fetch(&set, "UID FLAGS INTERNALDATE BODY.PEEK[]")
            .await
            .map_err(&wrap)?;
        while let Some(fetch) = stream.next().await.map_err(&wrap)? {
            let (Some(uid), Some(body)) = (fetch.uid, fetch.body) else {
                continue;
            };
            let message = FetchedMessage {
                uid,
                flags: fetch.flags.unwrap_or_default(),
                internal_date: fetch.internal_date,
                body,
                permit: None,
            };
            if sink.send(message).await.is_err() {
                // The writer stopped (its own error ends the folder); the rest of
                // this FETCH is read and dropped to keep the connection in step.
                while stream.next().await.map_err(&wrap)?.is_some() {}
                return Ok(());
            }
        }
        Ok(())
    }
}

impl Destination for ImapSide {
    async fn folders(&mut self) -> Result<FolderTree, SideError> {
        self.tree().await
    }

    async fn create(&mut self, folder: &[u8]) -> Result<(), SideError> {
        self.client.create(folder).await.map_err(self.wrap())
    }

    async fn subscribe(&mut self, folder: &[u8]) -> Result<(), SideError> {
        self.client.subscribe(folder).await.map_err(self.wrap())
    }

    async fn open(&mut self, folder: &[u8]) -> Result<MailboxInfo, SideError> {
        match self.client.select(folder).await {
            // Dovecot creates special-use folders on first access; when two of our
            // connections get there at once, one is told ALREADYEXISTS. Once more
            // finds the folder there.
            Err(ImapError::No { status, .. }) if already_exists(&status) => {
                self.client.select(folder).await.map_err(self.wrap())
            }
            other => other.map_err(self.wrap()),
        }
    }

    async fn messages(&mut self) -> Result<Vec<DestMessage>, SideError> {
        Ok(self
            .header_scan(false)
            .await?
            .into_iter()
            .filter_map(|fetch| {
                let uid = fetch.uid?;
                let headers = Headers::parse(fetch.header.as_deref().unwrap_or_default());
                Some(DestMessage {
                    uid,
                    content_key: headers.content_key(fetch.size.unwrap_or(0)),
                })
            })
            .collect())
    }
}

/// The source of a pass, whichever protocol its endpoint speaks.
pub enum SourceSide {
    Imap(ImapSide),
    Pop3(crate::pop3_source::Pop3Side),
}

impl SourceSide {
    /// Connects and logs in; a POP3 source numbers its messages through `ledger`.
    pub async fn connect(
        account: &Account,
        ledger: Option<&mailmove_store::Ledger>,
    ) -> Result<SourceSide, SideError> {
        match account.endpoint.kind {
            mailmove_model::Kind::Imap => Ok(SourceSide::Imap(
                ImapSide::connect(account, Side::Source).await?,
            )),
            mailmove_model::Kind::Pop3 => Ok(SourceSide::Pop3(
                crate::pop3_source::Pop3Side::connect(account, ledger).await?,
            )),
        }
    }

    pub fn capabilities(&self) -> &[String] {
        match self {
            SourceSide::Imap(side) => side.client.capabilities(),
            SourceSide::Pop3(_) => &[],
        }
    }

    /// Closes at once, without a goodbye: for a session that failed.
    pub async fn shutdown(&mut self) {
        match self {
            SourceSide::Imap(side) => side.client.shutdown().await,
            SourceSide::Pop3(_) => {}
        }
    }

    pub async fn close(self) {
        match self {
            SourceSide::Imap(side) => side.client.logout().await,
            SourceSide::Pop3(side) => side.close().await,
        }
    }
}

impl Source for SourceSide {
    async fn folders(&mut self) -> Result<FolderTree, SideError> {
        match self {
            SourceSide::Imap(s) => Source::folders(s).await,
            SourceSide::Pop3(s) => s.folders().await,
        }
    }

    async fn open(&mut self, folder: &[u8]) -> Result<OpenedFolder, SideError> {
        match self {
            SourceSide::Imap(s) => Source::open(s, folder).await,
            SourceSide::Pop3(s) => s.open(folder).await,
        }
    }

    async fn messages(&mut self) -> Result<Vec<SourceMessage>, SideError> {
        match self {
            SourceSide::Imap(s) => Source::messages(s).await,
            SourceSide::Pop3(s) => s.messages().await,
        }
    }

    async fn fetch(&mut self, uids: &[u32], sink: &Sink) -> Result<(), SideError> {
        match self {
            SourceSide::Imap(s) => s.fetch(uids, sink).await,
            SourceSide::Pop3(s) => s.fetch(uids, sink).await,
        }
    }
}

fn already_exists(status: &mailmove_imap::Status) -> bool {
    matches!(&status.code, Some(mailmove_imap::Code::Other(name, _)) if name == "ALREADYEXISTS")
}

/// Builds a compact UID set: `1:5,7,9:12`.
pub fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8, 10]), "1:3,5,7:8,10");
        assert_eq!(uid_set(&[9, 1, 2]), "1:2,9");
        assert_eq!(uid_set(&[4]), "4");
    }
}
