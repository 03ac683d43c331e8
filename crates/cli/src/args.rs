//! The command line as typed (`clap`), turned once into validated settings.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use mailmove_engine::folders::FolderRules;
use mailmove_engine::{
    Account, Admin, AdminForm, MessageFilter, MigrateSettings, PassKind, WebAuth,
};
use mailmove_engine::{CompressMode, ConnectOptions, TlsOptions};
use mailmove_model::{Endpoint, Kind, Secret};
use mailmove_net::{Cidr, NetworkPolicy};
use mailmove_projects::SignInMethod;
use regex::Regex;

#[derive(Debug, Parser)]
#[command(
    name = "mailmove",
    version,
    about = "Moves whole mailboxes between mail servers: every folder, every message byte for byte, with flags and dates, and proves nothing was lost.",
    after_help = "Passwords never go on the command line: set MAILMOVE_SOURCE_PASSWORD and \
                  MAILMOVE_DEST_PASSWORD, pass --source-password-file / --dest-password-file, or \
                  put them in the mailbox spreadsheet.\n\
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
    Verify(VerifyArgs),
    /// Find a mailbox's server settings from its address: autoconfig, known providers (also by MX), SRV records, Exchange Autodiscover, the usual names; each checked by connecting.
    Discover(crate::discover::DiscoverArgs),
    /// Serve the web portal and, with SQLite, run the passes of every project in this process.
    Serve(ServeArgs),
    /// Run passes from a shared PostgreSQL database; start as many workers as you like, on any machine.
    Worker(WorkerArgs),
    /// Projects: many mailbox pairs between two servers, run as passes.
    Project {
        #[command(subcommand)]
        command: ProjectCommand,
    },
    /// OAuth2 sign-ins (Microsoft 365, Google, any OpenID Connect provider): sign a mailbox in once, list and forget the kept sign-ins.
    Auth {
        #[command(subcommand)]
        command: AuthCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Sign a mailbox in with a profile: prints a code and an address to open in any browser, waits for the mailbox's user to approve, and keeps the sign-in (sealed) for later passes
    Login {
        /// The sign-in profile (a [profile.NAME] table of the profiles file)
        profile: String,
        /// The mailbox signing in, as its server knows it (e.g. alice@contoso.com)
        #[arg(long, value_name = "EMAIL")]
        account: String,
        #[command(flatten)]
        store: SignInStore,
    },
    /// The profiles and the kept sign-ins (never a token)
    List {
        #[command(flatten)]
        store: SignInStore,
    },
    /// Forget a kept sign-in, and revoke it at the provider where it can be
    Logout {
        profile: String,
        #[arg(long, value_name = "EMAIL")]
        account: String,
        #[command(flatten)]
        store: SignInStore,
    },
}

