//! An IMAP server as a source or a destination: EXAMINE and `BODY.PEEK[]` on the
//! source, CREATE, SELECT and pipelined APPEND (grouped into MULTIAPPEND commands
//! where offered) on the destination.

use std::collections::HashMap;
use std::sync::Arc;

use mailmove_imap::{
    Appender, Client, Error as ImapError, Fetch, ListEntry, LiteralBound, MailboxInfo, Oversized,
    tolerated,
};
use mailmove_model::human_size;

use crate::connector::{
    ConnectorError, DestFolder, Destination, Failure, FetchedMessage, FolderEntry, KeptFlags,
    OpenedFolder, Quota, Refusal, Side, SideError, Sink, Source, WriteRequest, Writer, Written,
};
use crate::connectors::{Account, SignsIn, connector_error, judge};
use crate::folders::FolderTree;
use crate::identity::{HEADER_FIELDS, Headers};
use crate::plan::{DestMessage, SourceMessage};
use mailmove_net::SignIn;

impl From<ImapError> for ConnectorError {
    fn from(error: ImapError) -> ConnectorError {
        let failure = match &error {
            ImapError::AuthFailed { login, text } => Some(Failure::LoginRefused {
                login: login.clone(),
                text: text.clone(),
            }),
            ImapError::TokenRefused { .. } => Some(Failure::TokenRefused),
            ImapError::No { status, .. } if mailmove_imap::is_throttled(status) => {
                Some(Failure::Throttled)
            }
            _ => None,
        };
        let failure = failure.unwrap_or_else(|| {
            let net = match &error {
                ImapError::Net(e) => Some(e),
                _ => None,
            };
            judge(net, error.is_transient(), error.is_connection_setup())
        });
        let remedy = error.remedy();
        connector_error(failure, remedy, error)
    }
}

impl SignsIn for Client {
    type Error = ImapError;

    async fn sign_in(&mut self, sign_in: &SignIn) -> Result<(), ImapError> {
        Client::sign_in(self, sign_in).await
    }

    fn token_refused(error: &ImapError) -> bool {
        matches!(error, ImapError::TokenRefused { .. })
    }
}

/// An IMAP server on either side.
pub struct ImapSide {
    client: Client,
    side: Side,
    /// The sizes the open source folder's server announced (RFC822.SIZE), by UID:
    /// a message's literal may not be far larger.
    announced: Arc<HashMap<u32, u64>>,
}

/// The most bytes of header fields kept for one message in the listing: the few
/// fields asked for take a few hundred bytes; a server sending more is not believed.
const MAX_LISTED_HEADER: u64 = 256 * 1024;
/// The most messages listed in one folder, and the most header bytes kept for them
/// all: past either, the server is sending more than any folder holds.
const MAX_LISTED_MESSAGES: usize = 5_000_000;
const MAX_LISTED_HEADER_BYTES: usize = 512 * 1024 * 1024;

impl ImapSide {
    pub async fn connect(account: &Account, side: Side) -> Result<ImapSide, SideError> {
        let wrap = |error: ImapError| SideError::new(side, error);
        let mut client = Client::connect(&account.endpoint, &account.options)
            .await
            .map_err(wrap)?;
        account.sign_in_with(&mut client, side).await?;
        client.identify().await.map_err(wrap)?;
        let client = client
            .compress(account.options.compress)
            .await
            .map_err(wrap)?;
        Ok(ImapSide {
            client,
            side,
            announced: Arc::default(),
        })
    }

    fn wrap(&self) -> impl Fn(ImapError) -> SideError + use<> {
        let side = self.side;
        move |error| SideError::new(side, error)
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
            entries: entries.into_iter().map(folder_entry).collect(),
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
        let bound = LiteralBound::AtMost(MAX_LISTED_HEADER);
        let mut stream = self
            .client
            .uid_fetch_bounded("1:*", &items, bound)
            .await
            .map_err(&wrap)?;
        let mut out = Vec::new();
        let mut header_bytes = 0;
        while let Some(fetch) = stream.next().await.map_err(&wrap)? {
            header_bytes += fetch.header.as_ref().map_or(0, Vec::len);
            if out.len() >= MAX_LISTED_MESSAGES || header_bytes > MAX_LISTED_HEADER_BYTES {
                self.client.shutdown().await;
                return Err(wrap(ImapError::Protocol(format!(
                    "the listing of one folder passed {MAX_LISTED_MESSAGES} messages or \
                     {MAX_LISTED_HEADER_BYTES} bytes of header fields"
                ))));
            }
            out.push(fetch);
        }
        Ok(out)
    }
}

