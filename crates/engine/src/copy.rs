//! Copying one folder, in named steps: read the source folder and the ledger, plan
//! until the destination has settled, link what is already there, run the pipeline
//! (a source FETCH streaming into destination writes), and account for what the
//! source never sent. Every step can fail transiently; the lane then plans the whole
//! folder again, which the ledger makes safe.

use std::collections::{HashMap, HashSet};

use mailmove_store::{Intent, ItemRecord, ItemState, Ledger, Outcome, StoreError};
use tokio::sync::mpsc;

use crate::connector::{
    ConnectorError, DestFolder, Destination, Failure, FetchedMessage, KeptFlags, Side, SideError,
    Sink, Source, WriteRequest, Writer, Written,
};
use crate::folders::FolderMapping;
use crate::migrate::{MigrateSettings, folder_key};
use crate::plan::{
    Action, FolderIdentity, SourceMessage, claimed_in_dest, needs_dest_scan, origin,
    origins_in_dest, plan_messages, skip_reason,
};
use crate::progress::{Event, Progress};
use crate::report::{FolderReport, ItemError, human_size};

/// Rounds of watching a destination folder settle before messages in doubt are resent.
const SETTLE_ROUNDS: u32 = 5;
/// Messages written, or outcomes waiting, before the ledger hears of them.
const BATCH: usize = 64;

#[derive(Debug, thiserror::Error)]
pub(crate) enum FolderError {
    #[error(transparent)]
    Side(#[from] SideError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl FolderError {
    pub fn is_transient(&self) -> bool {
        matches!(self, FolderError::Side(e) if e.is_transient())
    }
}

/// What one folder's copy adds to the pass's report.
#[derive(Debug, Default)]
pub(crate) struct FolderOutcome {
    pub folder: FolderReport,
    pub errors: Vec<ItemError>,
    pub warnings: Vec<String>,
    /// Whether the first copies were stored at the size they were sent, where the
    /// destination told (see [`FolderCopy::check_sizes`]).
    pub byte_exact: Option<bool>,
}

/// Copies per folder whose stored size is checked against the size sent.
const SAMPLES: usize = 8;

/// What a folder copy works with, unchanged through it.
#[derive(Clone, Copy)]
pub(crate) struct FolderContext<'a> {
    pub mapping: &'a FolderMapping,
    pub ledger: &'a Ledger,
    pub settings: &'a MigrateSettings,
    pub progress: &'a dyn Progress,
}

/// Copies one folder: see the module's steps. `earlier` carries what attempts that
/// failed copied: the attempt that succeeds finds those messages already there, and
/// counts them as copied, so the folder's counts describe the pass.
pub(crate) async fn copy_folder<S: Source, D: Destination>(
    cx: FolderContext<'_>,
    src: &mut S,
    dst: &mut D,
    earlier: &mut CopiedEarlier,
) -> Result<FolderOutcome, FolderError> {
    let mut copy = FolderCopy::read(cx, src).await?;
    if let Some(reason) = &cx.mapping.refused {
        return copy.fail_all(reason.clone()).await;
    }
    let planned = match copy.plan_until_settled(dst).await {
        // A folder created but not opened (some servers accept a name they cannot
        // use): its messages fail, the other folders go on.
        Err(FolderError::Side(e))
            if e.side == Side::Destination && e.error.failure == Failure::Refused =>
        {
            let reason = format!(
                "the destination cannot open the folder {}: {}",
                cx.mapping.dest_name, e.error
            );
            return copy.fail_all(reason).await;
        }
        other => other?,
    };
    let to_copy = copy.link_existing(&planned, earlier).await?;
    if cx.settings.dry_run {
        return Ok(copy.outcome);
    }
    if let Err(e) = copy.run_pipeline(src, dst, &planned, &to_copy).await {
        earlier.sent.extend(copy.received);
        return Err(e);
    }
    copy.account_for_lost(&planned, &to_copy).await?;
    copy.check_sizes(dst).await?;
    Ok(copy.finish())
}

/// Messages sent by attempts at a folder that then failed: whether or not their
/// answers came, the attempt that succeeds finds them at the destination.
#[derive(Clone, Debug, Default)]
pub(crate) struct CopiedEarlier {
    sent: HashSet<u32>,
}

impl CopiedEarlier {
    /// How many messages failed attempts have sent so far.
    pub(crate) fn messages_sent(&self) -> usize {
        self.sent.len()
    }

