//! The benchmark program: starts private Dovecot servers, seeds a deterministic
//! corpus, and times mailmove beside mbsync and `doveadm backup` on the same data,
//! printing figures (never asserting them). Run it with `scripts/bench`.

mod corpus;
mod faithful;
mod link;
mod measure;
mod report;
mod tools;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use mailmove_testkit::{Dovecot, DovecotOptions};

use crate::corpus::Mailbox;
use crate::faithful::Snapshot;
use crate::link::Link;
use crate::measure::{Job, ServerCpu};
use crate::report::{Row, Sample, Volume};
use crate::tools::{Login, Pair, Tool};

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "Times mailmove, mbsync and doveadm backup on private Dovecot servers and prints the figures."
)]
struct Args {
    /// Which case to run: single, bulk, large, large-bulk, incremental or all
    #[arg(long, default_value = "all")]
    case: String,
    /// Passes per tool and case (the table shows the median, and the minimum in parentheses)
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Comma-separated tools: mailmove, mbsync, doveadm
    #[arg(long, default_value = "mailmove,mbsync,doveadm")]
    tools: String,
    /// Messages in the single-mailbox corpus (also used by the incremental case)
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    /// Mailboxes copied at once in the bulk case
    #[arg(long, default_value_t = 8)]
    mailboxes: usize,
    /// Messages per mailbox in the bulk case
    #[arg(long, default_value_t = 300)]
    per_mailbox: usize,
    /// Size in MB of the one large message of the large case
    #[arg(long, default_value_t = 40)]
    large_mb: usize,
    /// Mailboxes copied at once in the large-bulk case (mailmove-parallel uses --parallel with this many)
    #[arg(long, default_value_t = 4)]
    large_mailboxes: usize,
    /// Seed of the corpus
    #[arg(long, default_value_t = 20_261_126)]
    seed: u64,
    /// Turn TLS off on every server (`ssl = no`), so every tool speaks plaintext IMAP
    /// (by default every tool upgrades with STARTTLS and verifies the servers' CA)
    #[arg(long)]
    plaintext: bool,
    /// The mailmove binary to time. Default: build it (`cargo build --release -p
    /// mailmove-cli`) into this benchmark's target directory and use that
    #[arg(long, value_name = "PATH")]
    mailmove: Option<PathBuf>,
    /// A second mailmove binary, timed as `mailmove-baseline` taking turns with the
    /// others in the same run: the way to compare two builds on this noisy machine
    #[arg(long, value_name = "PATH")]
    baseline: Option<PathBuf>,
    /// Run every mailmove process under this command (split at spaces), e.g.
    /// `--wrap "valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p"`
    #[arg(long, value_name = "COMMAND")]
    wrap: Option<String>,
    /// Put every server behind a link of this many megabits per second each way (a
    /// proxy on 127.0.0.1 shared by all connections to that server); the servers then
    /// also offer COMPRESS=DEFLATE
    #[arg(long, value_name = "MBPS")]
    link_mbps: Option<f64>,
    /// Extra arguments for mailmove and mailmove-parallel (split at spaces), e.g.
    /// `--mailmove-args "--compress always"`
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    mailmove_args: Option<String>,
    /// Extra arguments for mailmove-baseline (split at spaces)
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    baseline_args: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Single,
    Bulk,
    Large,
    /// Several large-case mailboxes at once: memory with a 40 MB message in each of the
    /// mailboxes one process copies side by side.
    LargeBulk,
    Incremental,
}

/// Passes of the incremental case when `--runs` asks for fewer: they are short.
const MIN_INCREMENTAL_PASSES: usize = 3;

