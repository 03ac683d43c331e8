//! The proof: folder by folder, every source message is found at the destination or
//! explained (skipped on purpose, or failed with a recorded reason). What is left is
//! unexplained, and "0 unexplained" is the goal of every migration.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use mailmove_store::{ItemRecord, ItemState, Ledger};

use crate::connector::{Connector, Destination, Failure, SideError, Source};
use crate::content;
use crate::folders::{FolderMapping, FolderTree};
use crate::identity::{Unmatched, keys_match};
use crate::migrate::{FatalKind, MigrateSettings, folder_key, now_rfc3339};
use crate::plan::{DestMessage, SourceMessage, origins_in_dest, skip_reason};
use crate::progress::Silent;
use crate::report::{FolderReport, Missing, Report};
use crate::session;

/// Compares both sides; the report's `missing` lists every source message not found.
pub async fn verify<SC: Connector, DC: Connector>(
    source: &SC,
    dest: &DC,
    ledger: &Ledger,
    settings: &MigrateSettings,
) -> (Report, Option<FatalKind>) {
    let started = Instant::now();
    let mut report = Report::empty((source.server(), dest.server(), "verify".into()));
    report.missing = Some(Vec::new());
    let fatal = match run(source, dest, ledger, settings, &mut report).await {
        Ok(()) => None,
        Err(e) => {
            let kind = crate::migrate::fatal_kind(&e);
            report.fatal = Some(e.to_string());
            report.fatal_remedy = e.remedy();
            Some(kind)
        }
    };
    for folder in &report.folders {
        report.messages.add(&folder.counts);
    }
    report.finished_at = now_rfc3339();
    report.elapsed_seconds = started.elapsed().as_secs_f64();
    (report, fatal)
}

async fn run<SC: Connector, DC: Connector>(
    source: &SC,
    dest: &DC,
    ledger: &Ledger,
    settings: &MigrateSettings,
    report: &mut Report,
) -> Result<(), SideError> {
    let session = session::open(source, dest, Some(ledger), &settings.rules, &Silent)
        .await
        .map_err(session::OpenError::into_inner)?;
    let (mut src, mut dst) = (session.source, session.dest);
    report.folders_excluded = session.plan.excluded.clone();
    let tree = &session.dest_tree;
    for mapping in &session.plan.mappings {
        let sides = FolderSides::read(&mut src, &mut dst, mapping, tree, ledger).await?;
        let (folder, pairs) = verify_folder(&sides, mapping, settings, report);
        report.folders.push(folder);
        if settings.compare_bytes && !pairs.is_empty() {
            let by_uid: HashMap<u32, &SourceMessage> =
                sides.messages.iter().map(|m| (m.uid, m)).collect();
            match content::compare(&mut src, &mut dst, &pairs).await {
                Ok(compared) => {
                    let found = report.content.get_or_insert_with(Default::default);
                    found.add(&mapping.source_name, compared, &by_uid);
                }
                Err(e) if e.error.failure == Failure::Refused => report.warnings.push(format!(
                    "the bytes of {} were not compared: {e}",
                    mapping.source_name
                )),
                Err(e) => return Err(e),
            }
        }
    }
    src.close().await;
    dst.close().await;
    Ok(())
}

/// Compares one folder: each source message found at the destination (by the
/// ledger's word checked against what is there, then by content, each destination
/// message used once) or explained.
/// Tells which destination message each found source message is: (source UID,
/// destination UID) pairs.
fn verify_folder(
    sides: &FolderSides,
    mapping: &FolderMapping,
    settings: &MigrateSettings,
    report: &mut Report,
) -> (FolderReport, Vec<(u32, u32)>) {
    let mut folder = FolderReport {
        source: mapping.source_name.clone(),
        dest: mapping.dest_name.clone(),
        ..FolderReport::default()
    };
    let mut used = HashSet::new();
    let mut pairs = Vec::new();
    let mut unmatched = sides.match_by_ledger(&mut used, &mut pairs);
    let mut available = sides.unused(&used);
    // By content, exact sizes before near ones (a copy the server changed).
    for take in [Unmatched::take_exact, Unmatched::take_near] {
        unmatched.retain(
            |message| match take(&mut available, sides.key_of(message)) {
                Some(dest_uid) => {
                    pairs.push((message.uid, dest_uid));
                    false
                }
                None => true,
            },
        );
    }
    folder.counts.already_present += (sides.messages.len() - unmatched.len()) as u64;
    for message in unmatched {
        let missing = sides.explain(message, mapping, settings, &mut folder);
        report.missing.get_or_insert_with(Vec::new).push(missing);
    }
    (folder, pairs)
}

/// Both sides of one folder, and what the ledger remembers of it.
struct FolderSides {
    messages: Vec<SourceMessage>,
    dest_uidvalidity: Option<u32>,
    dest_messages: Vec<DestMessage>,
    /// The ledger's rows at the source folder's current UIDVALIDITY, by UID.
    rows: HashMap<u32, ItemRecord>,
    /// Source UID -> destination UID, where the destination keeps each copy's origin.
    origins: HashMap<u32, u32>,
    /// Whether the destination folder still has to be created.
    missing_folder: bool,
}

