//! What pages show, computed from store records: the page templates (askama, checked at
//! compile time, HTML-escaped), and the cells that live progress re-renders every
//! second. A view holds no secret: mailbox records come in, only addresses, statuses,
//! counts and reasons go out.

use askama::Template;
use mailmove_model::human_size;
use mailmove_projects::TrialReport;
use mailmove_store::{MailboxRecord, MailboxStatus, PassKind, PassSnapshot, PassState};

use crate::presets::{PRESETS, Side};

pub(crate) use mailmove_model::server_text;

/// What the frame of every page needs.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub title: String,
    /// The signed-in user's email.
    pub user: Option<String>,
    /// The token forms and htmx requests carry (the session's, or the login form's).
    pub csrf: String,
    /// Added to asset URLs so a new version is fetched anew.
    pub version: &'static str,
}

impl Layout {
    pub fn new(title: impl Into<String>, user: Option<String>, csrf: impl Into<String>) -> Layout {
        Layout {
            title: title.into(),
            user,
            csrf: csrf.into(),
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct LoginPage {
    pub layout: Layout,
    pub email: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "login_sent.html")]
pub(crate) struct LoginSentPage {
    pub layout: Layout,
    pub email: String,
    pub minutes: i64,
}

#[derive(Template)]
#[template(path = "login_confirm.html")]
pub(crate) struct LoginConfirmPage {
    pub layout: Layout,
    pub email: String,
    /// The link's path (`/login/TOKEN`), where the button posts.
    pub action: String,
}

#[derive(Template)]
#[template(path = "terms.html")]
pub(crate) struct TermsPage {
    pub layout: Layout,
}

/// A page that says one thing: an error, a refused request, a dead link.
#[derive(Template)]
#[template(path = "message.html")]
pub(crate) struct MessagePage {
    pub layout: Layout,
    pub heading: String,
    pub lines: Vec<String>,
    pub link_href: String,
    pub link_text: String,
}

#[derive(Template)]
#[template(path = "migrations.html")]
pub(crate) struct MigrationsPage {
    pub layout: Layout,
    pub notice: Option<String>,
    pub projects: Vec<ProjectSummary>,
}

pub(crate) struct ProjectSummary {
    pub id: i64,
    pub name: String,
    pub source: String,
    pub dest: String,
    pub mailboxes: u64,
    pub counts: Vec<StatusCount>,
    pub finished: bool,
}

pub(crate) struct StatusCount {
    pub label: &'static str,
    pub slug: &'static str,
    pub count: u64,
}

pub(crate) fn status_counts(counts: &[(MailboxStatus, u64)]) -> Vec<StatusCount> {
    counts
        .iter()
        .map(|(status, count)| StatusCount {
            label: status.as_str(),
            slug: status_slug(*status),
            count: *count,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "new_migration.html")]
pub(crate) struct NewMigrationPage {
    pub layout: Layout,
    pub errors: Vec<String>,
    pub name: String,
    pub sides: Vec<SideForm>,
}

/// One side (source or destination) of the new-migration form, as last typed.
pub(crate) struct SideForm {
    /// Field name prefix: `source` or `dest`.
    pub prefix: &'static str,
    /// `Source` or `Destination`.
    pub title: &'static str,
    pub kinds: Vec<KindOption>,
    pub presets: Vec<PresetOption>,
    pub host: String,
    pub port: String,
    pub security: String,
    /// How the side's mailboxes sign in, where the operator offers OAuth2 profiles
    /// (empty: passwords only, no choice shown).
    pub sign_ins: Vec<SignInOption>,
}

pub(crate) struct SignInOption {
    /// `password`, or a profile's name.
    pub value: String,
    pub label: String,
    pub selected: bool,
}

pub(crate) struct KindOption {
    pub value: &'static str,
    pub label: &'static str,
    pub checked: bool,
}

pub(crate) struct PresetOption {
    pub id: &'static str,
    pub label: String,
    pub selected: bool,
}

impl SideForm {
    pub fn new(side: Side, form: &crate::presets::EndpointForm) -> SideForm {
        let kind = if form.kind.is_empty() {
            "imap"
        } else {
            form.kind.as_str()
        };
        let mut kinds = vec![KindOption {
            value: "imap",
            label: "IMAP",
            checked: kind == "imap",
        }];
        if side == Side::Source {
            kinds.push(KindOption {
                value: "pop3",
                label: "POP",
                checked: kind == "pop3",
            });
        }
        kinds.push(KindOption {
            value: "ews",
            label: "Exchange",
            checked: kind == "ews",
        });
        let presets = PRESETS
            .iter()
            .map(|p| PresetOption {
                id: p.id,
                label: if p.exchange {
                    format!("{} (Exchange: type its server address)", p.name)
                } else {
                    p.name.to_string()
                },
                selected: form.preset == p.id,
            })
            .collect();
        SideForm {
            prefix: match side {
                Side::Source => "source",
                Side::Destination => "dest",
            },
            title: match side {
                Side::Source => "Source",
                Side::Destination => "Destination",
            },
            kinds,
            presets,
            host: form.host.clone(),
            port: form.port.clone(),
            security: if form.security.is_empty() {
                "tls".into()
            } else {
                form.security.clone()
            },
            sign_ins: Vec::new(),
        }
    }
}

#[derive(Template)]
#[template(path = "project.html")]
pub(crate) struct ProjectPage {
    pub layout: Layout,
    pub id: i64,
    pub name: String,
    pub source: String,
    pub dest: String,
    pub notice: Option<String>,
    pub finished: Option<String>,
    /// Passes are queued or running: the page listens for progress.
    pub live: bool,
    pub summary_html: String,
    pub mailboxes: Vec<MailboxView>,
    /// A side's mailboxes sign in with their users' own consent: each row links to
    /// the sign-in link to send them.
    pub users_sign_in: bool,
}

/// One mailbox row of the project page.
pub(crate) struct MailboxView {
    pub id: i64,
    pub source_email: String,
    pub dest_email: String,
    pub status_html: String,
    pub progress_html: String,
}

#[derive(Template)]
#[template(path = "mailboxes.html")]
pub(crate) struct MailboxesPage {
    pub layout: Layout,
    pub project_id: i64,
    pub project_name: String,
    pub notice: Option<String>,
    pub errors: Vec<String>,
    pub rows: Vec<RowView>,
    pub next_row: usize,
    pub existing: Vec<ExistingMailbox>,
}

/// One mailbox row of the form, as typed; never a password.
#[derive(Clone, Debug, Default)]
pub(crate) struct RowView {
    pub n: usize,
    pub source_email: String,
    pub source_login: String,
    pub dest_email: String,
    pub dest_login: String,
}

/// The answer to "+ Add a row": the new row, and the button again for the row after.
#[derive(Template)]
#[template(path = "mailbox_row_fragment.html")]
pub(crate) struct RowFragment {
    pub project_id: i64,
    pub row: RowView,
    pub next_row: usize,
}

/// The form that replaces one mailbox's passwords.
#[derive(Template)]
#[template(path = "passwords.html")]
pub(crate) struct PasswordsPage {
    pub layout: Layout,
    pub project_id: i64,
    pub project_name: String,
    pub mailbox_id: i64,
    pub source_email: String,
    pub dest_email: String,
    /// "a password" or "none": whether one is stored, never what.
    pub source_saved: &'static str,
    pub dest_saved: &'static str,
    pub error: Option<String>,
}

pub(crate) struct ExistingMailbox {
    pub id: i64,
    pub source_email: String,
    pub dest_email: String,
    pub source_password: &'static str,
    pub dest_password: &'static str,
}

impl ExistingMailbox {
    pub fn of(mailbox: &MailboxRecord) -> ExistingMailbox {
        let saved = |secret: &Option<Vec<u8>>| {
            if secret.is_some() { "saved" } else { "none" }
        };
        ExistingMailbox {
            id: mailbox.id,
            source_email: mailbox.source_email.clone(),
            dest_email: mailbox.dest_email.clone(),
            source_password: saved(&mailbox.source_secret),
            dest_password: saved(&mailbox.dest_secret),
        }
    }
}

#[derive(Template)]
#[template(path = "cells/status.html")]
struct StatusCell<'a> {
    label: &'a str,
    slug: &'a str,
    reason: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "cells/progress.html")]
struct ProgressCell {
    /// One line of text, always there.
    line: String,
    /// A progress bar: done and total (bytes).
    bar: Option<(u64, u64)>,
}

#[derive(Template)]
#[template(path = "cells/summary.html")]
struct SummaryCell {
    total: usize,
    counts: Vec<StatusCount>,
}

/// The class suffix of a status colour.
pub(crate) fn status_slug(status: MailboxStatus) -> &'static str {
    match status {
        MailboxStatus::NotStarted => "not-started",
        MailboxStatus::Verifying => "verifying",
        MailboxStatus::ReadyForMigration => "ready",
        MailboxStatus::VerifyFailed => "verify-failed",
        MailboxStatus::Queued => "queued",
        MailboxStatus::Migrating => "migrating",
        MailboxStatus::Completed => "completed",
        MailboxStatus::CompletedWithErrors => "completed-with-errors",
        MailboxStatus::Failed => "failed",
        MailboxStatus::Stopped => "stopped",
    }
}