    /// Counts a message found at the destination: copied if this pass sent it.
    fn count(&self, folder: &mut FolderReport, message: &SourceMessage) {
        if self.sent.contains(&message.uid) {
            folder.counts.copied += 1;
            folder.bytes_copied += message.size;
        } else {
            folder.counts.already_present += 1;
        }
    }
}

/// One folder being copied.
struct FolderCopy<'a> {
    cx: FolderContext<'a>,
    uidvalidity: u32,
    /// The source folder's messages, by UID.
    messages: Vec<SourceMessage>,
    /// What the ledger remembers of this source folder.
    rows: Vec<ItemRecord>,
    /// APPENDs in doubt (intent recorded, outcome not), with the key of the bytes sent.
    sent_keys: HashMap<u32, String>,
    /// Messages the source sent and this attempt handed to the destination.
    received: HashSet<u32>,
    /// The first copies: destination UID and the size sent.
    samples: Vec<(u32, u64)>,
    /// Messages the source read and would not hand over, with the reason.
    withheld: HashMap<u32, String>,
    outcome: FolderOutcome,
    dropped_flags: Vec<String>,
}

/// The folder's plan once the destination stopped changing under it.
struct Planned {
    dest: DestFolder,
    intents: Intents,
    actions: Vec<(u32, Action)>,
}

impl<'a> FolderCopy<'a> {
    /// Opens the source folder and reads its messages and the ledger's rows.
    async fn read<S: Source>(cx: FolderContext<'a>, src: &mut S) -> Result<Self, FolderError> {
        let opened = src.open(&cx.mapping.source_raw).await?;
        let messages = if opened.exists == 0 {
            Vec::new()
        } else {
            src.messages().await?
        };
        let rows = cx
            .ledger
            .source_folder_items(&folder_key(&cx.mapping.source_raw))
            .await?;
        let sent_keys = rows
            .iter()
            .filter(|r| {
                r.state == ItemState::Appending && r.source_uidvalidity == opened.uidvalidity
            })
            .map(|r| (r.source_uid, r.content_key.clone()))
            .collect();
        Ok(FolderCopy {
            cx,
            uidvalidity: opened.uidvalidity,
            messages,
            rows,
            sent_keys,
            outcome: FolderOutcome {
                folder: FolderReport {
                    source: cx.mapping.source_name.clone(),
                    dest: cx.mapping.dest_name.clone(),
                    ..FolderReport::default()
                },
                ..FolderOutcome::default()
            },
            received: HashSet::new(),
            samples: Vec::new(),
            withheld: HashMap::new(),
            dropped_flags: Vec::new(),
        })
    }

    /// Records every message that is not skipped on purpose as failed with `reason`,
    /// for a folder the destination will not hold.
    async fn fail_all(mut self, reason: String) -> Result<FolderOutcome, FolderError> {
        let intents = Intents {
            source_key: folder_key(&self.cx.mapping.source_raw),
            dest_key: folder_key(&self.cx.mapping.dest_raw),
            identity: FolderIdentity {
                source_uidvalidity: self.uidvalidity,
                dest_uidvalidity: 0,
            },
        };
        let mut failed = Vec::new();
        for message in &self.messages {
            if skip_reason(message, &self.cx.settings.filter).is_some() {
                self.outcome.folder.counts.skipped += 1;
                continue;
            }
            self.outcome.folder.counts.failed += 1;
            self.outcome.errors.push(item_error(
                &self.cx.mapping.source_name,
                message,
                reason.clone(),
            ));
            failed.push(Outcome::Failed {
                intent: intents.intent(message),
                reason: reason.clone(),
            });
        }
        if !self.cx.settings.dry_run {
            self.cx.ledger.record_outcomes(&failed).await?;
        }
        Ok(self.finish())
    }

