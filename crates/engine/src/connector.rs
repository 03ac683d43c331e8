//! The two sides of a migration behind interfaces the engine drives, and their IMAP
//! implementations. Another protocol (POP3, EWS) plugs in by implementing
//! [`Source`] or [`Destination`].

use std::future::Future;

use mailmove_imap::{
    Appender, Body, Client, ConnectOptions, Error as ImapError, Fetch, MailboxInfo,
};
use mailmove_model::{Endpoint, Secret};
use tokio::sync::mpsc;

use crate::ews_side::EwsSide;
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
    #[error(transparent)]
    Ews(#[from] mailmove_ews::Error),
    /// The server asked us to slow down: try again after a pause.
    #[error("the server asks to slow down: {0}")]
    Throttled(String),
}

impl ConnectorError {
    pub fn is_transient(&self) -> bool {
        match self {
            ConnectorError::Imap(e) => e.is_transient(),
            ConnectorError::Pop3(e) => e.is_transient(),
            ConnectorError::Ews(e) => e.is_transient(),
            ConnectorError::Throttled(_) => true,
        }
    }

    pub fn is_connection_setup(&self) -> bool {
        match self {
            ConnectorError::Imap(e) => e.is_connection_setup(),
            ConnectorError::Pop3(e) => e.is_connection_setup(),
            ConnectorError::Ews(e) => e.is_connection_setup(),
            ConnectorError::Throttled(_) => false,
        }
    }

    fn remedy(&self) -> Option<mailmove_net::Remedy> {
        match self {
            ConnectorError::Imap(e) => e.remedy(),
            ConnectorError::Pop3(e) => e.remedy(),
            ConnectorError::Ews(e) => e.remedy(),
            ConnectorError::Throttled(_) => None,
        }
    }

    fn net(&self) -> Option<&mailmove_net::NetError> {
        match self {
            ConnectorError::Imap(ImapError::Net(e)) => Some(e),
            ConnectorError::Pop3(mailmove_pop3::Error::Net(e)) => Some(e),
            ConnectorError::Ews(mailmove_ews::Error::Net(e)) => Some(e),
            _ => None,
        }
    }

    fn auth_failed(&self) -> Option<(&str, &str)> {
        match self {
            ConnectorError::Imap(ImapError::AuthFailed { login, text }) => Some((login, text)),
            // Exchange's own wording names the login and what to do.
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

    /// Which fix applies, when one does, for the program that shows the error to word
    /// in its own terms (a flag on the command line, the operator in the portal).
    pub fn remedy(&self) -> Option<mailmove_net::Remedy> {
        self.error.remedy()
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
    /// The password (or, with [`WebAuth::Bearer`], the token).
    pub password: Secret<String>,
    pub options: ConnectOptions,
    /// How an EWS endpoint logs in; IMAP and POP3 ignore it.
    pub web_auth: WebAuth,
}

/// How an Exchange (EWS) endpoint logs in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WebAuth {
    /// What the server offers: NTLM, else Basic.
    #[default]
    Auto,
    Basic,
    Ntlm,
    /// OAuth2 bearer token, given where the password would be.
    Bearer,
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
        client.compress(self.options.compress).await.map_err(wrap)
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
    /// The content key of the bytes fetched, when the source's listing could not
    /// tell it exactly (an EWS item's listed size is not its MIME size).
    pub content_key: Option<String>,
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
                content_key: None,
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
                    origin: None,
                })
            })
            .collect())
    }
}

/// The source of a pass, whichever protocol its endpoint speaks.
pub enum SourceSide {
    Imap(ImapSide),
    Pop3(crate::pop3_source::Pop3Side),
    Ews(Box<EwsSide>),
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
            mailmove_model::Kind::Ews => Ok(SourceSide::Ews(Box::new(
                EwsSide::connect(account, Side::Source, ledger).await?,
            ))),
        }
    }

    pub fn capabilities(&self) -> &[String] {
        match self {
            SourceSide::Imap(side) => side.client.capabilities(),
            SourceSide::Pop3(_) | SourceSide::Ews(_) => &[],
        }
    }

    /// How many messages a folder holds, as cheaply as the server tells (0 when it
    /// cannot): for sharing folders out among lanes, largest first.
    pub async fn folder_size(&mut self, folder: &[u8]) -> u64 {
        match self {
            SourceSide::Imap(side) => side
                .client
                .status(folder, "MESSAGES")
                .await
                .ok()
                .and_then(|items| items.into_iter().find(|(name, _)| name == "MESSAGES"))
                .map_or(0, |(_, n)| n),
            SourceSide::Pop3(_) => 0,
            SourceSide::Ews(side) => side.folder_size(folder),
        }
    }

    /// Closes at once, without a goodbye: for a session that failed.
    pub async fn shutdown(&mut self) {
        match self {
            SourceSide::Imap(side) => side.client.shutdown().await,
            SourceSide::Pop3(_) | SourceSide::Ews(_) => {}
        }
    }

    pub async fn close(self) {
        match self {
            SourceSide::Imap(side) => side.client.logout().await,
            SourceSide::Pop3(side) => side.close().await,
            SourceSide::Ews(_) => {}
        }
    }
}

