//! End-to-end: no duplicate and no loss after `kill -9` at several moments, or after
//! the destination server restarts in the middle of a pass.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Setup, bodies};
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
