//! End-to-end: no duplicate and no loss after `kill -9` at several moments, after the
//! destination server restarts or stays down for seconds in the middle of a pass, or
//! through a network that cuts every connection again and again.

mod common;

use std::process::{Child, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{CountingProxy, DEST_USER, SOURCE_USER, Setup, bodies};
use mailmove_testkit::{Checker, messages};

/// A source big enough that a pass takes a while: two folders, mixed sizes, two
/// messages large enough to be spooled to disk on the way.
fn fill(setup: &Setup) -> usize {
    let mut src = setup.src();
    src.create("Second").unwrap();
    let mut count = 0;
    for i in 0..360 {
        let folder = if i % 3 == 0 { "Second" } else { "INBOX" };
        let body = if i % 150 == 7 {
            messages::with_attachment(&format!("big{i}@x"), 3_000_000, i)
        } else {
            messages::simple(
                &format!("m{i}@x"),
                &format!("message {i}"),
                500 + (i as usize * 997) % 40_000,
            )
        };
        src.append(folder, &["\\Seen"], None, &body).unwrap();
        count += 1;
    }
    count
}

fn dest_count(checker: &mut Checker) -> usize {
    ["INBOX", "Second"]
        .iter()
        .map(|folder| {
            let answer = checker
                .raw(&format!("STATUS {folder} (MESSAGES)"))
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&answer).to_string();
            text.split("MESSAGES ")
                .nth(1)
                .and_then(|rest| rest.split(')').next())
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// Two connection pairs, one per folder, as the default gives a larger mailbox: the
/// kill then also lands while the two folders are being copied side by side.
const LANES: [&str; 2] = ["--connections", "2"];

fn spawn(setup: &Setup) -> Child {
    setup
        .command("migrate")
        .args(LANES)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until the destination holds at least `at_least` messages or the pass ended.
fn wait_for(child: &mut Child, checker: &mut Checker, at_least: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if dest_count(checker) >= at_least {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("the pass neither progressed nor ended");
}

fn assert_complete_without_duplicates(setup: &Setup, total: usize) {
    let run = setup.run("migrate", &LANES);
    assert_eq!(run.code, 0, "{}", run.everything());
    let (copied, present, skipped, failed) = run.counts();
    assert_eq!((copied + present) as usize, total);
    assert_eq!((skipped, failed), (0, 0));
    let mut src = setup.src();
    let mut dst = setup.dst();
    for folder in ["INBOX", "Second"] {
        assert_eq!(
            bodies(&mut dst, folder),
            bodies(&mut src, folder),
            "folder {folder}"
        );
    }
    assert_eq!(setup.run("verify", &[]).code, 0);
}

#[test]
fn sigkill_at_several_moments_then_a_rerun_ends_complete_without_duplicates() {
    let setup = Setup::new();
    let total = fill(&setup);
    let mut checker = setup.dst();

    // Killed almost at once: while connecting or creating folders.
    let mut child = spawn(&setup);
    std::thread::sleep(Duration::from_millis(30));
    child.kill().unwrap();
    child.wait().unwrap();

    let mut kills = 0;
    for threshold in [1, 50, 140, 230, 300] {
        let mut child = spawn(&setup);
        if wait_for(&mut child, &mut checker, threshold) {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(
        kills >= 3,
        "the passes ended before they could be killed ({kills} kills)"
    );
    assert_complete_without_duplicates(&setup, total);
}

#[test]
fn a_destination_restart_mid_pass_is_survived_without_duplicates() {
    let mut setup = Setup::new();
    let total = fill(&setup);
    let mut checker = setup.dst();
    let mut child = spawn(&setup);
    let mid_pass = wait_for(&mut child, &mut checker, 40);
    assert!(mid_pass, "the pass ended before the restart");
    drop(checker);
    setup.dest.stop().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    setup.dest.restart().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the pass recovers by itself");
    assert_complete_without_duplicates(&setup, total);
}

#[test]
fn a_destination_down_for_several_seconds_is_waited_for() {
    let mut setup = Setup::new();
    let total = fill(&setup);
    let mut checker = setup.dst();
    let mut child = spawn(&setup);
    let mid_pass = wait_for(&mut child, &mut checker, 40);
    assert!(mid_pass, "the pass ended before the outage");
    drop(checker);
    setup.dest.stop().unwrap();
    // Longer than the first reconnections' waits: the pass keeps trying with backoff.
    std::thread::sleep(Duration::from_secs(6));
    setup.dest.restart().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the pass waits the outage out");
    assert_complete_without_duplicates(&setup, total);
}

#[test]
fn a_network_that_cuts_every_connection_again_and_again_still_ends_exact() {
    let setup = Setup::new();
    // 16 MB in 800 messages over two folders.
    let mut src = setup.src();
    src.create("Second").unwrap();
    for i in 0..800 {
        let folder = if i % 2 == 0 { "Second" } else { "INBOX" };
        let body = messages::simple(&format!("c{i}@x"), &format!("cut {i}"), 20_000);
        src.append(folder, &[], None, &body).unwrap();
    }
    drop(src);
    let total = 800;
    // Both sides' connections are cut 3 s after they open, on a link slow enough that
    // the pass takes several times that: it goes through a dozen cuts and more, each
    // connection making some progress before its cut.
    let lifetime = Some(Duration::from_secs(3));
    let delay = Duration::from_millis(50);
    let source = CountingProxy::cutting(setup.source.imap_port(), delay, lifetime);
    let dest = CountingProxy::cutting(setup.dest.imap_port(), delay, lifetime);
    let run = setup.run_via(
        &format!("imap://{SOURCE_USER}@127.0.0.1:{}", source.port),
        &format!(
            "imap://{}@127.0.0.1:{}",
            DEST_USER.replace('@', "%40"),
            dest.port
        ),
        "migrate",
        &LANES,
    );
    assert_eq!(run.code, 0, "{}", run.everything());
    let cuts = source.total.load(Ordering::SeqCst) + dest.total.load(Ordering::SeqCst);
    assert!(
        cuts >= 12 + 4,
        "only {cuts} connections: the link is too fast to cut a dozen times"
    );
    assert_complete_without_duplicates(&setup, total);
}
