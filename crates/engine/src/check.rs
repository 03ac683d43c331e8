//! The trial: connect and log in on both sides, then a pre-flight that sizes the job
//! and warns about what would make it fail (quota, message size limits).

use crate::connector::{Connector, Destination, SideError, Source};
use crate::folders::FolderRules;
use crate::progress::Silent;
use crate::report::human_size;
use crate::session;

/// Above this share of the destination quota, the trial warns.
const QUOTA_WARNING: f64 = 0.70;
/// A conservative copy rate for the time estimate, in bytes per second.
const ESTIMATE_RATE: f64 = 20.0 * 1_000_000.0;

/// One side of the trial (the model's type, named for the engine's readers).
pub type SideCheck = mailmove_model::TrialSide;

/// What the trial found.
pub type CheckReport = mailmove_model::TrialReport;

pub async fn check<SC: Connector, DC: Connector>(
    source: &SC,
    dest: &DC,
    rules: &FolderRules,
) -> Result<CheckReport, SideError> {
    let session = session::open(source, dest, None, rules, &Silent)
        .await
        .map_err(session::OpenError::into_inner)?;
    let (mut src, mut dst, plan) = (session.source, session.dest, session.plan);

    let mut source_side = describe(src.capabilities(), source.server());
    source_side.folders = plan.mappings.len() as u64;
    for mapping in &plan.mappings {
        let opened = src.open(&mapping.source_raw).await?;
        if opened.exists == 0 {
            continue;
        }
        let sizes = src.messages().await?;
        source_side.messages += sizes.len() as u64;
        for message in &sizes {
            source_side.bytes += message.size;
            source_side.largest_message = source_side.largest_message.max(message.size);
        }
    }

    let mut dest_side = describe(dst.capabilities(), dest.server());
    dest_side.folders = session.dest_tree.entries.len() as u64;
    let quota = dst.quota().await?;
    dest_side.quota_used = quota.map(|q| q.used);
    dest_side.quota_limit = quota.map(|q| q.limit);

    let mut warnings = Vec::new();
    if let Some(q) = quota.filter(|q| q.limit > 0) {
        let after = q.used + source_side.bytes;
        let share = after as f64 / q.limit as f64;
        if share > QUOTA_WARNING {
            warnings.push(format!(
                "the destination quota would be {:.0}% full after the migration ({} used + {} to copy, of {})",
                share * 100.0,
                human_size(q.used),
                human_size(source_side.bytes),
                human_size(q.limit)
            ));
        }
    }
    if let Some(limit) = dest_side.append_limit
        && source_side.largest_message > limit
    {
        warnings.push(format!(
            "the largest source message ({}) is over the destination's limit of {}: it will fail",
            human_size(source_side.largest_message),
            human_size(limit)
        ));
    }
    src.close().await;
    dst.close().await;
    Ok(CheckReport {
        estimated_seconds: (source_side.bytes as f64 / ESTIMATE_RATE).ceil() as u64,
        folders_to_create: plan
            .mappings
            .iter()
            .filter(|m| m.create)
            .map(|m| m.dest_name.clone())
            .collect(),
        source: source_side,
        dest: dest_side,
        warnings,
    })
}

fn describe(capabilities: &[String], server: String) -> SideCheck {
    let capabilities = capabilities.to_vec();
    let append_limit = capabilities.iter().find_map(|c| {
        let (name, value) = c.split_once('=')?;
        name.eq_ignore_ascii_case("APPENDLIMIT")
            .then(|| value.parse().ok())?
    });
    SideCheck {
        server,
        capabilities,
        append_limit,
        ..SideCheck::default()
    }
}
