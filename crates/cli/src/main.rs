//! The `mailmove` command: parses the command line once into validated settings,
//! wires the engine to the ledger and the terminal, and maps outcomes to exit codes.

mod args;
mod auth;
mod bulk;
mod discover;
mod progress;
mod project;
mod runner;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use mailmove_engine::Remedy;
use mailmove_engine::report::{Report, human_size};
use mailmove_engine::{FatalKind, check, migrate, verify};
use mailmove_store::Ledger;

use crate::args::{Cli, Command, Job};

/// Exit codes of SPEC §5.
pub(crate) const OK: u8 = 0;
pub(crate) const ITEM_ERRORS: u8 = 1;
pub(crate) const USAGE: u8 = 2;
pub(crate) const CONNECTION: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MAILMOVE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(USAGE);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(USAGE)
        }
    }
}

async fn run(mut cli: Cli) -> Result<u8> {
    match &mut cli.command {
        Command::Migrate(args) => discover::resolve_auto(&mut args.servers).await?,
        Command::Verify(args) => discover::resolve_auto(&mut args.migrate.servers).await?,
        Command::Check(args) => discover::resolve_auto(&mut args.servers).await?,
        _ => {}
    }
    match cli.command {
        Command::Discover(args) => discover::run(args).await,
        Command::Migrate(args) => {
            if let Some(file) = args.mailboxes.clone() {
                return bulk::run(args, &file).await;
            }
            let mut sign_ins = auth::SignIns::new(&args.servers.oauth);
            let mut job = args.into_job()?;
            sign_ins.attach_both(&mut job.source, &mut job.dest).await?;
            let ledger = open_ledger(&job).await?;
            let display = progress::Display::for_stderr();
            let progress = display.single();
            let (report, fatal) = migrate(
                &job.source,
                &job.dest,
                &ledger,
                &job.settings,
                progress.as_ref(),
            )
            .await;
            ledger.close().await;
            display.finish();
            let code = finish(&job, &report, fatal);
            drop(job);
            sign_ins.finish().await?;
            code
        }
        Command::Verify(args) => {
            let mut sign_ins = auth::SignIns::new(&args.migrate.servers.oauth);
            let mut job = args.migrate.into_job()?;
            sign_ins.attach_both(&mut job.source, &mut job.dest).await?;
            job.settings.compare_bytes = args.content;
            let ledger = open_ledger(&job).await?;
            let (report, fatal) = verify(&job.source, &job.dest, &ledger, &job.settings).await;
            ledger.close().await;
            let code = finish(&job, &report, fatal);
            drop(job);
            sign_ins.finish().await?;
            code
        }
        Command::Check(args) => {
            let (mut source, mut dest) = args.servers.accounts()?;
            let oauth = &args.servers.oauth;
            let mut sign_ins = auth::SignIns::new(oauth);
            sign_ins.attach_both(&mut source, &mut dest).await?;
            let rules = args.folders.rules_for(
                mailmove_model::Endpoint::parse(&args.servers.source)
                    .map(|e| e.kind)
                    .ok(),
            )?;
            let found = check(&source, &dest, &rules).await;
            let signed_in = (
                auth::describe(&source, oauth.source_oauth.as_deref()).await,
                auth::describe(&dest, oauth.dest_oauth.as_deref()).await,
            );
            drop((source, dest));
            sign_ins.finish().await?;
            match found {
                Ok(found) => {
                    print_check(&found, signed_in);
                    if let Some(path) = &args.report {
                        write_json(path, &found)?;
                    }
                    Ok(OK)
                }
                Err(e) => {
                    print_error(&e.to_string(), e.remedy());
                    Ok(if e.is_connection_setup() || e.is_transient() {
                        CONNECTION
                    } else {
                        ITEM_ERRORS
                    })
                }
            }
        }
        Command::Serve(args) => runner::serve(args).await,
        Command::Worker(args) => runner::worker(args).await,
        Command::Project { command } => project::run(command).await,
        Command::Auth { command } => auth::run(command).await,
    }
}

async fn open_ledger(job: &Job) -> Result<Ledger> {
    args::ensure_parent(&job.state)?;
    Ok(Ledger::open(&job.state, &job.ledger_key).await?)
}

fn finish(job: &Job, report: &Report, fatal: Option<FatalKind>) -> Result<u8> {
    print_summary(report, job.settings.dry_run);
    if let Some(path) = &job.report {
        write_json(path, report)?;
    }
    Ok(match fatal {
        Some(FatalKind::Connection | FatalKind::Interrupted) => CONNECTION,
        Some(FatalKind::Other) => ITEM_ERRORS,
        None if report.messages.failed > 0 && report.missing.is_none() => ITEM_ERRORS,
        None if report.unexplained() > 0 => ITEM_ERRORS,
        None => OK,
    })
}

pub(crate) fn write_json<T: serde::Serialize>(path: &std::path::Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("cannot write the report {}", path.display()))
}

