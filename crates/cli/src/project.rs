//! The `project` commands: everything the portal does, for scripts.

use std::path::Path;

use anyhow::{Context, Result, bail};
use mailmove_model::{PassKind, human_size};
use mailmove_projects::{
    FallbackPasswords, ProjectRequest, ProjectSettings, ProjectStatus, Projects,
};
use mailmove_store::MailboxStatus;
use mailmove_worker::Worker;

use crate::args::{PassArg, PasswordArgs, ProjectCommand, dest_endpoint, source_endpoint};
use crate::runner::{open_database, worker_config};
use crate::{ITEM_ERRORS, OK, USAGE};
use mailmove_net::NetworkPolicy;

pub async fn run(command: ProjectCommand) -> Result<u8> {
    match command {
        ProjectCommand::Create {
            name,
            source,
            dest,
            mailboxes,
            owner,
            pop_folder,
            source_oauth,
            dest_oauth,
            passwords,
            connection,
            database,
        } => {
            let source_sign_in = connection.sign_in_method(source_oauth, "source");
            let dest_sign_in = connection.sign_in_method(dest_oauth, "destination");
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
                source_sign_in,
                dest_sign_in,
            };
            let request = ProjectRequest {
                owner_email: &owner,
                name: &name,
                source: &source,
                dest: &dest,
                settings: &settings,
            };
            let fallback = fallback_passwords(&passwords)?;
            let (_, ids) = Projects::new(db, keyring)
                .create(&request, rows.as_deref().unwrap_or_default(), &fallback)
                .await?;
            if rows.is_some() {
                println!("Created project `{name}` with {} mailboxes.", ids.len());
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
            let ids = Projects::new(db, keyring)
                .add_mailboxes(project.id, &rows, &fallback_passwords(&passwords)?)
                .await?;
            println!("Added {} mailboxes to `{name}`.", ids.len());
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
            let projects = Projects::new(db.clone(), keyring.clone());
            let project = db.project_by_name(&name, owner.as_deref()).await?;
            let kind = match pass {
                PassArg::Verify => PassKind::Verify,
                PassArg::Full => PassKind::Full,
                PassArg::Delta => PassKind::Delta,
                PassArg::Retry => PassKind::Retry,
            };
            let queued = projects.queue(project.id, None, kind).await?;
            if queued.is_empty() {
                bail!(
                    "project `{name}` has no mailboxes: add some with `mailmove project add-mailboxes`"
                );
            }
            println!(
                "Queued a {} pass for {} mailboxes of `{name}`.",
                kind.as_str(),
                queued.len()
            );
            if !wait {
                return Ok(OK);
            }
            if db.dialect() == mailmove_store::Dialect::Sqlite {
                let config =
                    worker_config(&runner, NetworkPolicy::Anywhere, &database, (&db, &keyring))?;
                let worker = Worker::new(db.clone(), keyring, config);
                worker.run_until_done(project.id).await;
            } else {
                eprintln!(
                    "Waiting for workers (`mailmove worker --database ...`) to run the passes..."
                );
                while db.unfinished_passes(project.id).await? > 0 {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
            let status = projects.status(&project).await?;
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
            let (db, keyring) = open_database(&database).await?;
            let project = db.project_by_name(&name, owner.as_deref()).await?;
            Projects::new(db, keyring).stop(project.id, None).await?;
            println!("Asked every pass of `{name}` to stop.");
            Ok(OK)
        }
        ProjectCommand::Status {
            name,
            json,
            owner,
            database,
        } => {
            let (db, keyring) = open_database(&database).await?;
            let project = db.project_by_name(&name, owner.as_deref()).await?;
            let status = Projects::new(db, keyring).status(&project).await?;
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

/// The passwords given by file or environment, for rows that carry none.
fn fallback_passwords(passwords: &PasswordArgs) -> Result<FallbackPasswords> {
    Ok(FallbackPasswords {
        source: passwords.source()?,
        dest: passwords.dest()?,
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
            human_size(m.bytes_copied),
            m.last_error
                .as_deref()
                .map(|e| format!("; {e}"))
                .unwrap_or_default()
        );
    }
}