/// The status cell of a mailbox: its status in words and colour, and the reason.
pub(crate) fn status_html(mailbox: &MailboxRecord, pass: Option<&PassSnapshot>) -> String {
    // A pass put back in the queue after an unreachable server says why it waits.
    let retrying = pass
        .filter(|p| p.state == PassState::Queued)
        .and_then(|p| p.error.as_deref())
        .map(|error| format!("Will try again: {}", server_text(error)));
    let stored = mailbox.last_error.as_deref().map(server_text);
    let reason = retrying.as_deref().or(stored.as_deref());
    render(&StatusCell {
        label: mailbox.status.as_str(),
        slug: status_slug(mailbox.status),
        reason,
    })
}

/// The progress cell: live figures while a pass runs, the last results after.
pub(crate) fn progress_html(
    mailbox: &MailboxRecord,
    pass: Option<&PassSnapshot>,
    now: i64,
) -> String {
    let cell = match pass {
        Some(p) if p.state == PassState::Running && p.kind == PassKind::Verify => ProgressCell {
            line: "Trial running: connecting and logging in on both sides".into(),
            bar: None,
        },
        Some(p) if p.state == PassState::Running => running(p, now),
        Some(p) if p.state == PassState::Queued => ProgressCell {
            line: format!("{} waiting to start", pass_name(p.kind)),
            bar: None,
        },
        Some(p) if p.kind == PassKind::Verify && p.state == PassState::Done => ProgressCell {
            line: p
                .report
                .as_deref()
                .and_then(trial_summary)
                .unwrap_or_else(|| "Trial passed".into()),
            bar: None,
        },
        _ if mailbox.last_pass.is_some_and(PassKind::copies) => ProgressCell {
            line: format!(
                "{} copied, {} already there, {} skipped, {} failed; {}",
                mailbox.copied,
                mailbox.already_present,
                mailbox.skipped,
                mailbox.failed,
                human_size(mailbox.bytes_copied)
            ),
            bar: None,
        },
        _ => ProgressCell {
            line: "No migration yet".into(),
            bar: None,
        },
    };
    render(&cell)
}