pub(crate) fn print_summary(report: &Report, dry_run: bool) {
    let m = &report.messages;
    let seconds = report.elapsed_seconds.max(0.001);
    let mib = report.bytes_copied as f64 / (1024.0 * 1024.0);
    if dry_run {
        println!("Dry run: nothing was changed.");
        for folder in &report.folders {
            println!(
                "  {} -> {}: would copy {}, {} already present, {} skipped",
                folder.source,
                folder.dest,
                folder.would_copy.unwrap_or(0),
                folder.counts.already_present,
                folder.counts.skipped
            );
        }
    }
    if report.pass == "verify" {
        let missing = report.missing.as_deref().unwrap_or_default();
        let unexplained = report.unexplained();
        println!(
            "Verified {} folders: {} messages at the destination, {} not there ({} explained, {} unexplained).",
            report.folders.len(),
            m.already_present,
            missing.len(),
            missing.len() - unexplained,
            unexplained
        );
        if let Some(content) = &report.content {
            println!(
                "Compared the bytes of {} messages: {} identical, {} changed by the destination.",
                content.identical + content.changed.len() as u64,
                content.identical,
                content.changed.len()
            );
            for changed in &content.changed {
                println!(
                    "  changed     {} UID {} {}: {}",
                    changed.folder,
                    changed.uid,
                    changed.message_id.as_deref().unwrap_or("(no Message-ID)"),
                    changed.how
                );
            }
        }
        for item in missing {
            println!(
                "  {} {} UID {} {}: {}",
                if item.explained {
                    "explained  "
                } else {
                    "UNEXPLAINED"
                },
                item.folder,
                item.uid,
                item.message_id.as_deref().unwrap_or("(no Message-ID)"),
                item.reason
            );
        }
    } else if !dry_run {
        println!(
            "Summary: {} folders; messages: {} copied, {} already present, {} skipped, {} failed",
            report.folders.len(),
            m.copied,
            m.already_present,
            m.skipped,
            m.failed
        );
        println!(
            "         {} in {:.1} s: {:.0} messages/s, {:.1} MiB/s",
            human_size(report.bytes_copied),
            seconds,
            m.copied as f64 / seconds,
            mib / seconds
        );
        for error in &report.errors {
            println!(
                "  failed: {} UID {} {} {:?}: {}",
                error.folder,
                error.uid,
                error.message_id.as_deref().unwrap_or("(no Message-ID)"),
                error.subject.as_deref().unwrap_or(""),
                error.reason
            );
        }
        if !report.errors.is_empty() {
            println!("  Run again with --retry-failed to try the failed messages again.");
        }
    }
    for warning in &report.warnings {
        println!("warning: {warning}");
    }
    if let Some(fatal) = &report.fatal {
        print_error(fatal, report.fatal_remedy);
    }
}

/// An error as the libraries word it (what failed), then, where a fix applies, the
/// flags that apply it: only the command line knows its flags.
pub(crate) fn print_error(message: &str, remedy: Option<Remedy>) {
    eprintln!("error: {message}");
    if let Some(hint) = remedy.and_then(flag_hint) {
        eprintln!("hint: {hint}");
    }
}

/// The command line's words for a remedy.
fn flag_hint(remedy: Remedy) -> Option<&'static str> {
    match remedy {
        Remedy::TrustCertificate => Some(
            "pass --tls-ca FILE with the CA that signed it (or, if you accept that anyone on \
             the path can read the session, --danger-accept-invalid-certs)",
        ),
        Remedy::ReadableCaFile => {
            Some("give --tls-ca a readable PEM file of the certificate authorities to trust")
        }
        Remedy::EncryptOrAllowPlaintext => Some(
            "use imaps://, pop3s:// or https://, or pass --allow-plaintext if you accept that \
             risk",
        ),
        Remedy::SignInAgain => Some(
            "sign the mailbox in again: mailmove auth login PROFILE --account MAILBOX \
             (or give a new access token)",
        ),
        Remedy::PublicAddress => Some(
            "serve and worker connect only to public addresses and the networks given with \
             --allow-network CIDR",
        ),
        // The error already says to check the password; where it comes from depends on
        // the command (environment, --source-password-file, a spreadsheet).
        Remedy::CheckPassword | Remedy::OtherSignIn => None,
    }
}

/// The trial's findings; `signed_in` says how each side signed in where it was not
/// with a password (source, destination).
fn print_check(found: &mailmove_engine::CheckReport, signed_in: (Option<String>, Option<String>)) {
    let how = |side: Option<String>| side.unwrap_or_else(|| "logged in".to_string());
    println!("Source      {}: {}", found.source.server, how(signed_in.0));
    println!(
        "  {} folders, {} messages, {}; largest message {}",
        found.source.folders,
        found.source.messages,
        human_size(found.source.bytes),
        human_size(found.source.largest_message)
    );
    println!("Destination {}: {}", found.dest.server, how(signed_in.1));
    match (found.dest.quota_used, found.dest.quota_limit) {
        (Some(used), Some(limit)) => println!(
            "  quota: {} used of {}",
            human_size(used),
            human_size(limit)
        ),
        _ => println!("  quota: none reported"),
    }
    if !found.folders_to_create.is_empty() {
        println!(
            "  folders to create: {}",
            found.folders_to_create.join(", ")
        );
    }
    println!("Estimated time: about {} s", found.estimated_seconds.max(1));
    for warning in &found.warnings {
        println!("warning: {warning}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hint_names_the_flag_that_applies_it() {
        let hint = |remedy| flag_hint(remedy).unwrap_or_default();
        assert!(hint(Remedy::TrustCertificate).starts_with("pass --tls-ca FILE with the CA"));
        assert!(hint(Remedy::ReadableCaFile).contains("--tls-ca"));
        assert!(hint(Remedy::EncryptOrAllowPlaintext).contains("--allow-plaintext"));
        assert_eq!(flag_hint(Remedy::CheckPassword), None);
    }
}