    /// Plans the messages. An APPEND in doubt that is not at the destination may still
    /// be on its way: a session killed mid-pass can leave whole commands in the server's
    /// input, which the server stores after the client is gone. So before sending such
    /// messages again, wait until the folder stops growing, and plan again if it grew.
    async fn plan_until_settled<D: Destination>(
        &mut self,
        dst: &mut D,
    ) -> Result<Planned, FolderError> {
        let mut settling = 0;
        loop {
            let (planned, seen) = self.plan_once(dst).await?;
            let resends = planned
                .actions
                .iter()
                .any(|(uid, action)| *action == Action::Copy && self.sent_keys.contains_key(uid));
            if !resends || self.cx.settings.dry_run || settling >= SETTLE_ROUNDS {
                return Ok(planned);
            }
            settling += 1;
            tokio::time::sleep(self.cx.settings.settle_wait).await;
            let now = dst.open(&self.cx.mapping.dest_raw).await?;
            let grown = match now.uidnext {
                Some(_) => now.exists != planned.dest.exists || now.uidnext != planned.dest.uidnext,
                // No UIDNEXT (EWS): count what is there instead.
                None => dst.messages().await?.len() != seen,
            };
            if !grown {
                return Ok(planned);
            }
            tracing::info!(
                folder = %self.cx.mapping.dest_name,
                "the destination folder changed while messages were in doubt; planning again"
            );
        }
    }

    /// One round of planning; also tells how many destination messages it looked at.
    async fn plan_once<D: Destination>(
        &self,
        dst: &mut D,
    ) -> Result<(Planned, usize), FolderError> {
        let cx = self.cx;
        // In a dry run a folder still to be created has nothing in it yet.
        let dest = if cx.settings.dry_run && cx.mapping.create {
            DestFolder::default()
        } else {
            dst.open(&cx.mapping.dest_raw).await?
        };
        let identity = FolderIdentity {
            source_uidvalidity: self.uidvalidity,
            dest_uidvalidity: dest.uidvalidity,
        };
        let intents = Intents {
            source_key: folder_key(&cx.mapping.source_raw),
            dest_key: folder_key(&cx.mapping.dest_raw),
            identity,
        };
        let scan = needs_dest_scan(&self.rows, identity);
        let (dest_messages, claimed) = if scan && dest.exists > 0 {
            let claims = cx
                .ledger
                .claimed_dest_uids_of_others(
                    &intents.dest_key,
                    identity.dest_uidvalidity,
                    &intents.source_key,
                )
                .await?;
            (
                Some(dst.messages().await?),
                claimed_in_dest(&claims, &self.rows, identity),
            )
        } else if scan {
            (Some(Vec::new()), HashSet::new())
        } else {
            (None, HashSet::new())
        };
        let origins = origins_in_dest(
            dest_messages.as_deref().unwrap_or_default(),
            &intents.source_key,
            identity.source_uidvalidity,
        );
        let actions = plan_messages(
            &self.messages,
            &self.rows,
            identity,
            dest_messages.as_deref(),
            &claimed,
            &origins,
            &cx.settings.filter,
            cx.settings.pass,
        );
        let seen = dest_messages.as_ref().map_or(0, Vec::len);
        Ok((
            Planned {
                dest,
                intents,
                actions,
            },
            seen,
        ))
    }

    /// Counts what needs no copy, records the links to messages found at the
    /// destination, and tells which messages to copy. A message found there that an
    /// earlier attempt of this pass sent counts as copied by the pass.
    async fn link_existing(
        &mut self,
        planned: &Planned,
        earlier: &CopiedEarlier,
    ) -> Result<Vec<u32>, FolderError> {
        let by_uid = by_uid(&self.messages);
        let mut to_copy = Vec::new();
        let mut links = Vec::new();
        for (uid, action) in &planned.actions {
            let message = by_uid[uid];
            match action {
                Action::Copy => to_copy.push(*uid),
                Action::AlreadyCopied => earlier.count(&mut self.outcome.folder, message),
                Action::Link { dest_uid } => {
                    earlier.count(&mut self.outcome.folder, message);
                    let mut intent = planned.intents.intent(message);
                    // Found under the key of the bytes sent before: keep that key.
                    if let Some(key) = self.sent_keys.get(uid) {
                        intent.content_key = key.clone();
                    }
                    links.push(Outcome::Linked {
                        intent,
                        dest_uid: *dest_uid,
                    });
                }
                Action::Skip(_) => self.outcome.folder.counts.skipped += 1,
                Action::PreviouslyFailed { reason } => {
                    self.outcome.folder.counts.failed += 1;
                    self.outcome.errors.push(item_error(
                        &self.cx.mapping.source_name,
                        message,
                        format!(
                            "failed in an earlier pass ({reason}); a retry pass tries it again"
                        ),
                    ));
                }
            }
        }
        let mapping = self.cx.mapping;
        self.cx.progress.event(Event::FolderStarted {
            source: mapping.source_name.clone(),
            dest: mapping.dest_name.clone(),
            to_copy: to_copy.len() as u64,
            bytes_to_copy: to_copy.iter().map(|uid| by_uid[uid].size).sum(),
            total: self.messages.len() as u64,
        });
        if self.cx.settings.dry_run {
            self.outcome.folder.counts.already_present -= links.len() as u64;
            self.outcome.folder.would_copy = Some(to_copy.len() as u64 + links.len() as u64);
        } else {
            self.cx.ledger.record_outcomes(&links).await?;
        }
        Ok(to_copy)
    }

