//! The scale benchmark: many small mailboxes, one project on PostgreSQL, several
//! `mailmove worker` processes with their defaults, then a delta pass over the
//! unchanged mailboxes. Prints wall time, messages/s, PostgreSQL transactions per
//! message (from `pg_stat_database`), each worker's peak RSS, the most connections seen
//! on each server against the cap, and how long `project status --json` and a command
//! that only opens the database take. Figures only, never asserted
//! (docs/PERFORMANCE.md, "Scale").
//!
//! `cargo run --release -p mailmove-bench --bin scale -- --mailmove target/release/mailmove`

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use mailmove_testkit::{Dovecot, messages};

const SECRET_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
/// The workers' default connection cap per server (`--connections-per-host`).
const CAP: usize = 8;

#[derive(Debug, Parser)]
#[command(
    name = "scale",
    about = "Many mailboxes, several workers, one PostgreSQL: figures"
)]
struct Args {
    /// The mailmove binary to run
    #[arg(long, value_name = "PATH")]
    mailmove: PathBuf,
    /// Mailbox pairs in the project
    #[arg(long, default_value_t = 1000)]
    mailboxes: usize,
    /// Messages in each source mailbox
    #[arg(long, default_value_t = 10)]
    messages: usize,
    /// `mailmove worker` processes
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// Extra arguments for every worker (split at spaces), e.g. `--worker-args "--jobs 2"`
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    worker_args: Option<String>,
    /// A PostgreSQL maintenance database; a database of the run's own is created there
    #[arg(
        long,
        env = "MAILMOVE_TEST_POSTGRES",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres: String,
}

fn main() {
    if let Err(error) = run(Args::parse()) {
        eprintln!("scale: {error:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let source = Dovecot::start_default().context("starting the source")?;
    let dest = Dovecot::start_default().context("starting the destination")?;
    let seeded = Instant::now();
    seed(&source, &dest, args.mailboxes, args.messages)?;
    println!(
        "corpus: {} mailboxes × {} messages, seeded in {:.1} s",
        args.mailboxes,
        args.messages,
        seeded.elapsed().as_secs_f64()
    );
    let ca = dir.path().join("ca.pem");
    let mut pem = fs::read(source.ca_pem())?;
    pem.extend(fs::read(dest.ca_pem())?);
    fs::write(&ca, pem)?;

    let pg = Postgres::create(&args.postgres)?;
    let mm = Mailmove {
        binary: args.mailmove.clone(),
        data_dir: dir.path().join("data"),
        database: pg.url.clone(),
    };
    let csv = write_csv(dir.path(), args.mailboxes)?;
    mm.ok(&[
        "project",
        "create",
        "scale",
        "--source",
        &format!("imap://127.0.0.1:{}", source.imap_port()),
        "--dest",
        &format!("imap://127.0.0.1:{}", dest.imap_port()),
        "--tls-ca",
        &ca.display().to_string(),
        "--mailboxes",
        &csv.display().to_string(),
    ])?;

    let ports = [
        ("source", source.imap_port()),
        ("destination", dest.imap_port()),
    ];
    let watch = Watch::start(&ports);
    let extra: Vec<String> = args
        .worker_args
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let total = args.mailboxes * args.messages;
    let mut peaks = Vec::new();
    let full = pg.phase(|| {
        mm.ok(&["project", "run", "scale", "--pass", "full"])?;
        mm.run_workers(args.workers, &extra, &pg, &mut peaks)
    })?;
    let copied = copied_in(&mm.ok(&["project", "status", "scale", "--json"])?);
    let status_time = best_of(5, || {
        mm.ok(&["project", "status", "scale", "--json"]).map(drop)
    })?;
    let delta = pg.phase(|| {
        mm.ok(&["project", "run", "scale", "--pass", "delta"])?;
        mm.run_workers(args.workers, &extra, &pg, &mut Vec::new())
    })?;
    let most = watch.stop();
    let start_time = best_of(5, || mm.ok(&["project", "list"]).map(drop))?;

    println!(
        "workers: {} × `mailmove worker {}`",
        args.workers,
        extra.join(" ")
    );
    println!(
        "full pass: {:.1} s wall, {:.0} messages/s, {} transactions ({:.2} per message); \
         {copied} of {total} messages copied",
        full.wall.as_secs_f64(),
        total as f64 / full.wall.as_secs_f64(),
        full.transactions,
        full.transactions as f64 / total as f64
    );
    println!(
        "delta pass over unchanged mailboxes: {:.1} s wall, {} transactions ({:.1} per mailbox)",
        delta.wall.as_secs_f64(),
        delta.transactions,
        delta.transactions as f64 / args.mailboxes as f64
    );
    let peaks: Vec<String> = peaks
        .iter()
        .map(|k| format!("{:.1} MiB", *k as f64 / 1024.0))
        .collect();
    println!("peak RSS per worker: {}", peaks.join(", "));
    for ((name, _), most) in ports.iter().zip(most) {
        println!("most connections to the {name}: {most} (cap {CAP})");
    }
    println!(
        "project status --json: {:.0} ms; project list (opening the database): {:.0} ms",
        status_time.as_secs_f64() * 1000.0,
        start_time.as_secs_f64() * 1000.0
    );
    pg.drop_database()?;
    if copied != total as u64 {
        bail!("{copied} messages copied, {total} expected");
    }
    Ok(())
}

/// One user per mailbox on each server, the sources seeded over IMAP.
fn seed(source: &Dovecot, dest: &Dovecot, mailboxes: usize, messages: usize) -> Result<()> {
    for n in 0..mailboxes {
        source.add_user(&format!("user{n}"), &format!("src-{n}"))?;
        dest.add_user(&format!("user{n}"), &format!("dst-{n}"))?;
    }
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let n = next.fetch_add(1, Ordering::SeqCst);
                        if n >= mailboxes {
                            return Ok(());
                        }
                        let mut imap = source.checker(&format!("user{n}"), &format!("src-{n}"))?;
                        for m in 0..messages {
                            let body = messages::simple(
                                &format!("<scale-{n}-{m}@bench>"),
                                &format!("message {m} of mailbox {n}"),
                                2_000 + 97 * m,
                            );
                            imap.append("INBOX", &[], None, &body)?;
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            handle
                .join()
                .map_err(|_| anyhow::anyhow!("a seeding thread panicked"))??;
        }
        Ok(())
    })
}