fn main() {
    if let Err(error) = run() {
        eprintln!("bench: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    let cases = parse_cases(&args.case)?;
    let wanted: Vec<Tool> = args
        .tools
        .split(',')
        .map(|name| Tool::parse(name).with_context(|| format!("unknown tool {name:?}")))
        .collect::<Result<_>>()?;
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if cases.contains(&Case::Bulk) && args.mailboxes == 0 {
        bail!("--mailboxes must be at least 1");
    }

    measure::ensure_time()?;
    let mailmove = mailmove_binary(
        &args,
        wanted.contains(&Tool::Mailmove) || wanted.contains(&Tool::MailmoveParallel),
    )?;
    let mut tools = Vec::new();
    for tool in [
        Tool::Mailmove,
        Tool::MailmoveBaseline,
        Tool::MailmoveParallel,
        Tool::Mbsync,
        Tool::Doveadm,
    ] {
        // The one-process variant comes with mailmove (it runs in the bulk cases only).
        let implied = (tool == Tool::MailmoveParallel && wanted.contains(&Tool::Mailmove))
            || (tool == Tool::MailmoveBaseline && args.baseline.is_some());
        if wanted.contains(&tool) || implied {
            tools.push((
                tool,
                availability(tool, &mailmove, args.baseline.as_deref()),
            ));
        }
    }

    let work = tempfile::Builder::new()
        .prefix("mmbench")
        .tempdir_in("/tmp")
        .context("creating the work directory")?;
    let bench = Bench {
        args: &args,
        mailmove,
        tools,
        ticks: measure::ticks_per_second(),
        work: work.path().to_path_buf(),
    };
    bench.header();

    let mut summary = Vec::new();
    let mut failed = false;
    if cases.contains(&Case::Single) || cases.contains(&Case::Incremental) {
        let source = bench.source(&[Mailbox::standard(args.seed, args.messages)])?;
        if cases.contains(&Case::Single) {
            let rows = bench.full_copies(&source)?;
            failed |= bench.print_case(
                &mut summary,
                &format!("single: 1 mailbox, {} messages", source.messages),
                &rows,
                source.volume(true),
                false,
            );
        }
        if cases.contains(&Case::Incremental) {
            let rows = bench.incremental(&source)?;
            failed |= bench.print_case(
                &mut summary,
                &format!(
                    "incremental: second pass over the unchanged {} messages",
                    source.messages
                ),
                &rows,
                source.volume(false),
                false,
            );
        }
    }
    if cases.contains(&Case::Bulk) {
        let mailboxes: Vec<Mailbox> = (0..args.mailboxes)
            .map(|k| Mailbox::standard(args.seed + 1 + k as u64, args.per_mailbox))
            .collect();
        let title = format!(
            "bulk: {} mailboxes × {} messages at once, one process per mailbox",
            args.mailboxes, args.per_mailbox
        );
        failed |= bench.full_case(&mut summary, &mailboxes, &title, true)?;
    }
    let large =
        |k: u64| Mailbox::with_one_large(args.seed + 100 + k, 200, args.large_mb * 1_000_000);
    if cases.contains(&Case::Large) {
        let title = format!(
            "large: INBOX of 200 small messages and one of {} MB",
            args.large_mb
        );
        failed |= bench.full_case(&mut summary, &[large(0)], &title, false)?;
    }
    if cases.contains(&Case::LargeBulk) {
        let mailboxes: Vec<Mailbox> = (0..args.large_mailboxes as u64).map(large).collect();
        let title = format!(
            "large-bulk: {} mailboxes, each 200 small messages and one of {} MB, at once",
            args.large_mailboxes, args.large_mb
        );
        failed |= bench.full_case(&mut summary, &mailboxes, &title, true)?;
    }

    println!("# Summary ({})", now());
    println!();
    for block in &summary {
        println!("{block}");
    }
    println!("load average at the end: {}", load_average());
    if failed {
        let kept = work.keep();
        println!(
            "Some passes failed; their output is kept in {}",
            kept.display()
        );
    }
    Ok(())
}

fn parse_cases(text: &str) -> Result<Vec<Case>> {
    let mut cases = Vec::new();
    for name in text.split(',') {
        match name.trim() {
            "single" => cases.push(Case::Single),
            "bulk" => cases.push(Case::Bulk),
            "large" => cases.push(Case::Large),
            "large-bulk" => cases.push(Case::LargeBulk),
            "incremental" => cases.push(Case::Incremental),
            "all" => cases.extend([
                Case::Single,
                Case::Incremental,
                Case::Bulk,
                Case::Large,
                Case::LargeBulk,
            ]),
            other => {
                bail!("unknown case {other:?} (single, bulk, large, large-bulk, incremental, all)")
            }
        }
    }
    Ok(cases)
}

/// The release binary next to this program's target directory, built first.
fn mailmove_binary(args: &Args, needed: bool) -> Result<PathBuf> {
    if let Some(path) = &args.mailmove {
        return Ok(path.clone());
    }
    // This program is <target>/<profile>/bench.
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .context("the bench binary is not inside a cargo target directory")?;
    let binary = target.join("release").join("mailmove");
    if !needed {
        return Ok(binary);
    }
    if let Some(cargo) = std::env::var_os("CARGO") {
        eprintln!("bench: building mailmove (cargo build --release -p mailmove-cli)");
        let mut build = Command::new(cargo);
        build
            .args(["build", "--release", "-p", "mailmove-cli", "--target-dir"])
            .arg(target);
        // `cargo run` describes the bench's own package in the environment; ring's build
        // script watches CARGO_MANIFEST_DIR, so passing these on rebuilt it every time.
        for (name, _) in std::env::vars_os() {
            let name_text = name.to_string_lossy();
            if [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
            ]
            .iter()
            .any(|prefix| name_text.starts_with(prefix))
            {
                build.env_remove(&name);
            }
        }
        let status = build.status().context("running cargo build")?;
        if !status.success() {
            bail!("cargo build --release -p mailmove-cli failed ({status})");
        }
    }
    if !binary.exists() {
        bail!(
            "{} does not exist: run `cargo build --release -p mailmove-cli` or scripts/bench, or pass --mailmove",
            binary.display()
        );
    }
    Ok(binary)
}

/// Whether a tool can run here (installing isync when missing), with its version.
fn availability(tool: Tool, mailmove: &Path, baseline: Option<&Path>) -> Result<String, String> {
    match tool {
        Tool::Mailmove => Ok(String::new()),
        Tool::MailmoveBaseline => match baseline {
            Some(path) if path.is_file() => Ok(path.display().to_string()),
            Some(path) => Err(format!("{} does not exist", path.display())),
            None => Err("no --baseline PATH".into()),
        },
        Tool::MailmoveParallel => {
            if tools::has_mailboxes_option(mailmove) {
                Ok("`migrate --mailboxes FILE --parallel N`, one process (bulk cases only)".into())
            } else {
                Err("this mailmove has no `migrate --mailboxes`".into())
            }
        }
        Tool::Mbsync => {
            if !on_path("mbsync") {
                if let Err(e) = install("isync") {
                    return Err(format!("mbsync not installed and {e:#}"));
                }
                if !on_path("mbsync") {
                    return Err("mbsync still missing after installing isync".into());
                }
            }
            tools::peer_version(tool)
        }
        Tool::Doveadm => {
            if !on_path("doveadm") {
                return Err("doveadm not found (Debian package dovecot-core)".into());
            }
            // doveadm has no version option of its own; it comes with the server.
            let output = Command::new("dovecot").arg("--version").output();
            Ok(output
                .map(|o| format!("Dovecot {}", String::from_utf8_lossy(&o.stdout).trim()))
                .unwrap_or_default())
        }
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// `apt-get install -y PACKAGE`, as root or through `sudo -n`; an `apt-get update`
/// first when the package is not known yet.
pub fn install(package: &str) -> Result<()> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let sudo = !root
        && Command::new("sudo")
            .args(["-n", "true"])
            .status()
            .is_ok_and(|s| s.success());
    if !root && !sudo {
        bail!("cannot install {package}: not root and no password-less sudo");
    }
    let apt = |args: &[&str]| -> bool {
        let mut command = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "apt-get"]);
            c
        };
        command
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    eprintln!("bench: installing {package} (apt-get)");
    if apt(&["install", "-y", "-qq", package]) {
        return Ok(());
    }
    if apt(&["update", "-qq"]) && apt(&["install", "-y", "-qq", package]) {
        return Ok(());
    }
    bail!("apt-get install {package} failed")
}

/// A seeded source server and what it holds.
struct Source {
    server: Dovecot,
    /// The slow link the tools reach the server through, if any.
    _link: Option<Link>,
    logins: Vec<Login>,
    snapshots: Vec<Snapshot>,
    folders: Vec<&'static str>,
    messages: usize,
    bytes: u64,
}

impl Source {
    fn volume(&self, copies_bytes: bool) -> Volume {
        Volume {
            messages: self.messages,
            bytes: self.bytes,
            copies_bytes,
        }
    }
}

struct Bench<'a> {
    args: &'a Args,
    mailmove: PathBuf,
    tools: Vec<(Tool, Result<String, String>)>,
    ticks: f64,
    work: PathBuf,
}