    /// Streams the messages to copy from a source FETCH into destination writes, with
    /// fetching running ahead within the memory budget.
    async fn run_pipeline<S: Source, D: Destination>(
        &mut self,
        src: &mut S,
        dst: &mut D,
        planned: &Planned,
        to_copy: &[u32],
    ) -> Result<(), FolderError> {
        let cx = self.cx;
        let (sink, queue) = mpsc::channel::<FetchedMessage>(cx.settings.queue_depth.max(1));
        let sink = Sink::new(sink, cx.settings.memory_budget);
        let withheld = sink.withheld();
        let by_uid = by_uid(&self.messages);
        let writer = dst.writer(cx.settings.append_window, &cx.mapping.dest_raw);
        let mut consumer = Consumer {
            cx,
            intents: &planned.intents,
            by_uid: &by_uid,
            kept: &planned.dest.kept_flags,
            received: &mut self.received,
            samples: &mut self.samples,
            sent_bytes: HashMap::new(),
            unrecorded: Vec::new(),
            outcome: &mut self.outcome,
            dropped_flags: &mut self.dropped_flags,
        };
        let producer = async {
            let result = produce(cx, src, &sink, &planned.intents, &by_uid, to_copy).await;
            // The consumer ends once the last sender is gone.
            drop(sink);
            result
        };
        let (produced, consumed) = tokio::join!(producer, consumer.run(writer, queue));
        if let Ok(mut withheld) = withheld.lock() {
            self.withheld.extend(withheld.drain());
        }
        consumed?;
        produced
    }

    /// Asked for but never sent by the source: an item error, not a silent loss.
    async fn account_for_lost(
        &mut self,
        planned: &Planned,
        to_copy: &[u32],
    ) -> Result<(), FolderError> {
        let by_uid = by_uid(&self.messages);
        let mut lost = Vec::new();
        for uid in to_copy.iter().filter(|uid| !self.received.contains(uid)) {
            let message = by_uid[uid];
            let reason = self
                .withheld
                .remove(uid)
                .unwrap_or_else(|| "the source server did not return this message".into());
            lost.push(Outcome::Failed {
                intent: planned.intents.intent(message),
                reason: reason.clone(),
            });
            self.outcome.folder.counts.failed += 1;
            self.outcome
                .errors
                .push(item_error(&self.cx.mapping.source_name, message, reason));
        }
        self.cx.ledger.record_outcomes(&lost).await?;
        Ok(())
    }

    /// Asks the destination what size it stored the first copies at: a server that
    /// changes what it is given (Courier adds a final line break, Exchange renders
    /// again) is noted, in the report and with a warning. Same-size changes (Cyrus's
    /// 8-bit header bytes) take `verify --content` to see.
    async fn check_sizes<D: Destination>(&mut self, dst: &mut D) -> Result<(), FolderError> {
        if self.samples.is_empty() {
            return Ok(());
        }
        let uids: Vec<u32> = self.samples.iter().map(|(uid, _)| *uid).collect();
        let Some(stored) = dst.stored_sizes(&uids).await? else {
            return Ok(());
        };
        // Judged only on the copies the server told the size of.
        let told: Vec<&(u32, u64)> = self
            .samples
            .iter()
            .filter(|(uid, _)| stored.contains_key(uid))
            .collect();
        if told.is_empty() {
            return Ok(());
        }
        let changed = told.into_iter().find(|(uid, sent)| stored[uid] != *sent);
        self.outcome.byte_exact = Some(changed.is_none());
        if let Some((uid, sent)) = changed {
            self.outcome.warnings.push(format!(
                "{}: the destination does not store messages byte for byte (one of {sent} bytes \
                 is stored as {}); mailmove still recognises such copies, and verify --content \
                 shows what changed",
                self.cx.mapping.dest_name, stored[uid]
            ));
        }
        Ok(())
    }

