//! One pass over one mailbox pair: plan the folders, then per folder plan the
//! messages and stream them from a source FETCH into pipelined destination APPENDs.
//!
//! Every failure is sorted into one of three kinds: transient (reconnect, back off,
//! plan the folder again: the ledger makes that safe), item (record it and go on),
//! fatal (stop the pass with a reason a person can act on).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mailmove_imap::MailboxInfo;
use mailmove_net::Remedy;
use mailmove_store::{Intent, ItemState, Ledger, Outcome, StoreError};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::connector::{
    Account, ConnectorError, DestSide, Destination, FetchedMessage, Side, SideError, Sink, Source,
    SourceSide, WriteRequest, Written,
};
use crate::folders::{FolderMapping, FolderRules, plan_folders};
use crate::plan::{
    Action, FolderIdentity, MessageFilter, PassKind, SourceMessage, claimed_in_dest,
    needs_dest_scan, origin, origins_in_dest, plan_messages,
};
use crate::progress::{Event, Progress};
use crate::report::{FolderReport, ItemError, Report, human_size};

/// Rounds of watching a destination folder settle before messages in doubt are resent.
const SETTLE_ROUNDS: u32 = 5;

/// How a pass runs.
#[derive(Clone, Debug)]
pub struct MigrateSettings {
    pub rules: FolderRules,
    pub filter: MessageFilter,
    pub pass: PassKind,
    pub dry_run: bool,
    /// APPENDs in flight on the destination connection.
    pub append_window: usize,
    /// UIDs per source FETCH command.
    pub fetch_batch: usize,
    /// Fetched messages waiting for the destination.
    pub queue_depth: usize,
    /// Bytes that fetched messages waiting for the destination may hold in memory, per
    /// connection pair (larger messages are spooled to disk and count little).
    pub memory_budget: u64,
    /// Connection pairs that copy folders at once (one per folder at a time; a POP3
    /// source always has one).
    pub connections: usize,
    /// With it, a pass opens one connection pair per this many source messages, up to
    /// `connections`: every session costs both servers a login and processes of their
    /// own, more than a small mailbox gains from copying folders side by side.
    pub messages_per_connection: Option<u64>,
    /// Connection attempts per folder before the pass stops.
    pub max_attempts: u32,
    /// How long to watch a destination folder for writes of an earlier, interrupted
    /// session before messages in doubt are sent again.
    pub settle_wait: Duration,
    pub first_backoff: Duration,
}

impl Default for MigrateSettings {
    fn default() -> Self {
        MigrateSettings {
            rules: FolderRules::default(),
            filter: MessageFilter::default(),
            pass: PassKind::Full,
            dry_run: false,
            append_window: 32,
            fetch_batch: 256,
            queue_depth: 64,
            memory_budget: 8 * 1024 * 1024,
            connections: 1,
            messages_per_connection: None,
            max_attempts: 5,
            first_backoff: Duration::from_secs(1),
            settle_wait: Duration::from_secs(2),
        }
    }
}

/// Why a pass stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatalKind {
    /// Could not log in or set up the connection: a setting must change (exit code 3).
    Connection,
    /// The server was unreachable or kept dropping the connection: it may pass, so a
    /// worker tries the pass again later (exit code 3 on the command line).
    Interrupted,
    /// Anything else (a server refusing a folder, the state file failing).
    Other,
}