impl Source for SourceSide {
    async fn folders(&mut self) -> Result<FolderTree, SideError> {
        match self {
            SourceSide::Imap(s) => Source::folders(s).await,
            SourceSide::Pop3(s) => s.folders().await,
            SourceSide::Ews(s) => s.tree().await,
        }
    }

    async fn open(&mut self, folder: &[u8]) -> Result<OpenedFolder, SideError> {
        match self {
            SourceSide::Imap(s) => Source::open(s, folder).await,
            SourceSide::Pop3(s) => s.open(folder).await,
            SourceSide::Ews(s) => s.open_source(folder).await,
        }
    }

    async fn messages(&mut self) -> Result<Vec<SourceMessage>, SideError> {
        match self {
            SourceSide::Imap(s) => Source::messages(s).await,
            SourceSide::Pop3(s) => s.messages().await,
            SourceSide::Ews(s) => s.source_messages().await,
        }
    }

    async fn fetch(&mut self, uids: &[u32], sink: &Sink) -> Result<(), SideError> {
        match self {
            SourceSide::Imap(s) => s.fetch(uids, sink).await,
            SourceSide::Pop3(s) => s.fetch(uids, sink).await,
            SourceSide::Ews(s) => s.fetch(uids, sink).await,
        }
    }
}

/// The destination of a pass, whichever protocol its endpoint speaks.
pub enum DestSide {
    Imap(ImapSide),
    Ews(EwsSide),
}

impl DestSide {
    /// Connects and logs in; an EWS destination numbers its items through `ledger`.
    pub async fn connect(
        account: &Account,
        ledger: Option<&mailmove_store::Ledger>,
    ) -> Result<DestSide, SideError> {
        match account.endpoint.kind {
            mailmove_model::Kind::Ews => Ok(DestSide::Ews(
                EwsSide::connect(account, Side::Destination, ledger).await?,
            )),
            _ => Ok(DestSide::Imap(
                ImapSide::connect(account, Side::Destination).await?,
            )),
        }
    }

    pub fn capabilities(&self) -> &[String] {
        match self {
            DestSide::Imap(side) => side.client.capabilities(),
            DestSide::Ews(_) => &[],
        }
    }

    /// Closes at once, without a goodbye: for a session that failed.
    pub async fn shutdown(&mut self) {
        match self {
            DestSide::Imap(side) => side.client.shutdown().await,
            DestSide::Ews(_) => {}
        }
    }

    pub async fn close(self) {
        match self {
            DestSide::Imap(side) => side.client.logout().await,
            DestSide::Ews(_) => {}
        }
    }

    /// Which flags survive the copy to this destination.
    pub fn flag_policy(&self) -> FlagPolicy {
        match self {
            DestSide::Imap(_) => FlagPolicy::Imap,
            DestSide::Ews(_) => FlagPolicy::Exchange,
        }
    }

    /// Writes messages into the open folder `folder`, pipelined.
    pub fn writer(&mut self, window: usize, folder: &[u8]) -> Writer<'_> {
        match self {
            DestSide::Imap(side) => Writer::Imap {
                appender: side.appender(window),
                folder: folder.to_vec(),
            },
            DestSide::Ews(side) => Writer::Ews(side.writer(folder)),
        }
    }
}

impl Destination for DestSide {
    async fn folders(&mut self) -> Result<FolderTree, SideError> {
        match self {
            DestSide::Imap(d) => Destination::folders(d).await,
            DestSide::Ews(d) => d.tree().await,
        }
    }

