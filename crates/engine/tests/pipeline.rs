//! The copy pipeline on the in-memory fake connector: lanes, the memory budget,
//! write grouping, settling after a crash, item errors, and the property that no
//! sequence of interruptions loses or duplicates a message.

mod fake;

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fake::{FakeServer, Faults, Stored, message};
use mailmove_engine::report::Report;
use mailmove_engine::{MigrateSettings, Silent, migrate, verify};
use mailmove_store::{Db, ItemState, Ledger};
use proptest::prelude::*;

/// One runtime and one ledger database for the whole binary; each case gets a
/// mailbox of its own in it.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

async fn ledger() -> Ledger {
    static DB: tokio::sync::OnceCell<(tempfile::TempDir, Db)> = tokio::sync::OnceCell::const_new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let (_, db) = DB
        .get_or_init(|| async {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let db = Db::open_sqlite(&dir.path().join("ledger.db"))
                .await
                .expect("the ledger database");
            (dir, db)
        })
        .await;
    Ledger::within(
        db.clone(),
        &format!("case-{}", NEXT.fetch_add(1, Ordering::SeqCst)),
    )
}

fn quick() -> MigrateSettings {
    MigrateSettings {
        first_backoff: Duration::ZERO,
        settle_wait: Duration::from_millis(1),
        ..MigrateSettings::default()
    }
}

async fn pass(
    source: &FakeServer,
    dest: &FakeServer,
    ledger: &Ledger,
    settings: &MigrateSettings,
) -> Report {
    let (report, fatal) = migrate(source, dest, ledger, settings, &Silent).await;
    assert_eq!(fatal, None, "{:?}", report.fatal);
    report
}

#[test]
fn lanes_copy_folders_side_by_side_each_in_uid_order() {
    runtime().block_on(async {
        let (source, dest) = (FakeServer::new("old"), FakeServer::new("new"));
        let mut expected = BTreeMap::new();
        for (folder, count) in [("INBOX", 30), ("Archive", 20), ("Sent", 10)] {
            let messages: Vec<Vec<u8>> = (0..count)
                .map(|i| message(&format!("{folder}-{i}"), 200 + i))
                .collect();
            source.add_folder(folder, &messages);
            expected.insert(folder.as_bytes().to_vec(), messages);
        }
        source.set_faults(Faults {
            delay: Duration::from_millis(1),
            ..Faults::default()
        });
        let settings = MigrateSettings {
            connections: 3,
            ..quick()
        };
        let report = pass(&source, &dest, &ledger().await, &settings).await;
        assert_eq!(report.messages.copied, 60);
        let seen = dest.seen();
        assert_eq!(seen.sessions_opened, 3, "one destination session per lane");
        assert_eq!(seen.most_sessions_open, 3, "the lanes ran at once");
        // Each folder stays on one connection, so it arrives in its order.
        assert_eq!(seen.written_order, expected);
        // Reported in plan order, whatever order the lanes finished in.
        let names: Vec<&str> = report.folders.iter().map(|f| f.source.as_str()).collect();
        assert_eq!(names, ["INBOX", "Archive", "Sent"]);
    });
}

#[test]
fn fetching_runs_ahead_of_a_slow_destination_only_within_the_memory_budget() {
    runtime().block_on(async {
        let source = FakeServer::new("old");
        let dest = FakeServer::sharing_meter("new", &source);
        let messages: Vec<Vec<u8>> = (0..40)
            .map(|i| message(&format!("big-{i}"), 256 * 1024))
            .collect();
        source.add_folder("INBOX", &messages);
        dest.set_faults(Faults {
            delay: Duration::from_millis(2),
            ..Faults::default()
        });
        let budget = 1024 * 1024;
        let settings = MigrateSettings {
            memory_budget: budget,
            queue_depth: 64,
            fetch_batch: 40,
            ..quick()
        };
        let report = pass(&source, &dest, &ledger().await, &settings).await;
        assert_eq!(report.messages.copied, 40);
        let peak = source.most_bytes_in_flight();
        // Four messages fill the budget; the fifth waits. Without the budget the
        // queue of 64 would take all forty (10 MiB).
        assert!(
            peak <= budget + 256 * 1024,
            "{peak} bytes were fetched and not written"
        );
        assert!(peak >= 512 * 1024, "fetching did run ahead: {peak}");
    });
}