    fn finish(mut self) -> FolderOutcome {
        let mut dropped = std::mem::take(&mut self.dropped_flags);
        dropped.sort();
        dropped.dedup();
        if !dropped.is_empty() {
            self.outcome.warnings.push(format!(
                "{}: the destination does not keep the flags {}",
                self.cx.mapping.dest_name,
                dropped.join(" ")
            ));
        }
        self.outcome.folder.flags_dropped = dropped;
        let folder = &self.outcome.folder;
        self.cx.progress.event(Event::FolderFinished {
            source: folder.source.clone(),
            copied: folder.counts.copied,
            already_present: folder.counts.already_present,
            skipped: folder.counts.skipped,
            failed: folder.counts.failed,
        });
        self.outcome
    }
}

/// The ledger rows of one folder pair at its current identity.
struct Intents {
    source_key: String,
    dest_key: String,
    identity: FolderIdentity,
}

impl Intents {
    fn intent(&self, message: &SourceMessage) -> Intent {
        Intent {
            source_folder: self.source_key.clone(),
            source_uidvalidity: self.identity.source_uidvalidity,
            source_uid: message.uid,
            dest_folder: self.dest_key.clone(),
            dest_uidvalidity: Some(self.identity.dest_uidvalidity),
            content_key: message.content_key.clone(),
            message_id: message.message_id.clone(),
            subject: message.subject.clone(),
            size: message.size,
        }
    }
}

fn by_uid(messages: &[SourceMessage]) -> HashMap<u32, &SourceMessage> {
    messages.iter().map(|m| (m.uid, m)).collect()
}

/// Fetches the messages to copy, a chunk per FETCH. Intents are committed a whole chunk
/// at a time, before its FETCH is sent, so before any of its writes.
async fn produce<S: Source>(
    cx: FolderContext<'_>,
    src: &mut S,
    sink: &Sink,
    intents: &Intents,
    by_uid: &HashMap<u32, &SourceMessage>,
    to_copy: &[u32],
) -> Result<(), FolderError> {
    for chunk in to_copy.chunks(cx.settings.fetch_batch.max(1)) {
        let rows: Vec<Intent> = chunk
            .iter()
            .map(|uid| intents.intent(by_uid[uid]))
            .collect();
        cx.ledger.record_intents(&rows).await?;
        src.fetch(chunk, sink).await?;
    }
    Ok(())
}

/// Takes fetched messages off the queue, writes them, and settles their outcomes.
struct Consumer<'c> {
    cx: FolderContext<'c>,
    intents: &'c Intents,
    by_uid: &'c HashMap<u32, &'c SourceMessage>,
    kept: &'c KeptFlags,
    received: &'c mut HashSet<u32>,
    samples: &'c mut Vec<(u32, u64)>,
    /// The bytes really sent for each message written and not yet settled: the
    /// report counts these, not the size the source announced.
    sent_bytes: HashMap<u32, u64>,
    /// Outcomes wait to be recorded in bigger batches; until then their rows say
    /// "appending", which a crash resolves by looking at the destination.
    unrecorded: Vec<Outcome>,
    outcome: &'c mut FolderOutcome,
    dropped_flags: &'c mut Vec<String>,
}