/// Where sign-in profiles and kept sign-ins are.
#[derive(Clone, Debug, Args)]
pub struct SignInStore {
    /// The sign-in profiles file (default: oauth.toml in the data directory)
    #[arg(long, value_name = "FILE", env = "MAILMOVE_OAUTH_PROFILES")]
    pub profiles: Option<PathBuf>,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

impl SignInStore {
    pub fn profiles_file(&self) -> Result<PathBuf> {
        match &self.profiles {
            Some(path) => Ok(path.clone()),
            None => Ok(self.database.data_dir()?.join("oauth.toml")),
        }
    }
}

/// Signing in with OAuth2 profiles instead of passwords.
#[derive(Debug, Args)]
pub struct OAuthArgs {
    /// Sign in to the source with this OAuth2 profile (see `mailmove auth`): no password needed
    #[arg(long, value_name = "PROFILE")]
    pub source_oauth: Option<String>,
    /// Sign in to the destination with this OAuth2 profile
    #[arg(long, value_name = "PROFILE")]
    pub dest_oauth: Option<String>,
    #[command(flatten)]
    pub store: SignInStore,
}

#[derive(Debug, Args)]
pub struct Servers {
    /// Source: imaps://LOGIN@HOST:PORT, imap://..., pop3s://..., or Exchange as ews+https://LOGIN@HOST/EWS/Exchange.asmx or https://LOGIN@HOST/owa (a login with @ is written %40), or auto:ADDRESS to use the settings found for that address; with --mailboxes, the server only
    #[arg(long, value_name = "URL")]
    pub source: String,
    /// Destination: imaps://LOGIN@HOST:PORT, imap://..., or Exchange (ews+https://... or https://.../owa), or auto:ADDRESS; with --mailboxes, the server only
    #[arg(long, value_name = "URL")]
    pub dest: String,
    #[command(flatten)]
    pub passwords: PasswordArgs,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub discovery: crate::discover::DiscoveryArgs,
    #[command(flatten)]
    pub oauth: OAuthArgs,
}

#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// Read the source password from this file (first line) instead of MAILMOVE_SOURCE_PASSWORD
    #[arg(long, value_name = "FILE")]
    pub source_password_file: Option<PathBuf>,
    /// Read the destination password from this file instead of MAILMOVE_DEST_PASSWORD
    #[arg(long, value_name = "FILE")]
    pub dest_password_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// Also trust the certificate authorities in this PEM file
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Accept any TLS certificate. The connection stays encrypted, but anyone between you and the server can read and change it, passwords included
    #[arg(long)]
    pub danger_accept_invalid_certs: bool,
    /// Send passwords unencrypted to a server that offers no STARTTLS (always allowed to loopback addresses)
    #[arg(long)]
    pub allow_plaintext: bool,
    /// How the source signs in: auto (the password; Exchange: NTLM, else Basic), basic, ntlm, or oauth2 (the "password" is then an OAuth2 access token: OAUTHBEARER or XOAUTH2 for IMAP and POP3, a bearer token for Exchange)
    #[arg(long, value_name = "METHOD", default_value = "auto", value_parser = parse_web_auth)]
    pub source_auth: WebAuth,
    /// How the destination signs in (as --source-auth)
    #[arg(long, value_name = "METHOD", default_value = "auto", value_parser = parse_web_auth)]
    pub dest_auth: WebAuth,
    /// Sign in to the source as this administrator, acting for each mailbox (IMAP and POP3: SASL PLAIN with the mailbox as authorization identity); the password is then the administrator's
    #[arg(long, value_name = "LOGIN")]
    pub source_admin: Option<String>,
    /// Sign in to the destination as this administrator, acting for each mailbox (as --source-admin)
    #[arg(long, value_name = "LOGIN")]
    pub dest_admin: Option<String>,
    /// With --source-admin/--dest-admin: log in as MAILBOX<SEP>ADMIN instead (Dovecot's master-user form, usually '*')
    #[arg(long, value_name = "SEP")]
    pub admin_separator: Option<char>,
    /// IMAP COMPRESS=DEFLATE where the server offers it: auto (unless the server is on this machine or a private network), always, or never
    #[arg(long, value_name = "WHEN", default_value = "auto", value_parser = parse_compress)]
    pub compress: CompressMode,
}

fn parse_compress(text: &str) -> Result<CompressMode, String> {
    match text.to_ascii_lowercase().as_str() {
        "auto" => Ok(CompressMode::Auto),
        "always" | "yes" => Ok(CompressMode::Always),
        "never" | "no" => Ok(CompressMode::Never),
        _ => Err(format!("`{text}` is not one of auto, always, never")),
    }
}

fn parse_web_auth(text: &str) -> Result<WebAuth, String> {
    match text.to_ascii_lowercase().as_str() {
        "auto" => Ok(WebAuth::Auto),
        "basic" => Ok(WebAuth::Basic),
        "ntlm" => Ok(WebAuth::Ntlm),
        "bearer" | "oauth" | "oauth2" | "token" => Ok(WebAuth::Bearer),
        _ => Err(format!("`{text}` is not one of auto, basic, ntlm, oauth2")),
    }
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
    /// With a pop3:// source: the destination folder its messages go to (default INBOX)
    #[arg(long, value_name = "NAME")]
    pub pop_folder: Option<String>,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub servers: Servers,
    #[command(flatten)]
    pub folders: FolderArgs,
    /// A spreadsheet (CSV or XLSX) of mailbox pairs with MigrationWiz's columns; --source and --dest then name servers only
    #[arg(long, value_name = "FILE")]
    pub mailboxes: Option<PathBuf>,
    /// Mailboxes copied at once with --mailboxes
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub parallel: usize,
    /// Connections to each server per mailbox, each copying a folder (default: one per 500 messages, at most 4; 1 with --mailboxes)
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
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

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub migrate: MigrateArgs,
    /// Also read back every message found at the destination and compare its bytes with the source's: which copies are identical, and how the destination changed the others
    #[arg(long)]
    pub content: bool,
}