impl FolderSides {
    /// Reads both sides. Where the planned destination folder does not exist but the
    /// ledger's rows went to another that does (a name the destination refused, and
    /// the fallback it took instead), that one is compared.
    async fn read<S: Source, D: Destination>(
        src: &mut S,
        dst: &mut D,
        mapping: &FolderMapping,
        tree: &FolderTree,
        ledger: &Ledger,
    ) -> Result<FolderSides, SideError> {
        let opened = src.open(&mapping.source_raw).await?;
        let messages = if opened.exists == 0 {
            Vec::new()
        } else {
            src.messages().await?
        };
        let source_key = folder_key(&mapping.source_raw);
        let rows: HashMap<u32, ItemRecord> = ledger
            .source_folder_items(&source_key)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.source_uidvalidity == opened.uidvalidity)
            .map(|r| (r.source_uid, r))
            .collect();
        let dest_raw = if mapping.create {
            rows.values()
                .filter_map(|r| r.dest_folder.as_deref())
                .map(|name| name.as_bytes().to_vec())
                .find(|raw| tree.exists(raw))
        } else {
            Some(mapping.dest_raw.clone())
        };
        let (dest_uidvalidity, dest_messages) = match dest_raw {
            None => (None, Vec::new()),
            Some(dest_raw) => match dst.open(&dest_raw).await {
                // A folder the destination will not open holds nothing we can see.
                Err(e) if e.error.failure == Failure::Refused => (None, Vec::new()),
                Err(e) => return Err(e),
                Ok(info) if info.exists == 0 => (Some(info.uidvalidity), Vec::new()),
                Ok(info) => (Some(info.uidvalidity), dst.messages().await?),
            },
        };
        let origins = origins_in_dest(&dest_messages, &source_key, opened.uidvalidity);
        Ok(FolderSides {
            messages,
            dest_uidvalidity,
            dest_messages,
            rows,
            origins,
            missing_folder: dest_uidvalidity.is_none(),
        })
    }

    /// A message's key is that of the bytes really copied, where the ledger knows it
    /// (a source's listing may describe a message less exactly).
    fn key_of<'a>(&'a self, message: &'a SourceMessage) -> &'a str {
        self.rows
            .get(&message.uid)
            .map_or(message.content_key.as_str(), |row| row.content_key.as_str())
    }

    /// Finds messages where their origin mark or the ledger says, checked against
    /// what is really there; returns the others.
    fn match_by_ledger(
        &self,
        used: &mut HashSet<u32>,
        pairs: &mut Vec<(u32, u32)>,
    ) -> Vec<&SourceMessage> {
        let dest_by_uid: HashMap<u32, &str> = self
            .dest_messages
            .iter()
            .map(|m| (m.uid, m.content_key.as_str()))
            .collect();
        let mut unmatched = Vec::new();
        for message in &self.messages {
            if let Some(uid) = self.origins.get(&message.uid)
                && used.insert(*uid)
            {
                pairs.push((message.uid, *uid));
                continue;
            }
            let linked = self.rows.get(&message.uid).and_then(|row| {
                (row.state == ItemState::Copied && row.dest_uidvalidity == self.dest_uidvalidity)
                    .then_some(row.dest_uid)
                    .flatten()
            });
            // The ledger's word holds if what is there could be the bytes sent.
            let there = |uid: &u32| {
                dest_by_uid
                    .get(uid)
                    .is_some_and(|found| keys_match(self.key_of(message), found))
            };
            match linked {
                Some(uid) if there(&uid) && used.insert(uid) => pairs.push((message.uid, uid)),
                _ => unmatched.push(message),
            }
        }
        unmatched
    }

    /// Destination messages not used yet (and without an origin mark).
    fn unused(&self, used: &HashSet<u32>) -> Unmatched<'_> {
        Unmatched::new(
            self.dest_messages
                .iter()
                .filter(|m| !used.contains(&m.uid) && m.origin.is_none())
                .map(|m| (m.content_key.as_str(), m.uid)),
        )
    }

    /// Why a message is not at the destination: skipped on purpose, failed with a
    /// recorded reason, or unexplained.
    fn explain(
        &self,
        message: &SourceMessage,
        mapping: &FolderMapping,
        settings: &MigrateSettings,
        folder: &mut FolderReport,
    ) -> Missing {
        let row = self.rows.get(&message.uid);
        let (reason, explained) = if let Some(skip) = skip_reason(message, &settings.filter) {
            folder.counts.skipped += 1;
            (format!("skipped on purpose: {skip}"), true)
        } else if let Some(row) = row.filter(|r| r.state == ItemState::Failed) {
            folder.counts.failed += 1;
            (
                format!("failed: {}", row.reason.clone().unwrap_or_default()),
                true,
            )
        } else {
            folder.counts.failed += 1;
            let reason = if self.missing_folder {
                format!(
                    "missing: the destination folder {} does not exist",
                    mapping.dest_name
                )
            } else if row.is_some_and(|r| r.state == ItemState::Copied) {
                "missing: it was copied, but is no longer at the destination".to_string()
            } else {
                "missing: never copied".to_string()
            };
            (reason, false)
        };
        Missing {
            folder: mapping.source_name.clone(),
            uid: message.uid,
            message_id: message.message_id.clone(),
            subject: message.subject.clone(),
            reason,
            explained,
        }
    }
}
