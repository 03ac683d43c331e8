//! The proof: folder by folder, every source message is found at the destination or
//! explained (skipped on purpose, or failed with a recorded reason). What is left is
//! unexplained, and "0 unexplained" is the goal of every migration.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use mailmove_store::{ItemRecord, ItemState, Ledger};

use crate::connector::{Account, DestSide, Destination, SideError, Source, SourceSide};
use crate::folders::{FolderMapping, plan_folders};
use crate::migrate::{FatalKind, MigrateSettings, folder_key, now_rfc3339};
use crate::plan::{FolderIdentity, SourceMessage, origins_in_dest, skip_reason};
use crate::report::{FolderReport, Missing, Report};

/// Compares both sides; the report's `missing` lists every source message not found.
pub async fn verify(
    source: &Account,
    dest: &Account,
    ledger: &Ledger,
    settings: &MigrateSettings,
) -> (Report, Option<FatalKind>) {
    let started = Instant::now();
    let mut report = Report::empty((
        source.endpoint.to_string(),
        dest.endpoint.to_string(),
        "verify".into(),
    ));
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

async fn run(
    source: &Account,
    dest: &Account,
    ledger: &Ledger,
    settings: &MigrateSettings,
    report: &mut Report,
) -> Result<(), SideError> {
    let (src, dst) = tokio::join!(
        SourceSide::connect(source, Some(ledger)),
        DestSide::connect(dest, Some(ledger))
    );
    let (mut src, mut dst) = (src?, dst?);
    let source_tree = Source::folders(&mut src).await?;
    let dest_tree = Destination::folders(&mut dst).await?;
    let plan = plan_folders(&source_tree, &dest_tree, &settings.rules);
    report.folders_excluded = plan.excluded.clone();
    for mapping in &plan.mappings {
        let folder = verify_folder(&mut src, &mut dst, mapping, ledger, settings, report).await?;
        report.folders.push(folder);
    }
    src.close().await;
    dst.close().await;
    Ok(())
}

async fn verify_folder(
    src: &mut SourceSide,
    dst: &mut DestSide,
    mapping: &FolderMapping,
    ledger: &Ledger,
    settings: &MigrateSettings,
    report: &mut Report,
) -> Result<FolderReport, SideError> {
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
    let (dest_uidvalidity, dest_messages) = if mapping.create {
        (None, Vec::new())
    } else {
        let info = Destination::open(dst, &mapping.dest_raw).await?;
        let found = if info.exists == 0 {
            Vec::new()
        } else {
            Destination::messages(dst).await?
        };
        (info.uidvalidity, found)
    };
    let identity = FolderIdentity {
        source_uidvalidity: opened.uidvalidity,
        dest_uidvalidity: dest_uidvalidity.unwrap_or(0),
    };
    let rows = ledger
        .source_folder_items(&folder_key(&mapping.source_raw))
        .await
        .unwrap_or_default();
    let rows: HashMap<u32, _> = rows
        .into_iter()
        .filter(|r| r.source_uidvalidity == identity.source_uidvalidity)
        .map(|r| (r.source_uid, r))
        .collect();
    let dest_by_uid: HashMap<u32, &str> = dest_messages
        .iter()
        .map(|m| (m.uid, m.content_key.as_str()))
        .collect();
    let mut used: HashSet<u32> = HashSet::new();
    let mut unmatched = Vec::new();
    // Where the destination keeps each copy's origin, that settles it.
    let origins = origins_in_dest(
        &dest_messages,
        &folder_key(&mapping.source_raw),
        identity.source_uidvalidity,
    );
    // A message's key is that of the bytes really copied, where the ledger knows it
    // (a source's listing may describe a message less exactly).
    fn key_of<'a>(rows: &'a HashMap<u32, ItemRecord>, message: &'a SourceMessage) -> &'a str {
        rows.get(&message.uid)
            .map_or(message.content_key.as_str(), |row| row.content_key.as_str())
    }
    let key_of = |message| key_of(&rows, message);
    // First the ledger's word, checked against what is really there.
    for message in &messages {
        if let Some(uid) = origins.get(&message.uid)
            && used.insert(*uid)
        {
            folder.counts.already_present += 1;
            continue;
        }
        let linked = rows.get(&message.uid).and_then(|row| {
            (row.state == ItemState::Copied && row.dest_uidvalidity == dest_uidvalidity)
                .then_some(row.dest_uid)
                .flatten()
        });
        match linked {
            Some(uid) if dest_by_uid.get(&uid) == Some(&key_of(message)) && used.insert(uid) => {
                folder.counts.already_present += 1;
            }
            _ => unmatched.push(message),
        }
    }
    // Then by content, each destination message used once.
    let mut available: HashMap<&str, Vec<u32>> = HashMap::new();
    for m in &dest_messages {
        if !used.contains(&m.uid) && m.origin.is_none() {
            available
                .entry(m.content_key.as_str())
                .or_default()
                .push(m.uid);
        }
    }
    for message in unmatched {
        if available
            .get_mut(key_of(message))
            .and_then(Vec::pop)
            .is_some()
        {
            folder.counts.already_present += 1;
            continue;
        }
        let (reason, explained) = if let Some(skip) = skip_reason(message, &settings.filter) {
            folder.counts.skipped += 1;
            (format!("skipped on purpose: {skip}"), true)
        } else if let Some(row) = rows
            .get(&message.uid)
            .filter(|r| r.state == ItemState::Failed)
        {
            folder.counts.failed += 1;
            (
                format!("failed: {}", row.reason.clone().unwrap_or_default()),
                true,
            )
        } else {
            folder.counts.failed += 1;
            let reason = if mapping.create {
                format!(
                    "missing: the destination folder {} does not exist",
                    mapping.dest_name
                )
            } else if rows
                .get(&message.uid)
                .is_some_and(|r| r.state == ItemState::Copied)
            {
                "missing: it was copied, but is no longer at the destination".to_string()
            } else {
                "missing: never copied".to_string()
            };
            (reason, false)
        };
        report.missing.get_or_insert_with(Vec::new).push(Missing {
            folder: mapping.source_name.clone(),
            uid: message.uid,
            message_id: message.message_id.clone(),
            subject: message.subject.clone(),
            reason,
            explained,
        });
    }
    Ok(folder)
}
