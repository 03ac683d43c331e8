//! One pass over one mailbox pair: plan the folders, then per folder plan the
//! messages and stream them from a source FETCH into pipelined destination APPENDs.
//!
//! Every failure is sorted into one of three kinds: transient (reconnect, back off,
//! plan the folder again: the ledger makes that safe), item (record it and go on),
//! fatal (stop the pass with a reason a person can act on).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mailmove_net::Remedy;
use mailmove_store::Ledger;
use time::OffsetDateTime;

use crate::connector::{Connector, Destination, Failure, SideError, Source};
use crate::copy::{CopiedEarlier, FolderContext, FolderError, copy_folder};
use crate::folders::{FolderMapping, FolderPlan, FolderRules, FolderTree, fallback_names};
use crate::plan::{MessageFilter, PassKind};
use crate::progress::{Event, Progress, Silent};
use crate::report::Report;
use crate::session::{self, OpenError};

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
    /// `verify` also reads both sides' bytes of every message found and tells which
    /// the destination changed, and how.
    pub compare_bytes: bool,
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
            compare_bytes: false,
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

/// Runs one pass and reports what it did, whatever happened.
pub async fn migrate<SC: Connector, DC: Connector>(
    source: &SC,
    dest: &DC,
    ledger: &Ledger,
    settings: &MigrateSettings,
    progress: &dyn Progress,
) -> (Report, Option<FatalKind>) {
    let started = Instant::now();
    let pass = Pass {
        source,
        dest,
        ledger,
        settings,
        progress,
    };
    let mut report = pass.empty_report();
    let fatal = pass.run(&mut report).await;
    let fatal_kind = fatal.map(|fatal| {
        report.fatal = Some(fatal.message);
        report.fatal_remedy = fatal.remedy;
        fatal.kind
    });
    for folder in &report.folders {
        report.messages.add(&folder.counts);
        report.bytes_copied += folder.bytes_copied;
    }
    report.finished_at = now_rfc3339();
    report.elapsed_seconds = started.elapsed().as_secs_f64();
    (report, fatal_kind)
}

/// Why a pass stopped: the kind, the reason for people, and the fix that applies.
struct Fatal {
    kind: FatalKind,
    message: String,
    remedy: Option<Remedy>,
    /// Worth trying again: the connection dropped, the server was away.
    transient: bool,
}

impl Fatal {
    /// A side's failure that ends the pass, sorted by [`fatal_kind`].
    fn of(error: &SideError) -> Fatal {
        Fatal::new(fatal_kind(error), error.to_string(), error)
    }

    fn new(kind: FatalKind, message: String, error: &SideError) -> Fatal {
        Fatal {
            kind,
            message,
            remedy: error.remedy(),
            transient: error.is_transient(),
        }
    }
}

/// One pass's context, shared by its lanes.
struct Pass<'a, SC, DC> {
    source: &'a SC,
    dest: &'a DC,
    ledger: &'a Ledger,
    settings: &'a MigrateSettings,
    progress: &'a dyn Progress,
}

/// Folders waiting for a lane, and the flag that stops every lane.
struct Work<'a> {
    queue: Mutex<VecDeque<&'a FolderMapping>>,
    abort: AtomicBool,
}

impl<'a> Work<'a> {
    fn next(&self) -> Option<&'a FolderMapping> {
        if self.abort.load(Ordering::SeqCst) {
            return None;
        }
        self.queue.lock().ok().and_then(|mut q| q.pop_front())
    }

    fn stop(&self, fatal: Fatal) -> Option<Fatal> {
        self.abort.store(true, Ordering::SeqCst);
        Some(fatal)
    }
}

