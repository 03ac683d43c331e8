//! One claimed pass, from its mailbox's settings to its final status.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use mailmove_engine::report::Report;
use mailmove_engine::{
    Account, Event, FatalKind, MigrateSettings, PassKind as EnginePass, Progress, check, migrate,
};
use mailmove_engine::{Admin, AdminForm, ConnectOptions, TlsOptions};
use mailmove_model::{Endpoint, Secret, server_text};
use mailmove_net::Remedy;
use mailmove_projects::{ProjectSettings, RotationWriter, Side, SignInMethod, secret_context};
use mailmove_store::{
    Ledger, MailboxRecord, MailboxResults, MailboxStatus, PassCopies, PassEnd, PassKind,
    PassProgress, PassRecord, PassState,
};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::Worker;
use crate::sign_in::SignInError;

/// Why the heartbeat interrupts a running pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cancel {
    No,
    Stop,
    LeaseLost,
}

/// What a finished pass found, kept as its report.
enum Findings {
    Migration(Report),
    Trial(mailmove_engine::CheckReport),
}

/// Why a pass stopped running in this worker.
enum Ending {
    Finished(
        PassState,
        MailboxStatus,
        Option<String>,
        Option<Box<Findings>>,
    ),
    /// Try again later (unreachable server, dropped connections, no progress), its
    /// connection slots given back meanwhile.
    Again {
        delay: i64,
        error: Option<String>,
        count_attempt: bool,
    },
    /// Another worker holds the pass now, or a stop was asked and handled.
    LeaseLost,
    Stopped,
}

pub async fn run(worker: &Worker, pass: PassRecord) {
    let db = &worker.db;
    let name = &worker.config.name;
    // Every claim counts an attempt, and a pass given back to the queue is counted once;
    // so more attempts than allowed means its lease ran out again and again: it stopped
    // each worker that took it (a crash, the machine's memory). It must not take the
    // next one down too.
    let ending = if pass.attempts > worker.config.max_attempts {
        Ending::Finished(
            PassState::Failed,
            failed_status(pass.kind),
            Some(format!(
                "the pass stopped its worker {} times without ending (each time its lease ran \
                 out), so it is not tried again",
                pass.attempts - 1
            )),
            None,
        )
    } else {
        match prepare(worker, &pass).await {
            Ok(mut prepared) => {
                let writers = std::mem::take(&mut prepared.writers);
                let ending = execute(worker, &pass, prepared).await;
                // The pass's accounts are gone: every rotated sign-in is handed over.
                for writer in writers {
                    if let Err(e) = writer.finish().await {
                        warn!(pass = pass.id, "cannot keep a renewed sign-in: {e}");
                    }
                }
                ending
            }
            Err(reason) => Ending::Finished(
                PassState::Failed,
                failed_status(pass.kind),
                Some(reason),
                None,
            ),
        }
    };
    let end = match ending {
        Ending::Finished(state, status, error, findings) => {
            let mut end = PassEnd {
                status: Some(status),
                error,
                ..PassEnd::state(state)
            };
            match findings.map(|f| *f) {
                Some(Findings::Migration(mut report)) => {
                    // The ledger knows what earlier attempts of this pass copied (a
                    // worker that died, one that lost its lease): the counts cover them.
                    match db.pass_copies(pass.id).await {
                        Ok(copies) => count_every_attempt(&mut report, copies),
                        Err(e) => warn!(pass = pass.id, "cannot count the pass's copies: {e}"),
                    }
                    end.results = Some(results_of(&report));
                    end.report = serde_json::to_string(&report).ok();
                }
                Some(Findings::Trial(found)) => {
                    // What there is to copy: a full pass shows it until it counts its own.
                    end.progress = Some(PassProgress {
                        messages_total: found.source.messages,
                        bytes_total: found.source.bytes,
                        ..PassProgress::default()
                    });
                    end.report = serde_json::to_string(&found).ok();
                }
                // A failure to start leaves the last migration's figures in place.
                None => {}
            }
            Some(end)
        }
        Ending::Again {
            delay,
            error,
            count_attempt,
        } => {
            if count_attempt && pass.attempts >= worker.config.max_attempts {
                let reason = error.unwrap_or_else(|| "gave up".into());
                let reason = format!("{reason} (gave up after {} attempts)", pass.attempts);
                Some(PassEnd {
                    status: Some(failed_status(pass.kind)),
                    error: Some(reason),
                    ..PassEnd::state(PassState::Failed)
                })
            } else {
                if let Err(e) = db
                    .requeue_pass(
                        pass.id,
                        name,
                        delay,
                        error.as_deref().map(server_text).as_deref(),
                        count_attempt,
                    )
                    .await
                {
                    warn!(pass = pass.id, "cannot put the pass back in the queue: {e}");
                }
                None
            }
        }
        Ending::Stopped => Some(PassEnd {
            status: Some(MailboxStatus::Stopped),
            ..PassEnd::state(PassState::Stopped)
        }),
        Ending::LeaseLost => None,
    };
    if let Some(mut end) = end {
        // Reasons quote servers, which choose their length: stored cut.
        end.error = end.error.map(|e| server_text(&e).into_owned());
        // False when the lease was lost meanwhile: the new holder reports.
        if let Err(e) = db.end_pass(pass.id, name, &end).await {
            warn!(pass = pass.id, "cannot record how the pass ended: {e}");
        }
    }
}

