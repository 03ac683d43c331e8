//! End-to-end: Exchange (EWS) as a source and as a destination, through the real
//! `mailmove` binary, between a private Dovecot and the testkit's EWS server (built
//! from Microsoft's protocol documents and checked against exchangelib; no Exchange
//! server can run here). That server keeps MIME bytes as given, so copies are
//! compared byte for byte; a real Exchange re-renders MIME (see README).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Run, finish};
use mailmove_testkit::ews::{EwsConfig, EwsServer, FlagStatus, ItemSnapshot, Seed};
use mailmove_testkit::{Checker, Dovecot, DovecotOptions, messages};
use time::macros::datetime;

const IMAP_USER: &str = "alice";
const IMAP_PASSWORD: &str = "imap-secret-1";
const EWS_USER: &str = "bob@exchange.example";
const EWS_PASSWORD: &str = "ews-secret-2";

struct Setup {
    dovecot: Dovecot,
    ews: EwsServer,
    dir: tempfile::TempDir,
    runs: std::sync::atomic::AtomicUsize,
}

enum Direction {
    ImapToEws,
    EwsToImap,
}

impl Setup {
    fn new(config: EwsConfig) -> Setup {
        let dovecot = Dovecot::start(DovecotOptions::default()).expect("Dovecot starts");
        dovecot.add_user(IMAP_USER, IMAP_PASSWORD).unwrap();
        let ews = EwsServer::start(config).expect("the EWS server starts");
        ews.add_user(EWS_USER, EWS_PASSWORD);
        Setup {
            dovecot,
            ews,
            dir: tempfile::tempdir().unwrap(),
            runs: Default::default(),
        }
    }

    fn imap(&self) -> Checker {
        self.dovecot.checker(IMAP_USER, IMAP_PASSWORD).unwrap()
    }

    fn imap_url(&self) -> String {
        format!("imap://{IMAP_USER}@127.0.0.1:{}", self.dovecot.imap_port())
    }

    /// `ews+http://bob%40exchange.example@127.0.0.1:PORT/EWS/Exchange.asmx`
    fn ews_url(&self) -> String {
        let url = self.ews.url();
        let rest = url.strip_prefix("http://").expect("plain HTTP on loopback");
        format!("ews+http://bob%40exchange.example@{rest}")
    }