impl<SC: Connector, DC: Connector> Pass<'_, SC, DC> {
    fn empty_report(&self) -> Report {
        let kind = match self.settings.pass {
            PassKind::Full => "full",
            PassKind::Retry => "retry",
        };
        Report::empty((self.source.server(), self.dest.server(), kind.into()))
    }

    async fn run(&self, report: &mut Report) -> Option<Fatal> {
        let (mut session, plan) = match self.prepared(report).await {
            Ok(prepared) => prepared,
            Err(fatal) => return Some(fatal),
        };
        // Several connection pairs ("lanes") copy whole folders at once, largest first,
        // so each folder keeps its order while the destination works on several.
        let most = self
            .settings
            .connections
            .min(session.source.max_sessions())
            .clamp(1, plan.mappings.len().max(1));
        let mut order: Vec<(u64, &FolderMapping)> = Vec::with_capacity(plan.mappings.len());
        for mapping in &plan.mappings {
            // Sizes only matter when several lanes share the folders out.
            let count = if most > 1 {
                session.source.folder_size(&mapping.source_raw).await
            } else {
                0
            };
            order.push((count, mapping));
        }
        let lanes = lanes_for(
            most,
            order.iter().map(|(count, _)| *count).sum(),
            self.settings,
        );
        if lanes > 1 {
            order.sort_by_key(|(count, _)| std::cmp::Reverse(*count));
        }
        let work = Work {
            queue: Mutex::new(order.into_iter().map(|(_, m)| m).collect()),
            abort: AtomicBool::new(false),
        };
        let mut first = Some((session.source, session.dest));
        let runs = (0..lanes).map(|lane| {
            let pair = first.take();
            let work = &work;
            async move {
                let mut scratch = self.empty_report();
                let fatal = self.run_lane(lane, pair, work, &mut scratch).await;
                (scratch, fatal)
            }
        });
        let mut fatal = None;
        for (scratch, lane_fatal) in futures_util::future::join_all(runs).await {
            report.folders.extend(scratch.folders);
            report.errors.extend(scratch.errors);
            report.warnings.extend(scratch.warnings);
            report.dest_byte_exact = all_exact(report.dest_byte_exact, scratch.dest_byte_exact);
            fatal = fatal.or(lane_fatal);
        }
        sort_like_plan(report, &plan);
        fatal
    }

    /// Both sides connected, the folders listed and planned, and the folders the
    /// destination lacks created. A connection that drops meanwhile, or a server that
    /// is away for a while, is tried again with backoff like a folder's copy: all of
    /// it can be done again (folders created before are found).
    async fn prepared(
        &self,
        report: &mut Report,
    ) -> Result<(session::Session<SC::Source, DC::Destination>, FolderPlan), Fatal> {
        let mut attempt = 1;
        loop {
            let fatal = match self.prepare(report).await {
                Ok(prepared) => return Ok(prepared),
                Err(fatal) if fatal.transient && attempt < self.settings.max_attempts => fatal,
                Err(fatal) => return Err(fatal),
            };
            let wait = self.settings.first_backoff * 2u32.pow(attempt - 1);
            self.progress.event(Event::Retrying {
                reason: fatal.message,
                attempt,
                wait_seconds: wait.as_secs(),
            });
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn prepare(
        &self,
        report: &mut Report,
    ) -> Result<(session::Session<SC::Source, DC::Destination>, FolderPlan), Fatal> {
        let opened = session::open(
            self.source,
            self.dest,
            Some(self.ledger),
            &self.settings.rules,
            self.progress,
        )
        .await;
        let mut session = match opened {
            Ok(session) => session,
            Err(OpenError::Connect(e)) => return Err(Fatal::of(&e)),
            Err(OpenError::List(e)) => {
                return Err(Fatal::new(FatalKind::Other, e.to_string(), &e));
            }
        };
        let mut plan = std::mem::take(&mut session.plan);
        // Warnings of an attempt that did not finish are said again by the next one.
        let warnings = report.warnings.len();
        report.folders_excluded = plan.excluded.clone();
        if !self.settings.dry_run
            && let Err(fatal) = self
                .create_folders(&mut session.dest, &mut plan, &session.dest_tree, report)
                .await
        {
            report.warnings.truncate(warnings);
            return Err(fatal);
        }
        Ok((session, plan))
    }

    /// Creates the folders the destination lacks, and subscribes where the source is.
    /// A name the destination refuses is not the end of the pass: other names are
    /// tried, and a folder that gets none has its messages failed one by one.
    async fn create_folders(
        &self,
        dst: &mut DC::Destination,
        plan: &mut FolderPlan,
        tree: &FolderTree,
        report: &mut Report,
    ) -> Result<(), Fatal> {
        for mapping in &mut plan.mappings {
            if mapping.create {
                match dst.create(&mapping.dest_raw).await {
                    Ok(()) => self.progress.event(Event::FolderCreated {
                        dest: mapping.dest_name.clone(),
                    }),
                    Err(e) if e.error.failure == Failure::Refused => {
                        self.fall_back(dst, mapping, tree, &e, report).await?;
                    }
                    Err(e) => {
                        let message = format!("cannot create folder {}: {e}", mapping.dest_name);
                        return Err(Fatal::new(fatal_kind(&e), message, &e));
                    }
                }
            }
            if mapping.refused.is_none()
                && mapping.subscribe
                && let Err(e) = dst.subscribe(&mapping.dest_raw).await
            {
                report
                    .warnings
                    .push(format!("could not subscribe to {}: {e}", mapping.dest_name));
            }
        }
        Ok(())
    }

    /// Finds another name for a folder the destination refused: the first fallback that
    /// exists there already (an earlier pass made it) or that it lets us create.
    async fn fall_back(
        &self,
        dst: &mut DC::Destination,
        mapping: &mut FolderMapping,
        tree: &FolderTree,
        refusal: &SideError,
        report: &mut Report,
    ) -> Result<(), Fatal> {
        let said = &refusal.error;
        // Refused because another session created it meanwhile: nothing to do.
        let now = dst.folders().await.map_err(|e| Fatal::of(&e))?;
        if now.exists(&mapping.dest_raw) {
            return Ok(());
        }
        for levels in fallback_names(&tree.levels(&mapping.dest_raw)) {
            let raw = tree.raw_name(&levels);
            let created = now.exists(&raw) || {
                match dst.create(&raw).await {
                    Ok(()) => true,
                    Err(e) if e.error.failure == Failure::Refused => false,
                    Err(e) => return Err(Fatal::of(&e)),
                }
            };
            if created {
                let name = levels.join("/");
                report.warnings.push(format!(
                    "the destination refused the folder name {} ({said}); its messages go to {name}",
                    mapping.dest_name
                ));
                self.progress
                    .event(Event::FolderCreated { dest: name.clone() });
                mapping.dest_raw = raw;
                mapping.dest_name = name;
                mapping.create = false;
                return Ok(());
            }
        }
        let reason = format!(
            "the destination refused the folder {} and every other name tried for it ({said})",
            mapping.dest_name
        );
        report.warnings.push(reason.clone());
        mapping.refused = Some(reason);
        Ok(())
    }

    /// One lane: a connection pair that copies whole folders from the queue until it
    /// is empty or another lane failed for good.
    async fn run_lane(
        &self,
        lane: usize,
        pair: Option<(SC::Source, DC::Destination)>,
        work: &Work<'_>,
        report: &mut Report,
    ) -> Option<Fatal> {
        let (mut src, mut dst) = match pair {
            Some(pair) => pair,
            None => match self.connect(&Silent).await {
                Ok(pair) => pair,
                Err(e) => {
                    // Fewer lanes, not a failed pass: the server may cap connections.
                    tracing::info!(lane, "an extra connection was refused: {e}");
                    return None;
                }
            },
        };
        while let Some(mapping) = work.next() {
            if let Err(fatal) = self
                .copy_with_retries(mapping, &mut src, &mut dst, report)
                .await
            {
                return work.stop(fatal);
            }
        }
        src.close().await;
        dst.close().await;
        None
    }

    /// Copies one folder, reconnecting with backoff after transient failures.
    async fn copy_with_retries(
        &self,
        mapping: &FolderMapping,
        src: &mut SC::Source,
        dst: &mut DC::Destination,
        report: &mut Report,
    ) -> Result<(), Fatal> {
        let cx = FolderContext {
            mapping,
            ledger: self.ledger,
            settings: self.settings,
            progress: self.progress,
        };
        let mut earlier = CopiedEarlier::default();
        let mut attempt = 1;
        loop {
            let sent_before = earlier.messages_sent();
            let result = copy_folder(cx, src, dst, &mut earlier).await;
            // An attempt that got messages across was progress, however it ended: on a
            // network that keeps breaking, only attempts that achieve nothing count
            // towards giving up.
            if earlier.messages_sent() > sent_before {
                attempt = 1;
            }
            let error = match result {
                Ok(outcome) => {
                    report.dest_byte_exact = all_exact(report.dest_byte_exact, outcome.byte_exact);
                    report.folders.push(outcome.folder);
                    report.errors.extend(outcome.errors);
                    report.warnings.extend(outcome.warnings);
                    return Ok(());
                }
                Err(e) if e.is_transient() && attempt < self.settings.max_attempts => e,
                Err(e) => {
                    let message = format!("folder {}: {e}", mapping.source_name);
                    return Err(match &e {
                        FolderError::Side(s) => Fatal::new(fatal_kind(s), message, s),
                        FolderError::Store(_) => Fatal {
                            kind: FatalKind::Other,
                            message,
                            remedy: None,
                            transient: false,
                        },
                    });
                }
            };
            let wait = self.settings.first_backoff * 2u32.pow(attempt - 1);
            self.progress.event(Event::Retrying {
                reason: error.to_string(),
                attempt,
                wait_seconds: wait.as_secs(),
            });
            // The old sessions go before new ones open: connection caps count them.
            src.shutdown().await;
            dst.shutdown().await;
            tokio::time::sleep(wait).await;
            attempt += 1;
            match self.connect(self.progress).await {
                Ok((s, d)) => (*src, *dst) = (s, d),
                Err(e) if e.is_transient() || e.is_connection_setup() => {
                    if attempt >= self.settings.max_attempts {
                        return Err(Fatal::of(&e));
                    }
                }
                Err(e) => return Err(Fatal::new(FatalKind::Other, e.to_string(), &e)),
            }
        }
    }

    async fn connect(
        &self,
        progress: &dyn Progress,
    ) -> Result<(SC::Source, DC::Destination), SideError> {
        session::connect_both(self.source, self.dest, Some(self.ledger), progress).await
    }
}

/// Exact only if every folder that was checked was.
fn all_exact(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a && b),
        (a, b) => a.or(b),
    }
}

/// Reports folders in plan order, not in the order lanes finished them.
fn sort_like_plan(report: &mut Report, plan: &FolderPlan) {
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

/// The ledger's name for a folder: its raw wire name, which never changes meaning.
pub fn folder_key(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
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