/// Why a message read past by the client is not copied, with both sizes.
fn too_large(oversized: Oversized) -> String {
    let sent = human_size(oversized.len);
    match oversized.announced {
        Some(announced) if tolerated(announced) == oversized.bound => format!(
            "the source server sent {sent} ({} bytes) for a message it announced at {} \
             ({announced} bytes); not copied",
            oversized.len,
            human_size(announced),
        ),
        _ => format!(
            "the message is {sent} ({} bytes), larger than the maximum message size of {} \
             ({} bytes); not copied",
            oversized.len,
            human_size(oversized.bound),
            oversized.bound,
        ),
    }
}

fn folder_entry(entry: ListEntry) -> FolderEntry {
    FolderEntry {
        name: entry.name,
        delimiter: entry.delimiter,
        attributes: entry.attributes,
    }
}

impl Source for ImapSide {
    fn capabilities(&self) -> &[String] {
        self.client.capabilities()
    }

    async fn folders(&mut self) -> Result<FolderTree, SideError> {
        self.tree().await
    }

    async fn folder_size(&mut self, folder: &[u8]) -> u64 {
        self.client
            .status(folder, "MESSAGES")
            .await
            .ok()
            .and_then(|items| items.into_iter().find(|(name, _)| name == "MESSAGES"))
            .map_or(0, |(_, n)| n)
    }

    async fn open(&mut self, folder: &[u8]) -> Result<OpenedFolder, SideError> {
        self.announced = Arc::default();
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
        self.announced = Arc::new(messages.iter().map(|m| (m.uid, m.size)).collect());
        Ok(messages)
    }

    async fn fetch(&mut self, uids: &[u32], sink: &Sink) -> Result<(), SideError> {
        let wrap = self.wrap();
        let set = uid_set(uids);
        let bound = LiteralBound::Announced(Arc::clone(&self.announced));
        let mut stream = self
            .client
            .uid_fetch_bounded(&set, "UID FLAGS INTERNALDATE BODY.PEEK[]", bound)
            .await
            .map_err(&wrap)?;
        while let Some(fetch) = stream.next().await.map_err(&wrap)? {
            if let (Some(uid), Some(oversized)) = (fetch.uid, fetch.oversized) {
                sink.withhold(uid, too_large(oversized));
                continue;
            }
            let (Some(uid), Some(body)) = (fetch.uid, fetch.body) else {
                continue;
            };
            let message = FetchedMessage::new(
                uid,
                fetch.flags.unwrap_or_default(),
                fetch.internal_date,
                body,
            );
            if sink.send(message).await.is_err() {
                // The writer stopped (its own error ends the folder); the rest of
                // this FETCH is read and dropped to keep the connection in step.
                while stream.next().await.map_err(&wrap)?.is_some() {}
                return Ok(());
            }
        }
        Ok(())
    }

    async fn shutdown(&mut self) {
        self.client.shutdown().await;
    }

    async fn close(self) {
        self.client.logout().await;
    }
}

impl Destination for ImapSide {
    type Writer<'a> = ImapWriter<'a>;

    fn capabilities(&self) -> &[String] {
        self.client.capabilities()
    }

    async fn folders(&mut self) -> Result<FolderTree, SideError> {
        self.tree().await
    }

    async fn create(&mut self, folder: &[u8]) -> Result<(), SideError> {
        self.client.create(folder).await.map_err(self.wrap())
    }

    async fn subscribe(&mut self, folder: &[u8]) -> Result<(), SideError> {
        self.client.subscribe(folder).await.map_err(self.wrap())
    }