/// Makes a migration's report describe the whole pass: messages the ledger says this
/// pass copied in earlier attempts were counted as already present by this attempt.
fn count_every_attempt(report: &mut Report, copies: PassCopies) {
    let messages = &mut report.messages;
    if copies.messages > messages.copied {
        let earlier = copies.messages - messages.copied;
        messages.already_present = messages.already_present.saturating_sub(earlier);
        messages.copied = copies.messages;
        report.bytes_copied = report.bytes_copied.max(copies.bytes);
    }
}

/// A claimed pass with what it needs to run.
struct Prepared {
    mailbox: MailboxRecord,
    source: Account,
    dest: Account,
    settings: ProjectSettings,
    /// Keep the refresh tokens the provider rotates during the pass.
    writers: Vec<RotationWriter>,
}

async fn prepare(worker: &Worker, pass: &PassRecord) -> Result<Prepared, String> {
    let mailbox = worker
        .db
        .mailbox(pass.mailbox_id)
        .await
        .map_err(|e| e.to_string())?;
    let project = worker
        .db
        .project_by_id(mailbox.project_id)
        .await
        .map_err(|e| e.to_string())?;
    let settings = ProjectSettings::from_json(&project.settings).map_err(|e| e.to_string())?;
    let options = ConnectOptions {
        tls: TlsOptions {
            extra_ca: settings.tls_ca.clone(),
            accept_invalid_certs: settings.accept_invalid_certs,
        },
        allow_plaintext: settings.allow_plaintext,
        network: worker.config.network.clone(),
        ..ConnectOptions::default()
    };
    let account = |url: &str, login: &str, email: &str, sealed: &Option<Vec<u8>>, side: Side| {
        let endpoint = Endpoint::parse(url)
            .map_err(|e| format!("the project's {} server: {e}", side.as_str()))?;
        let method = match side {
            Side::Source => &settings.source_sign_in,
            Side::Destination => &settings.dest_sign_in,
        };
        let password = match (sealed, method.needs_password()) {
            (_, false) => Secret::new(String::new()),
            (None, true) => {
                return Err(format!(
                    "no {} password stored for {email}: add it to the mailbox",
                    side.as_str()
                ));
            }
            (Some(sealed), true) => worker
                .keyring
                .open(
                    sealed,
                    &secret_context(project.id, &mailbox.source_email, side),
                )
                .map_err(|e| format!("the {} password of {email}: {e}", side.as_str()))?,
        };
        let admin = match method {
            SignInMethod::Admin { login, separator } => Some(Admin {
                login: login.clone(),
                form: separator.map_or(AdminForm::AuthorizationIdentity, AdminForm::Separator),
            }),
            _ => None,
        };
        Ok::<_, String>(Account {
            endpoint: endpoint.with_login(login),
            login: login.to_string(),
            password,
            options: options.clone(),
            web_auth: Default::default(),
            admin,
            tokens: None,
        })
    };
    let mut source = account(
        &project.source,
        &mailbox.source_login,
        &mailbox.source_email,
        &mailbox.source_secret,
        Side::Source,
    )?;
    let mut dest = account(
        &project.dest,
        &mailbox.dest_login,
        &mailbox.dest_email,
        &mailbox.dest_secret,
        Side::Destination,
    )?;
    let mut writers = Vec::new();
    for (account, method) in [
        (&mut source, &settings.source_sign_in),
        (&mut dest, &settings.dest_sign_in),
    ] {
        if let SignInMethod::OAuth { profile } = method {
            writers.extend(sign_in_with(worker, account, profile).await?);
        }
    }
    Ok(Prepared {
        mailbox,
        source,
        dest,
        settings,
        writers,
    })
}

