//! The command line as typed (`clap`), turned once into validated settings.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use mailmove_engine::folders::FolderRules;
use mailmove_engine::{Account, MessageFilter, MigrateSettings, PassKind};
use mailmove_imap::{ConnectOptions, TlsOptions};
use mailmove_model::{Endpoint, Kind, Secret};
use regex::Regex;

#[derive(Debug, Parser)]
#[command(
    name = "mailmove",
    version,
    about = "Moves whole mailboxes between mail servers: every folder, every message byte for byte, with flags and dates, and proves nothing was lost.",
    after_help = "Passwords never go on the command line: set MAILMOVE_SOURCE_PASSWORD and \
                  MAILMOVE_DEST_PASSWORD, or pass --source-password-file / --dest-password-file.\n\
                  Exit codes: 0 all copied (or verified), 1 finished with item errors (or unexplained \
                  differences), 2 usage or configuration error, 3 could not connect or log in."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy every folder and message from the source to the destination. Run it again to copy only what is new.
    Migrate(MigrateArgs),
    /// The trial: connect and log in on both sides, count folders, messages and bytes, check the destination quota.
    Check(CheckArgs),
    /// The proof: list every source message that is not at the destination, and why.
    Verify(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct Servers {
    /// Source mailbox: imap://LOGIN@HOST:PORT or imaps://... (a login with @ is written %40)
    #[arg(long, value_name = "URL")]
    pub source: String,
    /// Destination mailbox: imap://LOGIN@HOST:PORT or imaps://...
    #[arg(long, value_name = "URL")]
    pub dest: String,
    /// Read the source password from this file (first line) instead of MAILMOVE_SOURCE_PASSWORD
    #[arg(long, value_name = "FILE")]
    pub source_password_file: Option<PathBuf>,
    /// Read the destination password from this file instead of MAILMOVE_DEST_PASSWORD
    #[arg(long, value_name = "FILE")]
    pub dest_password_file: Option<PathBuf>,
    /// Also trust the certificate authorities in this PEM file
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Accept any TLS certificate. The connection stays encrypted, but anyone between you and the server can read and change it, passwords included
    #[arg(long)]
    pub danger_accept_invalid_certs: bool,
    /// Send passwords unencrypted to a server that offers no STARTTLS (always allowed to loopback addresses)
    #[arg(long)]
    pub allow_plaintext: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub servers: Servers,
    #[command(flatten)]
    pub folders: FolderArgs,
    /// Write the findings as JSON to this file
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct FolderArgs {
    /// Only source folders whose name matches (repeatable; names look like `Archive/2023`)
    #[arg(long, value_name = "REGEX")]
    pub include: Vec<String>,
    /// Leave out source folders whose name matches (repeatable)
    #[arg(long, value_name = "REGEX")]
    pub exclude: Vec<String>,
    /// Put a source folder under another destination name, e.g. 'Sent Items=Sent' (repeatable)
    #[arg(long, value_name = "SOURCE=DEST")]
    pub map: Vec<String>,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub servers: Servers,
    #[command(flatten)]
    pub folders: FolderArgs,
    /// Only messages that arrived on or after this day (YYYY-MM-DD)
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Only messages that arrived before this day (YYYY-MM-DD)
    #[arg(long, value_name = "DATE")]
    pub before: Option<String>,
    /// Leave out messages larger than this many bytes
    #[arg(long, value_name = "BYTES")]
    pub max_size: Option<u64>,
    /// Show what would be copied; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// The ledger file (default: one per source/destination pair in your data directory)
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Write the report as JSON to this file
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Try again only the messages that failed in earlier passes
    #[arg(long)]
    pub retry_failed: bool,
}

/// Validated settings for migrate and verify.
pub struct Job {
    pub source: Account,
    pub dest: Account,
    pub settings: MigrateSettings,
    pub state: PathBuf,
    pub ledger_key: String,
    pub report: Option<PathBuf>,
}

impl MigrateArgs {
    pub fn into_job(self) -> Result<Job> {
        let (source, dest) = self.servers.accounts()?;
        let settings = MigrateSettings {
            rules: self.folders.rules()?,
            filter: MessageFilter {
                since: self
                    .since
                    .as_deref()
                    .map(|d| parse_day(d, "--since"))
                    .transpose()?,
                before: self
                    .before
                    .as_deref()
                    .map(|d| parse_day(d, "--before"))
                    .transpose()?,
                max_size: self.max_size,
            },
            pass: if self.retry_failed {
                PassKind::Retry
            } else {
                PassKind::Full
            },
            dry_run: self.dry_run,
            ..MigrateSettings::default()
        };
        let ledger_key = format!("{} -> {}", source.endpoint, dest.endpoint);
        let state = match self.state {
            Some(path) => path,
            None => default_state_file(&ledger_key)?,
        };
        Ok(Job {
            source,
            dest,
            settings,
            state,
            ledger_key,
            report: self.report,
        })
    }
}

impl FolderArgs {
    pub fn rules(&self) -> Result<FolderRules> {
        let compile = |patterns: &[String], flag: &str| -> Result<Vec<Regex>> {
            patterns
                .iter()
                .map(|p| {
                    Regex::new(p)
                        .with_context(|| format!("{flag} `{p}` is not a valid regular expression"))
                })
                .collect()
        };
        Ok(FolderRules {
            include: compile(&self.include, "--include")?,
            exclude: compile(&self.exclude, "--exclude")?,
            map: self
                .map
                .iter()
                .map(|m| FolderRules::parse_map(m).map_err(anyhow::Error::msg))
                .collect::<Result<_>>()?,
        })
    }
}

impl Servers {
    pub fn accounts(&self) -> Result<(Account, Account)> {
        let source = self.account(
            &self.source,
            "source",
            "MAILMOVE_SOURCE_PASSWORD",
            &self.source_password_file,
        )?;
        let dest = self.account(
            &self.dest,
            "destination",
            "MAILMOVE_DEST_PASSWORD",
            &self.dest_password_file,
        )?;
        Ok((source, dest))
    }

    fn account(
        &self,
        url: &str,
        side: &str,
        variable: &str,
        file: &Option<PathBuf>,
    ) -> Result<Account> {
        let endpoint = Endpoint::parse(url).with_context(|| format!("the {side} URL"))?;
        if endpoint.kind != Kind::Imap {
            bail!("the {side} is {url}: only imap:// and imaps:// are supported so far");
        }
        let Some(login) = endpoint.login.clone() else {
            bail!(
                "the {side} URL {url} names no login: write it as imaps://LOGIN@HOST (a login with @ is written %40)"
            );
        };
        let password = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read the {side} password file {}", path.display())
                })?;
                text.lines().next().unwrap_or("").to_string()
            }
            None => std::env::var(variable).map_err(|_| {
                anyhow::anyhow!(
                    "no {side} password: set {variable} or pass --{}-password-file FILE",
                    if side == "source" { "source" } else { "dest" }
                )
            })?,
        };
        Ok(Account {
            endpoint,
            login,
            password: Secret::new(password),
            options: ConnectOptions {
                tls: TlsOptions {
                    extra_ca: self.tls_ca.clone(),
                    accept_invalid_certs: self.danger_accept_invalid_certs,
                },
                allow_plaintext: self.allow_plaintext,
                ..ConnectOptions::default()
            },
        })
    }
}

fn parse_day(text: &str, flag: &str) -> Result<time::Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, &format)
        .with_context(|| format!("{flag} {text}: write the day as YYYY-MM-DD"))
}

/// `~/.local/share/mailmove/state/<source>__<dest>.sqlite`.
fn default_state_file(key: &str) -> Result<PathBuf> {
    let base = dirs::data_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join(".local/share")))
        .context("cannot find a data directory for the state file: pass --state FILE")?;
    let name: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(base
        .join("mailmove")
        .join("state")
        .join(format!("{name}.sqlite")))
}
