//! The boundary between the engine and the protocols: the vocabulary every connector
//! speaks ([`FolderEntry`], [`OpenedFolder`], [`DestFolder`], [`FetchedMessage`]) and
//! the interfaces it implements ([`Connector`], [`Source`], [`Destination`],
//! [`Writer`]). Nothing here knows any protocol; each connector module depends on this
//! one, never the other way round, and `connectors/mod.rs` picks one per endpoint.

use std::collections::HashMap;
use std::future::Future;

use mailmove_net::{Body, Remedy};
use mailmove_store::Ledger;
use tokio::sync::mpsc;

use crate::folders::FolderTree;
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

/// What a failure means for the pass, as the connector that met it judges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Worth another try on a new connection: dropped, garbled, "try again later".
    Transient,
    /// The server asked us to slow down: try again after a pause.
    Throttled,
    /// The server could not be reached at all (refused, timed out, no route).
    Unreachable { address: String, reason: String },
    /// The server refused the login.
    LoginRefused { login: String, text: String },
    /// The server refused an OAuth2 access token: a fresh one may pass.
    TokenRefused,
    /// The connection could not be set up as configured (TLS, plaintext, a mailbox the
    /// account may not open): a setting must change.
    Setup,
    /// Anything else: the server refused what was asked.
    Refused,
}

/// A connector's failure, whatever the protocol: how the engine must treat it, and the
/// connector's own words for it.
#[derive(Debug, thiserror::Error)]
#[error("{text}")]
pub struct ConnectorError {
    pub failure: Failure,
    /// Which fix applies, when one does, for the program that shows the error to word
    /// in its own terms (a flag on the command line, the operator in the portal).
    pub remedy: Option<Remedy>,
    text: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ConnectorError {
    pub fn new(failure: Failure, text: impl Into<String>) -> ConnectorError {
        ConnectorError {
            failure,
            remedy: None,
            text: text.into(),
            source: None,
        }
    }

    pub fn with_remedy(mut self, remedy: Option<Remedy>) -> ConnectorError {
        self.remedy = remedy;
        self
    }

    /// Keeps the protocol's error behind this one, for logs that want the chain.
    pub fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> ConnectorError {
        self.source = Some(Box::new(source));
        self
    }

    pub fn is_transient(&self) -> bool {
        matches!(self.failure, Failure::Transient | Failure::Throttled)
    }

    /// Could not connect or log in at all: the exit code 3 kind.
    pub fn is_connection_setup(&self) -> bool {
        matches!(
            self.failure,
            Failure::Unreachable { .. }
                | Failure::LoginRefused { .. }
                | Failure::TokenRefused
                | Failure::Setup
        )
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
    pub fn new(side: Side, error: impl Into<ConnectorError>) -> SideError {
        SideError {
            side,
            error: error.into(),
        }
    }

    pub fn is_transient(&self) -> bool {
        self.error.is_transient()
    }

    pub fn is_connection_setup(&self) -> bool {
        self.error.is_connection_setup()
    }

    /// The server could not be reached at all (refused, timed out, no route).
    pub fn is_unreachable(&self) -> bool {
        matches!(self.error.failure, Failure::Unreachable { .. })
    }

    /// Which fix applies, when one does (see [`ConnectorError::remedy`]).
    pub fn remedy(&self) -> Option<Remedy> {
        self.error.remedy
    }
}

fn describe(side: Side, error: &ConnectorError) -> String {
    match &error.failure {
        Failure::Unreachable { address, reason } => {
            format!("cannot reach the {side} server {address}: {reason}")
        }
        Failure::LoginRefused { login, text } => {
            format!(
                "{side} login refused for {login}: check the password (the server said: {text})"
            )
        }
        _ => format!("{side}: {error}"),
    }
}

/// One folder as a server lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderEntry {
    /// The folder's name on the wire, its identity (IMAP's modified UTF-7 form; other
    /// connectors name their folders the same way).
    pub name: Vec<u8>,
    pub delimiter: Option<char>,
    /// Special-use roles (`\Sent`, `\Trash`, ...) and `\Noselect`-like attributes.
    pub attributes: Vec<String>,
}

impl FolderEntry {
    pub fn has_attribute(&self, attribute: &str) -> bool {
        self.attributes
            .iter()
            .any(|a| a.eq_ignore_ascii_case(attribute))
    }
}

/// A source folder as opened for reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenedFolder {
    pub uidvalidity: u32,
    pub exists: u32,
}

/// A destination folder as opened for writing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DestFolder {
    pub exists: u32,
    /// What its numbers mean; 0 when the server has none.
    pub uidvalidity: u32,
    /// The number the next message will get, where the server tells it: a folder whose
    /// `exists` and `uidnext` did not move has not grown.
    pub uidnext: Option<u32>,
    pub kept_flags: KeptFlags,
}