/// Attaches the token source of the operator's profile `name` to `account`.
async fn sign_in_with(
    worker: &Worker,
    account: &mut Account,
    name: &str,
) -> Result<Option<RotationWriter>, String> {
    let Some(profiles) = &worker.config.sign_ins else {
        return Err(format!(
            "the project signs in with the profile {name}, and this worker has no sign-in \
             profiles: the operator must configure them"
        ));
    };
    profiles.attach(account, name).await.map_err(|e| match e {
        SignInError::NotSignedIn { account, .. } => format!(
            "waiting for {account} to sign in: the mailbox's user has not signed in yet \
                 (or the sign-in was forgotten)"
        ),
        other => other.to_string(),
    })
}

async fn execute(worker: &Worker, pass: &PassRecord, prepared: Prepared) -> Ending {
    let Prepared {
        mailbox,
        source,
        dest,
        settings,
        ..
    } = prepared;
    let mailbox = &mailbox;
    let db = &worker.db;
    // The claim took this pass's connection slots and showed its mailbox running.
    info!(pass = pass.id, mailbox = %mailbox.source_email, kind = pass.kind.as_str(), "pass started");

    let progress = Arc::new(Counting::default());
    let (cancel, cancelled) = watch::channel(Cancel::No);
    let heartbeat = {
        let db = db.clone();
        let name = worker.config.name.clone();
        let every = worker.config.heartbeat;
        let lease = worker.config.lease_seconds;
        let progress = Arc::clone(&progress);
        let pass_id = pass.id;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let snapshot = progress.snapshot();
                match db.heartbeat(pass_id, &name, lease, &snapshot).await {
                    Ok(Some(false)) => {}
                    Ok(Some(true)) => {
                        let _ = cancel.send(Cancel::Stop);
                        return;
                    }
                    Ok(None) => {
                        let _ = cancel.send(Cancel::LeaseLost);
                        return;
                    }
                    Err(e) => warn!(pass = pass_id, "heartbeat failed: {e}"),
                }
            }
        })
    };
    let pop_folder = settings
        .pop_folder
        .filter(|_| source.endpoint.kind == mailmove_model::Kind::Pop3);
    let work = run_engine(
        pass,
        mailbox,
        &source,
        &dest,
        progress.as_ref(),
        worker,
        pop_folder,
    );
    let mut cancelled = cancelled;
    // Dropping the engine's future mid-pass is safe: the ledger was written before
    // every APPEND, so the next run finds what reached the destination.
    let ending = tokio::select! {
        ending = work => ending,
        seen = cancelled.wait_for(|c| *c != Cancel::No) => match seen.map(|c| *c) {
            Ok(Cancel::Stop) => Ending::Stopped,
            _ => Ending::LeaseLost,
        },
        idle = stalled(&progress, worker.config.stall_timeout) => Ending::Again {
            delay: retry_delay(worker, pass.attempts),
            error: Some(format!(
                "the pass made no progress for {} s (a server stopped answering); it is \
                 tried again later",
                idle.as_secs()
            )),
            count_attempt: true,
        },
    };
    heartbeat.abort();
    ending
}