/// The pre-flight of a passed trial, from its report: what there is to copy, the
/// largest message, the destination quota and an estimate of the time.
fn trial_summary(report: &str) -> Option<String> {
    let report = TrialReport::from_json(report)?;
    let source = &report.source;
    let mut parts = vec![format!(
        "Trial: {} messages in {} folders, {}; largest message {}",
        source.messages,
        source.folders,
        human_size(source.bytes),
        human_size(source.largest_message)
    )];
    if let (Some(used), Some(limit)) = (report.dest.quota_used, report.dest.quota_limit) {
        parts.push(format!(
            "destination quota {} used of {}",
            human_size(used),
            human_size(limit)
        ));
    }
    parts.push(format!(
        "about {} to copy",
        human_duration(report.estimated_seconds.max(1))
    ));
    Some(parts.join("; "))
}

/// A running pass's figures. Before its worker's first heartbeat a full pass shows the
/// totals its trial found (the store starts it with them); a pass with no totals yet
/// says it is starting rather than "0 of 0".
fn running(pass: &PassSnapshot, now: i64) -> ProgressCell {
    let p = &pass.progress;
    if p.messages_total == 0 && p.messages_done == 0 && p.current_folder.is_none() {
        return ProgressCell {
            line: format!("{}: starting", pass_name(pass.kind)),
            bar: None,
        };
    }
    let elapsed = pass.started_at.map_or(0, |start| (now - start).max(0));
    let mut parts = Vec::new();
    if let Some(folder) = &p.current_folder {
        parts.push(format!("Folder {}", server_text(folder)));
    }
    parts.push(format!(
        "{} of {} messages",
        p.messages_done, p.messages_total
    ));
    parts.push(format!(
        "{} of {}",
        human_size(p.bytes_done),
        human_size(p.bytes_total)
    ));
    if elapsed > 0 && p.bytes_done > 0 {
        let rate = p.bytes_done as f64 / elapsed as f64;
        parts.push(format!("{}/s", human_size(rate as u64)));
        if p.bytes_total > p.bytes_done {
            let left = ((p.bytes_total - p.bytes_done) as f64 / rate).ceil() as u64;
            parts.push(format!("about {} left", human_duration(left)));
        }
    }
    ProgressCell {
        line: format!("{}: {}", pass_name(pass.kind), parts.join(", ")),
        bar: (p.bytes_total > 0).then_some((p.bytes_done.min(p.bytes_total), p.bytes_total)),
    }
}