fn write_csv(dir: &Path, mailboxes: usize) -> Result<PathBuf> {
    let mut text = String::from(
        "Source Email,Source Login Name,Source Password,Destination Email,Destination Login Name,Destination Password\n",
    );
    for n in 0..mailboxes {
        text.push_str(&format!(
            "user{n}@old.example,user{n},src-{n},user{n}@new.example,user{n},dst-{n}\n"
        ));
    }
    let path = dir.join("mailboxes.csv");
    fs::write(&path, text)?;
    Ok(path)
}

/// The mailmove binary with the run's database and key.
struct Mailmove {
    binary: PathBuf,
    data_dir: PathBuf,
    database: String,
}

impl Mailmove {
    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .env("MAILMOVE_SECRET_KEY", SECRET_KEY)
            .env("MAILMOVE_DATA_DIR", &self.data_dir)
            .env("MAILMOVE_DATABASE", &self.database);
        command
    }

    fn ok(&self, args: &[&str]) -> Result<String> {
        let output = self.command().args(args).output()?;
        if !output.status.success() {
            bail!(
                "mailmove {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Starts `count` workers, waits until no pass is left, notes each worker's peak
    /// RSS and stops them (their database sessions end, so PostgreSQL counts all they
    /// did). Returns the looks taken while waiting.
    fn run_workers(
        &self,
        count: usize,
        extra: &[String],
        pg: &Postgres,
        peaks: &mut Vec<u64>,
    ) -> Result<(Duration, u64)> {
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..count {
            workers.push(self.worker(extra)?);
        }
        let looks = pg.wait_idle();
        let wall = started.elapsed();
        peaks.extend(workers.iter().map(|w| peak_rss_kib(w.id())));
        for worker in &mut workers {
            let _ = worker.kill();
            let _ = worker.wait();
        }
        Ok((wall, looks?))
    }

    fn worker(&self, extra: &[String]) -> Result<Child> {
        Ok(self
            .command()
            .arg("worker")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?)
    }
}

/// The run's own database on the PostgreSQL server.
struct Postgres {
    admin: String,
    name: String,
    url: String,
}

/// What one phase cost.
struct Phase {
    wall: Duration,
    transactions: u64,
}

impl Postgres {
    fn create(admin: &str) -> Result<Postgres> {
        let name = format!("mm_scale_{}", std::process::id());
        let (base, _) = admin
            .rsplit_once('/')
            .context("the PostgreSQL URL must end with /DATABASE")?;
        let pg = Postgres {
            admin: admin.to_string(),
            url: format!("{base}/{name}"),
            name,
        };
        pg.psql(&pg.admin, &format!("CREATE DATABASE \"{}\"", pg.name))?;
        Ok(pg)
    }

    fn drop_database(&self) -> Result<()> {
        self.psql(
            &self.admin,
            &format!("DROP DATABASE \"{}\" WITH (FORCE)", self.name),
        )
        .map(drop)
    }

    fn psql(&self, url: &str, sql: &str) -> Result<String> {
        let output = Command::new("psql")
            .args([url, "-XAtq", "-c", sql])
            .output()
            .context("running psql")?;
        if !output.status.success() {
            bail!("psql: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// Transactions committed or rolled back in the run's database, read from the
    /// maintenance database so that reading adds none.
    fn transactions(&self) -> Result<u64> {
        let sql = format!(
            "SELECT pg_stat_clear_snapshot(); SELECT xact_commit + xact_rollback FROM pg_stat_database \
             WHERE datname = '{}'",
            self.name
        );
        let text = self.psql(&self.admin, &sql)?;
        Ok(text.lines().last().unwrap_or("0").trim().parse()?)
    }

    /// Waits until no pass is queued or running; each look is one transaction,
    /// counted out of the figures.
    fn wait_idle(&self) -> Result<u64> {
        let mut looks = 0;
        loop {
            sleep(Duration::from_millis(100));
            looks += 1;
            let left = self.psql(
                &self.url,
                "SELECT COUNT(*) FROM passes WHERE state IN ('queued', 'running')",
            )?;
            if left == "0" {
                return Ok(looks);
            }
        }
    }

    /// Runs a phase of workers (see [`Mailmove::run_workers`]); its wall time, from
    /// the workers' start to the last pass's end, and the transactions it cost the
    /// database, counted once every session of it has ended.
    fn phase(&self, work: impl FnOnce() -> Result<(Duration, u64)>) -> Result<Phase> {
        let before = self.settled_transactions()?;
        let (wall, looks) = work()?;
        let after = self.settled_transactions()?;
        Ok(Phase {
            wall,
            transactions: (after - before).saturating_sub(looks),
        })
    }

    /// PostgreSQL reports a backend's counts a moment after its transactions: wait for
    /// the figure to be the same twice.
    fn settled_transactions(&self) -> Result<u64> {
        let mut last = self.transactions()?;
        loop {
            sleep(Duration::from_millis(1200));
            let now = self.transactions()?;
            if now == last {
                return Ok(now);
            }
            last = now;
        }
    }
}

/// Samples established connections to each server's port every 50 ms.
struct Watch {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Vec<usize>>,
}

impl Watch {
    fn start(ports: &[(&str, u16)]) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let ports: Vec<u16> = ports.iter().map(|(_, p)| *p).collect();
        let stopping = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut most = vec![0; ports.len()];
            while !stopping.load(Ordering::SeqCst) {
                let now = established_to(&ports);
                for (most, now) in most.iter_mut().zip(now) {
                    *most = (*most).max(now);
                }
                sleep(Duration::from_millis(50));
            }
            most
        });
        Watch { stop, handle }
    }

    fn stop(self) -> Vec<usize> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap_or_default()
    }
}

/// Client connections established to each port now (from /proc/net/tcp).
fn established_to(ports: &[u16]) -> Vec<usize> {
    let mut counts: HashMap<u16, usize> = HashMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 4 || fields[3] != "01" {
                continue;
            }
            let port = |field: &str| {
                field
                    .rsplit(':')
                    .next()
                    .and_then(|hex| u16::from_str_radix(hex, 16).ok())
            };
            if let Some(remote) = port(fields[2]) {
                *counts.entry(remote).or_default() += 1;
            }
        }
    }
    ports
        .iter()
        .map(|p| counts.get(p).copied().unwrap_or(0))
        .collect()
}

/// A process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse().ok())
        })
        .unwrap_or(0)
}

/// Messages copied over every mailbox, from `project status --json`.
fn copied_in(status: &str) -> u64 {
    status
        .match_indices("\"copied\":")
        .filter_map(|(at, key)| {
            let rest = &status[at + key.len()..];
            let digits: String = rest
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse::<u64>().ok()
        })
        .sum()
}

fn best_of(runs: usize, mut work: impl FnMut() -> Result<()>) -> Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let started = Instant::now();
        work()?;
        best = best.min(started.elapsed());
    }
    Ok(best)
}