#[test]
fn writes_are_completed_when_the_source_is_slow_and_grouped_when_it_is_not() {
    runtime().block_on(async {
        let messages: Vec<Vec<u8>> = (0..20).map(|i| message(&format!("m{i}"), 300)).collect();
        // A fast source: the queue rarely runs dry, so writes go out in groups and
        // the writer is seldom told to complete them early.
        let (source, dest) = (FakeServer::new("old"), FakeServer::new("new"));
        source.add_folder("INBOX", &messages);
        let settings = MigrateSettings {
            fetch_batch: 20,
            ..quick()
        };
        pass(&source, &dest, &ledger().await, &settings).await;
        let calls = dest.seen().writer_calls;
        assert!(calls.matches('I').count() <= 6, "{calls}");
        assert!(calls.contains(&"S".repeat(10)), "{calls}");
        // A slow source: the writer is told to complete what it holds before the
        // engine waits, so no group stays open while nothing arrives.
        let (source, dest) = (FakeServer::new("old"), FakeServer::new("new"));
        source.add_folder("INBOX", &messages);
        source.set_faults(Faults {
            delay: Duration::from_millis(3),
            ..Faults::default()
        });
        pass(&source, &dest, &ledger().await, &settings).await;
        let calls = dest.seen().writer_calls;
        // (Two messages may now and then arrive together.)
        assert!(calls.matches('I').count() >= 15, "{calls}");
        assert!(calls.ends_with('F'), "{calls}");
        assert_eq!(dest.contents()[&b"INBOX".to_vec()].len(), 20);
    });
}

#[test]
fn a_refused_and_a_withheld_message_are_item_errors_and_the_rest_is_copied() {
    runtime().block_on(async {
        let (source, dest) = (FakeServer::new("old"), FakeServer::new("new"));
        let mut messages: Vec<Vec<u8>> = (0..6).map(|i| message(&format!("m{i}"), 300)).collect();
        messages.push(message("too-big", 300));
        messages.push(message("vanished", 300));
        source.add_folder("INBOX", &messages);
        source.set_faults(Faults {
            withhold_containing: Some(b"vanished@".to_vec()),
            ..Faults::default()
        });
        dest.set_faults(Faults {
            refuse_containing: Some(b"too-big@".to_vec()),
            ..Faults::default()
        });
        let ledger = ledger().await;
        let report = pass(&source, &dest, &ledger, &quick()).await;
        assert_eq!((report.messages.copied, report.messages.failed), (6, 2));
        let reasons: Vec<&str> = report.errors.iter().map(|e| e.reason.as_str()).collect();
        assert!(
            reasons[0].contains("refused by the fake server"),
            "{reasons:?}"
        );
        assert!(reasons[1].contains("did not return"), "{reasons:?}");
        let (proof, _) = verify(&source, &dest, &ledger, &quick()).await;
        let missing = proof.missing.unwrap_or_default();
        assert_eq!(missing.len(), 2);
        assert!(missing.iter().all(|m| m.explained), "{missing:?}");
    });
}