impl Consumer<'_> {
    /// Owns the queue, so an early error drops the receiver and the producer stops.
    async fn run<W: Writer>(
        &mut self,
        mut writer: W,
        mut queue: mpsc::Receiver<FetchedMessage>,
    ) -> Result<(), FolderError> {
        let result = async {
            while let Some(first) = queue.recv().await {
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match queue.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let mut written = self.write(&mut writer, batch).await?;
                if queue.is_empty() {
                    written.extend(writer.idle().await?);
                }
                self.settle(written)?;
                // Outcomes wait for a whole batch (or the folder's end): until then
                // their rows say "appending", which is safe, and a pass costs the
                // database a transaction per batch, not per message.
                if self.unrecorded.len() >= BATCH {
                    self.record().await?;
                }
            }
            let written = writer.finish().await?;
            self.settle(written)
        }
        .await;
        // Whatever ended the folder, what is known to be done is recorded.
        let recorded = self.record().await;
        result?;
        recorded
    }

    async fn write<W: Writer>(
        &mut self,
        writer: &mut W,
        batch: Vec<FetchedMessage>,
    ) -> Result<Vec<Written>, FolderError> {
        // A source that learns a message's exact key only from its bytes (EWS)
        // records it before the message is written.
        let corrected: Vec<Intent> = batch
            .iter()
            .filter_map(|m| {
                let listed = self.by_uid.get(&m.uid)?;
                let key = m.content_key.as_ref()?;
                (*key != listed.content_key).then(|| Intent {
                    content_key: key.clone(),
                    ..self.intents.intent(listed)
                })
            })
            .collect();
        self.cx.ledger.record_intents(&corrected).await?;
        let mut written = Vec::new();
        for message in batch {
            if !self.by_uid.contains_key(&message.uid) || !self.received.insert(message.uid) {
                continue; // not asked for, or sent twice by the server
            }
            self.sent_bytes.insert(message.uid, message.body.len());
            let request = WriteRequest {
                flags: keep_flags(&message.flags, self.kept, self.dropped_flags),
                internal_date: message.internal_date,
                body: message.body,
                origin: origin(
                    &self.intents.source_key,
                    self.intents.identity.source_uidvalidity,
                    message.uid,
                ),
                token: u64::from(message.uid),
            };
            written.extend(writer.send(request).await?);
        }
        Ok(written)
    }

    /// Turns write completions into ledger outcomes and counts. A throttling answer
    /// is transient: the folder is planned again after a pause and the message is
    /// found or sent again.
    fn settle(&mut self, written: Vec<Written>) -> Result<(), FolderError> {
        let mapping = self.cx.mapping;
        for done in written {
            let uid = done.token as u32;
            let message = self.by_uid[&uid];
            let sent = self.sent_bytes.remove(&uid).unwrap_or(message.size);
            match done.result {
                Ok(appended) => {
                    let identity = self.intents.identity;
                    self.unrecorded.push(Outcome::Copied {
                        source_folder: self.intents.source_key.clone(),
                        source_uidvalidity: identity.source_uidvalidity,
                        source_uid: uid,
                        dest_folder: self.intents.dest_key.clone(),
                        dest_uidvalidity: Some(
                            appended.map_or(identity.dest_uidvalidity, |(v, _)| v),
                        ),
                        dest_uid: appended.map(|(_, u)| u),
                    });
                    if let Some((_, dest_uid)) = appended
                        && self.samples.len() < SAMPLES
                    {
                        self.samples.push((dest_uid, sent));
                    }
                    let folder = &mut self.outcome.folder;
                    folder.counts.copied += 1;
                    folder.bytes_copied += sent;
                    self.cx.progress.event(Event::MessageCopied { bytes: sent });
                }
                Err(refusal) if refusal.throttled => {
                    return Err(FolderError::Side(SideError::new(
                        Side::Destination,
                        ConnectorError::new(
                            Failure::Throttled,
                            format!("the server asks to slow down: {}", refusal.text),
                        ),
                    )));
                }
                Err(refusal) => {
                    let reason = format!(
                        "destination refused message UID {uid} in {} ({}): {}",
                        mapping.source_name,
                        human_size(message.size),
                        refusal.text
                    );
                    self.unrecorded.push(Outcome::Failed {
                        intent: self.intents.intent(message),
                        reason: reason.clone(),
                    });
                    self.outcome.folder.counts.failed += 1;
                    self.cx.progress.event(Event::MessageFailed {
                        folder: mapping.source_name.clone(),
                        uid,
                        reason: reason.clone(),
                    });
                    self.outcome
                        .errors
                        .push(item_error(&mapping.source_name, message, reason));
                }
            }
        }
        Ok(())
    }

    async fn record(&mut self) -> Result<(), FolderError> {
        self.cx.ledger.record_outcomes(&self.unrecorded).await?;
        self.unrecorded.clear();
        Ok(())
    }
}

/// The flags a write can set and the destination keeps; the others are noted.
fn keep_flags(flags: &[String], kept: &KeptFlags, dropped: &mut Vec<String>) -> Vec<String> {
    flags
        .iter()
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent") && !f.eq_ignore_ascii_case("\\Deleted"))
        .filter(|f| {
            let keep = kept.keeps(f);
            if !keep {
                dropped.push((*f).clone());
            }
            keep
        })
        .cloned()
        .collect()
}

pub(crate) fn item_error(folder: &str, message: &SourceMessage, reason: String) -> ItemError {
    ItemError {
        folder: folder.to_string(),
        uid: message.uid,
        message_id: message.message_id.clone(),
        subject: message.subject.clone(),
        size: message.size,
        reason,
    }
}
