//! An in-memory mail server that implements the engine's connector boundary, with
//! faults on demand: the connection drops after N operations, a message is refused,
//! answers come slowly, the answer to a write that landed is lost, and writes of a
//! session that died land later. It uses only the engine's public interfaces, so
//! that any connector can be written against them.

#![allow(dead_code)] // reason: each test binary uses a different part of the fake

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mailmove_engine::connector::{
    Connector, ConnectorError, DestFolder, Destination, Failure, FetchedMessage, FolderEntry,
    KeptFlags, OpenedFolder, Refusal, Side, SideError, Sink, Source, WriteRequest, Writer, Written,
};
use mailmove_engine::folders::FolderTree;
use mailmove_engine::identity::Headers;
use mailmove_engine::plan::{DestMessage, SourceMessage};
use mailmove_net::Body;
use mailmove_store::Ledger;

/// One stored message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub bytes: Vec<u8>,
    pub flags: Vec<String>,
    pub internal_date: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Folder {
    pub uidvalidity: u32,
    pub next_uid: u32,
    pub messages: BTreeMap<u32, Stored>,
}

/// What the fake does wrong, and when.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Operations left before every open session drops; `None` never.
    pub drop_after: Option<u64>,
    /// With `drop_after`: after each drop, drop again this many operations later.
    pub drop_every: Option<u64>,
    /// Operations left before the "process" is killed: see [`FakeServer::killed`].
    pub kill_after: Option<u64>,
    /// A message whose bytes contain this is refused by the destination.
    pub refuse_containing: Option<Vec<u8>>,
    /// Stores this write (counted from 1) but loses its answer: the session drops.
    pub lose_answer_of_write: Option<u64>,
    /// Each operation waits this long.
    pub delay: Duration,
    /// The source leaves out messages whose bytes contain this from FETCH answers.
    pub withhold_containing: Option<Vec<u8>>,
    /// The destination refuses to create folders whose names contain this.
    pub refuse_create_containing: Option<Vec<u8>>,
    /// The destination creates, but refuses to open, folders whose names contain this.
    pub refuse_open_containing: Option<Vec<u8>>,
}

/// What the fake saw, for the tests to check.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub operations: u64,
    pub writes: u64,
    pub sessions_opened: u64,
    pub sessions_open: u64,
    pub most_sessions_open: u64,
    /// Per destination folder, the order in which message bytes were written.
    pub written_order: BTreeMap<Vec<u8>, Vec<Vec<u8>>>,
    /// Writer calls as they came: `S` a send, `I` an idle, `F` a finish.
    pub writer_calls: String,
}

/// Bytes fetched from a source and not yet written to a destination; servers made
/// with [`FakeServer::sharing_meter`] count into the same one.
#[derive(Debug, Default)]
pub struct Meter {
    pub in_flight: i64,
    pub most: u64,
}

#[derive(Debug, Default)]
pub struct State {
    pub folders: BTreeMap<Vec<u8>, Folder>,
    pub faults: Faults,
    pub seen: Seen,
    /// Writes that a dead session left in the server's input: stored when their
    /// folder has been opened `late_after_opens` more times.
    pub late: Vec<(Vec<u8>, Stored)>,
    pub late_after_opens: u32,
    /// Session generation: sessions of an older one are dead.
    generation: u64,
    killed: bool,
}

/// One fake server; clones share it.
#[derive(Clone, Debug, Default)]
pub struct FakeServer {
    state: Arc<Mutex<State>>,
    kill: Arc<tokio::sync::Notify>,
    meter: Arc<Mutex<Meter>>,
    pub name: String,
}

impl FakeServer {
    pub fn new(name: &str) -> FakeServer {
        FakeServer {
            state: Arc::default(),
            kill: Arc::default(),
            meter: Arc::default(),
            name: name.to_string(),
        }
    }

    /// Another server whose writes count against this one's fetches.
    pub fn sharing_meter(name: &str, with: &FakeServer) -> FakeServer {
        FakeServer {
            meter: with.meter.clone(),
            ..FakeServer::new(name)
        }
    }