    async fn open(&mut self, folder: &[u8]) -> Result<DestFolder, SideError> {
        let info = match self.client.select(folder).await {
            // Dovecot creates special-use folders on first access; when two of our
            // connections get there at once, one is told ALREADYEXISTS. Once more
            // finds the folder there.
            Err(ImapError::No { status, .. }) if already_exists(&status) => {
                self.client.select(folder).await.map_err(self.wrap())?
            }
            other => other.map_err(self.wrap())?,
        };
        Ok(dest_folder(info))
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

    async fn stored_sizes(&mut self, uids: &[u32]) -> Result<Option<HashMap<u32, u64>>, SideError> {
        let wrap = self.wrap();
        // Some servers (Courier) show a session the messages it appended to its own
        // selected folder only after it asks.
        self.client.run("NOOP").await.map_err(&wrap)?;
        let mut stream = self
            .client
            .uid_fetch(&uid_set(uids), "UID RFC822.SIZE")
            .await
            .map_err(&wrap)?;
        let mut sizes = HashMap::new();
        while let Some(fetch) = stream.next().await.map_err(&wrap)? {
            if let (Some(uid), Some(size)) = (fetch.uid, fetch.size) {
                sizes.insert(uid, size);
            }
        }
        Ok(Some(sizes))
    }

    /// `BODY.PEEK[]` sets no flag: reading a copy back changes nothing.
    async fn read_back(&mut self, uids: &[u32], sink: &Sink) -> Result<(), SideError> {
        Source::fetch(self, uids, sink).await
    }

    async fn quota(&mut self) -> Result<Option<Quota>, SideError> {
        let quota = self
            .client
            .storage_quota(b"INBOX")
            .await
            .map_err(self.wrap())?;
        Ok(quota.map(|q| Quota {
            used: q.used,
            limit: q.limit,
        }))
    }

    fn writer(&mut self, window: usize, folder: &[u8]) -> ImapWriter<'_> {
        ImapWriter {
            appender: self.client.appender(window),
            folder: folder.to_vec(),
        }
    }

    async fn shutdown(&mut self) {
        self.client.shutdown().await;
    }

    async fn close(self) {
        self.client.logout().await;
    }
}

/// What a SELECT tells, in the engine's terms: the flags kept are PERMANENTFLAGS, or
/// FLAGS when the server sent none; `\*` lets any new keyword through.
fn dest_folder(info: MailboxInfo) -> DestFolder {
    let listed = info.permanent_flags.unwrap_or(info.flags);
    let new_keywords = listed.iter().any(|f| f == "\\*");
    DestFolder {
        exists: info.exists,
        uidvalidity: info.uidvalidity.unwrap_or(0),
        uidnext: info.uidnext,
        kept_flags: KeptFlags {
            listed,
            new_keywords,
            dollar_keywords: true,
        },
    }
}

/// Pipelined APPENDs into one folder.
pub struct ImapWriter<'a> {
    appender: Appender<'a>,
    folder: Vec<u8>,
}

impl Writer for ImapWriter<'_> {
    async fn send(&mut self, request: WriteRequest) -> Result<Vec<Written>, SideError> {
        let request = mailmove_imap::AppendRequest {
            mailbox: self.folder.clone(),
            flags: request.flags,
            internal_date: request.internal_date,
            body: request.body,
            token: request.token,
        };
        let done = self.appender.send(request).await.map_err(dest_error)?;
        Ok(done.into_iter().map(written).collect())
    }

    async fn idle(&mut self) -> Result<Vec<Written>, SideError> {
        self.appender.idle().await.map_err(dest_error)?;
        Ok(Vec::new())
    }

    async fn finish(mut self) -> Result<Vec<Written>, SideError> {
        let done = self.appender.finish().await.map_err(dest_error)?;
        Ok(done.into_iter().map(written).collect())
    }
}

fn dest_error(error: ImapError) -> SideError {
    SideError::new(Side::Destination, error)
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

    #[test]
    fn a_selected_folder_keeps_what_permanentflags_allow() {
        let info = MailboxInfo {
            exists: 3,
            uidvalidity: Some(7),
            uidnext: Some(4),
            permanent_flags: Some(vec!["\\Seen".into(), "\\*".into()]),
            flags: vec!["\\Seen".into(), "\\Answered".into()],
        };
        let folder = dest_folder(info.clone());
        assert_eq!((folder.exists, folder.uidvalidity), (3, 7));
        for flag in ["\\Seen", "Project", "$Forwarded", "\\Answered"] {
            assert_eq!(
                folder.kept_flags.keeps(flag),
                info.accepts_flag(flag),
                "{flag}"
            );
        }
        let without_permanent = MailboxInfo {
            permanent_flags: None,
            ..info
        };
        let folder = dest_folder(without_permanent.clone());
        for flag in ["\\Seen", "Project", "\\Answered"] {
            assert_eq!(
                folder.kept_flags.keeps(flag),
                without_permanent.accepts_flag(flag),
                "{flag}"
            );
        }
    }
}