async fn run_engine(
    pass: &PassRecord,
    mailbox: &MailboxRecord,
    source: &Account,
    dest: &Account,
    progress: &Counting,
    worker: &Worker,
    pop_folder: Option<String>,
) -> Ending {
    let retry_delay = |attempts: u32| retry_delay(worker, attempts);
    // The reason people read, with the advice this worker was given for its remedy.
    let advised =
        |message: String, remedy: Option<Remedy>| match remedy.and_then(worker.config.advice) {
            Some(advice) => format!("{message}; {advice}"),
            None => message,
        };
    if pass.kind == PassKind::Verify {
        return match check(source, dest, &Default::default()).await {
            Ok(found) => {
                let warnings = (!found.warnings.is_empty()).then(|| found.warnings.join("; "));
                Ending::Finished(
                    PassState::Done,
                    MailboxStatus::ReadyForMigration,
                    warnings,
                    Some(Box::new(Findings::Trial(found))),
                )
            }
            Err(e) if e.is_transient() || e.is_unreachable() => Ending::Again {
                delay: retry_delay(pass.attempts),
                error: Some(advised(e.to_string(), e.remedy())),
                count_attempt: true,
            },
            Err(e) => Ending::Finished(
                PassState::Failed,
                MailboxStatus::VerifyFailed,
                Some(advised(e.to_string(), e.remedy())),
                None,
            ),
        };
    }
    let mut rules = mailmove_engine::FolderRules::default();
    if let Some(folder) = &pop_folder {
        rules.map.push(("INBOX".to_string(), folder.clone()));
    }
    let settings = MigrateSettings {
        rules,
        pass: engine_pass(pass.kind),
        ..MigrateSettings::default()
    };
    let ledger = Ledger::for_pass(worker.db.clone(), &mailbox.ledger_key(), pass.id);
    let (report, fatal) = migrate(source, dest, &ledger, &settings, progress).await;
    match fatal {
        None => {
            let failed = report.messages.failed;
            let status = if failed == 0 {
                MailboxStatus::Completed
            } else {
                MailboxStatus::CompletedWithErrors
            };
            let note = (failed > 0).then(|| format!("{failed} messages failed; see the report"));
            Ending::Finished(
                PassState::Done,
                status,
                note,
                Some(Box::new(Findings::Migration(report))),
            )
        }
        Some(FatalKind::Interrupted) => Ending::Again {
            delay: retry_delay(pass.attempts),
            error: report
                .fatal
                .clone()
                .map(|f| advised(f, report.fatal_remedy)),
            count_attempt: true,
        },
        Some(FatalKind::Connection | FatalKind::Other) => Ending::Finished(
            PassState::Failed,
            MailboxStatus::Failed,
            report
                .fatal
                .clone()
                .map(|f| advised(f, report.fatal_remedy)),
            Some(Box::new(Findings::Migration(report))),
        ),
    }
}

/// How long a pass interrupted for the `attempts`-th time waits: doubled each time.
fn retry_delay(worker: &Worker, attempts: u32) -> i64 {
    worker.config.retry_delay_seconds * 2i64.pow(attempts.saturating_sub(1).min(6))
}

/// Returns once the pass has reported nothing for `timeout` (how long, then).
async fn stalled(progress: &Counting, timeout: std::time::Duration) -> std::time::Duration {
    let every = (timeout / 4).clamp(
        std::time::Duration::from_millis(50),
        std::time::Duration::from_secs(5),
    );
    loop {
        tokio::time::sleep(every).await;
        let idle = progress.idle_for();
        if idle >= timeout {
            return idle;
        }
    }
}

/// The one place a pass kind becomes the engine's plan: a delta plans like a full pass
/// (the ledger leaves only what is new), a retry plans only what failed.
fn engine_pass(kind: PassKind) -> EnginePass {
    match kind {
        PassKind::Retry => EnginePass::Retry,
        PassKind::Verify | PassKind::Full | PassKind::Delta => EnginePass::Full,
    }
}

fn failed_status(kind: PassKind) -> MailboxStatus {
    match kind {
        PassKind::Verify => MailboxStatus::VerifyFailed,
        _ => MailboxStatus::Failed,
    }
}

