//! The email a project's contact gets when a pass over the project ends (SPEC §6.8):
//! a background task of the portal looks every few seconds for rounds of ended passes
//! nobody was told about, claims their passes in the store (so of several portal
//! processes exactly one reports each pass) and sends one email per round. The same task removes expired
//! sessions and login links.

use std::time::{Duration, Instant};

use mailmove_store::{MailboxStatus, StoreError};
use tokio::time::MissedTickBehavior;
use tracing::warn;

use crate::views::pass_name;
use crate::{AppState, OutgoingMail};

/// How often expired sessions and login links are removed.
const CLEANUP_EVERY: Duration = Duration::from_secs(600);

pub(crate) async fn run(state: AppState) {
    let mut ticker = tokio::time::interval(state.config().notify_every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut cleaned: Option<Instant> = None;
    loop {
        ticker.tick().await;
        if let Err(e) = notify_ended_passes(&state).await {
            warn!("cannot look for ended passes: {e}");
        }
        if cleaned.is_none_or(|at| at.elapsed() >= CLEANUP_EVERY) {
            cleaned = Some(Instant::now());
            let idle = state.config().session_idle_seconds;
            if let Err(e) = state.db().delete_expired_logins(idle).await {
                warn!("cannot remove expired sessions: {e}");
            }
        }
    }
}

/// Sends one email for each round of ended passes nobody was told about (a project's
/// passes of one kind, once none of that kind is queued or running there); returns how
/// many were sent. Each pass is claimed before the email is sent, so it is reported at
/// most once even if sending fails (the failure is logged), and a pass that ends while
/// another kind of pass is queued right after is still reported.
pub async fn notify_ended_passes(state: &AppState) -> Result<usize, StoreError> {
    let db = state.db();
    let mut sent = 0;
    for round in db.ended_rounds().await? {
        let claimed = db.claim_ended_passes(&round.pass_ids).await?;
        if claimed.is_empty() {
            continue;
        }
        let project = db.project_by_id(round.project_id).await?;
        let mut mailbox_ids = Vec::with_capacity(claimed.len());
        for id in &claimed {
            mailbox_ids.push(db.pass(*id).await?.mailbox_id);
        }
        let mailboxes: Vec<_> = db
            .mailboxes(project.id)
            .await?
            .into_iter()
            .filter(|m| mailbox_ids.contains(&m.id))
            .collect();
        let mut lines = Vec::new();
        for status in MailboxStatus::ALL {
            let count = mailboxes.iter().filter(|m| m.status == status).count();
            if count > 0 {
                lines.push(format!("  {count} {}", status.as_str()));
            }
        }
        let copied: u64 = mailboxes.iter().map(|m| m.copied).sum();
        let failed: u64 = mailboxes.iter().map(|m| m.failed).sum();
        let name = pass_name(round.kind);
        let mail = OutgoingMail {
            to: project.owner_email.clone(),
            subject: format!("mailmove: {name} of “{}” has ended", project.name),
            body: format!(
                "The {} of your migration “{}” has ended.\n\nMailboxes:\n{}\n\nMessages copied: {copied}; failed: {failed}.\n\nDetails and reports: {}/projects/{}\n",
                name.to_lowercase(),
                project.name,
                lines.join("\n"),
                state.config().public_url,
                project.id
            ),
        };
        match state.mailer().send(mail).await {
            Ok(()) => sent += 1,
            Err(e) => warn!(
                project = project.id,
                "cannot send the end-of-pass email: {e}"
            ),
        }
    }
    Ok(sent)
}