#[derive(Debug, thiserror::Error)]
enum FolderError {
    #[error(transparent)]
    Side(#[from] SideError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl FolderError {
    fn is_transient(&self) -> bool {
        matches!(self, FolderError::Side(e) if e.is_transient())
    }
}

/// Runs one pass and reports what it did, whatever happened.
pub async fn migrate(
    source: &Account,
    dest: &Account,
    ledger: &Ledger,
    settings: &MigrateSettings,
    progress: &dyn Progress,
) -> (Report, Option<FatalKind>) {
    let started = Instant::now();
    let mut report = Report::empty(report_template(source, dest, settings));
    let fatal = run(source, dest, ledger, settings, progress, &mut report).await;
    let fatal_kind = fatal.map(|(kind, message, remedy)| {
        report.fatal = Some(message);
        report.fatal_remedy = remedy;
        kind
    });
    for folder in &report.folders {
        report.messages.add(&folder.counts);
        report.bytes_copied += folder.bytes_copied;
    }
    report.finished_at = now_rfc3339();
    report.elapsed_seconds = started.elapsed().as_secs_f64();
    (report, fatal_kind)
}

async fn run(
    source: &Account,
    dest: &Account,
    ledger: &Ledger,
    settings: &MigrateSettings,
    progress: &dyn Progress,
    report: &mut Report,
) -> Option<(FatalKind, String, Option<Remedy>)> {
    let (mut src, mut dst) = match connect_both(source, dest, ledger, progress).await {
        Ok(pair) => pair,
        Err(e) => return Some((fatal_kind(&e), e.to_string(), e.remedy())),
    };
    let trees = async {
        Ok::<_, SideError>((
            Source::folders(&mut src).await?,
            Destination::folders(&mut dst).await?,
        ))
    };
    let (source_tree, dest_tree) = match trees.await {
        Ok(trees) => trees,
        Err(e) => return Some((FatalKind::Other, e.to_string(), e.remedy())),
    };
    let plan = plan_folders(&source_tree, &dest_tree, &settings.rules);
    report.folders_excluded = plan.excluded.clone();
    progress.event(Event::FoldersPlanned {
        folders: plan.mappings.len(),
        excluded: plan.excluded.len(),
    });
    if !settings.dry_run {
        for mapping in &plan.mappings {
            if mapping.create {
                if let Err(e) = dst.create(&mapping.dest_raw).await {
                    return Some((
                        FatalKind::Other,
                        format!("cannot create folder {}: {e}", mapping.dest_name),
                        e.remedy(),
                    ));
                }
                progress.event(Event::FolderCreated {
                    dest: mapping.dest_name.clone(),
                });
            }
            if mapping.subscribe
                && let Err(e) = dst.subscribe(&mapping.dest_raw).await
            {
                report
                    .warnings
                    .push(format!("could not subscribe to {}: {e}", mapping.dest_name));
            }
        }
    }
    // Several connection pairs ("lanes") copy whole folders at once, largest first,
    // so each folder keeps its order while the destination works on several.
    let most = match src {
        // A POP3 maildrop is locked by its one session.
        SourceSide::Pop3(_) => 1,
        SourceSide::Imap(_) | SourceSide::Ews(_) => {
            settings.connections.clamp(1, plan.mappings.len().max(1))
        }
    };
    let mut order: Vec<(u64, &FolderMapping)> = Vec::with_capacity(plan.mappings.len());
    for mapping in &plan.mappings {
        // Sizes only matter when several lanes share the folders out.
        let count = if most > 1 {
            src.folder_size(&mapping.source_raw).await
        } else {
            0
        };
        order.push((count, mapping));
    }
    let lanes = lanes_for(most, order.iter().map(|(count, _)| *count).sum(), settings);
    if lanes > 1 {
        order.sort_by_key(|(count, _)| std::cmp::Reverse(*count));
    }
    let queue = Mutex::new(order.into_iter().map(|(_, m)| m).collect::<VecDeque<_>>());
    let abort = AtomicBool::new(false);
    let mut first = Some((src, dst));
    let mut runs = Vec::with_capacity(lanes);
    for lane in 0..lanes {
        let pair = first.take();
        let (queue, abort) = (&queue, &abort);
        runs.push(async move {
            let mut scratch = Report::empty(report_template(source, dest, settings));
            let fatal = run_lane(
                lane,
                pair,
                source,
                dest,
                ledger,
                settings,
                progress,
                queue,
                abort,
                &mut scratch,
            )
            .await;
            (scratch, fatal)
        });
    }
    let mut fatal = None;
    for (scratch, lane_fatal) in futures_util::future::join_all(runs).await {
        report.folders.extend(scratch.folders);
        report.errors.extend(scratch.errors);
        report.warnings.extend(scratch.warnings);
        if fatal.is_none() {
            fatal = lane_fatal;
        }
    }
    // Report folders in plan order, not in the order lanes finished them.
    let position: HashMap<&str, usize> = plan
        .mappings
        .iter()
        .enumerate()
        .map(|(i, m)| (m.source_name.as_str(), i))
        .collect();
    report.folders.sort_by_key(|f| {
        position
            .get(f.source.as_str())
            .copied()
            .unwrap_or(usize::MAX)
    });
    fatal
}

/// How many connection pairs copy a mailbox of `messages`, at most `most`.
fn lanes_for(most: usize, messages: u64, settings: &MigrateSettings) -> usize {
    match settings.messages_per_connection {
        Some(per) if per > 0 => {
            let wanted = messages.div_ceil(per).max(1);
            most.min(usize::try_from(wanted).unwrap_or(usize::MAX))
        }
        _ => most,
    }
}

/// One lane: a connection pair that copies whole folders from the queue until it is
/// empty or another lane failed for good.
#[allow(clippy::too_many_arguments)] // reason: the pass's context, passed down unchanged
async fn run_lane(
    lane: usize,
    pair: Option<(SourceSide, DestSide)>,
    source: &Account,
    dest: &Account,
    ledger: &Ledger,
    settings: &MigrateSettings,
    progress: &dyn Progress,
    queue: &Mutex<VecDeque<&FolderMapping>>,
    abort: &AtomicBool,
    report: &mut Report,
) -> Option<(FatalKind, String, Option<Remedy>)> {
    let (mut src, mut dst) = match pair {
        Some(pair) => pair,
        None => match connect_both(source, dest, ledger, &crate::progress::Silent).await {
            Ok(pair) => pair,
            Err(e) => {
                // Fewer lanes, not a failed pass: the server may cap connections.
                tracing::info!(lane, "an extra connection was refused: {e}");
                return None;
            }
        },
    };
    loop {
        if abort.load(Ordering::SeqCst) {
            break;
        }
        let Some(mapping) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
            break;
        };
        let mut attempt = 1;
        loop {
            let result = copy_folder(
                &mut src, &mut dst, mapping, ledger, settings, progress, report,
            )
            .await;
            match result {
                Ok(folder) => {
                    report.folders.push(folder);
                    break;
                }
                Err(e) if e.is_transient() && attempt < settings.max_attempts => {
                    let wait = settings.first_backoff * 2u32.pow(attempt - 1);
                    progress.event(Event::Retrying {
                        reason: e.to_string(),
                        attempt,
                        wait_seconds: wait.as_secs(),
                    });
                    // The old sessions go before new ones open: connection caps count them.
                    src.shutdown().await;
                    dst.shutdown().await;
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    match connect_both(source, dest, ledger, progress).await {
                        Ok((s, d)) => {
                            src = s;
                            dst = d;
                        }
                        Err(e) if e.is_transient() || e.is_connection_setup() => {
                            if attempt >= settings.max_attempts {
                                abort.store(true, Ordering::SeqCst);
                                return Some((fatal_kind(&e), e.to_string(), e.remedy()));
                            }
                        }
                        Err(e) => {
                            abort.store(true, Ordering::SeqCst);
                            return Some((FatalKind::Other, e.to_string(), e.remedy()));
                        }
                    }
                }
                Err(e) => {
                    let (kind, remedy) = match &e {
                        FolderError::Side(s) => (fatal_kind(s), s.remedy()),
                        FolderError::Store(_) => (FatalKind::Other, None),
                    };
                    abort.store(true, Ordering::SeqCst);
                    let message = format!("folder {}: {e}", mapping.source_name);
                    return Some((kind, message, remedy));
                }
            }
        }
    }
    src.close().await;
    dst.close().await;
    None
}