fn results_of(report: &Report) -> MailboxResults {
    MailboxResults {
        copied: report.messages.copied,
        already_present: report.messages.already_present,
        skipped: report.messages.skipped,
        failed: report.messages.failed,
        bytes_copied: report.bytes_copied,
        dest_byte_exact: report.dest_byte_exact,
    }
}

/// Progress counted for heartbeats, and when the pass last showed any.
struct Counting {
    state: Mutex<PassProgress>,
    moved: Mutex<Instant>,
}

impl Default for Counting {
    fn default() -> Counting {
        Counting {
            state: Mutex::default(),
            moved: Mutex::new(Instant::now()),
        }
    }
}

impl Counting {
    fn snapshot(&self) -> PassProgress {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn idle_for(&self) -> std::time::Duration {
        self.moved.lock().map(|m| m.elapsed()).unwrap_or_default()
    }
}

impl Progress for Counting {
    fn event(&self, event: Event) {
        // Retrying is the engine waiting, not the pass moving on.
        if !matches!(event, Event::Retrying { .. })
            && let Ok(mut moved) = self.moved.lock()
        {
            *moved = Instant::now();
        }
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match event {
            Event::FolderStarted {
                source,
                to_copy,
                bytes_to_copy,
                ..
            } => {
                state.messages_total += to_copy;
                state.bytes_total += bytes_to_copy;
                state.current_folder = Some(source);
            }
            Event::MessageCopied { bytes } => {
                state.messages_done += 1;
                state.bytes_done += bytes;
            }
            Event::MessageFailed { .. } => state.messages_done += 1,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trial_report_reads_back_as_the_portal_types_it() {
        let found = mailmove_engine::CheckReport {
            source: mailmove_engine::check::SideCheck {
                server: "imaps://old.example:993".into(),
                folders: 3,
                messages: 41,
                bytes: 12_500_000,
                largest_message: 2_000_000,
                ..Default::default()
            },
            dest: mailmove_engine::check::SideCheck {
                quota_used: Some(10),
                quota_limit: Some(1_000_000),
                append_limit: Some(50_000_000),
                ..Default::default()
            },
            folders_to_create: vec!["Archive".into()],
            estimated_seconds: 7,
            warnings: vec!["near the quota".into()],
        };
        let json = serde_json::to_string(&found).unwrap();
        let read = mailmove_projects::TrialReport::from_json(&json).unwrap();
        assert_eq!(read.source.server, "imaps://old.example:993");
        assert_eq!(
            (
                read.source.folders,
                read.source.messages,
                read.source.bytes,
                read.source.largest_message
            ),
            (3, 41, 12_500_000, 2_000_000)
        );
        assert_eq!(
            (
                read.dest.quota_used,
                read.dest.quota_limit,
                read.dest.append_limit
            ),
            (Some(10), Some(1_000_000), Some(50_000_000))
        );
        assert_eq!(read.folders_to_create, vec!["Archive"]);
        assert_eq!(read.estimated_seconds, 7);
        assert_eq!(read.warnings, vec!["near the quota"]);
    }

    #[test]
    fn a_pass_taken_over_counts_its_predecessors_copies() {
        let mut report = Report::empty(("s".into(), "d".into(), "full".into()));
        report.messages.copied = 0;
        report.messages.already_present = 61;
        report.bytes_copied = 0;
        count_every_attempt(
            &mut report,
            PassCopies {
                messages: 59,
                bytes: 5_900,
            },
        );
        assert_eq!(
            (
                report.messages.copied,
                report.messages.already_present,
                report.bytes_copied
            ),
            (59, 2, 5_900)
        );
        // A pass that ran once is left as its report says.
        let mut alone = Report::empty(("s".into(), "d".into(), "full".into()));
        alone.messages.copied = 3;
        alone.bytes_copied = 310;
        count_every_attempt(
            &mut alone,
            PassCopies {
                messages: 3,
                bytes: 300,
            },
        );
        assert_eq!((alone.messages.copied, alone.bytes_copied), (3, 310));
    }
}
