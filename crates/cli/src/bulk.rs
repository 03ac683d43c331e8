//! `migrate --mailboxes FILE`: many mailbox pairs between two servers, N at a time,
//! with a progress bar (or prefixed lines) per running mailbox and one report for all.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use mailmove_engine::report::Report;
use mailmove_engine::{Account, FatalKind, migrate};
use mailmove_model::Secret;
use mailmove_store::Ledger;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::args::{MigrateArgs, default_state_file, ensure_parent, ledger_key, missing_password};
use crate::auth::SignIns;
use crate::progress::Display;
use crate::{CONNECTION, ITEM_ERRORS, OK, print_summary, write_json};

#[derive(Serialize)]
struct BulkReport<'a> {
    source: String,
    dest: String,
    mailboxes: &'a [Report],
}

pub async fn run(args: MigrateArgs, file: &Path) -> Result<u8> {
    let rows =
        mailmove_import::read_path(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let (source, dest) = args.servers.endpoints()?;
    let mut settings = args.settings()?;
    // One process copies several mailboxes at once: they share one memory budget for
    // fetched messages waiting for the destination, so the process stays small.
    const SHARED_BUDGET: u64 = 24 * 1024 * 1024;
    settings.memory_budget = (SHARED_BUDGET / args.parallel.max(1) as u64)
        .clamp(2 * 1024 * 1024, settings.memory_budget);
    let options = args.servers.connection.options();
    let fallback_source = args.servers.passwords.source()?;
    let fallback_dest = args.servers.passwords.dest()?;
    let oauth = &args.servers.oauth;
    // A side that signs in with a profile needs no password.
    let no_password =
        |profile: &Option<String>| profile.as_ref().map(|_| Secret::new(String::new()));
    let mut sign_ins = SignIns::new(oauth);
    let mut pairs = Vec::new();
    for row in &rows {
        let source_password = row
            .source_password
            .clone()
            .or_else(|| fallback_source.clone())
            .or_else(|| no_password(&oauth.source_oauth))
            .ok_or_else(|| missing_password("source"))
            .with_context(|| format!("line {}: {}", row.line, row.source_email))?;
        let dest_password = row
            .dest_password
            .clone()
            .or_else(|| fallback_dest.clone())
            .or_else(|| no_password(&oauth.dest_oauth))
            .ok_or_else(|| missing_password("destination"))
            .with_context(|| format!("line {}: {}", row.line, row.dest_email))?;
        let mut pair = (
            Account {
                endpoint: source.with_login(&row.source_login),
                login: row.source_login.clone(),
                password: source_password,
                options: options.clone(),
                web_auth: args.servers.connection.source_auth,
                admin: args.servers.connection.source_admin(),
                tokens: None,
            },
            Account {
                endpoint: dest.with_login(&row.dest_login),
                login: row.dest_login.clone(),
                password: dest_password,
                options: options.clone(),
                web_auth: args.servers.connection.dest_auth,
                admin: args.servers.connection.dest_admin(),
                tokens: None,
            },
        );
        sign_ins
            .attach_both(&mut pair.0, &mut pair.1)
            .await
            .with_context(|| format!("line {}: {}", row.line, row.source_email))?;
        pairs.push((row.source_email.clone(), pair.0, pair.1));
    }

    let display = Arc::new(Display::for_stderr());
    let limit = Arc::new(Semaphore::new(args.parallel.max(1)));
    let mut tasks = Vec::new();
    for (label, source, dest) in pairs {
        let limit = Arc::clone(&limit);
        let display = Arc::clone(&display);
        let settings = settings.clone();
        let state = args.state.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await?;
            let key = ledger_key(&source, &dest);
            let path = match state {
                Some(path) => path,
                None => default_state_file(&key)?,
            };
            ensure_parent(&path)?;
            let ledger = Ledger::open(&path, &key).await?;
            let progress = display.for_mailbox(&label);
            let outcome = migrate(&source, &dest, &ledger, &settings, progress.as_ref()).await;
            ledger.close().await;
            Ok::<_, anyhow::Error>(outcome)
        }));
    }
    let mut reports = Vec::new();
    let mut code = OK;
    for task in tasks {
        let (report, fatal) = task.await??;
        let this = match fatal {
            Some(FatalKind::Connection | FatalKind::Interrupted) => CONNECTION,
            Some(FatalKind::Other) => ITEM_ERRORS,
            None if report.messages.failed > 0 => ITEM_ERRORS,
            None => OK,
        };
        code = code.max(this);
        reports.push(report);
    }
    display.finish();
    sign_ins.finish().await?;
    for report in &reports {
        println!("== {} -> {}", report.source, report.dest);
        print_summary(report, settings.dry_run);
    }
    let totals = reports
        .iter()
        .fold(mailmove_engine::report::Counts::default(), |mut t, r| {
            t.add(&r.messages);
            t
        });
    println!(
        "All {} mailboxes: {} copied, {} already present, {} skipped, {} failed",
        reports.len(),
        totals.copied,
        totals.already_present,
        totals.skipped,
        totals.failed
    );
    if let Some(path) = &args.report {
        write_json(
            path,
            &BulkReport {
                source: source.to_string(),
                dest: dest.to_string(),
                mailboxes: &reports,
            },
        )?;
    }
    Ok(code)
}