#[test]
fn writes_of_a_dead_session_that_land_late_are_found_not_sent_again() {
    runtime().block_on(async {
        let (source, dest) = (FakeServer::new("old"), FakeServer::new("new"));
        let messages: Vec<Vec<u8>> = (0..5).map(|i| message(&format!("m{i}"), 300)).collect();
        source.add_folder("INBOX", &messages);
        dest.add_folder("INBOX", &[]);
        let ledger = ledger().await;
        // A first pass dies at its first write, its intents recorded; the writes it
        // sent reach the server only while the next pass has begun to plan.
        dest.set_faults(Faults {
            kill_after: Some(3),
            ..Faults::default()
        });
        let settings = MigrateSettings {
            fetch_batch: 5,
            ..quick()
        };
        tokio::select! {
            _ = migrate(&source, &dest, &ledger, &settings, &Silent) => panic!("not killed"),
            () = dest.until_killed() => {}
        }
        let in_doubt = ledger.source_folder_items("INBOX").await.unwrap();
        assert_eq!(in_doubt.len(), 5);
        assert!(in_doubt.iter().all(|r| r.state == ItemState::Appending));
        dest.set_faults(Faults::default());
        assert!(dest.contents()[&b"INBOX".to_vec()].is_empty());
        {
            let mut state = dest.state();
            state.late_after_opens = 1;
            for bytes in &messages {
                state.late.push((
                    b"INBOX".to_vec(),
                    Stored {
                        bytes: bytes.clone(),
                        flags: Vec::new(),
                        internal_date: None,
                    },
                ));
            }
        }
        let report = pass(&source, &dest, &ledger, &settings).await;
        assert_eq!(report.messages.already_present, 5);
        assert_eq!(report.messages.copied, 0);
        assert_eq!(dest.summary(), source.summary(), "no duplicate");
    });
}

#[test]
fn counts_describe_the_pass_when_a_folder_took_several_attempts() {
    runtime().block_on(async {
        let (source, dest) = (FakeServer::new("old"), FakeServer::new("new"));
        let messages: Vec<Vec<u8>> = (0..30).map(|i| message(&format!("m{i}"), 300)).collect();
        source.add_folder("INBOX", &messages);
        dest.set_faults(Faults {
            drop_after: Some(20),
            ..Faults::default()
        });
        let settings = MigrateSettings {
            fetch_batch: 8,
            ..quick()
        };
        let report = pass(&source, &dest, &ledger().await, &settings).await;
        assert!(
            dest.seen().sessions_opened >= 2,
            "the connection was dropped"
        );
        assert_eq!(report.messages.copied, 30, "{:?}", report.messages);
        assert_eq!(report.messages.already_present, 0);
        assert_eq!(dest.summary(), source.summary());
    });
}

#[test]
fn a_folder_name_the_destination_refuses_gets_another_and_the_pass_goes_on() {
    runtime().block_on(async {
        let (source, dest) = (FakeServer::new("old"), FakeServer::new("new"));
        source.add_folder("INBOX", &[message("in", 300)]);
        source.add_folder("Projects/C#", &[message("c1", 300), message("c2", 300)]);
        dest.set_faults(Faults {
            refuse_create_containing: Some(b"#".to_vec()),
            ..Faults::default()
        });
        let ledger = ledger().await;
        let report = pass(&source, &dest, &ledger, &quick()).await;
        assert_eq!(report.messages.copied, 3);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let folder = &report.folders[1];
        assert_eq!(
            (folder.source.as_str(), folder.dest.as_str()),
            ("Projects/C#", "Projects/C_")
        );
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains("refused the folder name Projects/C#")
                    && w.contains("Invalid mailbox name")
                    && w.contains("go to Projects/C_")),
            "{:?}",
            report.warnings
        );
        assert_eq!(dest.contents()[&b"Projects/C_".to_vec()].len(), 2);
        // The next pass finds the name it fell back to; the proof looks there too.
        let again = pass(&source, &dest, &ledger, &quick()).await;
        assert_eq!(
            (again.messages.copied, again.messages.already_present),
            (0, 3)
        );
        let (proof, _) = verify(&source, &dest, &ledger, &quick()).await;
        assert_eq!(proof.missing.unwrap_or_default().len(), 0);
    });
}