    /// The most bytes that were fetched and not yet written at one time.
    pub fn most_bytes_in_flight(&self) -> u64 {
        self.meter.lock().map(|m| m.most).unwrap_or_default()
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock has failed anyway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a folder (with a fixed UIDVALIDITY) and its messages.
    pub fn add_folder(&self, name: &str, messages: &[Vec<u8>]) {
        let mut state = self.state();
        let folder = state
            .folders
            .entry(name.as_bytes().to_vec())
            .or_insert_with(|| Folder {
                uidvalidity: 7,
                next_uid: 1,
                ..Folder::default()
            });
        for bytes in messages {
            let uid = folder.next_uid;
            folder.next_uid += 1;
            folder.messages.insert(
                uid,
                Stored {
                    bytes: bytes.clone(),
                    flags: vec!["\\Seen".into()],
                    internal_date: Some("01-Jan-2024 10:00:00 +0000".into()),
                },
            );
        }
    }

    pub fn set_faults(&self, faults: Faults) {
        let mut state = self.state();
        state.faults = faults;
        state.killed = false;
    }

    /// Whether the kill fault fired.
    pub fn killed(&self) -> bool {
        self.state().killed
    }

    /// Resolves when the kill fault fires: the test then drops the pass's future,
    /// as `kill -9` would end the process.
    pub async fn until_killed(&self) {
        self.kill.notified().await;
    }

    /// Every message's bytes per folder.
    pub fn contents(&self) -> BTreeMap<Vec<u8>, Vec<Vec<u8>>> {
        self.state()
            .folders
            .iter()
            .map(|(name, f)| {
                (
                    name.clone(),
                    f.messages.values().map(|m| m.bytes.clone()).collect(),
                )
            })
            .collect()
    }

    /// Every folder's messages, each as its Message-ID, size and a hash of its
    /// bytes, sorted: what a failing test prints.
    pub fn summary(&self) -> BTreeMap<String, Vec<String>> {
        self.contents()
            .into_iter()
            .map(|(name, messages)| {
                let mut labels: Vec<String> = messages.iter().map(|m| label(m)).collect();
                labels.sort();
                (String::from_utf8_lossy(&name).into_owned(), labels)
            })
            .collect()
    }

    pub fn seen(&self) -> Seen {
        self.state().seen.clone()
    }

    fn session(&self, side: Side) -> Result<FakeSession, SideError> {
        let generation = {
            let mut state = self.state();
            if state.killed {
                return Err(dropped(side));
            }
            tick(&mut state, side, &self.kill)?;
            state.seen.sessions_opened += 1;
            state.seen.sessions_open += 1;
            state.seen.most_sessions_open =
                state.seen.most_sessions_open.max(state.seen.sessions_open);
            state.generation
        };
        Ok(FakeSession {
            server: self.clone(),
            side,
            generation,
            open: None,
            closed: false,
        })
    }
}

/// Counts one operation and fires the faults that are due.
fn tick(state: &mut State, side: Side, kill: &tokio::sync::Notify) -> Result<(), SideError> {
    state.seen.operations += 1;
    if let Some(left) = state.faults.kill_after.as_mut() {
        if *left == 0 {
            state.faults.kill_after = None;
            state.killed = true;
            kill.notify_one();
            return Err(dropped(side));
        }
        *left -= 1;
    }
    if let Some(left) = state.faults.drop_after.as_mut() {
        if *left == 0 {
            state.faults.drop_after = state.faults.drop_every;
            state.generation += 1;
            return Err(dropped(side));
        }
        *left -= 1;
    }
    Ok(())
}

fn dropped(side: Side) -> SideError {
    SideError::new(
        side,
        ConnectorError::new(Failure::Transient, "the fake server dropped the connection"),
    )
}

impl Connector for FakeServer {
    type Source = FakeSession;
    type Destination = FakeSession;

    fn server(&self) -> String {
        format!("fake://{}", self.name)
    }

    async fn source(&self, _ledger: Option<&Ledger>) -> Result<FakeSession, SideError> {
        self.session(Side::Source)
    }

    async fn destination(&self, _ledger: Option<&Ledger>) -> Result<FakeSession, SideError> {
        self.session(Side::Destination)
    }
}

/// One session on the fake server.
pub struct FakeSession {
    server: FakeServer,
    side: Side,
    generation: u64,
    open: Option<Vec<u8>>,
    closed: bool,
}

impl Drop for FakeSession {
    fn drop(&mut self) {
        if !self.closed {
            self.server.state().seen.sessions_open -= 1;
        }
    }
}

impl FakeSession {
    /// Starts one operation: waits as told, then fails if the session is dead or a
    /// fault is due.
    async fn operation(&self) -> Result<MutexGuard<'_, State>, SideError> {
        let delay = self.server.state().faults.delay;
        if delay.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(delay).await;
        }
        let mut state = self.server.state();
        if state.killed || state.generation != self.generation {
            return Err(dropped(self.side));
        }
        tick(&mut state, self.side, &self.server.kill)?;
        Ok(state)
    }

    fn tree(state: &State) -> FolderTree {
        FolderTree {
            entries: state
                .folders
                .keys()
                .map(|name| FolderEntry {
                    name: name.clone(),
                    delimiter: Some('/'),
                    attributes: Vec::new(),
                })
                .collect(),
            prefix: Vec::new(),
            delimiter: Some('/'),
            subscribed: state.folders.keys().cloned().collect(),
        }
    }

    fn open_folder<'s>(&self, state: &'s mut State) -> Result<&'s mut Folder, SideError> {
        let name = self.open.clone().unwrap_or_default();
        state.folders.get_mut(&name).ok_or_else(|| {
            SideError::new(
                self.side,
                ConnectorError::new(Failure::Refused, "no such folder"),
            )
        })
    }

    fn close_now(&mut self) {
        if !self.closed {
            self.closed = true;
            self.server.state().seen.sessions_open -= 1;
        }
    }
}