/// The project's counts per status, above the table.
pub(crate) fn summary_html(mailboxes: &[MailboxRecord]) -> String {
    let counts: Vec<(MailboxStatus, u64)> = MailboxStatus::ALL
        .into_iter()
        .map(|status| {
            let n = mailboxes.iter().filter(|m| m.status == status).count() as u64;
            (status, n)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    render(&SummaryCell {
        total: mailboxes.len(),
        counts: status_counts(&counts),
    })
}

/// The name people know a pass by.
pub(crate) fn pass_name(kind: PassKind) -> &'static str {
    match kind {
        PassKind::Verify => "Trial",
        PassKind::Full => "Migration",
        PassKind::Delta => "Migration of new items",
        PassKind::Retry => "Retry of errors",
    }
}

fn human_duration(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds.div_ceil(60)),
        _ => format!("{} h {} min", seconds / 3600, (seconds % 3600) / 60),
    }
}

/// Renders a template whose fields are all plain data; askama only fails on a
/// formatter error, which these never raise.
pub(crate) fn render<T: Template>(template: &T) -> String {
    template.render().unwrap_or_else(|e| {
        tracing::error!("a template failed to render: {e}");
        String::new()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailmove_store::PassProgress;

    fn mailbox(status: MailboxStatus) -> MailboxRecord {
        MailboxRecord {
            id: 7,
            project_id: 1,
            source_email: "a@old.example".into(),
            source_login: "a".into(),
            source_secret: Some(vec![1]),
            dest_email: "a@new.example".into(),
            dest_login: "a".into(),
            dest_secret: None,
            status,
            last_pass: None,
            copied: 0,
            already_present: 0,
            skipped: 0,
            failed: 0,
            bytes_copied: 0,
            last_error: None,
            dest_byte_exact: None,
        }
    }

    #[test]
    fn a_long_server_text_is_shown_cut_with_an_ellipsis() {
        let mut failed = mailbox(MailboxStatus::Failed);
        failed.last_error = Some(format!("source refused: {}", "é".repeat(100_000)));
        let html = status_html(&failed, None);
        assert!(html.contains("é…"), "ends with an ellipsis");
        assert!(html.len() < 2_000, "{} bytes", html.len());
    }

    #[test]
    fn a_passed_trial_shows_its_pre_flight() {
        let report = r#"{"source":{"messages":2000,"folders":5,"bytes":207000000,"largest_message":9100000},
            "dest":{"quota_used":1000000,"quota_limit":5000000000},"estimated_seconds":11,"warnings":[]}"#;
        let pass = PassSnapshot {
            pass_id: 2,
            mailbox_id: 7,
            kind: PassKind::Verify,
            state: PassState::Done,
            progress: PassProgress::default(),
            error: None,
            started_at: Some(1000),
            timings: Default::default(),
            finished_at: Some(1001),
            report: Some(report.into()),
        };
        let html = progress_html(
            &mailbox(MailboxStatus::ReadyForMigration),
            Some(&pass),
            1010,
        );
        assert!(
            html.contains("2000 messages in 5 folders, 207.0 MB"),
            "{html}"
        );
        assert!(html.contains("largest message 9.1 MB"), "{html}");
        assert!(
            html.contains("destination quota 1.0 MB used of 5.0 GB"),
            "{html}"
        );
        assert!(html.contains("to copy"), "{html}");
    }

    #[test]
    fn a_running_pass_shows_folder_counts_rate_and_time_left() {
        let pass = PassSnapshot {
            pass_id: 1,
            mailbox_id: 7,
            kind: PassKind::Full,
            state: PassState::Running,
            progress: PassProgress {
                messages_total: 100,
                messages_done: 25,
                bytes_total: 4_000_000,
                bytes_done: 1_000_000,
                current_folder: Some("Archive/<2023>".into()),
            },
            error: None,
            started_at: Some(1000),
            timings: Default::default(),
            finished_at: None,
            report: None,
        };
        let html = progress_html(&mailbox(MailboxStatus::Migrating), Some(&pass), 1010);
        assert!(html.contains("Folder Archive/&#60;2023&#62;"), "{html}");
        assert!(html.contains("25 of 100 messages"), "{html}");
        assert!(html.contains("1.0 MB of 4.0 MB"), "{html}");
        assert!(html.contains("100.0 KB/s"), "{html}");
        assert!(html.contains("about 30 s left"), "{html}");
        assert!(html.contains("<progress"), "{html}");
    }

    #[test]
    fn statuses_carry_their_reason_escaped() {
        let mut failed = mailbox(MailboxStatus::VerifyFailed);
        failed.last_error = Some("destination login refused: <check> the password".into());
        let html = status_html(&failed, None);
        assert!(html.contains("Verify failed"));
        assert!(html.contains("status-verify-failed"));
        assert!(html.contains("&#60;check&#62;"), "{html}");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(42), "42 s");
        assert_eq!(human_duration(61), "2 min");
        assert_eq!(human_duration(7260), "2 h 1 min");
    }
}
