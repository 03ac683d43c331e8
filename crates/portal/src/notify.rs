//! The email a project's contact gets when a pass over the project ends (SPEC §6.8):
//! a background task of the portal looks every few seconds for projects whose passes
//! have all ended since the last notice, claims each notice in the store (so of several
//! portal processes exactly one sends it) and sends it. The same task removes expired
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
            if let Err(e) = state.db().delete_expired_logins().await {
                warn!("cannot remove expired sessions: {e}");
            }
            state.limiter().prune(state.config().login_window);
        }
    }
}

/// Sends one email for each project whose passes have all ended since its last one;
/// returns how many were sent. A notice is claimed before it is sent, so it goes out at
/// most once even if sending fails (the failure is logged).
pub async fn notify_ended_passes(state: &AppState) -> Result<usize, StoreError> {
    let db = state.db();
    let mut sent = 0;
    for ended in db.ended_projects().await? {
        if !db
            .claim_notification(ended.project_id, ended.last_pass_id)
            .await?
        {
            continue;
        }
        let project = db.project_by_id(ended.project_id).await?;
        let kind = db.pass(ended.last_pass_id).await?.kind;
        let mailboxes = db.mailboxes(project.id).await?;
        let mut lines = Vec::new();
        for status in MailboxStatus::ALL {
            let count = mailboxes.iter().filter(|m| m.status == status).count();
            if count > 0 {
                lines.push(format!("  {count} {}", status.as_str()));
            }
        }
        let copied: u64 = mailboxes.iter().map(|m| m.copied).sum();
        let failed: u64 = mailboxes.iter().map(|m| m.failed).sum();
        let name = pass_name(kind);
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
