//! One claimed pass, from its mailbox's settings to its final status.

use std::sync::{Arc, Mutex};

use mailmove_engine::report::Report;
use mailmove_engine::{
    Account, Event, FatalKind, MigrateSettings, PassKind as EnginePass, Progress, check, migrate,
};
use mailmove_engine::{ConnectOptions, TlsOptions};
use mailmove_model::Endpoint;
use mailmove_net::Remedy;
use mailmove_store::{
    Ledger, MailboxRecord, MailboxResults, MailboxStatus, PassKind, PassProgress, PassRecord,
    PassState, ProjectRecord,
};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::{ProjectSettings, Worker};

/// Where a sealed secret belongs: binds the ciphertext to its row and side.
pub fn secret_context(project_id: i64, source_email: &str, side: &str) -> String {
    format!(
        "project:{project_id}:mailbox:{}:{side}",
        source_email.to_lowercase()
    )
}

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
    /// Try again later (unreachable server, dropped connections, no free host slot).
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
    let ending = match prepare(worker, &pass).await {
        Ok((project, mailbox, source, dest)) => {
            execute(worker, &pass, &project, &mailbox, source, dest).await
        }
        Err(reason) => Ending::Finished(
            PassState::Failed,
            failed_status(pass.kind),
            Some(reason),
            None,
        ),
    };
    let result = match ending {
        Ending::Finished(state, status, error, report) => {
            let report_json = report.as_deref().and_then(|findings| match findings {
                Findings::Migration(report) => serde_json::to_string(report).ok(),
                Findings::Trial(found) => serde_json::to_string(found).ok(),
            });
            match db
                .finish_pass(
                    pass.id,
                    name,
                    state,
                    report_json.as_deref(),
                    error.as_deref(),
                )
                .await
            {
                Ok(true) => match report.as_deref() {
                    // Only a migration changes the counts; a trial or a failure to
                    // start leaves the last migration's figures in place.
                    Some(Findings::Migration(report)) => {
                        db.set_mailbox_results(
                            pass.mailbox_id,
                            pass.kind.as_str(),
                            status,
                            &results_of(report),
                            error.as_deref(),
                        )
                        .await
                    }
                    _ => {
                        db.set_mailbox_status(pass.mailbox_id, status, error.as_deref())
                            .await
                    }
                },
                Ok(false) => Ok(()), // the lease was lost meanwhile: the new holder reports
                Err(e) => Err(e),
            }
        }
        Ending::Again {
            delay,
            error,
            count_attempt,
        } => {
            if count_attempt && pass.attempts >= worker.config.max_attempts {
                let reason = error.unwrap_or_else(|| "gave up".into());
                let reason = format!("{reason} (gave up after {} attempts)", pass.attempts);
                match db
                    .finish_pass(pass.id, name, PassState::Failed, None, Some(&reason))
                    .await
                {
                    Ok(true) => {
                        db.set_mailbox_status(
                            pass.mailbox_id,
                            failed_status(pass.kind),
                            Some(&reason),
                        )
                        .await
                    }
                    other => other.map(drop),
                }
            } else {
                db.requeue_pass(pass.id, name, delay, error.as_deref(), count_attempt)
                    .await
            }
        }
        Ending::Stopped => match db
            .finish_pass(pass.id, name, PassState::Stopped, None, None)
            .await
        {
            Ok(true) => {
                db.set_mailbox_status(pass.mailbox_id, MailboxStatus::Stopped, None)
                    .await
            }
            other => other.map(drop),
        },
        Ending::LeaseLost => Ok(()),
    };
    if let Err(e) = result {
        warn!(pass = pass.id, "cannot record how the pass ended: {e}");
    }
}

async fn prepare(
    worker: &Worker,
    pass: &PassRecord,
) -> Result<(ProjectRecord, MailboxRecord, Account, Account), String> {
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
    let settings = ProjectSettings::from_json(&project.settings);
    let options = ConnectOptions {
        tls: TlsOptions {
            extra_ca: settings.tls_ca.clone(),
            accept_invalid_certs: settings.accept_invalid_certs,
        },
        allow_plaintext: settings.allow_plaintext,
        ..ConnectOptions::default()
    };
    let account = |url: &str, login: &str, email: &str, sealed: &Option<Vec<u8>>, side: &str| {
        let endpoint =
            Endpoint::parse(url).map_err(|e| format!("the project's {side} server: {e}"))?;
        let sealed = sealed.as_ref().ok_or_else(|| {
            format!("no {side} password stored for {email}: add it to the mailbox")
        })?;
        let password = worker
            .keyring
            .open(
                sealed,
                &secret_context(project.id, &mailbox.source_email, side),
            )
            .map_err(|e| format!("the {side} password of {email}: {e}"))?;
        Ok::<_, String>(Account {
            endpoint: endpoint.with_login(login),
            login: login.to_string(),
            password,
            options: options.clone(),
            web_auth: Default::default(),
        })
    };
    let source = account(
        &project.source,
        &mailbox.source_login,
        &mailbox.source_email,
        &mailbox.source_secret,
        "source",
    )?;
    let dest = account(
        &project.dest,
        &mailbox.dest_login,
        &mailbox.dest_email,
        &mailbox.dest_secret,
        "destination",
    )?;
    Ok((project, mailbox, source, dest))
}

async fn execute(
    worker: &Worker,
    pass: &PassRecord,
    project: &ProjectRecord,
    mailbox: &MailboxRecord,
    source: Account,
    dest: Account,
) -> Ending {
    let db = &worker.db;
    let cap = worker.config.connections_per_host;
    let hosts: Vec<String> = [&source.endpoint, &dest.endpoint]
        .iter()
        .map(|e| format!("{}:{}", e.host.to_lowercase(), e.port))
        .collect();
    match db
        .acquire_host_slots(&hosts, cap, pass.id, worker.config.lease_seconds)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return Ending::Again {
                delay: 1,
                error: None,
                count_attempt: false,
            };
        }
        Err(e) => {
            return Ending::Again {
                delay: 5,
                error: Some(e.to_string()),
                count_attempt: false,
            };
        }
    }
    let _ = db
        .set_mailbox_status(
            mailbox.id,
            match pass.kind {
                PassKind::Verify => MailboxStatus::Verifying,
                _ => MailboxStatus::Migrating,
            },
            None,
        )
        .await;
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
    let pop_folder = ProjectSettings::from_json(&project.settings)
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
    let retry_delay = |attempts: u32| {
        worker.config.retry_delay_seconds * 2i64.pow(attempts.saturating_sub(1).min(6))
    };
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
        pass: match pass.kind {
            PassKind::Retry => EnginePass::Retry,
            _ => EnginePass::Full,
        },
        ..MigrateSettings::default()
    };
    let ledger = Ledger::within(worker.db.clone(), &mailbox.ledger_key());
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
    }
}

/// Progress counted for heartbeats.
#[derive(Default)]
struct Counting {
    state: Mutex<PassProgress>,
}

impl Counting {
    fn snapshot(&self) -> PassProgress {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Progress for Counting {
    fn event(&self, event: Event) {
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