#[derive(Clone, Debug, Args)]
pub struct DatabaseArgs {
    /// The database: sqlite://PATH or postgres://USER@HOST/NAME (default: SQLite in the data directory)
    #[arg(long, value_name = "URL", env = "MAILMOVE_DATABASE")]
    pub database: Option<String>,
    /// Where the SQLite database and the secret key live (default: ~/.local/share/mailmove)
    #[arg(long, value_name = "DIR", env = "MAILMOVE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunnerArgs {
    /// Passes run at once by this process
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub jobs: usize,
    /// Connections to one server (host and port) across every worker
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub connections_per_host: u32,
    /// Seconds after which a pass whose worker stopped answering is taken over by another
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub lease_seconds: u32,
    /// Passes of one portal user running at once, across every worker
    #[arg(long, value_name = "N", default_value_t = mailmove_store::RunLimits::default().per_user)]
    pub max_running_per_user: u32,
    /// Passes of one project running at once, across every worker
    #[arg(long, value_name = "N", default_value_t = mailmove_store::RunLimits::default().per_project)]
    pub max_running_per_project: u32,
    /// Seconds without progress (no folder started, no message copied) after which a pass is interrupted and tried again later
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub stall_seconds: u32,
    /// The OAuth2 sign-in profiles for projects whose mailboxes sign in with one (default: oauth.toml in the data directory)
    #[arg(long, value_name = "FILE", env = "MAILMOVE_OAUTH_PROFILES")]
    pub profiles: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the web portal
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// The portal's address as people reach it, for emailed links (default: http://ADDR of --listen); https:// makes cookies Secure
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// SMTP server for login links and end-of-pass emails: smtp://HOST:PORT, smtp://HOST:587?tls=required or smtps://USER:PASSWORD@HOST (without it, emails are written to this log)
    #[arg(
        long,
        value_name = "URL",
        env = "MAILMOVE_SMTP_URL",
        hide_env_values = true
    )]
    pub smtp_url: Option<String>,
    /// The sender of the portal's emails
    #[arg(
        long,
        value_name = "ADDRESS",
        default_value = "mailmove <mailmove@localhost>"
    )]
    pub smtp_from: String,
    /// Also trust the certificate authorities in this PEM file, for the servers of every project created in the portal
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Passes of one portal user queued or running at once; queueing more is refused
    #[arg(long, value_name = "N", default_value_t = mailmove_store::QueueLimits::default().per_user)]
    pub max_queued_per_user: u32,
    /// Passes of one project queued or running at once; queueing more is refused
    #[arg(long, value_name = "N", default_value_t = mailmove_store::QueueLimits::default().per_project)]
    pub max_queued_per_project: u32,
    #[command(flatten)]
    pub discovery: crate::discover::DiscoveryArgs,
    #[command(flatten)]
    pub guard: PortalGuardArgs,
    #[command(flatten)]
    pub network: NetworkArgs,
    #[command(flatten)]
    pub runner: RunnerArgs,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub network: NetworkArgs,
    #[command(flatten)]
    pub runner: RunnerArgs,
}

/// Where the passes of portal projects may connect (`serve` and `worker`).
#[derive(Debug, Args)]
pub struct NetworkArgs {
    /// Let passes connect to this network (CIDR such as 10.0.0.0/8 or 192.0.2.10/32; repeatable, or comma-separated in the environment): by default they reach public addresses only, never this machine, private, link-local, carrier-grade NAT, multicast or cloud-metadata addresses
    #[arg(
        long = "allow-network",
        value_name = "CIDR",
        env = "MAILMOVE_ALLOW_NETWORK",
        value_delimiter = ','
    )]
    pub allow_network: Vec<Cidr>,
}

impl NetworkArgs {
    pub fn policy(&self) -> NetworkPolicy {
        NetworkPolicy::public_only(self.allow_network.clone())
    }

    /// The policy in a line, for the start of `serve` and `worker`.
    pub fn describe(&self) -> String {
        if self.allow_network.is_empty() {
            return "Passes connect to public addresses only (--allow-network CIDR opens one of \
                    your networks)."
                .into();
        }
        let networks: Vec<String> = self.allow_network.iter().map(Cidr::to_string).collect();
        format!(
            "Passes connect to public addresses and to {}.",
            networks.join(", ")
        )
    }
}