#[test]
fn a_folder_the_destination_will_not_hold_fails_its_messages_and_nothing_else() {
    runtime().block_on(async {
        for faults in [
            Faults {
                refuse_create_containing: Some(b"Projects".to_vec()),
                ..Faults::default()
            },
            Faults {
                refuse_open_containing: Some(b"Projects".to_vec()),
                ..Faults::default()
            },
        ] {
            let (source, dest) = (FakeServer::new("old"), FakeServer::new("new"));
            source.add_folder("INBOX", &[message("in", 300)]);
            source.add_folder("Projects/C#", &[message("c1", 300), message("c2", 300)]);
            dest.set_faults(faults);
            let ledger = ledger().await;
            let report = pass(&source, &dest, &ledger, &quick()).await;
            assert_eq!((report.messages.copied, report.messages.failed), (1, 2));
            assert!(
                report.errors.iter().all(|e| e.folder == "Projects/C#"
                    && e.reason.contains("Projects")
                    && e.reason.contains("NO ")),
                "{:?}",
                report.errors
            );
            let (proof, _) = verify(&source, &dest, &ledger, &quick()).await;
            let missing = proof.missing.unwrap_or_default();
            assert_eq!(missing.len(), 2);
            assert!(missing.iter().all(|m| m.explained), "{missing:?}");
        }
    });
}

#[test]
fn a_network_that_keeps_breaking_does_not_stop_a_pass_that_makes_progress() {
    runtime().block_on(async {
        let (source, dest) = (FakeServer::new("old"), FakeServer::new("new"));
        let messages: Vec<Vec<u8>> = (0..60).map(|i| message(&format!("m{i}"), 300)).collect();
        source.add_folder("INBOX", &messages);
        // Every connection to the destination breaks after a dozen operations: far
        // more breaks than attempts allowed, each after some messages got across.
        dest.set_faults(Faults {
            drop_after: Some(12),
            drop_every: Some(12),
            ..Faults::default()
        });
        let settings = MigrateSettings {
            max_attempts: 3,
            fetch_batch: 4,
            ..quick()
        };
        let report = pass(&source, &dest, &ledger().await, &settings).await;
        assert!(
            dest.seen().sessions_opened > 6,
            "{:?}",
            dest.seen().sessions_opened
        );
        assert_eq!(report.messages.copied, 60, "{:?}", report.messages);
        assert_eq!(dest.summary(), source.summary(), "each message once");
    });
}

/// Where an interruption strikes.
#[derive(Clone, Copy, Debug)]
enum Target {
    Source,
    Destination,
}

/// One interruption of a pass.
#[derive(Clone, Copy, Debug)]
enum Interruption {
    /// The process is killed at the `at`-th operation of the target server.
    Kill { target: Target, at: u64 },
    /// The target drops every connection at its `at`-th operation.
    Drop { target: Target, at: u64 },
    /// The `nth` write lands but its answer is lost with the connection.
    LoseAnswer { nth: u64 },
}

#[derive(Clone, Debug)]
struct Case {
    /// Per folder, message sizes; a negative entry repeats an earlier message of
    /// the folder byte for byte (a mailbox may hold the same message twice).
    folders: Vec<Vec<i32>>,
    interruptions: Vec<Interruption>,
    connections: usize,
    fetch_batch: usize,
    append_window: usize,
}

fn case() -> impl Strategy<Value = Case> {
    let message = prop_oneof![8 => 60i32..600, 1 => -20i32..0];
    let folder = proptest::collection::vec(message, 0..12);
    let target = prop_oneof![Just(Target::Source), Just(Target::Destination)];
    let interruption = prop_oneof![
        (target.clone(), 0u64..80).prop_map(|(target, at)| Interruption::Kill { target, at }),
        (target, 0u64..80).prop_map(|(target, at)| Interruption::Drop { target, at }),
        (1u64..20).prop_map(|nth| Interruption::LoseAnswer { nth }),
    ];
    (
        proptest::collection::vec(folder, 1..4),
        proptest::collection::vec(interruption, 0..4),
        1usize..4,
        1usize..6,
        1usize..5,
    )
        .prop_map(
            |(folders, interruptions, connections, fetch_batch, append_window)| Case {
                folders,
                interruptions,
                connections,
                fetch_batch,
                append_window,
            },
        )
}