fn key_of(bytes: &[u8]) -> (Headers, u64) {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(bytes.len(), |p| p + 4);
    (Headers::parse(&bytes[..end]), bytes.len() as u64)
}

fn contains(haystack: &[u8], needle: &Option<Vec<u8>>) -> bool {
    needle
        .as_ref()
        .is_some_and(|n| haystack.windows(n.len()).any(|w| w == n.as_slice()))
}

impl Source for FakeSession {
    async fn folders(&mut self) -> Result<FolderTree, SideError> {
        let state = self.operation().await?;
        Ok(Self::tree(&state))
    }

    async fn folder_size(&mut self, folder: &[u8]) -> u64 {
        self.server
            .state()
            .folders
            .get(folder)
            .map_or(0, |f| f.messages.len() as u64)
    }

    async fn open(&mut self, folder: &[u8]) -> Result<OpenedFolder, SideError> {
        self.open = Some(folder.to_vec());
        let mut state = self.operation().await?;
        let folder = self.open_folder(&mut state)?;
        Ok(OpenedFolder {
            uidvalidity: folder.uidvalidity,
            exists: folder.messages.len() as u32,
        })
    }

    async fn messages(&mut self) -> Result<Vec<SourceMessage>, SideError> {
        let mut state = self.operation().await?;
        let folder = self.open_folder(&mut state)?;
        Ok(folder
            .messages
            .iter()
            .map(|(uid, m)| {
                let (headers, size) = key_of(&m.bytes);
                SourceMessage {
                    uid: *uid,
                    flags: m.flags.clone(),
                    internal_date: m.internal_date.clone(),
                    size,
                    content_key: headers.content_key(size),
                    message_id: headers.message_id,
                    subject: headers.subject,
                }
            })
            .collect())
    }

    async fn fetch(&mut self, uids: &[u32], sink: &Sink) -> Result<(), SideError> {
        for uid in uids {
            let message = {
                let mut state = self.operation().await?;
                let withhold = state.faults.withhold_containing.clone();
                let folder = self.open_folder(&mut state)?;
                let Some(stored) = folder.messages.get(uid).cloned() else {
                    continue;
                };
                if contains(&stored.bytes, &withhold) {
                    continue;
                }
                if let Ok(mut meter) = self.server.meter.lock() {
                    meter.in_flight += stored.bytes.len() as i64;
                    meter.most = meter.most.max(meter.in_flight.max(0) as u64);
                }
                FetchedMessage::new(
                    *uid,
                    stored.flags,
                    stored.internal_date,
                    Body::Memory(stored.bytes),
                )
            };
            if sink.send(message).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    }

    async fn shutdown(&mut self) {
        self.close_now();
    }

    async fn close(mut self) {
        self.close_now();
    }
}

impl Destination for FakeSession {
    type Writer<'a> = FakeWriter<'a>;

    async fn folders(&mut self) -> Result<FolderTree, SideError> {
        let state = self.operation().await?;
        Ok(Self::tree(&state))
    }

    async fn create(&mut self, folder: &[u8]) -> Result<(), SideError> {
        let mut state = self.operation().await?;
        if contains(folder, &state.faults.refuse_create_containing) {
            return Err(SideError::new(
                Side::Destination,
                ConnectorError::new(Failure::Refused, "NO Invalid mailbox name"),
            ));
        }
        state
            .folders
            .entry(folder.to_vec())
            .or_insert_with(|| Folder {
                uidvalidity: 99,
                next_uid: 1,
                ..Folder::default()
            });
        Ok(())
    }

    async fn open(&mut self, folder: &[u8]) -> Result<DestFolder, SideError> {
        self.open = Some(folder.to_vec());
        let mut state = self.operation().await?;
        if contains(folder, &state.faults.refuse_open_containing) {
            return Err(SideError::new(
                Side::Destination,
                ConnectorError::new(Failure::Refused, "NO Mailbox is not selectable"),
            ));
        }
        // What a dead session left in the server's input lands when it is due.
        let due = state.late_after_opens == 0;
        state.late_after_opens = state.late_after_opens.saturating_sub(1);
        let (landing, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut state.late)
            .into_iter()
            .partition(|(name, _)| due && name == folder);
        state.late = waiting;
        let found = self.open_folder(&mut state)?;
        for (_, stored) in landing {
            found.messages.insert(found.next_uid, stored);
            found.next_uid += 1;
        }
        Ok(DestFolder {
            exists: found.messages.len() as u32,
            uidvalidity: found.uidvalidity,
            uidnext: Some(found.next_uid),
            kept_flags: KeptFlags {
                listed: vec!["\\Seen".into(), "\\Flagged".into()],
                new_keywords: true,
                dollar_keywords: true,
            },
        })
    }