/// What protects the portal from its visitors (`serve`).
#[derive(Debug, Args)]
pub struct PortalGuardArgs {
    /// Read the client's address from X-Forwarded-For when the connection comes from this network (your reverse proxy; CIDR, repeatable, or comma-separated in the environment); otherwise the header is ignored
    #[arg(
        long = "trusted-proxy",
        value_name = "CIDR",
        env = "MAILMOVE_TRUSTED_PROXY",
        value_delimiter = ','
    )]
    pub trusted_proxy: Vec<Cidr>,
    /// A session ends this many seconds after its last use (an open progress page is not use)
    #[arg(long, value_name = "SECONDS", default_value_t = 8 * 3600)]
    pub session_idle_seconds: u32,
    /// A session ends this many seconds after the login, used or not
    #[arg(long, value_name = "SECONDS", default_value_t = 7 * 24 * 3600)]
    pub session_seconds: u32,
    /// Login links sent to one email address per 15 minutes
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub logins_per_email: u32,
    /// Login requests from one client address (an IPv6 /64) per 15 minutes
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub logins_per_address: u32,
    /// The most mailboxes one migration of the portal may hold
    #[arg(long, value_name = "N", default_value_t = mailmove_projects::DEFAULT_MAILBOXES_PER_PROJECT)]
    pub mailboxes_per_project: usize,
}