/// Builds the source mailbox of a case.
fn seed(case: &Case) -> FakeServer {
    let source = FakeServer::new("old");
    for (f, sizes) in case.folders.iter().enumerate() {
        let mut messages: Vec<Vec<u8>> = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            let bytes = match usize::try_from(*size) {
                Ok(size) => message(&format!("f{f}m{i}"), size),
                Err(_) if !messages.is_empty() => {
                    let back = size.unsigned_abs() as usize % messages.len();
                    messages[back].clone()
                }
                Err(_) => message(&format!("f{f}m{i}"), 100),
            };
            messages.push(bytes);
        }
        let name = if f == 0 {
            "INBOX".to_string()
        } else {
            format!("Folder {f}")
        };
        source.add_folder(&name, &messages);
    }
    source
}

/// Runs the case's interrupted passes, then one to the end, and checks the result.
async fn run_case(case: Case) -> Result<(), TestCaseError> {
    let source = seed(&case);
    let dest = FakeServer::new("new");
    let ledger = ledger().await;
    let settings = MigrateSettings {
        connections: case.connections,
        fetch_batch: case.fetch_batch,
        append_window: case.append_window,
        ..quick()
    };
    for interruption in &case.interruptions {
        let (server, faults) = match *interruption {
            Interruption::Kill { target, at } => (
                target,
                Faults {
                    kill_after: Some(at),
                    ..Faults::default()
                },
            ),
            Interruption::Drop { target, at } => (
                target,
                Faults {
                    drop_after: Some(at),
                    ..Faults::default()
                },
            ),
            Interruption::LoseAnswer { nth } => (
                Target::Destination,
                Faults {
                    lose_answer_of_write: Some(dest.seen().writes + nth),
                    ..Faults::default()
                },
            ),
        };
        let server = match server {
            Target::Source => &source,
            Target::Destination => &dest,
        };
        server.set_faults(faults);
        tokio::select! {
            _ = migrate(&source, &dest, &ledger, &settings, &Silent) => {}
            () = server.until_killed() => {}
        }
        server.set_faults(Faults::default());
    }
    let (report, fatal) = migrate(&source, &dest, &ledger, &settings, &Silent).await;
    prop_assert_eq!(fatal, None, "{:?}", report.fatal);
    prop_assert!(report.errors.is_empty(), "{:?}", report.errors);
    // Every message exactly once, byte for byte.
    prop_assert_eq!(dest.summary(), source.summary());
    // The ledger explains everything: every source message is recorded as copied.
    for (name, messages) in source.contents() {
        let rows = ledger
            .source_folder_items(&String::from_utf8_lossy(&name))
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        for uid in 1..=messages.len() as u32 {
            prop_assert!(
                rows.iter()
                    .any(|r| r.source_uid == uid && r.state == ItemState::Copied),
                "{:?} UID {} has no copied row: {:?}",
                String::from_utf8_lossy(&name),
                uid,
                rows
            );
        }
    }
    // And the proof agrees; a further pass copies nothing.
    let (proof, _) = verify(&source, &dest, &ledger, &settings).await;
    prop_assert_eq!(proof.missing.unwrap_or_default().len(), 0);
    let again = pass(&source, &dest, &ledger, &settings).await;
    prop_assert_eq!(again.messages.copied, 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2_000),
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    })]

    /// Whatever the mailbox and wherever passes are killed or cut, the destination
    /// ends with every message exactly once and the ledger accounts for each.
    #[test]
    fn no_sequence_of_interruptions_loses_or_duplicates_a_message(case in case()) {
        runtime().block_on(run_case(case))?;
    }
}