impl Bench<'_> {
    fn header(&self) {
        println!("# mailmove benchmark ({})", now());
        println!();
        println!(
            "machine: {} CPUs, load average at start {}; kernel {}",
            cpu_count(),
            load_average(),
            command_line("uname", &["-r"])
        );
        if self.args.mailmove.is_some() {
            println!("mailmove: {}", self.mailmove.display());
        } else {
            // Built by this program from the workspace it was compiled in.
            let commit = command_line(
                "git",
                &[
                    "-C",
                    env!("CARGO_MANIFEST_DIR"),
                    "describe",
                    "--always",
                    "--dirty",
                ],
            );
            println!(
                "mailmove: {} (built from the workspace at commit {})",
                self.mailmove.display(),
                if commit.is_empty() { "?" } else { &commit }
            );
        }
        for (tool, status) in &self.tools {
            match status {
                Ok(version) if !version.is_empty() => println!("{tool}: {version}"),
                Ok(_) => {}
                Err(why) => println!("{tool}: skipped: {why}"),
            }
        }
        println!(
            "servers: private Dovecot instances on 127.0.0.1, sdbox, separator '/', mail_fsync=never, \
             identical options on both sides; a fresh destination server for every full copy."
        );
        if self.args.plaintext {
            println!(
                "transport: plaintext IMAP for every tool (--plaintext: the servers run with ssl = no, \
                 so mailmove finds no STARTTLS to upgrade to)."
            );
        } else {
            println!(
                "transport: every tool upgrades with STARTTLS on both sides and verifies the servers' \
                 CA (mailmove --tls-ca, mbsync SSLType STARTTLS + CertificateFile, doveadm \
                 imapc_ssl=starttls + ssl_client_ca_file)."
            );
        }
        println!(
            "passes: tools take turns (mailmove, mbsync, doveadm, then again) for --runs {}.",
            self.args.runs
        );
        if let Some(wrap) = &self.args.wrap {
            println!("mailmove ran under `{wrap}`: its times are the wrapper's, not comparable.");
        }
        if let Some(mbps) = self.args.link_mbps {
            println!(
                "link: every server behind a proxy passing {mbps} Mbit/s each way, shared by \
                 its connections; the servers offer COMPRESS=DEFLATE."
            );
        }
        for (label, extra) in [
            ("mailmove", &self.args.mailmove_args),
            ("mailmove-baseline", &self.args.baseline_args),
        ] {
            if let Some(extra) = extra {
                println!("{label} ran with `{extra}`.");
            }
        }
        println!();
    }

    /// The slow link in front of `server`, with `--link-mbps`.
    fn link(&self, server: &Dovecot) -> Result<Option<Link>> {
        self.args
            .link_mbps
            .map(|mbps| Link::start(server.imap_port(), mbps))
            .transpose()
    }

    /// A private Dovecot with the default options; with `--plaintext`, restarted
    /// with TLS turned off (the testkit always writes `ssl = yes`).
    fn server(&self) -> Result<Dovecot> {
        let mut server = Dovecot::start(DovecotOptions {
            compress: self.args.link_mbps.is_some(),
            ..DovecotOptions::default()
        })?;
        if self.args.plaintext {
            let config = server.dir().join("dovecot.conf");
            let text = fs::read_to_string(&config)?;
            if !text.lines().any(|line| line == "ssl = yes") {
                bail!("{} has no `ssl = yes` line to turn off", config.display());
            }
            let text: Vec<&str> = text
                .lines()
                .map(|line| {
                    if line == "ssl = yes" {
                        "ssl = no"
                    } else {
                        line
                    }
                })
                .collect();
            fs::write(&config, text.join("\n") + "\n")?;
            server.restart()?;
        }
        Ok(server)
    }

    /// Starts a source server, one user per mailbox, seeds them and reads them back.
    fn source(&self, mailboxes: &[Mailbox]) -> Result<Source> {
        let server = self.server().context("starting the source")?;
        let link = self.link(&server)?;
        let port = link.as_ref().map_or(server.imap_port(), |l| l.port);
        let logins: Vec<Login> = (1..=mailboxes.len())
            .map(|k| Login {
                port,
                user: format!("src{k}"),
                password: format!("source-secret-{k}"),
            })
            .collect();
        for login in &logins {
            server.add_user(&login.user, &login.password)?;
        }
        let started = Instant::now();
        let bytes = std::thread::scope(|scope| -> Result<u64> {
            let handles: Vec<_> = logins
                .iter()
                .zip(mailboxes)
                .map(|(login, mailbox)| {
                    let server = &server;
                    scope.spawn(move || {
                        faithful::seed(server, &login.user, &login.password, mailbox)
                    })
                })
                .collect();
            let mut total = 0;
            for handle in handles {
                total += handle
                    .join()
                    .map_err(|_| anyhow::anyhow!("a seeding thread panicked"))??;
            }
            Ok(total)
        })?;
        let seeded = started.elapsed();
        let folders: Vec<&'static str> = mailboxes[0].folders.iter().map(|f| f.raw).collect();
        let mut snapshots = Vec::new();
        for login in &logins {
            snapshots.push(faithful::snapshot(
                &server,
                &login.user,
                &login.password,
                &folders,
            )?);
        }
        let messages: usize = mailboxes.iter().map(|m| m.messages.len()).sum();

        println!(
            "corpus (seed {}): {} mailbox(es), {messages} messages, {:.1} MiB (sum of RFC822.SIZE), \
             seeded over IMAP APPEND in {:.1} s",
            self.args.seed,
            mailboxes.len(),
            bytes as f64 / 1048576.0,
            seeded.as_secs_f64()
        );
        let first = &mailboxes[0];
        let counts = first.counts();
        let folders_text: Vec<String> = first
            .folders
            .iter()
            .zip(&counts)
            .map(|(f, n)| format!("{} {n}", f.display))
            .collect();
        println!(
            "  folders{}: {}",
            if mailboxes.len() > 1 {
                " of the first mailbox"
            } else {
                ""
            },
            folders_text.join(", ")
        );
        let sizes = sizes(&snapshots);
        println!(
            "  sizes: largest {:.1} MiB, {} of 5 MB or more, {} of 100 KB–1 MB, {} under 100 KB; \
             flags \\Seen \\Answered \\Flagged, keywords $Forwarded ProjectX; internal dates 2019–2024",
            sizes.0 as f64 / 1048576.0,
            sizes.1,
            sizes.2,
            sizes.3
        );
        println!();
        Ok(Source {
            server,
            _link: link,
            logins,
            snapshots,
            folders,
            messages,
            bytes,
        })
    }

    /// The tools of a case and why any is skipped; the one-process mailmove
    /// variant only copies several mailboxes.
    fn available(&self, several: bool) -> impl Iterator<Item = (Tool, Option<String>)> + '_ {
        self.tools
            .iter()
            .filter(move |(tool, _)| several || *tool != Tool::MailmoveParallel)
            .map(|(tool, status)| (*tool, status.as_ref().err().cloned()))
    }

    /// `--runs` full copies per tool into fresh destinations, tools taking turns.
    fn full_copies(&self, source: &Source) -> Result<Vec<Row>> {
        let mut rows: Vec<Row> = self
            .available(source.logins.len() > 1)
            .map(|(tool, skipped)| Row {
                tool,
                samples: Vec::new(),
                skipped,
            })
            .collect();
        for run in 0..self.args.runs {
            for row in rows.iter_mut().filter(|r| r.skipped.is_none()) {
                let label = format!("{}-full-{}", row.tool, run + 1);
                let destination = self.destination(source, &label)?;
                let sample = self.pass(row.tool, source, &destination, true)?;
                eprintln!(
                    "bench: {} pass {}: {:.2} s, {}",
                    row.tool,
                    run + 1,
                    sample.wall,
                    sample.failure.as_deref().unwrap_or(&sample.faithful)
                );
                row.samples.push(sample);
            }
        }
        Ok(rows)
    }

    /// Per tool: one full copy into a fresh destination (not timed), then the timed
    /// passes over the unchanged source with the same state.
    fn incremental(&self, source: &Source) -> Result<Vec<Row>> {
        let passes = self.args.runs.max(MIN_INCREMENTAL_PASSES);
        let mut rows = Vec::new();
        for (tool, skipped) in self.available(source.logins.len() > 1) {
            let mut row = Row {
                tool,
                samples: Vec::new(),
                skipped,
            };
            if row.skipped.is_none() {
                let destination = self.destination(source, &format!("{tool}-incremental"))?;
                let first = self.pass(tool, source, &destination, false)?;
                if let Some(failure) = first.failure {
                    row.skipped = Some(format!("the first full copy failed: {failure}"));
                } else {
                    for pass in 0..passes {
                        let sample = self.pass(tool, source, &destination, pass + 1 == passes)?;
                        eprintln!(
                            "bench: {tool} incremental pass {}: {:.3} s",
                            pass + 1,
                            sample.wall
                        );
                        row.samples.push(sample);
                    }
                }
            }
            rows.push(row);
        }
        Ok(rows)
    }

    /// A fresh destination server with one user per source mailbox, and the pairs.
    fn destination(&self, source: &Source, label: &str) -> Result<Destination> {
        let server = self.server().context("starting a destination")?;
        let link = self.link(&server)?;
        let port = link.as_ref().map_or(server.imap_port(), |l| l.port);
        let dir = next_free(&self.work.join(label));
        fs::create_dir_all(&dir)?;
        let ca_file = dir.join("ca.pem");
        let mut pem = fs::read(source.server.ca_pem())?;
        pem.extend(fs::read(server.ca_pem())?);
        fs::write(&ca_file, pem)?;
        let mut pairs = Vec::new();
        for (k, login) in source.logins.iter().enumerate() {
            let dest = Login {
                port,
                user: format!("dst{}", k + 1),
                password: format!("dest-secret-{}", k + 1),
            };
            server.add_user(&dest.user, &dest.password)?;
            pairs.push(Pair {
                source: login.clone(),
                dest,
                dest_dir: server.dir().to_path_buf(),
                ca_file: ca_file.clone(),
                tls: !self.args.plaintext,
                work: dir.join(format!("mailbox{}", k + 1)),
            });
        }
        Ok(Destination {
            server,
            _link: link,
            pairs,
            dir,
        })
    }

    /// One timed pass of `tool` over every pair at once; checks the copy when asked.
    fn pass(
        &self,
        tool: Tool,
        source: &Source,
        destination: &Destination,
        check: bool,
    ) -> Result<Sample> {
        let dest_cpu = ServerCpu::of(destination.server.dir(), self.ticks);
        let source_cpu = ServerCpu::of(source.server.dir(), self.ticks);
        let pass_dir = next_free(&destination.dir.join(format!("{tool}-pass")));
        let jobs = if tool == Tool::MailmoveParallel {
            let mut command = tools::parallel_command(
                &destination.pairs,
                &destination.dir.join("mailmove-parallel"),
                &self.mailmove,
            )?;
            command.args(self.extra_args(tool));
            vec![Job {
                command,
                dir: pass_dir.join("process"),
            }]
        } else {
            destination
                .pairs
                .iter()
                .enumerate()
                .map(|(k, pair)| {
                    let binary = match (tool, &self.args.baseline) {
                        (Tool::MailmoveBaseline, Some(baseline)) => baseline,
                        _ => &self.mailmove,
                    };
                    let mut command = tools::command(tool, pair, binary)?;
                    command.args(self.extra_args(tool));
                    Ok(Job {
                        command,
                        dir: pass_dir.join(format!("process{}", k + 1)),
                    })
                })
                .collect::<Result<Vec<_>>>()?
        };
        let wrapper = match tool {
            Tool::Mailmove | Tool::MailmoveBaseline | Tool::MailmoveParallel => {
                split(&self.args.wrap)
            }
            Tool::Mbsync | Tool::Doveadm => Vec::new(),
        };
        let jobs = jobs
            .into_iter()
            .map(|job| Job {
                command: tools::wrapped(job.command, &wrapper),
                dir: job.dir,
            })
            .collect();
        let (dest_before, source_before) = (dest_cpu.seconds(), source_cpu.seconds());
        let outcome = measure::run_all(jobs)?;
        // Let the servers' imap processes finish their logout before reading them.
        sleep(Duration::from_millis(300));
        let dest_used = dest_cpu.seconds().zip(dest_before).map(|(a, b)| a - b);
        let source_used = source_cpu.seconds().zip(source_before).map(|(a, b)| a - b);

        let failure = (!outcome.failures.is_empty()).then(|| {
            format!(
                "{} of {} processes: {}",
                outcome.failures.len(),
                outcome.processes,
                outcome.failures[0]
            )
        });
        let faithful = if check && failure.is_none() {
            self.verdict(source, destination)?
        } else {
            "—".to_string()
        };
        Ok(Sample {
            wall: outcome.wall.as_secs_f64(),
            cpu: outcome.cpu_seconds,
            max_rss_kib: outcome.max_rss_kib,
            context_switches: outcome.context_switches,
            // doveadm writes the destination's storage itself, outside the server.
            dest_cpu: if tool == Tool::Doveadm {
                None
            } else {
                dest_used
            },
            source_cpu: source_used,
            faithful,
            failure,
        })
    }

    /// The verdict over every mailbox of the destination.
    fn verdict(&self, source: &Source, destination: &Destination) -> Result<String> {
        let mut problems = faithful::Problems::new();
        for (pair, wanted) in destination.pairs.iter().zip(&source.snapshots) {
            let found = faithful::snapshot(
                &destination.server,
                &pair.dest.user,
                &pair.dest.password,
                &source.folders,
            )?;
            faithful::compare(wanted, &found, &mut problems);
        }
        Ok(faithful::describe(&problems))
    }

    /// Prints a case's table now and keeps it for the summary; true if a pass failed.
    /// What `--mailmove-args` or `--baseline-args` add to `tool`'s command.
    fn extra_args(&self, tool: Tool) -> Vec<String> {
        match tool {
            Tool::Mailmove | Tool::MailmoveParallel => split(&self.args.mailmove_args),
            Tool::MailmoveBaseline => split(&self.args.baseline_args),
            Tool::Mbsync | Tool::Doveadm => Vec::new(),
        }
    }

    /// Seeds `mailboxes`, copies them whole with every tool in turn and prints the
    /// case; true when a pass failed.
    fn full_case(
        &self,
        summary: &mut Vec<String>,
        mailboxes: &[Mailbox],
        title: &str,
        several: bool,
    ) -> Result<bool> {
        let source = self.source(mailboxes)?;
        let rows = self.full_copies(&source)?;
        Ok(self.print_case(summary, title, &rows, source.volume(true), several))
    }

    fn print_case(
        &self,
        summary: &mut Vec<String>,
        title: &str,
        rows: &[Row],
        volume: Volume,
        per_process: bool,
    ) -> bool {
        let mut block = format!("## {title}\n\n");
        block.push_str(&report::table(rows, volume, per_process));
        block.push('\n');
        block.push_str(&report::ratios(rows));
        block.push('\n');
        if let Some(floor) = report::server_floor(rows, cpu_count()) {
            block.push_str(&floor);
            block.push('\n');
        }
        if rows
            .iter()
            .any(|r| r.tool == Tool::Doveadm && r.skipped.is_none())
        {
            block.push_str(
                "doveadm writes the destination's storage directly (no IMAP on that side), so it has no \
                 destination server CPU; its own CPU includes that work.\n",
            );
        }
        if per_process {
            block.push_str(
                "mailmove, mbsync and doveadm ran one process per mailbox, all at once; CPU is summed \
                 over the processes and peak RSS is the largest process. mailmove-parallel is one \
                 mailmove process copying every mailbox (`migrate --mailboxes FILE --parallel N`).\n",
            );
        }
        block.push_str(&format!(
            "load average after the case: {}\n",
            load_average()
        ));
        println!("{block}");
        summary.push(block);
        rows.iter()
            .any(|r| r.samples.iter().any(|s| s.failure.is_some()))
    }
}