    fn command(&self, subcommand: &str, direction: &Direction) -> Command {
        let (source, dest, source_password, dest_password) = match direction {
            Direction::ImapToEws => (self.imap_url(), self.ews_url(), IMAP_PASSWORD, EWS_PASSWORD),
            Direction::EwsToImap => (self.ews_url(), self.imap_url(), EWS_PASSWORD, IMAP_PASSWORD),
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_mailmove"));
        command
            .arg(subcommand)
            .arg("--source")
            .arg(source)
            .arg("--dest")
            .arg(dest)
            .arg("--tls-ca")
            .arg(self.dovecot.ca_pem())
            .env("MAILMOVE_SOURCE_PASSWORD", source_password)
            .env("MAILMOVE_DEST_PASSWORD", dest_password)
            .env_remove("MAILMOVE_LOG");
        if subcommand != "check" {
            command
                .arg("--state")
                .arg(self.dir.path().join("state.sqlite"));
        }
        command
    }

    fn run(&self, subcommand: &str, direction: &Direction, extra: &[&str]) -> Run {
        self.run_with(subcommand, direction, extra, &[])
    }

    /// As `run`, with environment variables set or replaced.
    fn run_with(
        &self,
        subcommand: &str,
        direction: &Direction,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Run {
        let n = self.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let report = self.dir.path().join(format!("report-{n}.json"));
        let output = self
            .command(subcommand, direction)
            .args(extra)
            .envs(env.iter().copied())
            .arg("--report")
            .arg(&report)
            .output()
            .expect("mailmove runs");
        finish(output, Some(report))
    }

    fn ews_messages(&self, path: &[&str]) -> Vec<ItemSnapshot> {
        self.ews.messages(EWS_USER, path)
    }
}

fn sorted(mut bodies: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    bodies.sort();
    bodies
}

fn mime_of(items: &[ItemSnapshot]) -> Vec<Vec<u8>> {
    sorted(items.iter().map(|i| i.mime.clone()).collect())
}

fn imap_bodies(checker: &mut Checker, folder: &str) -> Vec<Vec<u8>> {
    sorted(
        checker
            .fetch_all(folder)
            .unwrap()
            .into_iter()
            .map(|m| m.body)
            .collect(),
    )
}

#[test]
fn imap_to_exchange_copies_bytes_read_state_flags_dates_and_roles_and_a_rerun_copies_nothing() {
    let setup = Setup::new(EwsConfig::ntlm());
    let mut imap = setup.imap();
    imap.create("Projects/2024").unwrap();
    let read = messages::simple("read@x", "read and flagged", 2_000);
    let unread = messages::without_message_id("no id, unread");
    let sent = messages::with_attachment("sent@x", 300_000, 7);
    let deep = messages::eight_bit_headers("deep@x");
    imap.append(
        "INBOX",
        &["\\Seen", "\\Flagged", "Project"],
        Some("15-Mar-2023 10:00:00 +0100"),
        &read,
    )
    .unwrap();
    imap.append("INBOX", &[], Some("16-Mar-2023 11:30:00 +0000"), &unread)
        .unwrap();
    imap.append("Sent", &["\\Seen"], None, &sent).unwrap();
    imap.append("Projects/2024", &["\\Seen", "$Forwarded"], None, &deep)
        .unwrap();

    let run = setup.run("migrate", &Direction::ImapToEws, &[]);
    assert_eq!(run.code, 0, "{}", run.everything());
    assert_eq!(run.counts(), (4, 0, 0, 0), "{}", run.everything());

    // Byte for byte, folder by folder; Sent went to Exchange's Sent Items by role.
    let inbox = setup.ews_messages(&["Inbox"]);
    assert_eq!(mime_of(&inbox), sorted(vec![read.clone(), unread.clone()]));
    assert_eq!(mime_of(&setup.ews_messages(&["Sent Items"])), vec![sent]);
    assert_eq!(
        mime_of(&setup.ews_messages(&["Projects", "2024"])),
        vec![deep]
    );
    // Received, not drafts; read state, flag, keyword as category, arrival date.
    let first = inbox.iter().find(|i| i.mime == read).unwrap();
    assert!(!first.is_draft, "{first:?}");
    assert_eq!(first.message_flags & 0x8, 0, "the unsent bit is clear");
    assert!(first.is_read);
    assert_eq!(first.flag, FlagStatus::Flagged);
    assert_eq!(first.categories, vec!["Project".to_string()]);
    assert_eq!(first.received, datetime!(2023-03-15 09:00:00 UTC));
    assert_eq!(first.sent, Some(datetime!(2020-01-01 10:00:00 UTC)));
    // The delivery time above came from the PR_MESSAGE_DELIVERY_TIME mailmove set (the
    // server would say "now"); the origin mark is a named property of mailmove's own.
    let mark = first
        .extended
        .iter()
        .find(|p| p.property_name.as_deref() == Some("MailmoveSource"))
        .expect("the origin mark");
    assert!(mark.values[0].starts_with("mailmove/1/"), "{mark:?}");
    let second = inbox.iter().find(|i| i.mime == unread).unwrap();
    assert!(!second.is_read && !second.is_draft);
    assert_eq!(second.flag, FlagStatus::NotFlagged);
    assert_eq!(second.received, datetime!(2023-03-16 11:30:00 UTC));
    // `$Forwarded` is an IMAP client's marker, not a category: noted, not copied.
    let deep_item = &setup.ews_messages(&["Projects", "2024"])[0];
    assert!(deep_item.categories.is_empty());
    let warnings = run.report.as_ref().unwrap()["warnings"].to_string();
    assert!(warnings.contains("$Forwarded"), "{warnings}");

    let creates = setup.ews.requests("CreateItem");
    let again = setup.run("migrate", &Direction::ImapToEws, &[]);
    assert_eq!(again.code, 0, "{}", again.everything());
    assert_eq!(again.counts(), (0, 4, 0, 0));
    assert_eq!(setup.ews.requests("CreateItem"), creates, "nothing created");

    let verify = setup.run("verify", &Direction::ImapToEws, &[]);
    assert_eq!(verify.code, 0, "{}", verify.everything());
    assert_eq!(verify.counts().1, 4);
}

#[test]
fn exchange_to_imap_copies_mail_folders_only_with_their_state_and_a_rerun_copies_nothing() {
    let setup = Setup::new(EwsConfig::basic());
    let ews = &setup.ews;
    let flagged = messages::simple("flagged@x", "flagged and read", 5_000);
    let plain = messages::without_message_id("unread plain");
    let sent = messages::simple("sent@x", "sent", 700);
    let nested = messages::with_attachment("nested@x", 200_000, 3);
    ews.add_message(
        EWS_USER,
        &["Inbox"],
        &flagged,
        Seed {
            is_read: true,
            flag: FlagStatus::Flagged,
            categories: vec!["Red category".into()],
            received: datetime!(2022-07-01 08:15:00 UTC),
        },
    )
    .unwrap();
    ews.add_message(EWS_USER, &["Inbox"], &plain, Seed::default())
        .unwrap();
    ews.add_message(
        EWS_USER,
        &["Sent Items"],
        &sent,
        Seed {
            is_read: true,
            ..Seed::default()
        },
    )
    .unwrap();
    ews.create_folder(EWS_USER, &["Inbox", "Receipts"]).unwrap();
    ews.add_message(EWS_USER, &["Inbox", "Receipts"], &nested, Seed::default())
        .unwrap();

    let run = setup.run("migrate", &Direction::EwsToImap, &[]);
    assert_eq!(run.code, 0, "{}", run.everything());
    assert_eq!(run.counts(), (4, 0, 0, 0), "{}", run.everything());

    let mut imap = setup.imap();
    let inbox = imap.fetch_all("INBOX").unwrap();
    assert_eq!(
        sorted(inbox.iter().map(|m| m.body.clone()).collect()),
        sorted(vec![flagged.clone(), plain.clone()])
    );
    let first = inbox.iter().find(|m| m.body == flagged).unwrap();
    assert_eq!(first.flags, vec!["Red_category", "\\Flagged", "\\Seen"]);
    assert_eq!(first.internal_date, "01-Jul-2022 08:15:00 +0000");
    let second = inbox.iter().find(|m| m.body == plain).unwrap();
    assert!(second.flags.is_empty(), "{:?}", second.flags);
    // Sent Items went to the special-use \Sent folder; the subfolder kept its place.
    assert_eq!(imap_bodies(&mut imap, "Sent"), vec![sent]);
    assert_eq!(imap_bodies(&mut imap, "INBOX/Receipts"), vec![nested]);
    // Calendar, Contacts and Tasks are not mail.
    let names: Vec<String> = imap.list().unwrap().into_iter().map(|f| f.name).collect();
    for not_mail in ["Calendar", "Contacts", "Tasks"] {
        assert!(!names.iter().any(|n| n == not_mail), "{names:?}");
    }

    let again = setup.run("migrate", &Direction::EwsToImap, &[]);
    assert_eq!(again.code, 0, "{}", again.everything());
    assert_eq!(again.counts(), (0, 4, 0, 0));
    assert_eq!(imap.fetch_all("INBOX").unwrap().len(), 2);

    // New mail arrives; the next pass copies only it.
    let later = messages::simple("later@x", "later", 900);
    ews.add_message(EWS_USER, &["Inbox"], &later, Seed::default())
        .unwrap();
    let delta = setup.run("migrate", &Direction::EwsToImap, &[]);
    assert_eq!(delta.counts(), (1, 4, 0, 0), "{}", delta.everything());

    let verify = setup.run("verify", &Direction::EwsToImap, &[]);
    assert_eq!(verify.code, 0, "{}", verify.everything());
}

/// Starts a pass for each threshold and SIGKILLs it once `copied()` reaches it;
/// returns how many passes were killed (a pass may end first).
fn kill_passes(
    setup: &Setup,
    direction: &Direction,
    thresholds: &[usize],
    mut copied: impl FnMut() -> usize,
) -> usize {
    let mut kills = 0;
    for &at_least in thresholds {
        let mut child = setup
            .command("migrate", direction)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if copied() >= at_least {
                child.kill().unwrap(); // SIGKILL
                kills += 1;
                break;
            }
            assert!(Instant::now() < deadline, "the pass did not progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.wait().unwrap();
    }
    kills
}

/// Fills the IMAP side with enough mail that a slowed pass can be killed midway.
fn fill_imap(setup: &Setup, count: usize) -> Vec<Vec<u8>> {
    let mut imap = setup.imap();
    let mut bodies = Vec::new();
    for i in 0..count {
        let body = messages::simple(&format!("m{i}@x"), &format!("message {i}"), 800 + i * 37);
        imap.append("INBOX", &["\\Seen"], None, &body).unwrap();
        bodies.push(body);
    }
    sorted(bodies)
}

#[test]
fn sigkill_while_creating_items_then_a_rerun_leaves_no_duplicate() {
    let setup = Setup::new(EwsConfig::basic());
    let bodies = fill_imap(&setup, 120);
    // Slow each request so the pass can be caught in the middle.
    setup.ews.set_delay(Duration::from_millis(40));
    let kills = kill_passes(&setup, &Direction::ImapToEws, &[1, 30, 70], || {
        setup.ews_messages(&["Inbox"]).len()
    });
    assert!(kills >= 2, "the passes ended before they could be killed");
    setup.ews.set_delay(Duration::ZERO);

    let run = setup.run("migrate", &Direction::ImapToEws, &[]);
    assert_eq!(run.code, 0, "{}", run.everything());
    let (copied, present, skipped, failed) = run.counts();
    assert_eq!((copied + present, skipped, failed), (120, 0, 0));
    assert_eq!(mime_of(&setup.ews_messages(&["Inbox"])), bodies);
    assert_eq!(setup.run("verify", &Direction::ImapToEws, &[]).code, 0);
}

#[test]
fn sigkill_while_reading_exchange_then_a_rerun_leaves_no_duplicate() {
    let setup = Setup::new(EwsConfig::basic());
    let mut bodies = Vec::new();
    for i in 0..120 {
        // Every third without a Message-ID: found again by its header hash.
        let body = if i % 3 == 0 {
            messages::without_message_id(&format!("no id {i}"))
        } else {
            messages::simple(&format!("e{i}@x"), &format!("item {i}"), 600 + i * 53)
        };
        setup
            .ews
            .add_message(EWS_USER, &["Inbox"], &body, Seed::default())
            .unwrap();
        bodies.push(body);
    }
    let bodies = sorted(bodies);
    setup.ews.set_delay(Duration::from_millis(30));
    let mut imap = setup.imap();
    let kills = kill_passes(&setup, &Direction::EwsToImap, &[1, 40, 80], || {
        imap.fetch_all("INBOX").map(|m| m.len()).unwrap_or(0)
    });
    assert!(kills >= 2, "the passes ended before they could be killed");
    setup.ews.set_delay(Duration::ZERO);

    let run = setup.run("migrate", &Direction::EwsToImap, &[]);
    assert_eq!(run.code, 0, "{}", run.everything());
    let (copied, present, skipped, failed) = run.counts();
    assert_eq!((copied + present, skipped, failed), (120, 0, 0));
    assert_eq!(imap_bodies(&mut imap, "INBOX"), bodies);
    let verify = setup.run("verify", &Direction::EwsToImap, &[]);
    assert_eq!(verify.code, 0, "{}", verify.everything());
}

#[test]
fn throttling_slows_the_pass_but_it_completes() {
    let setup = Setup::new(EwsConfig::basic());
    let bodies = fill_imap(&setup, 40);
    // Exchange's ErrorServerBusy with BackOffMilliseconds, then HTTP 503 and 429 with
    // Retry-After, all while the pass runs.
    setup.ews.set_busy(3, 300);
    setup.ews.set_http_throttle(2, 503, 1);
    let started = Instant::now();
    let run = setup.run("migrate", &Direction::ImapToEws, &[]);
    assert_eq!(run.code, 0, "{}", run.everything());
    assert_eq!(run.counts(), (40, 0, 0, 0));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the pass waited as asked"
    );
    assert_eq!(mime_of(&setup.ews_messages(&["Inbox"])), bodies);

    setup.ews.set_http_throttle(2, 429, 1);
    let source = setup.run("migrate", &Direction::EwsToImap, &["--dry-run"]);
    assert_eq!(source.code, 0, "{}", source.everything());
}

#[test]
fn a_message_exchange_refuses_is_an_item_failure_and_the_rest_moves() {
    let setup = Setup::new(EwsConfig::basic());
    let mut imap = setup.imap();
    let small = messages::simple("small@x", "small", 1_000);
    let big = messages::with_attachment("big@x", 400_000, 1);
    imap.append("INBOX", &[], None, &small).unwrap();
    imap.append("INBOX", &[], None, &big).unwrap();
    setup.ews.set_max_message_size(100_000);

    let run = setup.run("migrate", &Direction::ImapToEws, &[]);
    assert_eq!(run.code, 1, "{}", run.everything());
    assert_eq!(run.counts(), (1, 0, 0, 1));
    let errors = run.report.as_ref().unwrap()["errors"].to_string();
    assert!(errors.contains("ErrorMessageSizeExceeded"), "{errors}");
    assert_eq!(mime_of(&setup.ews_messages(&["Inbox"])), vec![small]);
}

#[test]
fn a_wrong_exchange_password_exits_3_and_says_what_to_do() {
    let setup = Setup::new(EwsConfig::ntlm());
    setup.ews.set_password(EWS_USER, "changed").unwrap();
    for direction in [Direction::ImapToEws, Direction::EwsToImap] {
        let run = setup.run("migrate", &direction, &[]);
        assert_eq!(run.code, 3, "{}", run.everything());
        assert!(
            run.stderr
                .contains("Exchange refused the login for bob@exchange.example"),
            "{}",
            run.everything()
        );
        assert!(run.stderr.contains("check the password"));
        assert!(!run.everything().contains(EWS_PASSWORD));
    }
}

#[test]
fn a_bearer_token_logs_in_where_one_is_configured() {
    let setup = Setup::new(EwsConfig::bearer("token-4711"));
    setup
        .imap()
        .append("INBOX", &[], None, &messages::simple("t@x", "t", 300))
        .unwrap();
    let run = setup.run_with(
        "migrate",
        &Direction::ImapToEws,
        &["--dest-auth", "bearer"],
        &[("MAILMOVE_DEST_PASSWORD", "token-4711")],
    );
    assert_eq!(run.code, 0, "{}", run.everything());
    assert_eq!(setup.ews_messages(&["Inbox"]).len(), 1);
    assert!(!run.everything().contains("token-4711"));
    // The password where a token is wanted is refused like a wrong password.
    let refused = setup.run("migrate", &Direction::ImapToEws, &[]);
    assert_eq!(refused.code, 3, "{}", refused.everything());
}

#[test]
fn the_outlook_web_address_over_https_and_autodiscover_both_find_the_service() {
    let setup = Setup::new(EwsConfig::basic().with_https());
    let mut imap = setup.imap();
    imap.append(
        "INBOX",
        &["\\Seen"],
        None,
        &messages::simple("a@x", "a", 500),
    )
    .unwrap();
    let base = setup.ews.base_url();
    let authority = base.strip_prefix("https://").unwrap().trim_end_matches('/');
    let ca = setup.ews.ca_pem().unwrap().to_path_buf();
    let mut pem = std::fs::read(&ca).unwrap();
    pem.extend(std::fs::read(setup.dovecot.ca_pem()).unwrap());
    let both = setup.dir.path().join("both.pem");
    std::fs::write(&both, pem).unwrap();

    // What a user copies from the browser: https://HOST/owa
    let owa = format!("https://bob%40exchange.example@{authority}/owa");
    let output = Command::new(env!("CARGO_BIN_EXE_mailmove"))
        .args(["migrate", "--source", &setup.imap_url(), "--dest", &owa])
        .arg("--tls-ca")
        .arg(&both)
        .arg("--state")
        .arg(setup.dir.path().join("owa.sqlite"))
        .env("MAILMOVE_SOURCE_PASSWORD", IMAP_PASSWORD)
        .env("MAILMOVE_DEST_PASSWORD", EWS_PASSWORD)
        .output()
        .unwrap();
    let run = finish(output, None);
    assert_eq!(run.code, 0, "{}", run.everything());
    assert_eq!(setup.ews_messages(&["Inbox"]).len(), 1);

    // Only the server, no path: autodiscover from the login's address must find the
    // EWS URL, or nothing could be listed.
    let discover = format!("ews+https://bob%40exchange.example@{authority}");
    let output = Command::new(env!("CARGO_BIN_EXE_mailmove"))
        .args(["check", "--source", &discover, "--dest", &setup.imap_url()])
        .arg("--tls-ca")
        .arg(&both)
        .env("MAILMOVE_SOURCE_PASSWORD", EWS_PASSWORD)
        .env("MAILMOVE_DEST_PASSWORD", IMAP_PASSWORD)
        .output()
        .unwrap();
    let run = finish(output, None);
    assert_eq!(run.code, 0, "{}", run.everything());
    assert!(run.stdout.contains("1 message"), "{}", run.everything());

    // Without the CA, the certificate is not trusted and nothing is sent.
    let output = Command::new(env!("CARGO_BIN_EXE_mailmove"))
        .args(["check", "--source", &owa, "--dest", &setup.imap_url()])
        .arg("--tls-ca")
        .arg(setup.dovecot.ca_pem())
        .env("MAILMOVE_SOURCE_PASSWORD", EWS_PASSWORD)
        .env("MAILMOVE_DEST_PASSWORD", IMAP_PASSWORD)
        .output()
        .unwrap();
    let run = finish(output, None);
    assert_eq!(run.code, 3, "{}", run.everything());
}

#[test]
fn a_project_pass_run_by_the_worker_copies_into_exchange() {
    // The path of the portal and `mailmove project`: sealed passwords, a leased pass,
    // the worker's accounts (login method `auto`, which finds NTLM here).
    let setup = Setup::new(EwsConfig::ntlm());
    let mut imap = setup.imap();
    let bodies: Vec<Vec<u8>> = (0..6)
        .map(|i| messages::simple(&format!("p{i}@x"), &format!("project {i}"), 900 + i * 11))
        .collect();
    for body in &bodies {
        imap.append("INBOX", &["\\Seen"], None, body).unwrap();
    }
    let csv = setup.dir.path().join("mailboxes.csv");
    std::fs::write(
        &csv,
        format!(
            "Source Email,Source Login Name,Source Password,Destination Email,Destination Login Name,Destination Password\n\
             {IMAP_USER}@old.example,{IMAP_USER},{IMAP_PASSWORD},{EWS_USER},,{EWS_PASSWORD}\n"
        ),
    )
    .unwrap();
    let database = format!(
        "sqlite://{}",
        setup.dir.path().join("projects.sqlite").display()
    );
    let ews_server = setup.ews.url().strip_prefix("http://").unwrap().to_string();
    let mailmove = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_mailmove"))
            .args(args)
            .args(["--database", &database])
            .env(
                "MAILMOVE_SECRET_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            )
            .env("MAILMOVE_DATA_DIR", setup.dir.path().join("data"))
            .env_remove("MAILMOVE_SOURCE_PASSWORD")
            .env_remove("MAILMOVE_DEST_PASSWORD")
            .output()
            .unwrap();
        finish(output, None)
    };
    let source = format!("imap://127.0.0.1:{}", setup.dovecot.imap_port());
    let dest = format!("ews+http://{ews_server}");
    let ca = setup.dovecot.ca_pem().display().to_string();
    let created = mailmove(&[
        "project",
        "create",
        "acme",
        "--source",
        &source,
        "--dest",
        &dest,
        "--tls-ca",
        &ca,
        "--mailboxes",
        &csv.display().to_string(),
    ]);
    assert_eq!(created.code, 0, "{}", created.everything());
    let full = mailmove(&["project", "run", "acme", "--pass", "full", "--wait"]);
    assert_eq!(full.code, 0, "{}", full.everything());
    assert_eq!(
        mime_of(&setup.ews_messages(&["Inbox"])),
        sorted(bodies.clone())
    );
    assert!(!full.everything().contains(EWS_PASSWORD));
    // A second pass finds everything there.
    let again = mailmove(&["project", "run", "acme", "--pass", "full", "--wait"]);
    assert_eq!(again.code, 0, "{}", again.everything());
    assert_eq!(setup.ews_messages(&["Inbox"]).len(), bodies.len());
}

#[test]
fn an_administrator_impersonates_each_exchange_mailbox_once_granted_the_role() {
    let setup = Setup::new(EwsConfig::ntlm());
    setup.ews.add_user("admin@exchange.example", "admin-secret");
    fill_imap(&setup, 3);
    let as_admin = [("MAILMOVE_DEST_PASSWORD", "admin-secret")];
    let admin = ["--dest-admin", "admin@exchange.example"];

    // Without the ApplicationImpersonation role, Exchange refuses to act for bob.
    let denied = setup.run_with("migrate", &Direction::ImapToEws, &admin, &as_admin);
    assert_ne!(denied.code, 0, "{}", denied.everything());
    assert!(
        denied.everything().contains("ErrorImpersonateUserDenied"),
        "{}",
        denied.everything()
    );
    assert!(setup.ews_messages(&["Inbox"]).is_empty());

    setup.ews.allow_impersonation("admin@exchange.example");
    let run = setup.run_with("migrate", &Direction::ImapToEws, &admin, &as_admin);
    assert_eq!(run.code, 0, "{}", run.everything());
    // Into bob's mailbox, not the administrator's own.
    assert_eq!(setup.ews_messages(&["Inbox"]).len(), 3);
    assert!(
        setup
            .ews
            .messages("admin@exchange.example", &["Inbox"])
            .is_empty()
    );
    // And back out of it, acting for bob again.
    let back = setup.run_with("verify", &Direction::ImapToEws, &admin, &as_admin);
    assert_eq!(back.code, 0, "{}", back.everything());
    assert!(!run.everything().contains("admin-secret"));
}