    async fn create(&mut self, folder: &[u8]) -> Result<(), SideError> {
        match self {
            DestSide::Imap(d) => d.create(folder).await,
            DestSide::Ews(d) => d.create(folder).await,
        }
    }

    async fn subscribe(&mut self, folder: &[u8]) -> Result<(), SideError> {
        match self {
            DestSide::Imap(d) => d.subscribe(folder).await,
            // Exchange shows every folder; there is nothing to subscribe to.
            DestSide::Ews(_) => Ok(()),
        }
    }

    async fn open(&mut self, folder: &[u8]) -> Result<MailboxInfo, SideError> {
        match self {
            DestSide::Imap(d) => Destination::open(d, folder).await,
            DestSide::Ews(d) => d.open_dest(folder).await,
        }
    }

    async fn messages(&mut self) -> Result<Vec<DestMessage>, SideError> {
        match self {
            DestSide::Imap(d) => Destination::messages(d).await,
            DestSide::Ews(d) => d.dest_messages().await,
        }
    }
}

/// Which flags a destination keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagPolicy {
    /// What the folder's PERMANENTFLAGS allow.
    Imap,
    /// Read state, the follow-up flag and keywords as categories.
    Exchange,
}

impl FlagPolicy {
    pub fn keeps(self, info: &MailboxInfo, flag: &str) -> bool {
        match self {
            FlagPolicy::Imap => info.accepts_flag(flag),
            FlagPolicy::Exchange => crate::ews_side::keeps_flag(flag),
        }
    }
}

/// One message to write, whatever the destination.
#[derive(Debug)]
pub struct WriteRequest {
    pub flags: Vec<String>,
    pub internal_date: Option<String>,
    pub body: Body,
    /// Where it came from (see [`crate::plan::origin`]), for destinations that keep it.
    pub origin: String,
    /// Given back with the outcome.
    pub token: u64,
}

/// How one write ended.
#[derive(Debug)]
pub struct Written {
    pub token: u64,
    /// `Ok(Some((uidvalidity, uid)))` when the destination tells where it put it.
    pub result: Result<Option<(u32, u32)>, Refusal>,
}

/// The destination refused one message.
#[derive(Debug)]
pub struct Refusal {
    /// What the server said, for people.
    pub text: String,
    /// A "slow down" rather than a verdict on the message.
    pub throttled: bool,
}

/// Writes into one destination folder; outcomes come back as they settle.
pub enum Writer<'a> {
    Imap {
        appender: Appender<'a>,
        folder: Vec<u8>,
    },
    Ews(crate::ews_side::EwsWriter),
}

impl Writer<'_> {
    pub async fn send(&mut self, request: WriteRequest) -> Result<Vec<Written>, SideError> {
        match self {
            Writer::Imap { appender, folder } => {
                let request = mailmove_imap::AppendRequest {
                    mailbox: folder.clone(),
                    flags: request.flags,
                    internal_date: request.internal_date,
                    body: request.body,
                    token: request.token,
                };
                let done = appender.send(request).await.map_err(dest_error)?;
                Ok(done.into_iter().map(written).collect())
            }
            Writer::Ews(writer) => writer.send(request).await,
        }
    }

    /// The caller is about to wait for the source: complete what is buffered, so its
    /// outcome can come (an open MULTIAPPEND, a batch of items not yet created).
    pub async fn idle(&mut self) -> Result<Vec<Written>, SideError> {
        match self {
            Writer::Imap { appender, .. } => {
                appender.idle().await.map_err(dest_error)?;
                Ok(Vec::new())
            }
            Writer::Ews(writer) => writer.idle().await,
        }
    }

    pub async fn finish(self) -> Result<Vec<Written>, SideError> {
        match self {
            Writer::Imap { mut appender, .. } => {
                let done = appender.finish().await.map_err(dest_error)?;
                Ok(done.into_iter().map(written).collect())
            }
            Writer::Ews(writer) => writer.finish().await,
        }
    }
}

fn dest_error(error: ImapError) -> SideError {
    SideError {
        side: Side::Destination,
        error: error.into(),
    }
}

fn written(outcome: mailmove_imap::AppendOutcome) -> Written {
    Written {
        token: outcome.token,
        result: outcome.result.map_err(|status| Refusal {
            throttled: mailmove_imap::is_throttled(&status),
            text: status.describe(),
        }),
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