fn report_template(
    source: &Account,
    dest: &Account,
    settings: &MigrateSettings,
) -> (String, String, String) {
    (
        source.endpoint.to_string(),
        dest.endpoint.to_string(),
        match settings.pass {
            PassKind::Full => "full".into(),
            PassKind::Retry => "retry".into(),
        },
    )
}

/// Sorts a side's failure that ends a pass.
pub fn fatal_kind(error: &SideError) -> FatalKind {
    if error.is_transient() || error.is_unreachable() {
        FatalKind::Interrupted
    } else if error.is_connection_setup() {
        FatalKind::Connection
    } else {
        FatalKind::Other
    }
}

async fn connect_both(
    source: &Account,
    dest: &Account,
    ledger: &Ledger,
    progress: &dyn Progress,
) -> Result<(SourceSide, DestSide), SideError> {
    let (src, dst) = tokio::join!(
        SourceSide::connect(source, Some(ledger)),
        DestSide::connect(dest, Some(ledger))
    );
    let (src, dst) = (src?, dst?);
    progress.event(Event::Connected {
        side: "source",
        capabilities: src.capabilities().len(),
    });
    progress.event(Event::Connected {
        side: "destination",
        capabilities: dst.capabilities().len(),
    });
    Ok((src, dst))
}

/// The ledger's name for a folder: its raw wire name, which never changes meaning.
pub fn folder_key(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

#[allow(clippy::too_many_arguments)] // reason: one call site; a struct would only rename these
async fn copy_folder(
    src: &mut SourceSide,
    dst: &mut DestSide,
    mapping: &FolderMapping,
    ledger: &Ledger,
    settings: &MigrateSettings,
    progress: &dyn Progress,
    report: &mut Report,
) -> Result<FolderReport, FolderError> {
    let mut folder = FolderReport {
        source: mapping.source_name.clone(),
        dest: mapping.dest_name.clone(),
        ..FolderReport::default()
    };
    let opened = Source::open(src, &mapping.source_raw).await?;
    let messages = if opened.exists == 0 {
        Vec::new()
    } else {
        Source::messages(src).await?
    };
    // In a dry run a folder still to be created has nothing in it yet.
    let source_key = folder_key(&mapping.source_raw);
    let dest_key = folder_key(&mapping.dest_raw);
    let rows = ledger.source_folder_items(&source_key).await?;
    // APPENDs in doubt (intent recorded, outcome not), with the key of the bytes sent.
    let sent_keys: HashMap<u32, &str> = rows
        .iter()
        .filter(|r| r.state == ItemState::Appending && r.source_uidvalidity == opened.uidvalidity)
        .map(|r| (r.source_uid, r.content_key.as_str()))
        .collect();
    let mut settling = 0;
    let (info, identity, actions) = loop {
        let info = if settings.dry_run && mapping.create {
            MailboxInfo::default()
        } else {
            Destination::open(dst, &mapping.dest_raw).await?
        };
        let identity = FolderIdentity {
            source_uidvalidity: opened.uidvalidity,
            dest_uidvalidity: info.uidvalidity.unwrap_or(0),
        };
        let (dest_messages, claimed): (Option<Vec<_>>, _) =
            if needs_dest_scan(&rows, identity) && info.exists > 0 {
                let claims = ledger
                    .claimed_dest_uids(&dest_key, identity.dest_uidvalidity)
                    .await?;
                (
                    Some(Destination::messages(dst).await?),
                    claimed_in_dest(&claims, &rows, identity),
                )
            } else if needs_dest_scan(&rows, identity) {
                (Some(Vec::new()), HashSet::new())
            } else {
                (None, HashSet::new())
            };
        let origins = origins_in_dest(
            dest_messages.as_deref().unwrap_or_default(),
            &source_key,
            identity.source_uidvalidity,
        );
        let actions = plan_messages(
            &messages,
            &rows,
            identity,
            dest_messages.as_deref(),
            &claimed,
            &origins,
            &settings.filter,
            settings.pass,
        );
        // An APPEND in doubt that is not at the destination may still be on its way: a
        // session killed mid-pass can leave whole commands in the server's input, which
        // the server stores after the client is gone. So before sending such messages
        // again, wait until the folder stops growing, and plan again if it grew.
        let resends = actions
            .iter()
            .any(|(uid, action)| *action == Action::Copy && sent_keys.contains_key(uid));
        if !resends || settings.dry_run || settling >= SETTLE_ROUNDS {
            break (info, identity, actions);
        }
        settling += 1;
        tokio::time::sleep(settings.settle_wait).await;
        let now = Destination::open(dst, &mapping.dest_raw).await?;
        if now.exists == info.exists && now.uidnext == info.uidnext && now.uidnext.is_some() {
            break (info, identity, actions);
        }
        if now.uidnext.is_none() {
            // No UIDNEXT (EWS): count what is there instead.
            let before = dest_messages.as_ref().map_or(0, Vec::len);
            if Destination::messages(dst).await?.len() == before {
                break (info, identity, actions);
            }
        }
        tracing::info!(
            folder = %mapping.dest_name,
            "the destination folder changed while messages were in doubt; planning again"
        );
    };
    let by_uid: HashMap<u32, &SourceMessage> = messages.iter().map(|m| (m.uid, m)).collect();
    let intent_for = |message: &SourceMessage| Intent {
        source_folder: source_key.clone(),
        source_uidvalidity: identity.source_uidvalidity,
        source_uid: message.uid,
        dest_folder: dest_key.clone(),
        dest_uidvalidity: Some(identity.dest_uidvalidity),
        content_key: message.content_key.clone(),
        message_id: message.message_id.clone(),
        subject: message.subject.clone(),
        size: message.size,
    };
    let mut to_copy = Vec::new();
    let mut links = Vec::new();
    for (uid, action) in &actions {
        let message = by_uid[uid];
        match action {
            Action::Copy => to_copy.push(*uid),
            Action::AlreadyCopied => folder.counts.already_present += 1,
            Action::Link { dest_uid } => {
                folder.counts.already_present += 1;
                let mut intent = intent_for(message);
                // Found under the key of the bytes sent before: keep that key.
                if let Some(key) = sent_keys.get(uid) {
                    intent.content_key = key.to_string();
                }
                links.push(Outcome::Linked {
                    intent,
                    dest_uid: *dest_uid,
                });
            }
            Action::Skip(_) => folder.counts.skipped += 1,
            Action::PreviouslyFailed { reason } => {
                folder.counts.failed += 1;
                report.errors.push(item_error(
                    &mapping.source_name,
                    message,
                    format!(
                        "failed in an earlier pass ({reason}); run with --retry-failed to try again"
                    ),
                ));
            }
        }
    }
    let bytes_to_copy: u64 = to_copy.iter().map(|uid| by_uid[uid].size).sum();
    progress.event(Event::FolderStarted {
        source: mapping.source_name.clone(),
        dest: mapping.dest_name.clone(),
        to_copy: to_copy.len() as u64,
        bytes_to_copy,
        total: messages.len() as u64,
    });
    if settings.dry_run {
        folder.counts.already_present -= links.len() as u64;
        folder.would_copy = Some(to_copy.len() as u64 + links.len() as u64);
        return Ok(folder);
    }
    ledger.record_outcomes(&links).await?;

    let (sink, queue) = mpsc::channel::<FetchedMessage>(settings.queue_depth.max(1));
    let sink = Sink::new(sink, settings.memory_budget);
    let fetch_batch = settings.fetch_batch.max(1);
    // Intents are committed a whole FETCH chunk at a time, before the FETCH is sent,
    // so before any of its APPENDs: one ledger round trip per chunk, not per batch.
    let producer = async {
        let result = async {
            for chunk in to_copy.chunks(fetch_batch) {
                let intents: Vec<Intent> =
                    chunk.iter().map(|uid| intent_for(by_uid[uid])).collect();
                ledger.record_intents(&intents).await?;
                Source::fetch(src, chunk, &sink).await?;
            }
            Ok::<_, FolderError>(())
        }
        .await;
        drop(sink);
        result
    };
    let mut received = HashSet::new();
    let mut dropped_flags: Vec<String> = Vec::new();
    let consumer = async {
        // Owned here, so an early error drops the receiver and the producer stops.
        let mut queue = queue;
        let policy = dst.flag_policy();
        let keeps = |flag: &str| policy.keeps(&info, flag);
        let mut writer = dst.writer(settings.append_window, &mapping.dest_raw);
        let mut written = Vec::new();
        // Outcomes wait to be recorded in bigger batches; until then their rows say
        // "appending", which a crash resolves by looking at the destination.
        let mut unrecorded: Vec<Outcome> = Vec::new();
        let result = async {
            loop {
                let Some(first) = queue.recv().await else {
                    break;
                };
                let mut batch = vec![first];
                while batch.len() < 64 {
                    match queue.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                // A source that learns a message's exact key only from its bytes (EWS)
                // records it before the message is written.
                let corrected: Vec<Intent> = batch
                    .iter()
                    .filter_map(|m| {
                        let listed = by_uid.get(&m.uid)?;
                        let key = m.content_key.as_ref()?;
                        (*key != listed.content_key).then(|| Intent {
                            content_key: key.clone(),
                            ..intent_for(listed)
                        })
                    })
                    .collect();
                ledger.record_intents(&corrected).await?;
                for message in batch {
                    if !by_uid.contains_key(&message.uid) || !received.insert(message.uid) {
                        continue; // not asked for, or sent twice by the server
                    }
                    let flags = keep_flags(&message.flags, &keeps, &mut dropped_flags);
                    let request = WriteRequest {
                        flags,
                        internal_date: message.internal_date,
                        body: message.body,
                        origin: origin(&source_key, identity.source_uidvalidity, message.uid),
                        token: u64::from(message.uid),
                    };
                    written.extend(writer.send(request).await?);
                }
                if queue.is_empty() {
                    written.extend(writer.idle().await?);
                }
                let (outcomes, settled) =
                    settle(&mut written, &by_uid, mapping, identity, &intent_for)?;
                unrecorded.extend(outcomes);
                apply(settled, &mut folder, report, progress, mapping);
                if unrecorded.len() >= 64 || queue.is_empty() {
                    ledger.record_outcomes(&unrecorded).await?;
                    unrecorded.clear();
                }
            }
            written.extend(writer.finish().await?);
            let (outcomes, settled) =
                settle(&mut written, &by_uid, mapping, identity, &intent_for)?;
            unrecorded.extend(outcomes);
            apply(settled, &mut folder, report, progress, mapping);
            Ok::<_, FolderError>(())
        }
        .await;
        // Whatever ended the folder, what is known to be done is recorded.
        let recorded = ledger.record_outcomes(&unrecorded).await;
        result?;
        recorded?;
        Ok::<_, FolderError>(())
    };
    let (produced, consumed) = tokio::join!(producer, consumer);
    consumed?;
    produced?;
    // Asked for but never sent by the source: an item error, not a silent loss.
    let mut lost = Vec::new();
    for uid in &to_copy {
        if !received.contains(uid) {
            let message = by_uid[uid];
            let reason = "the source server did not return this message".to_string();
            lost.push(Outcome::Failed {
                intent: intent_for(message),
                reason: reason.clone(),
            });
            folder.counts.failed += 1;
            report
                .errors
                .push(item_error(&mapping.source_name, message, reason));
        }
    }
    ledger.record_outcomes(&lost).await?;
    dropped_flags.sort();
    dropped_flags.dedup();
    if !dropped_flags.is_empty() {
        report.warnings.push(format!(
            "{}: the destination does not keep the flags {}",
            mapping.dest_name,
            dropped_flags.join(" ")
        ));
    }
    folder.flags_dropped = dropped_flags;
    progress.event(Event::FolderFinished {
        source: mapping.source_name.clone(),
        copied: folder.counts.copied,
        already_present: folder.counts.already_present,
        skipped: folder.counts.skipped,
        failed: folder.counts.failed,
    });
    Ok(folder)
}

/// What one settled APPEND means for the counts.
enum Settled {
    Copied { bytes: u64 },
    Failed(ItemError),
}

type SettleResult = (Vec<Outcome>, Vec<Settled>);

/// Turns APPEND completions into ledger outcomes. A throttling answer is transient:
/// the folder is planned again after a pause and the message is found or re-sent.
fn settle(
    written: &mut Vec<Written>,
    by_uid: &HashMap<u32, &SourceMessage>,
    mapping: &FolderMapping,
    identity: FolderIdentity,
    intent_for: &dyn Fn(&SourceMessage) -> Intent,
) -> Result<SettleResult, FolderError> {
    let mut outcomes = Vec::new();
    let mut settled = Vec::new();
    for done in written.drain(..) {
        let uid = done.token as u32;
        let message = by_uid[&uid];
        match done.result {
            Ok(appended) => {
                outcomes.push(Outcome::Copied {
                    source_folder: folder_key(&mapping.source_raw),
                    source_uidvalidity: identity.source_uidvalidity,
                    source_uid: uid,
                    dest_folder: folder_key(&mapping.dest_raw),
                    dest_uidvalidity: Some(appended.map_or(identity.dest_uidvalidity, |(v, _)| v)),
                    dest_uid: appended.map(|(_, u)| u),
                });
                settled.push(Settled::Copied {
                    bytes: message.size,
                });
            }
            Err(refusal) if refusal.throttled => {
                return Err(FolderError::Side(SideError {
                    side: Side::Destination,
                    error: ConnectorError::Throttled(refusal.text),
                }));
            }
            Err(refusal) => {
                let reason = format!(
                    "destination refused message UID {uid} in {} ({}): {}",
                    mapping.source_name,
                    human_size(message.size),
                    refusal.text
                );
                outcomes.push(Outcome::Failed {
                    intent: intent_for(message),
                    reason: reason.clone(),
                });
                settled.push(Settled::Failed(item_error(
                    &mapping.source_name,
                    message,
                    reason,
                )));
            }
        }
    }
    Ok((outcomes, settled))
}

fn apply(
    settled: Vec<Settled>,
    folder: &mut FolderReport,
    report: &mut Report,
    progress: &dyn Progress,
    mapping: &FolderMapping,
) {
    for item in settled {
        match item {
            Settled::Copied { bytes } => {
                folder.counts.copied += 1;
                folder.bytes_copied += bytes;
                progress.event(Event::MessageCopied { bytes });
            }
            Settled::Failed(error) => {
                folder.counts.failed += 1;
                progress.event(Event::MessageFailed {
                    folder: mapping.source_name.clone(),
                    uid: error.uid,
                    reason: error.reason.clone(),
                });
                report.errors.push(error);
            }
        }
    }
}

/// The flags a write can set and the destination keeps; the others are noted.
fn keep_flags(
    flags: &[String],
    keeps: &dyn Fn(&str) -> bool,
    dropped: &mut Vec<String>,
) -> Vec<String> {
    flags
        .iter()
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent") && !f.eq_ignore_ascii_case("\\Deleted"))
        .filter(|f| {
            let keep = keeps(f);
            if !keep {
                dropped.push((*f).clone());
            }
            keep
        })
        .cloned()
        .collect()
}

fn item_error(folder: &str, message: &SourceMessage, reason: String) -> ItemError {
    ItemError {
        folder: folder.to_string(),
        uid: message.uid,
        message_id: message.message_id.clone(),
        subject: message.subject.clone(),
        size: message.size,
        reason,
    }
}

pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pair_per_share_of_messages_up_to_the_most() {
        let auto = MigrateSettings {
            messages_per_connection: Some(500),
            ..MigrateSettings::default()
        };
        assert_eq!(lanes_for(4, 0, &auto), 1);
        assert_eq!(lanes_for(4, 300, &auto), 1);
        assert_eq!(lanes_for(4, 501, &auto), 2);
        assert_eq!(lanes_for(4, 2_000, &auto), 4);
        assert_eq!(lanes_for(4, 90_000, &auto), 4);
        assert_eq!(lanes_for(2, 2_000, &auto), 2);
        // Asked for: as many as asked, whatever the size.
        assert_eq!(lanes_for(3, 9, &MigrateSettings::default()), 3);
    }
}