struct Destination {
    server: Dovecot,
    _link: Option<Link>,
    pairs: Vec<Pair>,
    dir: PathBuf,
}

/// (largest, ≥ 5 MB, 100 KB–1 MB, < 100 KB) over every message of the snapshots.
fn sizes(snapshots: &[Snapshot]) -> (u64, usize, usize, usize) {
    let mut result = (0, 0, 0, 0);
    for size in snapshots
        .iter()
        .flat_map(|s| s.values().flatten())
        .map(faithful::Summary::size)
    {
        result.0 = result.0.max(size);
        if size >= 5_000_000 {
            result.1 += 1;
        } else if (100_000..=1_000_000).contains(&size) {
            result.2 += 1;
        } else if size < 100_000 {
            result.3 += 1;
        }
    }
    result
}

/// `base`, or `base-2`, `base-3`… the first that does not exist yet.
fn next_free(base: &Path) -> PathBuf {
    let mut candidate = base.to_path_buf();
    let mut n = 1;
    while candidate.exists() {
        n += 1;
        candidate = PathBuf::from(format!("{}-{n}", base.display()));
    }
    candidate
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// An optional argument string split at spaces.
fn split(text: &Option<String>) -> Vec<String> {
    text.as_deref()
        .map(|t| t.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn now() -> String {
    command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_expands_to_every_case() {
        assert_eq!(
            parse_cases("all").unwrap(),
            vec![
                Case::Single,
                Case::Incremental,
                Case::Bulk,
                Case::Large,
                Case::LargeBulk
            ]
        );
        assert_eq!(
            parse_cases("bulk,large-bulk").unwrap(),
            vec![Case::Bulk, Case::LargeBulk]
        );
        assert!(parse_cases("huge").is_err());
    }
}
