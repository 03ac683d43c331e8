//! A project's status as `mailmove project status --json` prints it (SPEC §5).

use mailmove_store::{Db, PassState, PassTimings, ProjectRecord, StoreError};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct ProjectStatus {
    pub project: String,
    pub source: String,
    pub dest: String,
    pub mailboxes: Vec<MailboxState>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MailboxState {
    pub source_email: String,
    pub dest_email: String,
    pub status: String,
    pub pass: Option<String>,
    pub messages: MessageCounts,
    pub bytes_copied: u64,
    pub last_error: Option<String>,
    /// The running pass's progress, when one runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<ProgressNow>,
    /// How long the newest pass was queued, waited for a connection slot and ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
}

/// A pass's time in each state, in seconds; rates are messages over `running_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Timings {
    pub queued_seconds: f64,
    pub waiting_seconds: f64,
    pub running_seconds: f64,
}

impl From<PassTimings> for Timings {
    fn from(t: PassTimings) -> Timings {
        let seconds = |ms: u64| ms as f64 / 1000.0;
        Timings {
            queued_seconds: seconds(t.queued_ms),
            waiting_seconds: seconds(t.waiting_ms),
            running_seconds: seconds(t.running_ms),
        }
    }
}

/// The counts of the mailbox's last migration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MessageCounts {
    pub copied: u64,
    pub already_present: u64,
    pub skipped: u64,
    pub failed: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProgressNow {
    pub messages_done: u64,
    pub messages_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub folder: Option<String>,
}

pub(crate) async fn of(db: &Db, project: &ProjectRecord) -> Result<ProjectStatus, StoreError> {
    let latest: std::collections::HashMap<i64, _> = db
        .latest_passes(project.id)
        .await?
        .into_iter()
        .map(|p| (p.mailbox_id, p))
        .collect();
    let mailboxes = db
        .mailboxes(project.id)
        .await?
        .into_iter()
        .map(|mailbox| {
            let latest = latest.get(&mailbox.id);
            let progress = latest
                .filter(|p| p.state == PassState::Running)
                .map(|p| ProgressNow {
                    messages_done: p.progress.messages_done,
                    messages_total: p.progress.messages_total,
                    bytes_done: p.progress.bytes_done,
                    bytes_total: p.progress.bytes_total,
                    folder: p.progress.current_folder.clone(),
                });
            MailboxState {
                source_email: mailbox.source_email,
                dest_email: mailbox.dest_email,
                status: mailbox.status.as_str().to_string(),
                pass: mailbox
                    .last_pass
                    .or(latest.map(|p| p.kind))
                    .map(|kind| kind.as_str().to_string()),
                messages: MessageCounts {
                    copied: mailbox.copied,
                    already_present: mailbox.already_present,
                    skipped: mailbox.skipped,
                    failed: mailbox.failed,
                },
                bytes_copied: mailbox.bytes_copied,
                last_error: mailbox.last_error,
                progress,
                timings: latest.map(|p| p.timings.into()),
            }
        })
        .collect();
    Ok(ProjectStatus {
        project: project.name.clone(),
        source: project.source.clone(),
        dest: project.dest.clone(),
        mailboxes,
    })
}