    async fn messages(&mut self) -> Result<Vec<DestMessage>, SideError> {
        let mut state = self.operation().await?;
        let folder = self.open_folder(&mut state)?;
        Ok(folder
            .messages
            .iter()
            .map(|(uid, m)| {
                let (headers, size) = key_of(&m.bytes);
                DestMessage {
                    uid: *uid,
                    content_key: headers.content_key(size),
                    origin: None,
                }
            })
            .collect())
    }

    fn writer(&mut self, window: usize, folder: &[u8]) -> FakeWriter<'_> {
        FakeWriter {
            session: self,
            folder: folder.to_vec(),
            window: window.max(1),
            unanswered: Vec::new(),
        }
    }

    async fn shutdown(&mut self) {
        self.close_now();
    }

    async fn close(mut self) {
        self.close_now();
    }
}

/// Pipelined writes: each is stored when sent, its answer comes once more than
/// `window` are unanswered, or on idle and finish.
pub struct FakeWriter<'a> {
    session: &'a mut FakeSession,
    folder: Vec<u8>,
    window: usize,
    unanswered: Vec<Written>,
}

impl Writer for FakeWriter<'_> {
    async fn send(&mut self, request: WriteRequest) -> Result<Vec<Written>, SideError> {
        let mut state = self.session.operation().await?;
        state.seen.writer_calls.push('S');
        let bytes = match request.body {
            Body::Memory(bytes) => bytes,
            other => other.into_vec().unwrap_or_default(),
        };
        if let Ok(mut meter) = self.session.server.meter.lock() {
            meter.in_flight -= bytes.len() as i64;
        }
        if contains(&bytes, &state.faults.refuse_containing) {
            self.unanswered.push(Written {
                token: request.token,
                result: Err(Refusal {
                    text: "NO [LIMIT] refused by the fake server".into(),
                    throttled: false,
                }),
            });
        } else {
            state.seen.writes += 1;
            let lose = state.faults.lose_answer_of_write == Some(state.seen.writes);
            state
                .seen
                .written_order
                .entry(self.folder.clone())
                .or_default()
                .push(bytes.clone());
            let stored = Stored {
                bytes,
                flags: request.flags,
                internal_date: request.internal_date,
            };
            let name = self.folder.clone();
            let folder = state.folders.get_mut(&name).ok_or_else(|| {
                SideError::new(
                    Side::Destination,
                    ConnectorError::new(Failure::Refused, "no such folder"),
                )
            })?;
            let uid = folder.next_uid;
            folder.next_uid += 1;
            folder.messages.insert(uid, stored);
            let uidvalidity = folder.uidvalidity;
            if lose {
                state.generation += 1;
                return Err(dropped(Side::Destination));
            }
            self.unanswered.push(Written {
                token: request.token,
                result: Ok(Some((uidvalidity, uid))),
            });
        }
        if self.unanswered.len() > self.window {
            Ok(std::mem::take(&mut self.unanswered))
        } else {
            Ok(Vec::new())
        }
    }

    async fn idle(&mut self) -> Result<Vec<Written>, SideError> {
        let mut state = self.session.operation().await?;
        state.seen.writer_calls.push('I');
        Ok(std::mem::take(&mut self.unanswered))
    }

    async fn finish(mut self) -> Result<Vec<Written>, SideError> {
        let mut state = self.session.operation().await?;
        state.seen.writer_calls.push('F');
        Ok(std::mem::take(&mut self.unanswered))
    }
}

/// A message as a failing test shows it.
pub fn label(bytes: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let (headers, size) = key_of(bytes);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    format!(
        "{} {size} bytes #{:04x}",
        headers.message_id.unwrap_or_default(),
        hasher.finish() & 0xffff
    )
}

/// A message with the given Message-ID, about `size` bytes long (never shorter than
/// its headers and a line of body).
pub fn message(id: &str, size: usize) -> Vec<u8> {
    let mut bytes = format!(
        "Message-ID: <{id}@fake.example>\r\nSubject: message {id}\r\nFrom: a@fake.example\r\n\r\n"
    )
    .into_bytes();
    let body = size.saturating_sub(bytes.len() + 2).max(1);
    bytes.extend((0..body).map(|i| b'a' + (i % 26) as u8));
    bytes.extend_from_slice(b"\r\n");
    bytes
}
