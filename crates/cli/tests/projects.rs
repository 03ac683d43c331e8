//! End-to-end: projects of many mailboxes run as passes, by workers on PostgreSQL (one
//! of them killed midway) and in one process on SQLite; host connection caps; the
//! spreadsheet import; no password in the database, the logs or the status output.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{CountingProxy, bodies};
use mailmove_testkit::{Dovecot, DovecotOptions, messages};
use serde_json::Value;

const SECRET_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Two servers with `count` users each, every source mailbox holding a few messages.
struct Farm {
    source: Dovecot,
    dest: Dovecot,
    dir: tempfile::TempDir,
    ca: PathBuf,
    count: usize,
}

fn source_password(n: usize) -> String {
    format!("src-pw-{n}-Zq8")
}

fn dest_password(n: usize) -> String {
    format!("dst-pw-{n}-Kx3")
}

impl Farm {
    fn new(count: usize, messages_each: usize) -> Farm {
        let source = Dovecot::start(DovecotOptions::default()).unwrap();
        let dest = Dovecot::start(DovecotOptions::default()).unwrap();
        for n in 0..count {
            source
                .add_user(&format!("user{n}"), &source_password(n))
                .unwrap();
            dest.add_user(&format!("user{n}@new.example"), &dest_password(n))
                .unwrap();
            let mut checker = source
                .checker(&format!("user{n}"), &source_password(n))
                .unwrap();
            checker.create("Archive").unwrap();
            for i in 0..messages_each {
                let folder = if i % 3 == 0 { "Archive" } else { "INBOX" };
                let body = messages::simple(
                    &format!("u{n}m{i}@old.example"),
                    "hello",
                    2_000 + (i * 1_511) % 30_000,
                );
                checker.append(folder, &["\\Seen"], None, &body).unwrap();
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let mut pem = std::fs::read(source.ca_pem()).unwrap();
        pem.extend(std::fs::read(dest.ca_pem()).unwrap());
        std::fs::write(&ca, pem).unwrap();
        Farm {
            source,
            dest,
            dir,
            ca,
            count,
        }
    }

    fn csv(&self) -> PathBuf {
        let mut text = String::from(
            "Source Email,Source Login Name,Source Password,Destination Email,Destination Login Name,Destination Password\n",
        );
        for n in 0..self.count {
            text.push_str(&format!(
                "user{n}@old.example,user{n},{},user{n}@new.example,,{}\n",
                source_password(n),
                dest_password(n)
            ));
        }
        let path = self.dir.path().join("mailboxes.csv");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn mailmove(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mailmove"));
        command
            .env("MAILMOVE_SECRET_KEY", SECRET_KEY)
            .env("MAILMOVE_DATA_DIR", self.data_dir())
            .env_remove("MAILMOVE_DATABASE")
            .env_remove("MAILMOVE_SOURCE_PASSWORD")
            .env_remove("MAILMOVE_DEST_PASSWORD");
        command
    }

    fn create_project(&self, database: &str, source_port: u16) {
        let output = self
            .mailmove()
            .args(["project", "create", "acme", "--source"])
            .arg(format!("imap://127.0.0.1:{source_port}"))
            .arg("--dest")
            .arg(format!("imap://127.0.0.1:{}", self.dest.imap_port()))
            .arg("--tls-ca")
            .arg(&self.ca)
            .arg("--mailboxes")
            .arg(self.csv())
            .args(["--database", database])
            .output()
            .unwrap();
        let run = common::finish(output, None);
        assert_eq!(run.code, 0, "{}", run.everything());
        assert!(
            run.stdout
                .contains(&format!("with {} mailboxes", self.count)),
            "{}",
            run.stdout
        );
    }

    fn status(&self, database: &str) -> Value {
        let output = self
            .mailmove()
            .args([
                "project",
                "status",
                "acme",
                "--json",
                "--database",
                database,
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// Every destination mailbox equals its source: nothing missing, nothing twice.
    fn assert_all_copied_once(&self) {
        for n in 0..self.count {
            let mut src = self
                .source
                .checker(&format!("user{n}"), &source_password(n))
                .unwrap();
            let mut dst = self
                .dest
                .checker(&format!("user{n}@new.example"), &dest_password(n))
                .unwrap();
            for folder in ["INBOX", "Archive"] {
                assert_eq!(
                    bodies(&mut dst, folder),
                    bodies(&mut src, folder),
                    "user{n} {folder}"
                );
            }
        }
    }

    /// How many messages mailbox `n` holds at the destination (a folder not created yet
    /// holds none).
    fn dest_messages(&self, n: usize) -> u64 {
        let mut dst = self
            .dest
            .checker(&format!("user{n}@new.example"), &dest_password(n))
            .unwrap();
        ["INBOX", "Archive"]
            .iter()
            .map(|folder| dst.fetch_all(folder).map_or(0, |m| m.len() as u64))
            .sum()
    }

    /// `mailmove verify` on every pair finds nothing unexplained.
    fn assert_verified(&self) {
        for n in 0..self.count {
            let output = Command::new(env!("CARGO_BIN_EXE_mailmove"))
                .args(["verify", "--source"])
                .arg(format!(
                    "imap://user{n}@127.0.0.1:{}",
                    self.source.imap_port()
                ))
                .arg("--dest")
                .arg(format!(
                    "imap://user{n}%40new.example@127.0.0.1:{}",
                    self.dest.imap_port()
                ))
                .arg("--tls-ca")
                .arg(&self.ca)
                .arg("--state")
                .arg(self.dir.path().join(format!("verify-{n}.sqlite")))
                .env("MAILMOVE_SOURCE_PASSWORD", source_password(n))
                .env("MAILMOVE_DEST_PASSWORD", dest_password(n))
                .output()
                .unwrap();
            let run = common::finish(output, None);
            assert_eq!(run.code, 0, "user{n}: {}", run.everything());
            assert!(run.stdout.contains("0 unexplained"), "{}", run.stdout);
        }
    }

    fn assert_no_password_in(&self, what: &str, text: &[u8]) {
        let text = String::from_utf8_lossy(text);
        for n in 0..self.count {
            for secret in [source_password(n), dest_password(n)] {
                assert!(!text.contains(&secret), "a password appears in {what}");
            }
        }
    }
}

fn statuses(status: &Value) -> Vec<String> {
    status["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["status"].as_str().unwrap().to_string())
        .collect()
}

/// A fresh PostgreSQL database for one test, dropped at the end.
struct PgDatabase {
    url: String,
    name: String,
    admin: String,
}

impl PgDatabase {
    fn new() -> PgDatabase {
        let admin = std::env::var("MAILMOVE_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
        let name = format!(
            "mm_e2e_{}_{}",
            std::process::id(),
            Instant::now().elapsed().subsec_nanos()
        );
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let base = admin.rsplit_once('/').unwrap().0;
        PgDatabase {
            url: format!("{base}/{name}"),
            name,
            admin,
        }
    }

    fn dump(&self) -> Vec<u8> {
        let output = Command::new("pg_dump")
            .args(["--data-only", &self.url])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn psql(url: &str, sql: &str) {
    let output = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn spawn_worker(farm: &Farm, database: &str, log: &Path) -> Child {
    farm.mailmove()
        .args([
            "worker",
            "--database",
            database,
            // The test's Dovecots are on loopback, which workers refuse unless allowed.
            "--allow-network",
            "127.0.0.0/8",
            "--jobs",
            "4",
            "--lease-seconds",
            "3",
        ])
        .env("MAILMOVE_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn wait_until(what: &str, limit: Duration, done: impl FnMut() -> bool) {
    wait_explained(what, limit, done, String::new);
}

/// As [`wait_until`], and on timeout the panic also carries `explain()`.
fn wait_explained(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
    explain: impl Fn() -> String,
) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            explain()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The statuses and the last lines of each worker's log, for a test that timed out.
fn workers_story(farm: &Farm, database: &str, logs: &[PathBuf]) -> String {
    let mut story = format!("statuses: {:?}\n", statuses(&farm.status(database)));
    for log in logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        story.push_str(&format!("--- {} (last 40 lines)\n{tail}\n", log.display()));
    }
    story
}

#[test]
fn thirty_mailboxes_by_three_workers_on_postgres_survive_a_killed_worker() {
    let farm = Farm::new(30, 24);
    let pg = PgDatabase::new();
    farm.create_project(&pg.url, farm.source.imap_port());
    let logs: Vec<PathBuf> = (0..3)
        .map(|i| farm.dir.path().join(format!("worker{i}.log")))
        .collect();
    let before: Vec<u64> = (0..30).map(|n| farm.dest_messages(n)).collect();
    let mut workers: Vec<Child> = logs
        .iter()
        .map(|log| spawn_worker(&farm, &pg.url, log))
        .collect();
    let run = farm
        .mailmove()
        .args([
            "project",
            "run",
            "acme",
            "--pass",
            "full",
            "--database",
            &pg.url,
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    // Kill one worker with SIGKILL while passes are running.
    wait_until("a pass to start", Duration::from_secs(60), || {
        statuses(&farm.status(&pg.url))
            .iter()
            .any(|s| s == "Migrating")
    });
    workers[0].kill().unwrap();
    workers[0].wait().unwrap();
    let at_kill = statuses(&farm.status(&pg.url));
    let completed_at_kill = at_kill.iter().filter(|s| *s == "Completed").count();
    assert!(
        completed_at_kill < 30,
        "the worker was killed after everything ended"
    );

    wait_explained(
        "every mailbox to complete",
        Duration::from_secs(180),
        || {
            statuses(&farm.status(&pg.url))
                .iter()
                .all(|s| s == "Completed")
        },
        || workers_story(&farm, &pg.url, &logs),
    );
    for worker in &mut workers[1..] {
        worker.kill().unwrap();
        worker.wait().unwrap();
    }
    let status = farm.status(&pg.url);
    for mailbox in status["mailboxes"].as_array().unwrap() {
        let m = &mailbox["messages"];
        assert_eq!(
            m["copied"].as_u64().unwrap() + m["already_present"].as_u64().unwrap(),
            24,
            "{mailbox}"
        );
        assert_eq!(m["failed"], 0);
        // The pass's counts describe the pass, however many workers it took: a worker
        // that took a pass over counts what its predecessor copied too.
        let n: usize = mailbox["source_email"]
            .as_str()
            .and_then(|email| email.strip_prefix("user"))
            .and_then(|rest| rest.split('@').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert_eq!(
            m["copied"].as_u64().unwrap(),
            farm.dest_messages(n) - before[n],
            "user{n}: copied counts what arrived in this pass: {mailbox}"
        );
    }
    farm.assert_all_copied_once();
    farm.assert_verified();
    farm.assert_no_password_in("the PostgreSQL rows", &pg.dump());
    farm.assert_no_password_in("project status", status.to_string().as_bytes());
    for log in &logs {
        farm.assert_no_password_in("a worker's log", &std::fs::read(log).unwrap());
    }
}

#[test]
fn thirty_mailboxes_in_one_process_on_sqlite() {
    let farm = Farm::new(30, 12);
    let database = format!(
        "sqlite://{}",
        farm.data_dir().join("mailmove.sqlite").display()
    );
    farm.create_project(&database, farm.source.imap_port());

    let trial = farm
        .mailmove()
        .args([
            "project",
            "run",
            "acme",
            "--pass",
            "verify",
            "--wait",
            "--database",
            &database,
        ])
        .output()
        .unwrap();
    let trial = common::finish(trial, None);
    assert_eq!(trial.code, 0, "{}", trial.everything());
    assert!(
        statuses(&farm.status(&database))
            .iter()
            .all(|s| s == "Ready for migration")
    );

    let full = farm
        .mailmove()
        .args([
            "project",
            "run",
            "acme",
            "--pass",
            "full",
            "--wait",
            "--jobs",
            "6",
            "--database",
            &database,
        ])
        .env("MAILMOVE_LOG", "debug")
        .output()
        .unwrap();
    let full = common::finish(full, None);
    assert_eq!(full.code, 0, "{}", full.everything());
    assert!(
        statuses(&farm.status(&database))
            .iter()
            .all(|s| s == "Completed")
    );
    farm.assert_all_copied_once();

    // A delta pass copies only what is new.
    let mut src = farm.source.checker("user3", &source_password(3)).unwrap();
    src.append(
        "INBOX",
        &[],
        None,
        &messages::simple("late@old.example", "late", 500),
    )
    .unwrap();
    let delta = farm
        .mailmove()
        .args([
            "project",
            "run",
            "acme",
            "--pass",
            "delta",
            "--wait",
            "--database",
            &database,
        ])
        .output()
        .unwrap();
    assert!(delta.status.success());
    let status = farm.status(&database);
    let user3 = &status["mailboxes"][3];
    assert_eq!(user3["pass"], "delta");
    assert_eq!(user3["messages"]["copied"], 1);
    assert_eq!(user3["messages"]["already_present"], 12);
    assert_eq!(status["mailboxes"][4]["messages"]["copied"], 0);
    farm.assert_all_copied_once();

    let sqlite = std::fs::read(farm.data_dir().join("mailmove.sqlite")).unwrap();
    farm.assert_no_password_in("the SQLite file", &sqlite);
    for wal in ["mailmove.sqlite-wal"] {
        if let Ok(bytes) = std::fs::read(farm.data_dir().join(wal)) {
            farm.assert_no_password_in("the SQLite WAL", &bytes);
        }
    }
    farm.assert_no_password_in("the pass output and log", full.everything().as_bytes());
    farm.assert_no_password_in("project status", status.to_string().as_bytes());
}

#[test]
fn a_per_host_cap_holds_across_passes() {
    let farm = Farm::new(8, 10);
    let proxy = CountingProxy::start(farm.source.imap_port());
    let database = format!(
        "sqlite://{}",
        farm.data_dir().join("mailmove.sqlite").display()
    );
    farm.create_project(&database, proxy.port);
    let run = farm
        .mailmove()
        .args(["project", "run", "acme", "--pass", "full", "--wait"])
        .args([
            "--jobs",
            "8",
            "--connections-per-host",
            "2",
            "--database",
            &database,
        ])
        .output()
        .unwrap();
    let run = common::finish(run, None);
    assert_eq!(run.code, 0, "{}", run.everything());
    assert!(
        statuses(&farm.status(&database))
            .iter()
            .all(|s| s == "Completed")
    );
    let peak = proxy.peak.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&peak),
        "the source saw {peak} connections at once"
    );
    farm.assert_all_copied_once();
}

#[test]
fn a_bad_spreadsheet_is_refused_whole_with_its_lines() {
    let farm = Farm::new(1, 0);
    let database = format!(
        "sqlite://{}",
        farm.data_dir().join("mailmove.sqlite").display()
    );
    let bad = farm.dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "Source Email,Source Password,Destination Email,Destination Password,Colour\n\
         a@old.example,pw-a-Q1,a@new.example,pw-b-Q2,blue\n",
    )
    .unwrap();
    let output = farm
        .mailmove()
        .args([
            "project",
            "create",
            "acme",
            "--source",
            "imaps://old.example",
            "--dest",
            "imaps://new.example",
        ])
        .arg("--mailboxes")
        .arg(&bad)
        .args(["--database", &database])
        .output()
        .unwrap();
    let run = common::finish(output, None);
    assert_eq!(run.code, 2, "{}", run.everything());
    assert!(run.stderr.contains("unknown column"), "{}", run.stderr);
    assert!(
        run.stderr.contains("nothing was imported"),
        "{}",
        run.stderr
    );
    assert!(!run.everything().contains("pw-a-Q1"));

    let rows = farm.dir.path().join("rows.csv");
    std::fs::write(
        &rows,
        "Source Email,Destination Email\n\
         a@old.example,a@new.example\n\
         b@old.example,\n\
         a@old.example,c@new.example\n\
         not-an-address,d@new.example\n",
    )
    .unwrap();
    let output = farm
        .mailmove()
        .args([
            "project",
            "create",
            "acme",
            "--source",
            "imaps://old.example",
            "--dest",
            "imaps://new.example",
        ])
        .arg("--mailboxes")
        .arg(&rows)
        .args(["--database", &database])
        .output()
        .unwrap();
    let run = common::finish(output, None);
    assert_eq!(run.code, 2, "{}", run.everything());
    for expected in ["line 3", "line 4", "line 5"] {
        assert!(
            run.stderr.contains(expected),
            "{expected} in {}",
            run.stderr
        );
    }
    // Nothing was stored: no project at all.
    let list = farm
        .mailmove()
        .args(["project", "list", "--database", &database])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("No projects yet"));
}

#[test]
fn migrate_with_a_spreadsheet_copies_every_pair_with_one_report() {
    let farm = Farm::new(5, 6);
    let report = farm.dir.path().join("bulk.json");
    let output = farm
        .mailmove()
        .args(["migrate", "--source"])
        .arg(format!("imap://127.0.0.1:{}", farm.source.imap_port()))
        .arg("--dest")
        .arg(format!("imap://127.0.0.1:{}", farm.dest.imap_port()))
        .arg("--tls-ca")
        .arg(&farm.ca)
        .arg("--mailboxes")
        .arg(farm.csv())
        .args(["--parallel", "3", "--state"])
        .arg(farm.dir.path().join("bulk.sqlite"))
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let run = common::finish(output, Some(report));
    assert_eq!(run.code, 0, "{}", run.everything());
    let report = run.report.clone().unwrap();
    let mailboxes = report["mailboxes"].as_array().unwrap();
    assert_eq!(mailboxes.len(), 5);
    for mailbox in mailboxes {
        assert_eq!(mailbox["messages"]["copied"], 6, "{mailbox}");
    }
    assert!(
        run.stdout.contains("All 5 mailboxes: 30 copied"),
        "{}",
        run.stdout
    );
    farm.assert_all_copied_once();
    farm.assert_no_password_in("the bulk output", run.everything().as_bytes());
}

#[test]
fn a_running_pass_can_be_stopped() {
    let farm = Farm::new(1, 0);
    let mut src = farm.source.checker("user0", &source_password(0)).unwrap();
    for i in 0..200 {
        src.append(
            "INBOX",
            &[],
            None,
            &messages::simple(&format!("s{i}@x"), "s", 30_000),
        )
        .unwrap();
    }
    // A slow link, so the pass is still running when the stop arrives.
    let proxy = CountingProxy::slowed(farm.source.imap_port(), Duration::from_millis(25));
    let database = format!(
        "sqlite://{}",
        farm.data_dir().join("mailmove.sqlite").display()
    );
    farm.create_project(&database, proxy.port);
    let mut serve = farm
        .mailmove()
        .args([
            "serve",
            "--database",
            &database,
            "--allow-network",
            "127.0.0.0/8",
            "--lease-seconds",
            "3",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let queued = farm
        .mailmove()
        .args([
            "project",
            "run",
            "acme",
            "--pass",
            "full",
            "--database",
            &database,
        ])
        .output()
        .unwrap();
    assert!(
        queued.status.success(),
        "{}",
        String::from_utf8_lossy(&queued.stderr)
    );
    wait_until("the pass to start", Duration::from_secs(30), || {
        statuses(&farm.status(&database))[0] == "Migrating"
    });
    let stop = farm
        .mailmove()
        .args(["project", "stop", "acme", "--database", &database])
        .output()
        .unwrap();
    assert!(stop.status.success());
    wait_until("the pass to stop", Duration::from_secs(30), || {
        statuses(&farm.status(&database))[0] == "Stopped"
    });
    serve.kill().unwrap();
    serve.wait().unwrap();
    let copied = farm
        .dest
        .checker("user0@new.example", &dest_password(0))
        .unwrap()
        .fetch_all("INBOX")
        .unwrap()
        .len();
    assert!(
        copied < 200,
        "the pass ran to the end ({copied} copied) instead of stopping"
    );
    // A later pass finishes the job without duplicates.
    let again = farm
        .mailmove()
        .args([
            "project",
            "run",
            "acme",
            "--pass",
            "full",
            "--wait",
            "--database",
            &database,
        ])
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    farm.assert_all_copied_once();
}

#[test]
fn an_untrusted_certificate_fails_the_trial_with_the_portals_advice_and_no_flag() {
    let farm = Farm::new(1, 1);
    let database = format!(
        "sqlite://{}",
        farm.data_dir().join("mailmove.sqlite").display()
    );
    // No --tls-ca: the source's certificate comes from a CA nobody trusts here.
    let create = farm
        .mailmove()
        .args(["project", "create", "acme", "--source"])
        .arg(format!("imaps://localhost:{}", farm.source.imaps_port()))
        .arg("--dest")
        .arg(format!("imap://127.0.0.1:{}", farm.dest.imap_port()))
        .arg("--mailboxes")
        .arg(farm.csv())
        .args(["--database", &database])
        .output()
        .unwrap();
    let create = common::finish(create, None);
    assert_eq!(create.code, 0, "{}", create.everything());

    let trial = farm
        .mailmove()
        .args(["project", "run", "acme", "--pass", "verify", "--wait"])
        .args(["--database", &database])
        .output()
        .unwrap();
    let trial = common::finish(trial, None);
    assert_eq!(trial.code, 1, "{}", trial.everything());
    let status = farm.status(&database);
    assert_eq!(statuses(&status), ["Verify failed"]);
    // What people read in the portal: what failed, then what they can do about it,
    // which is asking the operator; no command-line flag.
    let reason = status["mailboxes"][0]["last_error"].as_str().unwrap();
    assert!(
        reason.starts_with("source: certificate for localhost is not trusted: "),
        "{reason}"
    );
    assert!(
        reason.ends_with(
            "; ask the operator of this portal to trust the certificate authority that \
             signed this server's certificate, or the server's administrator to install a \
             valid one"
        ),
        "{reason}"
    );
    assert!(!reason.contains("--"), "{reason}");
}

/// The status of project `name` as `project status --json` prints it.
fn project_status(farm: &Farm, database: &str, name: &str) -> Value {
    let output = farm
        .mailmove()
        .args(["project", "status", name, "--json", "--database", database])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn serve_refuses_projects_on_internal_addresses_until_the_operator_allows_them() {
    let farm = Farm::new(1, 1);
    let database = format!(
        "sqlite://{}",
        farm.data_dir().join("mailmove.sqlite").display()
    );
    // A portal user's projects: real Dovecots behind a name that resolves to loopback
    // (`localhost`), and a port scan of the operator's PostgreSQL and of the cloud's
    // metadata service.
    for (name, source, dest) in [
        (
            "acme",
            format!("imap://localhost:{}", farm.source.imap_port()),
            format!("imap://127.0.0.1:{}", farm.dest.imap_port()),
        ),
        (
            "scan",
            "imap://127.0.0.1:5432".to_string(),
            "imap://169.254.169.254:143".to_string(),
        ),
    ] {
        let output = farm
            .mailmove()
            .args([
                "project", "create", name, "--source", &source, "--dest", &dest,
            ])
            .arg("--tls-ca")
            .arg(&farm.ca)
            .arg("--mailboxes")
            .arg(farm.csv())
            .args(["--database", &database])
            .output()
            .unwrap();
        let run = common::finish(output, None);
        assert_eq!(run.code, 0, "{}", run.everything());
    }
    let serve = |allow: &[&str]| {
        farm.mailmove()
            .args(["serve", "--database", &database, "--listen", "127.0.0.1:0"])
            .args(allow)
            .env_remove("MAILMOVE_ALLOW_NETWORK")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let queue_trial = |name: &str| {
        let queued = farm
            .mailmove()
            .args([
                "project",
                "run",
                name,
                "--pass",
                "verify",
                "--database",
                &database,
            ])
            .output()
            .unwrap();
        assert!(
            queued.status.success(),
            "{}",
            String::from_utf8_lossy(&queued.stderr)
        );
    };
    let status_of = |name: &str| statuses(&project_status(&farm, &database, name))[0].clone();

    let mut refusing = serve(&[]);
    queue_trial("acme");
    queue_trial("scan");
    wait_until("both trials to fail", Duration::from_secs(60), || {
        status_of("acme") == "Verify failed" && status_of("scan") == "Verify failed"
    });
    refusing.kill().unwrap();
    refusing.wait().unwrap();
    for name in ["acme", "scan"] {
        let status = project_status(&farm, &database, name);
        let reason = status["mailboxes"][0]["last_error"].as_str().unwrap();
        // The kind of failure, the same for an open port, a closed one and a silent one:
        // nothing was sent to any of them.
        assert!(
            reason.contains(": this address is not allowed ("),
            "{name}: {reason}"
        );
        assert!(
            reason.ends_with(
                "; give the server's public name or address, or ask the operator of this \
                 portal to allow the network it is on"
            ),
            "{name}: {reason}"
        );
        assert!(!reason.contains("--"), "{reason}");
        assert!(
            !reason.contains("connection refused") && !reason.contains("timed out"),
            "{reason}"
        );
    }
    let acme = project_status(&farm, &database, "acme");
    let reason = acme["mailboxes"][0]["last_error"].as_str().unwrap();
    assert!(
        reason.contains(&format!("localhost:{}", farm.source.imap_port()))
            || reason.contains(&format!("127.0.0.1:{}", farm.dest.imap_port())),
        "the address as the user typed it: {reason}"
    );

    // The operator opens loopback: the same project's trial goes through.
    let mut allowing = serve(&["--allow-network", "127.0.0.0/8"]);
    queue_trial("acme");
    wait_until("the trial to pass", Duration::from_secs(60), || {
        status_of("acme") == "Ready for migration"
    });
    allowing.kill().unwrap();
    allowing.wait().unwrap();
}
