//! The `project` commands: everything the portal does, for scripts.

use std::path::Path;

use anyhow::{Context, Result, bail};
use mailmove_model::Secret;
use mailmove_secrets::Keyring;
use mailmove_store::{Db, MailboxStatus, NewMailbox, PassKind, ProjectRecord};
use mailmove_worker::{ProjectSettings, Worker, secret_context};
use serde::Serialize;

use crate::args::{PassArg, PasswordArgs, ProjectCommand, dest_endpoint, source_endpoint};
use crate::runner::{open_database, worker_config};
use crate::{ITEM_ERRORS, OK, USAGE};

pub async fn run(command: ProjectCommand) -> Result<u8> {
    match command {
        ProjectCommand::Create {
            name,
            source,
            dest,
            mailboxes,
            owner,
            pop_folder,
            passwords,
            connection,
            database,
        } => {
            let source = server_only(&source, "source")?;
            let dest = server_only(&dest, "destination")?;
            let rows = match &mailboxes {
                Some(file) => Some(read_rows(file)?),
                None => None,
            };
            let (db, keyring) = open_database(&database).await?;
            let settings = ProjectSettings {
                tls_ca: connection.tls_ca.map(absolute).transpose()?,
                accept_invalid_certs: connection.danger_accept_invalid_certs,
                allow_plaintext: connection.allow_plaintext,
                pop_folder,
            };
            let project = db
                .create_project(&owner, &name, &source, &dest, &settings.to_json())
                .await?;
            if let Some(rows) = rows {
                let sealed = seal(&keyring, project.id, &rows, &passwords)?;
                if let Err(e) = db.add_mailboxes(project.id, &sealed).await {
                    db.delete_project(project.id).await?;
                    return Err(e.into());
                }
                println!("Created project `{name}` with {} mailboxes.", sealed.len());
            } else {
                println!("Created project `{name}`.");
            }
            Ok(OK)
        }
        ProjectCommand::AddMailboxes {
            name,
            file,
            owner,
            passwords,
            database,
        } => {
            let rows = read_rows(&file)?;
            let (db, keyring) = open_database(&database).await?;
            let project = db.project_by_name(&name, owner.as_deref()).await?;
            let sealed = seal(&keyring, project.id, &rows, &passwords)?;
            db.add_mailboxes(project.id, &sealed).await?;
            println!("Added {} mailboxes to `{name}`.", sealed.len());
            Ok(OK)
        }
        ProjectCommand::Run {
            name,
            pass,
            wait,
            owner,
            database,
            runner,
        } => {
            let (db, keyring) = open_database(&database).await?;
            let project = db.project_by_name(&name, owner.as_deref()).await?;
            let kind = match pass {
                PassArg::Verify => PassKind::Verify,
                PassArg::Full => PassKind::Full,
                PassArg::Delta => PassKind::Delta,
                PassArg::Retry => PassKind::Retry,
            };
            let mailboxes = db.mailboxes(project.id).await?;
            if mailboxes.is_empty() {
                bail!(
                    "project `{name}` has no mailboxes: add some with `mailmove project add-mailboxes`"
                );
            }
            for mailbox in &mailboxes {
                db.queue_pass(mailbox.id, kind).await?;
            }
            println!(
                "Queued a {} pass for {} mailboxes of `{name}`.",
                kind.as_str(),
                mailboxes.len()
            );
            if !wait {
                return Ok(OK);
            }
            if db.dialect() == mailmove_store::Dialect::Sqlite {
                let worker = Worker::new(db.clone(), keyring, worker_config(&runner));
                worker.run_until_done(project.id).await;
            } else {
                eprintln!(
                    "Waiting for workers (`mailmove worker --database ...`) to run the passes..."
                );
                while db.unfinished_passes(project.id).await? > 0 {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
            let status = project_status(&db, &project).await?;
            print_status(&status);
            let all_good = status
                .mailboxes
                .iter()
                .all(|m| matches!(m.status.as_str(), "Completed" | "Ready for migration"));
            Ok(if all_good { OK } else { ITEM_ERRORS })
        }
        ProjectCommand::Stop {
            name,
            owner,
            database,
        } => {
            let (db, _) = open_database(&database).await?;
            let project = db.project_by_name(&name, owner.as_deref()).await?;
            for mailbox in db.mailboxes(project.id).await? {
                db.request_stop(mailbox.id).await?;
            }
            println!("Asked every pass of `{name}` to stop.");
            Ok(OK)
        }
        ProjectCommand::Status {
            name,
            json,
            owner,
            database,
        } => {
            let (db, _) = open_database(&database).await?;
            let project = db.project_by_name(&name, owner.as_deref()).await?;
            let status = project_status(&db, &project).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
            }
            Ok(OK)
        }
        ProjectCommand::List { owner, database } => {
            let (db, _) = open_database(&database).await?;
            let projects = db.projects(owner.as_deref()).await?;
            if projects.is_empty() {
                println!(
                    "No projects yet: `mailmove project create NAME --source URL --dest URL`."
                );
            }
            for project in projects {
                let mailboxes = db.mailboxes(project.id).await?;
                let mut counts: Vec<String> = Vec::new();
                for status in MailboxStatus::ALL {
                    let n = mailboxes.iter().filter(|m| m.status == status).count();
                    if n > 0 {
                        counts.push(format!("{n} {}", status.as_str()));
                    }
                }
                println!(
                    "{}  ({}, {} -> {}): {} mailboxes{}{}",
                    project.name,
                    project.owner_email,
                    project.source,
                    project.dest,
                    mailboxes.len(),
                    if counts.is_empty() { "" } else { ": " },
                    counts.join(", ")
                );
            }
            Ok(OK)
        }
    }
}

/// A project's server URL: scheme, host and port, never a login.
fn server_only(url: &str, side: &str) -> Result<String> {
    let endpoint = if side == "source" {
        source_endpoint(url)?
    } else {
        dest_endpoint(url)?
    };
    if endpoint.login.is_some() {
        bail!(
            "the project's {side} URL names a server only (imaps://HOST:PORT); logins come with each mailbox"
        );
    }
    Ok(endpoint.to_string())
}

fn absolute(path: std::path::PathBuf) -> Result<std::path::PathBuf> {
    std::path::absolute(&path).with_context(|| format!("the path {}", path.display()))
}

fn read_rows(file: &Path) -> Result<Vec<mailmove_import::MailboxRow>> {
    match mailmove_import::read_path(file) {
        Ok(rows) => Ok(rows),
        Err(e) => {
            eprintln!("{}: nothing was imported.\n{e}", file.display());
            std::process::exit(i32::from(USAGE));
        }
    }
}

/// Seals each row's passwords (or the ones given by file or environment).
fn seal(
    keyring: &Keyring,
    project_id: i64,
    rows: &[mailmove_import::MailboxRow],
    passwords: &PasswordArgs,
) -> Result<Vec<NewMailbox>> {
    let fallback_source = passwords.source()?;
    let fallback_dest = passwords.dest()?;
    let seal_one = |secret: Option<Secret<String>>, email: &str, side: &str| {
        secret.map(|s| keyring.seal(&s, &secret_context(project_id, email, side)))
    };
    Ok(rows
        .iter()
        .map(|row| NewMailbox {
            source_email: row.source_email.clone(),
            source_login: row.source_login.clone(),
            source_secret: seal_one(
                row.source_password
                    .clone()
                    .or_else(|| fallback_source.clone()),
                &row.source_email,
                "source",
            ),
            dest_email: row.dest_email.clone(),
            dest_login: row.dest_login.clone(),
            dest_secret: seal_one(
                row.dest_password.clone().or_else(|| fallback_dest.clone()),
                &row.source_email,
                "destination",
            ),
        })
        .collect())
}

#[derive(Serialize)]
pub struct ProjectStatus {
    pub project: String,
    pub source: String,
    pub dest: String,
    pub mailboxes: Vec<MailboxStatusJson>,
}

#[derive(Serialize)]
pub struct MailboxStatusJson {
    pub source_email: String,
    pub dest_email: String,
    pub status: String,
    pub pass: Option<String>,
    pub messages: mailmove_engine::report::Counts,
    pub bytes_copied: u64,
    pub last_error: Option<String>,
    /// The running pass's progress, when one runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<ProgressJson>,
}

#[derive(Serialize)]
pub struct ProgressJson {
    pub messages_done: u64,
    pub messages_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub folder: Option<String>,
}

pub async fn project_status(db: &Db, project: &ProjectRecord) -> Result<ProjectStatus> {
    let mut mailboxes = Vec::new();
    for mailbox in db.mailboxes(project.id).await? {
        let latest = db.latest_pass(mailbox.id).await?;
        let progress = latest
            .as_ref()
            .filter(|p| p.state == mailmove_store::PassState::Running)
            .map(|p| ProgressJson {
                messages_done: p.progress.messages_done,
                messages_total: p.progress.messages_total,
                bytes_done: p.progress.bytes_done,
                bytes_total: p.progress.bytes_total,
                folder: p.progress.current_folder.clone(),
            });
        mailboxes.push(MailboxStatusJson {
            source_email: mailbox.source_email,
            dest_email: mailbox.dest_email,
            status: mailbox.status.as_str().to_string(),
            pass: mailbox
                .last_pass
                .or_else(|| latest.map(|p| p.kind.as_str().to_string())),
            messages: mailmove_engine::report::Counts {
                copied: mailbox.copied,
                already_present: mailbox.already_present,
                skipped: mailbox.skipped,
                failed: mailbox.failed,
            },
            bytes_copied: mailbox.bytes_copied,
            last_error: mailbox.last_error,
            progress,
        });
    }
    Ok(ProjectStatus {
        project: project.name.clone(),
        source: project.source.clone(),
        dest: project.dest.clone(),
        mailboxes,
    })
}

fn print_status(status: &ProjectStatus) {
    println!(
        "Project {}: {} -> {}",
        status.project, status.source, status.dest
    );
    for m in &status.mailboxes {
        println!(
            "  {} -> {}: {} ({}): {} copied, {} already present, {} skipped, {} failed, {}{}",
            m.source_email,
            m.dest_email,
            m.status,
            m.pass.as_deref().unwrap_or("no pass yet"),
            m.messages.copied,
            m.messages.already_present,
            m.messages.skipped,
            m.messages.failed,
            mailmove_engine::report::human_size(m.bytes_copied),
            m.last_error
                .as_deref()
                .map(|e| format!("; {e}"))
                .unwrap_or_default()
        );
    }
}