/// Which flags a destination folder keeps on the messages written into it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeptFlags {
    /// Flags and keywords kept by name (compared without case).
    pub listed: Vec<String>,
    /// Any new keyword is kept (IMAP's `\*`).
    pub new_keywords: bool,
    /// Keywords starting with `$` (IMAP clients' private markers) are kept too.
    pub dollar_keywords: bool,
}

impl KeptFlags {
    pub fn keeps(&self, flag: &str) -> bool {
        if self.listed.iter().any(|f| f.eq_ignore_ascii_case(flag)) {
            return true;
        }
        !flag.starts_with('\\')
            && self.new_keywords
            && (self.dollar_keywords || !flag.starts_with('$'))
    }
}

/// A destination's storage quota, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub used: u64,
    pub limit: u64,
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
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl FetchedMessage {
    pub fn new(
        uid: u32,
        flags: Vec<String>,
        internal_date: Option<String>,
        body: Body,
    ) -> FetchedMessage {
        FetchedMessage {
            uid,
            flags,
            internal_date,
            body,
            content_key: None,
            permit: None,
        }
    }

    /// With the key of the bytes really fetched (see [`FetchedMessage::content_key`]).
    pub fn with_content_key(mut self, key: String) -> FetchedMessage {
        self.content_key = Some(key);
        self
    }
}

/// Where a source puts fetched messages: a queue bounded by count and by the bytes
/// the queued messages hold in memory (spooled ones count little), so fetching runs
/// ahead of the destination without holding more than the budget.
#[derive(Clone, Debug)]
pub struct Sink {
    queue: mpsc::Sender<FetchedMessage>,
    budget: std::sync::Arc<tokio::sync::Semaphore>,
    budget_kib: u32,
    withheld: Withheld,
}

/// Messages a source read and would not hand over, with the reason: each becomes an
/// item error instead of "the source server did not return this message".
pub(crate) type Withheld = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<u32, String>>>;

impl Sink {
    pub fn new(queue: mpsc::Sender<FetchedMessage>, budget_bytes: u64) -> Sink {
        let budget_kib = (budget_bytes / 1024).clamp(1, u64::from(u32::MAX >> 4)) as u32;
        Sink {
            queue,
            budget: std::sync::Arc::new(tokio::sync::Semaphore::new(budget_kib as usize)),
            budget_kib,
            withheld: Withheld::default(),
        }
    }

    /// The source read message `uid` and will not hand it over (larger than the
    /// maximum, or far larger than its server announced): it becomes an item error
    /// with this reason.
    pub fn withhold(&self, uid: u32, reason: String) {
        // A poisoned lock means a panic elsewhere already ends the folder.
        if let Ok(mut withheld) = self.withheld.lock() {
            withheld.insert(uid, reason);
        }
    }

    pub(crate) fn withheld(&self) -> Withheld {
        std::sync::Arc::clone(&self.withheld)
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

    /// Bytes of the budget not held by queued messages now.
    pub fn budget_free(&self) -> u64 {
        self.budget.available_permits() as u64 * 1024
    }
}

/// How to reach one side of a migration: opens sessions on it as a source or as a
/// destination. An account reaches real servers (`connectors`); tests plug in others.
pub trait Connector: Sync {
    type Source: Source;
    type Destination: Destination;

    /// The server, as reports name it.
    fn server(&self) -> String;

    /// Connects and logs in as a source. Connectors that number messages themselves
    /// (POP3, EWS) keep those numbers in `ledger`.
    fn source(
        &self,
        ledger: Option<&Ledger>,
    ) -> impl Future<Output = Result<Self::Source, SideError>> + Send;

    /// Connects and logs in as a destination.
    fn destination(
        &self,
        ledger: Option<&Ledger>,
    ) -> impl Future<Output = Result<Self::Destination, SideError>> + Send;
}

/// Where messages come from. Read-only: nothing at the source is ever changed.
pub trait Source: Send {
    /// What the server announced, for the trial and the progress lines.
    fn capabilities(&self) -> &[String] {
        &[]
    }

    /// How many sessions may read the mailbox at once (a POP3 maildrop: one).
    fn max_sessions(&self) -> usize {
        usize::MAX
    }

    fn folders(&mut self) -> impl Future<Output = Result<FolderTree, SideError>> + Send;

    /// How many messages a folder holds, as cheaply as the server tells (0 when it
    /// cannot): for sharing folders out among lanes, largest first.
    fn folder_size(&mut self, _folder: &[u8]) -> impl Future<Output = u64> + Send {
        async { 0 }
    }