impl PortalGuardArgs {
    /// Puts these settings into the portal's configuration.
    pub fn apply(&self, config: &mut mailmove_portal::PortalConfig) {
        config.trusted_proxies = self.trusted_proxy.clone();
        config.session_idle_seconds = i64::from(self.session_idle_seconds.max(60));
        config.session_seconds = i64::from(self.session_seconds.max(60));
        config.logins_per_email = self.logins_per_email as usize;
        config.logins_per_address = self.logins_per_address as usize;
        config.mailboxes_per_project = self.mailboxes_per_project;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PassArg {
    Verify,
    Full,
    Delta,
    Retry,
}

#[derive(Debug, Subcommand)]
// Parsed once per process: the size of `create`'s many flags costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum ProjectCommand {
    /// Create a project between two servers, optionally with its mailboxes
    Create {
        name: String,
        /// Source server: imaps://HOST[:PORT] or imap://HOST[:PORT]
        #[arg(long, value_name = "URL")]
        source: String,
        /// Destination server: imaps://HOST[:PORT] or imap://HOST[:PORT]
        #[arg(long, value_name = "URL")]
        dest: String,
        /// A spreadsheet (CSV or XLSX) of mailbox pairs
        #[arg(long, value_name = "FILE")]
        mailboxes: Option<PathBuf>,
        /// The portal user who owns the project
        #[arg(long, value_name = "EMAIL", default_value = "admin@localhost")]
        owner: String,
        /// With a pop3:// source: the destination folder its messages go to (default INBOX)
        #[arg(long, value_name = "NAME")]
        pop_folder: Option<String>,
        /// The source's mailboxes sign in with this OAuth2 profile of the workers' profiles file (each user signs in with `mailmove auth login PROFILE --account LOGIN`, unless the profile's application signs in by itself)
        #[arg(long, value_name = "PROFILE", conflicts_with = "source_admin")]
        source_oauth: Option<String>,
        /// The destination's mailboxes sign in with this OAuth2 profile
        #[arg(long, value_name = "PROFILE", conflicts_with = "dest_admin")]
        dest_oauth: Option<String>,
        #[command(flatten)]
        passwords: PasswordArgs,
        #[command(flatten)]
        connection: ConnectionArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Add the mailbox pairs of a spreadsheet (CSV or XLSX); nothing is added if any row is bad
    AddMailboxes {
        name: String,
        file: PathBuf,
        #[arg(long, value_name = "EMAIL")]
        owner: Option<String>,
        #[command(flatten)]
        passwords: PasswordArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Queue a pass for every mailbox of the project
    Run {
        name: String,
        #[arg(long, value_enum)]
        pass: PassArg,
        /// Wait until every pass has ended (with SQLite, run them in this process)
        #[arg(long)]
        wait: bool,
        #[arg(long, value_name = "EMAIL")]
        owner: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        runner: RunnerArgs,
    },
    /// Stop the running and queued passes of the project
    Stop {
        name: String,
        #[arg(long, value_name = "EMAIL")]
        owner: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Each mailbox's status, counts and last error
    Status {
        name: String,
        /// Print JSON (SPEC §5)
        #[arg(long)]
        json: bool,
        #[arg(long, value_name = "EMAIL")]
        owner: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Every project with its mailbox counts per status
    List {
        #[arg(long, value_name = "EMAIL")]
        owner: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// Validated settings for one mailbox's migrate or verify.
pub struct Job {
    pub source: Account,
    pub dest: Account,
    pub settings: MigrateSettings,
    pub state: PathBuf,
    pub ledger_key: String,
    pub report: Option<PathBuf>,
}

impl MigrateArgs {
    pub fn settings(&self) -> Result<MigrateSettings> {
        let source_kind = Endpoint::parse(&self.servers.source).map(|e| e.kind).ok();
        Ok(MigrateSettings {
            rules: self.folders.rules_for(source_kind)?,
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
            connections: self
                .connections
                .unwrap_or(if self.mailboxes.is_some() { 1 } else { 4 })
                .max(1),
            // Chosen by default, one pair per 500 messages; asked for, as asked.
            messages_per_connection: self.connections.is_none().then_some(500),
            ..MigrateSettings::default()
        })
    }

    pub fn into_job(self) -> Result<Job> {
        let (source, dest) = self.servers.accounts()?;
        let settings = self.settings()?;
        let ledger_key = ledger_key(&source, &dest);
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

/// The name of one pair's ledger in a state file.
pub fn ledger_key(source: &Account, dest: &Account) -> String {
    format!("{} -> {}", source.endpoint, dest.endpoint)
}

impl FolderArgs {
    /// The rules, with `--pop-folder` as a mapping of the POP3 INBOX.
    pub fn rules_for(&self, source: Option<Kind>) -> Result<FolderRules> {
        let mut rules = self.rules()?;
        if let Some(folder) = &self.pop_folder {
            if source != Some(Kind::Pop3) {
                bail!("--pop-folder is for a pop3:// or pop3s:// source");
            }
            rules
                .map
                .push(("INBOX".to_string(), folder.trim_matches('/').to_string()));
        }
        Ok(rules)
    }

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
                .map(|m| FolderRules::parse_map(m).map_err(|e| anyhow::anyhow!("--map: {e}")))
                .collect::<Result<_>>()?,
        })
    }
}

impl Servers {
    /// Both sides with their logins and passwords (none for a side that signs in with
    /// an OAuth2 profile: its tokens are attached by `auth::SignIns`).
    pub fn accounts(&self) -> Result<(Account, Account)> {
        let (source, dest) = self.endpoints()?;
        let account = |endpoint: Endpoint,
                       side: &str,
                       password: Option<Secret<String>>,
                       web_auth: WebAuth,
                       admin: Option<Admin>,
                       oauth: bool| {
            let Some(login) = endpoint.login.clone() else {
                bail!(
                    "the {side} URL {endpoint} names no login: write it as imaps://LOGIN@HOST \
                     (a login with @ is written %40), or pass --mailboxes FILE"
                );
            };
            let password = match (password, oauth) {
                (Some(password), _) => password,
                (None, true) => Secret::new(String::new()),
                (None, false) => return Err(missing_password(side)),
            };
            Ok(Account {
                endpoint,
                login,
                password,
                options: self.connection.options(),
                web_auth,
                admin,
                tokens: None,
            })
        };
        Ok((
            account(
                source,
                "source",
                self.passwords.source()?,
                self.connection.source_auth,
                self.connection.source_admin(),
                self.oauth.source_oauth.is_some(),
            )?,
            account(
                dest,
                "destination",
                self.passwords.dest()?,
                self.connection.dest_auth,
                self.connection.dest_admin(),
                self.oauth.dest_oauth.is_some(),
            )?,
        ))
    }

    /// The source (IMAP, POP3 or EWS) and the destination (IMAP or EWS).
    pub fn endpoints(&self) -> Result<(Endpoint, Endpoint)> {
        Ok((source_endpoint(&self.source)?, dest_endpoint(&self.dest)?))
    }
}

pub fn source_endpoint(url: &str) -> Result<Endpoint> {
    Endpoint::parse(url).context("the source URL")
}

pub fn dest_endpoint(url: &str) -> Result<Endpoint> {
    let endpoint = Endpoint::parse(url).context("the destination URL")?;
    if endpoint.kind == Kind::Pop3 {
        bail!(
            "the destination is {url}: a destination must be imap://, imaps:// or an Exchange \
             address (POP3 can only be read)"
        );
    }
    Ok(endpoint)
}

pub fn missing_password(side: &str) -> anyhow::Error {
    let (variable, flag) = if side == "source" {
        ("MAILMOVE_SOURCE_PASSWORD", "source")
    } else {
        ("MAILMOVE_DEST_PASSWORD", "dest")
    };
    anyhow::anyhow!("no {side} password: set {variable} or pass --{flag}-password-file FILE")
}

impl PasswordArgs {
    /// The source password from its file or MAILMOVE_SOURCE_PASSWORD, if given.
    pub fn source(&self) -> Result<Option<Secret<String>>> {
        read_password(
            &self.source_password_file,
            "MAILMOVE_SOURCE_PASSWORD",
            "source",
        )
    }

    pub fn dest(&self) -> Result<Option<Secret<String>>> {
        read_password(
            &self.dest_password_file,
            "MAILMOVE_DEST_PASSWORD",
            "destination",
        )
    }
}

fn read_password(
    file: &Option<PathBuf>,
    variable: &str,
    side: &str,
) -> Result<Option<Secret<String>>> {
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("cannot read the {side} password file {}", path.display())
            })?;
            Ok(Some(Secret::new(
                text.lines().next().unwrap_or("").to_string(),
            )))
        }
        None => Ok(std::env::var(variable).ok().map(Secret::new)),
    }
}

impl ConnectionArgs {
    /// How a project's side signs in: a profile given, else an administrator given,
    /// else each mailbox's password.
    pub fn sign_in_method(&self, oauth: Option<String>, side: &str) -> SignInMethod {
        let admin = if side == "source" {
            &self.source_admin
        } else {
            &self.dest_admin
        };
        match (oauth, admin) {
            (Some(profile), _) => SignInMethod::OAuth { profile },
            (None, Some(login)) => SignInMethod::Admin {
                login: login.clone(),
                separator: self.admin_separator,
            },
            (None, None) => SignInMethod::Password,
        }
    }

    /// The administrator who signs in for the source's mailboxes, if one does.
    pub fn source_admin(&self) -> Option<Admin> {
        self.admin(&self.source_admin)
    }

    /// The administrator who signs in for the destination's mailboxes, if one does.
    pub fn dest_admin(&self) -> Option<Admin> {
        self.admin(&self.dest_admin)
    }

    fn admin(&self, login: &Option<String>) -> Option<Admin> {
        Some(Admin {
            login: login.clone()?,
            form: match self.admin_separator {
                Some(separator) => AdminForm::Separator(separator),
                None => AdminForm::AuthorizationIdentity,
            },
        })
    }

    pub fn options(&self) -> ConnectOptions {
        ConnectOptions {
            tls: TlsOptions {
                extra_ca: self.tls_ca.clone(),
                accept_invalid_certs: self.danger_accept_invalid_certs,
            },
            allow_plaintext: self.allow_plaintext,
            compress: self.compress,
            ..ConnectOptions::default()
        }
    }
}

impl DatabaseArgs {
    pub fn data_dir(&self) -> Result<PathBuf> {
        match &self.data_dir {
            Some(dir) => Ok(dir.clone()),
            None => Ok(user_data_dir()?.join("mailmove")),
        }
    }

    /// The database URL: the one given, or SQLite in the data directory.
    pub fn url(&self) -> Result<String> {
        match &self.database {
            Some(url) => Ok(url.clone()),
            None => Ok(format!(
                "sqlite://{}",
                self.data_dir()?.join("mailmove.sqlite").display()
            )),
        }
    }
}

fn parse_day(text: &str, flag: &str) -> Result<time::Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, &format)
        .with_context(|| format!("{flag} {text}: write the day as YYYY-MM-DD"))
}

fn user_data_dir() -> Result<PathBuf> {
    dirs::data_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join(".local/share")))
        .context("cannot find a data directory: pass --data-dir DIR (or --state FILE)")
}

/// `~/.local/share/mailmove/state/<source>__<dest>.sqlite`.
pub fn default_state_file(key: &str) -> Result<PathBuf> {
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
    Ok(user_data_dir()?
        .join("mailmove")
        .join("state")
        .join(format!("{name}.sqlite")))
}

/// Makes sure a file's directory exists.
pub fn ensure_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the directory {}", parent.display()))?;
    }
    Ok(())
}