    fn open(
        &mut self,
        folder: &[u8],
    ) -> impl Future<Output = Result<OpenedFolder, SideError>> + Send;

    /// Metadata of every message in the open folder.
    fn messages(&mut self) -> impl Future<Output = Result<Vec<SourceMessage>, SideError>> + Send;

    /// Streams the given messages of the open folder into `sink`, in any order. A
    /// message the server does not return is simply absent. When the sink is closed
    /// (the writer stopped), it returns `Ok` once the connection is back in step.
    fn fetch(
        &mut self,
        uids: &[u32],
        sink: &Sink,
    ) -> impl Future<Output = Result<(), SideError>> + Send;

    /// Closes at once, without a goodbye: for a session that failed.
    fn shutdown(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Closes politely.
    fn close(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        async {}
    }
}

/// Where messages go. Nothing there is ever deleted.
pub trait Destination: Send {
    type Writer<'a>: Writer
    where
        Self: 'a;

    fn capabilities(&self) -> &[String] {
        &[]
    }

    fn folders(&mut self) -> impl Future<Output = Result<FolderTree, SideError>> + Send;

    fn create(&mut self, folder: &[u8]) -> impl Future<Output = Result<(), SideError>> + Send;

    /// Where folders are subscribed to (IMAP); others show every folder.
    fn subscribe(&mut self, _folder: &[u8]) -> impl Future<Output = Result<(), SideError>> + Send {
        async { Ok(()) }
    }

    /// Opens a folder for writing.
    fn open(&mut self, folder: &[u8])
    -> impl Future<Output = Result<DestFolder, SideError>> + Send;

    /// Identity of every message in the open folder, for matching by content.
    fn messages(&mut self) -> impl Future<Output = Result<Vec<DestMessage>, SideError>> + Send;

    /// Streams the bytes of the given messages of the open folder into `sink`, as
    /// [`Source::fetch`] does, without changing them (for `verify --content`). A
    /// destination that cannot send messages back says so.
    fn read_back(
        &mut self,
        _uids: &[u32],
        _sink: &Sink,
    ) -> impl Future<Output = Result<(), SideError>> + Send {
        async {
            Err(SideError::new(
                Side::Destination,
                ConnectorError::new(
                    Failure::Refused,
                    "this destination cannot send messages back to compare their bytes",
                ),
            ))
        }
    }

    /// The sizes the open folder's messages `uids` are stored at, where the server
    /// tells them (`None`: it does not).
    fn stored_sizes(
        &mut self,
        _uids: &[u32],
    ) -> impl Future<Output = Result<Option<HashMap<u32, u64>>, SideError>> + Send {
        async { Ok(None) }
    }

    /// The mailbox's storage quota, where the server tells it.
    fn quota(&mut self) -> impl Future<Output = Result<Option<Quota>, SideError>> + Send {
        async { Ok(None) }
    }

    /// Writes messages into the open folder `folder`, up to `window` in flight.
    fn writer(&mut self, window: usize, folder: &[u8]) -> Self::Writer<'_>;

    /// Closes at once, without a goodbye: for a session that failed.
    fn shutdown(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Closes politely.
    fn close(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        async {}
    }
}

/// Writes into one destination folder; outcomes come back as they settle, each
/// written message's exactly once over `send`, `idle` and `finish`.
pub trait Writer: Send {
    fn send(
        &mut self,
        request: WriteRequest,
    ) -> impl Future<Output = Result<Vec<Written>, SideError>> + Send;

    /// The caller is about to wait for the source: complete what is buffered, so its
    /// outcome can come (an open MULTIAPPEND, a batch of items not yet created).
    fn idle(&mut self) -> impl Future<Output = Result<Vec<Written>, SideError>> + Send;

    fn finish(self) -> impl Future<Output = Result<Vec<Written>, SideError>> + Send
    where
        Self: Sized;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_flags_follow_the_list_and_the_keyword_rules() {
        let imap_any = KeptFlags {
            listed: vec!["\\Seen".into(), "\\*".into()],
            new_keywords: true,
            dollar_keywords: true,
        };
        assert!(imap_any.keeps("\\seen"));
        assert!(!imap_any.keeps("\\Answered"));
        assert!(imap_any.keeps("$Forwarded"));
        let exchange = KeptFlags {
            listed: vec!["\\Seen".into(), "\\Flagged".into()],
            new_keywords: true,
            dollar_keywords: false,
        };
        assert!(exchange.keeps("Project"));
        assert!(!exchange.keeps("$Forwarded"));
        let none = KeptFlags {
            listed: vec!["\\Seen".into()],
            ..KeptFlags::default()
        };
        assert!(!none.keeps("Project"));
    }
}
