//! One conformance suite, run against SQLite and against PostgreSQL: every store
//! behaviour the engine, the workers and the portal rely on.
//!
//! PostgreSQL tests create and drop a database of their own on the server named by
//! `MAILMOVE_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/postgres`).

use std::collections::HashSet;

use mailmove_store::{
    Claimer, Db, Dialect, EndedRound, Intent, ItemState, Ledger, LoginTokenUse, MailboxResults,
    MailboxStatus, NewMailbox, NewProject, Outcome, PassCopies, PassEnd, PassKind, PassProgress,
    PassState, QueueLimits, RunLimits, StoreError,
};

/// A database for one test; dropping it removes a PostgreSQL database again.
struct TestDb {
    db: Db,
    _dir: Option<tempfile::TempDir>,
    drop_pg: Option<(String, String)>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.drop_pg.take() {
            let db = self.db.clone();
            // A separate runtime: Drop cannot await inside the test's runtime.
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    db.close().await;
                    if let Ok(admin) = Db::open_admin(&admin).await {
                        let _ = admin.drop_database(&name).await;
                    }
                });
            })
            .join()
            .unwrap();
        }
    }
}

async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_sqlite(&dir.path().join("mailmove.sqlite"))
        .await
        .unwrap();
    TestDb {
        db,
        _dir: Some(dir),
        drop_pg: None,
    }
}

async fn postgres() -> TestDb {
    let admin_url = std::env::var("MAILMOVE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let name = format!("mm_test_{}_{}", std::process::id(), unique());
    let admin = Db::open_admin(&admin_url)
        .await
        .expect("PostgreSQL is reachable (scripts/test starts it)");
    admin.create_database(&name).await.unwrap();
    admin.close().await;
    let url = match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("MAILMOVE_TEST_POSTGRES must end with /DATABASE"),
    };
    let db = Db::open(&url).await.unwrap();
    TestDb {
        db,
        _dir: None,
        drop_pg: Some((admin_url, name)),
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    u64::from(nanos) * 1000 + NEXT.fetch_add(1, Ordering::SeqCst)
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let test = super::sqlite().await;
                super::$name(&test.db).await;
            })*
        }
        mod on_postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let test = super::postgres().await;
                super::$name(&test.db).await;
            })*
        }
    };
}

conformance!(
    ledger_intents_then_outcomes,
    ledger_batches_act_like_writes_one_by_one,
    ledger_pairs_are_apart,
    projects_are_unique_per_owner,
    mailboxes_are_added_all_or_nothing,
    passes_are_queued_once_per_mailbox,
    a_pass_is_claimed_by_one_worker_at_a_time,
    an_expired_lease_is_taken_over,
    a_pass_taken_over_holds_only_its_new_slots,
    a_lost_lease_cannot_finish_or_heartbeat,
    requeued_passes_wait_their_turn,
    stopping_a_queued_pass,
    no_pass_is_claimed_while_its_host_is_full,
    claiming_with_slots_is_atomic,
    a_freed_slot_wakes_waiting_claimers,
    an_unreachable_server_holds_no_slot_while_its_pass_waits,
    a_pass_has_a_time_for_each_state,
    claims_are_fair_across_users,
    claims_are_fair_across_a_users_projects,
    queueing_is_limited_per_project_and_user,
    deleting_a_project_deletes_its_secrets_and_ledgers,
    mailbox_results_are_kept,
    source_uids_are_stable,
    login_tokens_are_single_use_and_expire,
    sessions_open_expire_and_close,
    an_idle_session_ends_and_use_keeps_it_open,
    logging_out_everywhere_ends_every_session_of_the_user_only,
    login_requests_are_counted_per_key_and_window,
    projects_are_reached_only_through_their_owner,
    finishing_a_project_erases_its_secrets,
    mailbox_secrets_are_replaced_side_by_side,
    failed_items_of_a_project,
    latest_passes_carry_progress,
    ended_passes_are_notified_once,
    a_round_is_told_even_when_another_kind_is_queued_right_after,
    creating_a_project_is_all_or_nothing,
    ending_a_pass_is_all_or_nothing,
    finishing_or_deleting_waits_for_passes_and_stops_new_ones,
    a_pass_counts_what_every_attempt_of_it_copied,
    queueing_racing_finishing_or_deleting_leaves_no_pass_behind,
    grants_are_kept_replaced_and_forgotten,
);

async fn source_uids_are_stable(db: &Db) {
    let ledger = Ledger::within(db.clone(), "pop");
    let keys = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        ledger
            .assign_source_uids("INBOX", &keys(&["a", "b", "c"]))
            .await
            .unwrap(),
        vec![1, 2, 3]
    );
    // "b" was deleted at the source, "d" arrived: old numbers kept, new one next.
    assert_eq!(
        ledger
            .assign_source_uids("INBOX", &keys(&["a", "c", "d"]))
            .await
            .unwrap(),
        vec![1, 3, 4]
    );
    let other = Ledger::within(db.clone(), "other");
    assert_eq!(
        other
            .assign_source_uids("INBOX", &keys(&["d"]))
            .await
            .unwrap(),
        vec![1]
    );
}

fn intent(uid: u32) -> Intent {
    Intent {
        source_folder: "INBOX".into(),
        source_uidvalidity: 7,
        source_uid: uid,
        dest_folder: "INBOX".into(),
        dest_uidvalidity: Some(9),
        content_key: format!("mid:<{uid}@x>:100"),
        message_id: Some(format!("<{uid}@x>")),
        subject: Some("hello".into()),
        size: 100,
    }
}

async fn ledger_intents_then_outcomes(db: &Db) {
    let ledger = Ledger::within(db.clone(), "a->b");
    ledger
        .record_intents(&[intent(1), intent(2), intent(3), intent(4)])
        .await
        .unwrap();
    ledger
        .record_outcomes(&[
            Outcome::Copied {
                source_folder: "INBOX".into(),
                source_uidvalidity: 7,
                source_uid: 1,
                dest_folder: "INBOX".into(),
                dest_uidvalidity: Some(9),
                dest_uid: Some(41),
            },
            Outcome::Failed {
                intent: intent(2),
                reason: "too large".into(),
            },
            Outcome::Linked {
                intent: intent(4),
                dest_uid: 44,
            },
        ])
        .await
        .unwrap();
    let rows = ledger.source_folder_items("INBOX").await.unwrap();
    let states: Vec<_> = rows
        .iter()
        .map(|r| (r.source_uid, r.state, r.dest_uid))
        .collect();
    assert_eq!(
        states,
        vec![
            (1, ItemState::Copied, Some(41)),
            (2, ItemState::Failed, None),
            (3, ItemState::Appending, None),
            (4, ItemState::Copied, Some(44)),
        ]
    );
    assert_eq!(rows[1].reason.as_deref(), Some("too large"));
    assert_eq!(rows[0].message_id.as_deref(), Some("<1@x>"));
    let mut claimed = ledger.claimed_dest_uids("INBOX", 9).await.unwrap();
    claimed.sort();
    assert_eq!(claimed, vec![41, 44]);
    assert!(
        ledger
            .claimed_dest_uids("INBOX", 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A folder's own claims are not "others'"; another folder's are.
    assert!(
        ledger
            .claimed_dest_uids_of_others("INBOX", 9, "INBOX")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ledger
            .claimed_dest_uids_of_others("INBOX", 9, "Archive")
            .await
            .unwrap()
            .len(),
        2
    );
    // Recording an intent again (a retry) resets the row to in doubt.
    ledger.record_intents(&[intent(2)]).await.unwrap();
    let rows = ledger.source_folder_items("INBOX").await.unwrap();
    assert_eq!(rows[1].state, ItemState::Appending);
}

/// Batches are written as multi-row statements: large batches, mixed kinds and the same
/// message twice in one batch must end exactly as writing them one at a time would.
async fn ledger_batches_act_like_writes_one_by_one(db: &Db) {
    let ledger = Ledger::within(db.clone(), "a->b");
    let copied = |uid: u32, dest_uid: Option<u32>| Outcome::Copied {
        source_folder: "INBOX".into(),
        source_uidvalidity: 7,
        source_uid: uid,
        dest_folder: "INBOX".into(),
        dest_uidvalidity: Some(9),
        dest_uid,
    };
    // More rows than one statement holds, and a message recorded twice.
    let mut intents: Vec<Intent> = (1..=600).map(intent).collect();
    let mut again = intent(5);
    again.subject = Some("second".into());
    intents.push(again);
    ledger.record_intents(&intents).await.unwrap();
    let rows = ledger.source_folder_items("INBOX").await.unwrap();
    assert_eq!(rows.len(), 600);
    assert!(rows.iter().all(|r| r.state == ItemState::Appending));
    assert_eq!(rows[4].subject.as_deref(), Some("second"));

    let mut outcomes: Vec<Outcome> = (1..=550).map(|uid| copied(uid, Some(uid + 1000))).collect();
    outcomes.extend([
        Outcome::Failed {
            intent: intent(551),
            reason: "too large".into(),
        },
        // Failed, then copied after all, in one batch: the later write wins.
        Outcome::Failed {
            intent: intent(552),
            reason: "busy".into(),
        },
        copied(552, None),
        Outcome::Linked {
            intent: intent(553),
            dest_uid: 3553,
        },
        copied(1, Some(2001)),
        // No intent was recorded for it: nothing to update, nothing made up.
        copied(9999, Some(1)),
    ]);
    ledger.record_outcomes(&outcomes).await.unwrap();
    let rows = ledger.source_folder_items("INBOX").await.unwrap();
    assert_eq!(rows.len(), 600);
    let row = |uid: u32| rows.iter().find(|r| r.source_uid == uid).unwrap();
    assert_eq!(
        (row(1).state, row(1).dest_uid),
        (ItemState::Copied, Some(2001))
    );
    assert_eq!(
        (row(2).state, row(2).dest_uid),
        (ItemState::Copied, Some(1002))
    );
    assert_eq!(row(2).dest_uidvalidity, Some(9));
    assert_eq!(row(2).content_key, "mid:<2@x>:100");
    assert_eq!(
        (row(550).state, row(550).dest_uid),
        (ItemState::Copied, Some(1550))
    );
    assert_eq!(row(551).state, ItemState::Failed);
    assert_eq!(row(551).reason.as_deref(), Some("too large"));
    assert_eq!(
        (row(552).state, row(552).dest_uid),
        (ItemState::Copied, None)
    );
    assert_eq!(row(552).reason, None);
    assert_eq!(
        (row(553).state, row(553).dest_uid),
        (ItemState::Copied, Some(3553))
    );
    assert_eq!(row(554).state, ItemState::Appending);
    let claimed = ledger.claimed_dest_uids("INBOX", 9).await.unwrap();
    assert_eq!(claimed.len(), 551);
}

async fn ledger_pairs_are_apart(db: &Db) {
    Ledger::within(db.clone(), "a->b")
        .record_intents(&[intent(1)])
        .await
        .unwrap();
    let other = Ledger::within(db.clone(), "c->d");
    assert!(other.source_folder_items("INBOX").await.unwrap().is_empty());
}

async fn projects_are_unique_per_owner(db: &Db) {
    let a = db
        .create_project(
            "Ann@Example.com",
            "acme",
            "imaps://old:993",
            "imaps://new:993",
            "{}",
        )
        .await
        .unwrap();
    assert_eq!(a.owner_email, "ann@example.com");
    let again = db
        .create_project(
            "ann@example.com",
            "acme",
            "imaps://x:993",
            "imaps://y:993",
            "{}",
        )
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    db.create_project(
        "bob@example.com",
        "acme",
        "imaps://x:993",
        "imaps://y:993",
        "{}",
    )
    .await
    .unwrap();
    assert!(matches!(
        db.project_by_name("acme", None).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        db.project_by_name("acme", Some("ann@example.com"))
            .await
            .unwrap()
            .id,
        a.id
    );
    assert!(matches!(
        db.project_by_name("nope", None).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(db.projects(None).await.unwrap().len(), 2);
    assert_eq!(db.projects(Some("bob@example.com")).await.unwrap().len(), 1);
}

fn new_mailbox(n: u32) -> NewMailbox {
    NewMailbox {
        source_email: format!("user{n}@old.example"),
        source_login: format!("user{n}"),
        source_secret: Some(vec![1, 2, 3, n as u8]),
        dest_email: format!("user{n}@new.example"),
        dest_login: format!("user{n}@new.example"),
        dest_secret: None,
    }
}

async fn mailboxes_are_added_all_or_nothing(db: &Db) {
    let project = db
        .create_project("a@x", "p", "imaps://o", "imaps://n", "{}")
        .await
        .unwrap();
    let ids = db
        .add_mailboxes(project.id, &[new_mailbox(1), new_mailbox(2)])
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    let refused = db
        .add_mailboxes(project.id, &[new_mailbox(3), new_mailbox(1)])
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    let stored = db.mailboxes(project.id).await.unwrap();
    assert_eq!(stored.len(), 2, "nothing from the refused batch is kept");
    assert_eq!(db.mailbox_count(project.id).await.unwrap(), 2);
    assert_eq!(db.mailbox_count(project.id + 1000).await.unwrap(), 0);
    assert_eq!(stored[0].status, MailboxStatus::NotStarted);
    assert_eq!(stored[0].source_secret.as_deref(), Some(&[1, 2, 3, 1][..]));
    assert_eq!(stored[0].dest_secret, None);
    assert_eq!(
        db.mailbox(ids[1]).await.unwrap().source_email,
        "user2@old.example"
    );
}

async fn mailbox_fixture(db: &Db, count: u32) -> Vec<i64> {
    let project = db
        .create_project(
            "a@x",
            &format!("p{}", unique()),
            "imaps://o",
            "imaps://n",
            "{}",
        )
        .await
        .unwrap();
    let rows: Vec<NewMailbox> = (0..count).map(new_mailbox).collect();
    db.add_mailboxes(project.id, &rows).await.unwrap()
}

async fn passes_are_queued_once_per_mailbox(db: &Db) {
    let ids = mailbox_fixture(db, 1).await;
    let first = db.queue_pass(ids[0], PassKind::Full).await.unwrap();
    assert_eq!(db.queue_pass(ids[0], PassKind::Full).await.unwrap(), first);
    assert_eq!(
        db.mailbox(ids[0]).await.unwrap().status,
        MailboxStatus::Queued
    );
    let pass = db.pass(first).await.unwrap();
    assert_eq!((pass.kind, pass.state), (PassKind::Full, PassState::Queued));
}

async fn a_pass_is_claimed_by_one_worker_at_a_time(db: &Db) {
    let ids = mailbox_fixture(db, 6).await;
    for id in &ids {
        db.queue_pass(*id, PassKind::Full).await.unwrap();
    }
    // Eight workers claim at once, until nothing is left.
    let mut tasks = Vec::new();
    for w in 0..8 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(pass) = db.claim_pass(&format!("w{w}"), 60).await.unwrap() {
                mine.push(pass.id);
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 6, "{all:?}");
    assert_eq!(unique.len(), 6);
}

async fn an_expired_lease_is_taken_over(db: &Db) {
    let ids = mailbox_fixture(db, 1).await;
    let id = db.queue_pass(ids[0], PassKind::Full).await.unwrap();
    let first = db.claim_pass("dead-worker", -1).await.unwrap().unwrap();
    assert_eq!(first.id, id);
    let second = db.claim_pass("live-worker", 60).await.unwrap().unwrap();
    assert_eq!(second.id, id);
    assert_eq!(second.attempts, 2);
    assert_eq!(second.worker.as_deref(), Some("live-worker"));
    assert!(
        db.claim_pass("third", 60).await.unwrap().is_none(),
        "a live lease is respected"
    );
}

/// A pass taken over from a dead worker holds one slot on each server, not its dead
/// worker's too: heartbeats renew only what the new claim took.
async fn a_pass_taken_over_holds_only_its_new_slots(db: &Db) {
    let passes = queued_between(db, "a@x", "imaps://o.example", "imaps://n.example", 3).await;
    // The first pass holds slot 0 on each server while the second's worker dies with
    // slot 1; then the first ends, and the second is taken over onto slot 0.
    let first = db.claim(&capped("w", 2)).await.unwrap().unwrap();
    let dead = Claimer {
        lease_seconds: -1,
        ..capped("dead", 2)
    };
    assert_eq!(db.claim(&dead).await.unwrap().unwrap().id, passes[1]);
    db.finish_pass(first.id, "w", PassState::Done, None, None)
        .await
        .unwrap();
    let live = db.claim(&capped("live", 2)).await.unwrap().unwrap();
    assert_eq!(live.id, passes[1], "the expired lease is taken over first");
    db.heartbeat(live.id, "live", 60, &PassProgress::default())
        .await
        .unwrap();
    let third = db.claim(&capped("other", 2)).await.unwrap().map(|p| p.id);
    assert_eq!(
        third,
        Some(passes[2]),
        "the dead worker's slots were let go"
    );
}

async fn a_lost_lease_cannot_finish_or_heartbeat(db: &Db) {
    let ids = mailbox_fixture(db, 1).await;
    db.queue_pass(ids[0], PassKind::Full).await.unwrap();
    let pass = db.claim_pass("old", -1).await.unwrap().unwrap();
    db.claim_pass("new", 60).await.unwrap().unwrap();
    let progress = PassProgress::default();
    assert_eq!(
        db.heartbeat(pass.id, "old", 60, &progress).await.unwrap(),
        None
    );
    assert!(
        !db.finish_pass(pass.id, "old", PassState::Done, None, None)
            .await
            .unwrap()
    );
    let progress = PassProgress {
        messages_done: 5,
        bytes_done: 500,
        current_folder: Some("INBOX".into()),
        ..Default::default()
    };
    assert_eq!(
        db.heartbeat(pass.id, "new", 60, &progress).await.unwrap(),
        Some(false)
    );
    assert_eq!(db.pass(pass.id).await.unwrap().progress, progress);
    assert!(
        db.finish_pass(pass.id, "new", PassState::Done, Some("{}"), None)
            .await
            .unwrap()
    );
    let done = db.pass(pass.id).await.unwrap();
    assert_eq!(done.state, PassState::Done);
    assert!(done.finished_at.is_some());
}

async fn requeued_passes_wait_their_turn(db: &Db) {
    let ids = mailbox_fixture(db, 1).await;
    db.queue_pass(ids[0], PassKind::Full).await.unwrap();
    let pass = db.claim_pass("w", 60).await.unwrap().unwrap();
    db.requeue_pass(pass.id, "w", 3600, Some("server busy"), true)
        .await
        .unwrap();
    assert!(
        db.claim_pass("w", 60).await.unwrap().is_none(),
        "not due yet"
    );
    let again = db.pass(pass.id).await.unwrap();
    assert_eq!(
        (again.state, again.error.as_deref()),
        (PassState::Queued, Some("server busy"))
    );
    db.requeue_pass(pass.id, "w", 0, None, true).await.unwrap(); // not running: no effect
    assert!(db.claim_pass("w", 60).await.unwrap().is_none());
}

async fn stopping_a_queued_pass(db: &Db) {
    let ids = mailbox_fixture(db, 2).await;
    let queued = db.queue_pass(ids[0], PassKind::Full).await.unwrap();
    db.request_stop(ids[0]).await.unwrap();
    assert_eq!(db.pass(queued).await.unwrap().state, PassState::Stopped);
    assert_eq!(
        db.mailbox(ids[0]).await.unwrap().status,
        MailboxStatus::Stopped
    );
    db.queue_pass(ids[1], PassKind::Full).await.unwrap();
    let running = db.claim_pass("w", 60).await.unwrap().unwrap();
    db.request_stop(ids[1]).await.unwrap();
    assert_eq!(
        db.heartbeat(running.id, "w", 60, &PassProgress::default())
            .await
            .unwrap(),
        Some(true)
    );
}

/// A project of `count` mailboxes between two servers, each with a pass queued; the
/// pass ids in order.
async fn queued_between(db: &Db, owner: &str, source: &str, dest: &str, count: u32) -> Vec<i64> {
    let project = db
        .create_project(owner, &format!("p{}", unique()), source, dest, "{}")
        .await
        .unwrap();
    let rows: Vec<NewMailbox> = (0..count).map(new_mailbox).collect();
    db.add_mailboxes(project.id, &rows).await.unwrap();
    db.queue_passes(project.id, None, PassKind::Full)
        .await
        .unwrap()
}

fn capped(worker: &str, cap: u32) -> Claimer {
    Claimer {
        connections_per_host: cap,
        ..Claimer::new(worker, 60)
    }
}

/// What a claim that lost must not have touched.
fn untouched(pass: &mailmove_store::PassRecord) -> bool {
    pass.state == PassState::Queued
        && pass.worker.is_none()
        && pass.attempts == 0
        && pass.started_at.is_none()
        && pass.timings.running_ms == 0
}

async fn no_pass_is_claimed_while_its_host_is_full(db: &Db) {
    let passes = queued_between(db, "a@x", "imaps://old.example", "imaps://new.example", 3).await;
    let first = db.claim(&capped("w", 2)).await.unwrap().unwrap();
    let second = db.claim(&capped("w", 2)).await.unwrap().unwrap();
    assert_eq!((first.id, second.id), (passes[0], passes[1]));
    assert!(
        db.claim(&capped("w", 2)).await.unwrap().is_none(),
        "old.example holds two connections already"
    );
    let third = db.pass(passes[2]).await.unwrap();
    assert!(untouched(&third), "{third:?}");
    assert_eq!(
        db.mailbox(third.mailbox_id).await.unwrap().status,
        MailboxStatus::Queued,
        "its user sees it queued"
    );
    // Both servers or neither: a pass from old.example to a free server takes nothing
    // there while old.example is full.
    let [elsewhere] =
        queued_between(db, "b@x", "imaps://old.example", "imaps://free.example", 1).await[..]
    else {
        panic!()
    };
    assert!(db.claim(&capped("w", 2)).await.unwrap().is_none());
    let [beside] = queued_between(
        db,
        "c@x",
        "imaps://third.example",
        "imaps://free.example",
        1,
    )
    .await[..] else {
        panic!()
    };
    let taken = db.claim(&capped("w", 1)).await.unwrap().unwrap();
    assert_eq!(taken.id, beside, "free.example's only slot was left free");
    assert!(untouched(&db.pass(elsewhere).await.unwrap()));
    // A freed slot lets a waiting pass run at the very next claim: no delay to wait out.
    assert!(
        db.finish_pass(first.id, "w", PassState::Done, None, None)
            .await
            .unwrap()
    );
    let next = db.claim(&capped("w", 2)).await.unwrap().unwrap();
    assert_eq!(next.id, elsewhere, "b@x has nothing running, a@x has one");
    assert!(db.claim(&capped("w", 2)).await.unwrap().is_none());
    assert!(
        db.finish_pass(second.id, "w", PassState::Done, None, None)
            .await
            .unwrap()
    );
    let next = db.claim(&capped("w", 2)).await.unwrap().unwrap();
    assert_eq!(next.id, passes[2]);
    assert_eq!(next.attempts, 1, "claimed once, never requeued");
    assert_eq!(
        db.mailbox(next.mailbox_id).await.unwrap().status,
        MailboxStatus::Migrating
    );
}

/// On PostgreSQL a claimer waiting for a slot hears at once that one freed (LISTEN and
/// NOTIFY), whichever worker freed it; on either database the next claim takes it.
async fn a_freed_slot_wakes_waiting_claimers(db: &Db) {
    let passes = queued_between(db, "a@x", "imaps://o.example", "imaps://n.example", 2).await;
    let mut wakeups = db.wakeups().await.unwrap();
    let running = db.claim(&capped("w", 1)).await.unwrap().unwrap();
    assert!(db.claim(&capped("w", 1)).await.unwrap().is_none());
    assert!(
        db.finish_pass(running.id, "w", PassState::Done, None, None)
            .await
            .unwrap()
    );
    if db.dialect() == Dialect::Postgres {
        // A guard against hanging, not a measure of speed.
        tokio::time::timeout(std::time::Duration::from_secs(60), wakeups.next())
            .await
            .expect("the end of a pass is announced");
    }
    assert_eq!(
        db.claim(&capped("w", 1)).await.unwrap().map(|p| p.id),
        Some(passes[1])
    );
}

/// Two workers claim at once with one slot free: one gets the pass and its slots, the
/// other nothing, and no pass was claimed and given back.
async fn claiming_with_slots_is_atomic(db: &Db) {
    for _ in 0..5 {
        let passes =
            queued_between(db, "a@x", "imaps://one.example", "imaps://two.example", 2).await;
        let claims = ["a", "b"].map(|worker| {
            let db = db.clone();
            tokio::spawn(async move { db.claim(&capped(worker, 1)).await.unwrap() })
        });
        let mut won = Vec::new();
        for claim in claims {
            won.extend(claim.await.unwrap());
        }
        assert_eq!(won.len(), 1, "{won:?}");
        let lost = passes.iter().find(|id| **id != won[0].id).unwrap();
        assert!(untouched(&db.pass(*lost).await.unwrap()));
        assert!(db.claim(&capped("c", 1)).await.unwrap().is_none());
        // Give the slots back for the next round.
        db.request_stops(
            db.mailbox(won[0].mailbox_id).await.unwrap().project_id,
            None,
        )
        .await
        .unwrap();
        assert!(
            db.finish_pass(
                won[0].id,
                won[0].worker.as_deref().unwrap(),
                PassState::Stopped,
                None,
                None
            )
            .await
            .unwrap()
        );
    }
}

/// A pass whose server could not be reached gives its slots back at once and waits
/// out its backoff; another pass on the same server runs meanwhile.
async fn an_unreachable_server_holds_no_slot_while_its_pass_waits(db: &Db) {
    let passes = queued_between(db, "a@x", "imaps://down.example", "imaps://new.example", 1).await;
    let others = queued_between(db, "b@x", "imaps://up.example", "imaps://new.example", 1).await;
    let down = db.claim(&capped("w", 1)).await.unwrap().unwrap();
    assert_eq!(down.id, passes[0]);
    assert!(
        db.claim(&capped("w", 1)).await.unwrap().is_none(),
        "new.example is full"
    );
    db.requeue_pass(down.id, "w", 3600, Some("cannot connect"), true)
        .await
        .unwrap();
    let up = db.claim(&capped("w", 1)).await.unwrap().unwrap();
    assert_eq!(up.id, others[0]);
    let waiting = db.pass(down.id).await.unwrap();
    assert_eq!(
        (waiting.state, waiting.attempts, waiting.error.as_deref()),
        (PassState::Queued, 1, Some("cannot connect"))
    );
}

/// Each state has its own time: queued until a claim finds the server full, waiting
/// for a slot until it runs, running until it ends; times stop with their state.
async fn a_pass_has_a_time_for_each_state(db: &Db) {
    let pause = std::time::Duration::from_millis(40);
    let holder = queued_between(db, "a@x", "imaps://o.example", "imaps://n.example", 1).await;
    let held = db.claim(&capped("w", 1)).await.unwrap().unwrap();
    assert_eq!(held.id, holder[0]);
    let passes = queued_between(db, "b@x", "imaps://o.example", "imaps://n.example", 1).await;
    tokio::time::sleep(pause).await;
    let queued = db.pass(passes[0]).await.unwrap().timings;
    assert!(queued.queued_ms >= 40, "{queued:?}");
    assert_eq!((queued.waiting_ms, queued.running_ms), (0, 0));
    assert!(db.claim(&capped("w", 1)).await.unwrap().is_none());
    let began = db.pass(passes[0]).await.unwrap().timings;
    tokio::time::sleep(pause).await;
    let waiting = db.pass(passes[0]).await.unwrap().timings;
    assert!(waiting.waiting_ms >= began.waiting_ms + 40, "{waiting:?}");
    assert_eq!(waiting.queued_ms, began.queued_ms, "queueing ended");
    assert!(waiting.queued_ms >= queued.queued_ms);
    assert_eq!(waiting.running_ms, 0);
    db.finish_pass(held.id, "w", PassState::Done, None, None)
        .await
        .unwrap();
    let running = db.claim(&capped("w", 1)).await.unwrap().unwrap();
    assert_eq!(running.id, passes[0]);
    tokio::time::sleep(pause).await;
    let now = db.pass(passes[0]).await.unwrap().timings;
    assert!(now.running_ms >= 40, "{now:?}");
    assert_eq!(
        (now.queued_ms, now.waiting_ms),
        (running.timings.queued_ms, running.timings.waiting_ms)
    );
    db.finish_pass(running.id, "w", PassState::Done, None, None)
        .await
        .unwrap();
    let ended = db.pass(passes[0]).await.unwrap().timings;
    tokio::time::sleep(pause).await;
    assert_eq!(
        db.pass(passes[0]).await.unwrap().timings,
        ended,
        "stopped with the pass"
    );
    let latest = db
        .latest_passes(db.mailbox(running.mailbox_id).await.unwrap().project_id)
        .await
        .unwrap();
    assert_eq!(latest[0].timings, ended);
}

/// A user who queued a thousand mailboxes does not hold back one who queued two: each
/// user's passes are claimed in turn, within the limit of running passes per user.
async fn claims_are_fair_across_users(db: &Db) {
    let many = queued_between(db, "a@x", "imaps://o.example", "imaps://n.example", 1000).await;
    let few = queued_between(db, "b@x", "imaps://o.example", "imaps://n.example", 2).await;
    let claimer = Claimer {
        connections_per_host: 100,
        limits: RunLimits {
            per_user: 3,
            per_project: 100,
        },
        ..Claimer::new("w", 60)
    };
    let mut claimed = Vec::new();
    while let Some(pass) = db.claim(&claimer).await.unwrap() {
        claimed.push(pass.id);
    }
    assert_eq!(claimed.len(), 5, "three of a's, both of b's: {claimed:?}");
    assert!(
        few.iter().all(|id| claimed[..4].contains(id)),
        "{claimed:?}"
    );
    assert_eq!(
        claimed.iter().filter(|id| many.contains(id)).count(),
        3,
        "a runs at most three at once"
    );
    // Per project too.
    let per_project = Claimer {
        limits: RunLimits {
            per_user: 100,
            per_project: 4,
        },
        ..claimer
    };
    assert_eq!(
        db.claim(&per_project)
            .await
            .unwrap()
            .map(|p| many.contains(&p.id)),
        Some(true)
    );
    assert!(db.claim(&per_project).await.unwrap().is_none());
}

/// One user's projects take turns too: a project of two mailboxes queued after one of
/// a thousand is not left until the thousand are done.
async fn claims_are_fair_across_a_users_projects(db: &Db) {
    let big = queued_between(db, "a@x", "imaps://o.example", "imaps://n.example", 1000).await;
    let small = queued_between(db, "a@x", "imaps://o.example", "imaps://n.example", 2).await;
    let claimer = Claimer {
        connections_per_host: 100,
        ..Claimer::new("w", 60)
    };
    let mut claimed = Vec::new();
    for _ in 0..4 {
        claimed.push(db.claim(&claimer).await.unwrap().unwrap().id);
    }
    assert_eq!(claimed, vec![big[0], small[0], big[1], small[1]]);
}

/// Queueing past the limits per project and per user is refused whole.
async fn queueing_is_limited_per_project_and_user(db: &Db) {
    let limited = db.clone().with_queue_limits(QueueLimits {
        per_user: 5,
        per_project: 3,
    });
    let project = limited
        .create_project("a@x", "big", "imaps://o", "imaps://n", "{}")
        .await
        .unwrap();
    let rows: Vec<NewMailbox> = (0..4).map(new_mailbox).collect();
    let ids = limited.add_mailboxes(project.id, &rows).await.unwrap();
    let refused = limited.queue_passes(project.id, None, PassKind::Full).await;
    assert!(
        matches!(&refused, Err(StoreError::Busy(m)) if m.contains("at most 3")),
        "{refused:?}"
    );
    assert_eq!(
        limited.unfinished_passes(project.id).await.unwrap(),
        0,
        "nothing queued"
    );
    limited
        .queue_passes(project.id, Some(&ids[..3]), PassKind::Full)
        .await
        .unwrap();
    // Queueing again what is queued adds nothing and is not refused.
    limited
        .queue_passes(project.id, Some(&ids[..3]), PassKind::Full)
        .await
        .unwrap();
    let other = limited
        .create_project("a@x", "second", "imaps://o", "imaps://n", "{}")
        .await
        .unwrap();
    let ids = limited.add_mailboxes(other.id, &rows).await.unwrap();
    let refused = limited
        .queue_passes(other.id, Some(&ids[..3]), PassKind::Full)
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Busy(m)) if m.contains("at most 5")),
        "{refused:?}"
    );
    limited
        .queue_passes(other.id, Some(&ids[..2]), PassKind::Full)
        .await
        .unwrap();
}

async fn deleting_a_project_deletes_its_secrets_and_ledgers(db: &Db) {
    let project = db
        .create_project("a@x", "gone", "imaps://o", "imaps://n", "{}")
        .await
        .unwrap();
    let ids = db
        .add_mailboxes(project.id, &[new_mailbox(1)])
        .await
        .unwrap();
    let mailbox = db.mailbox(ids[0]).await.unwrap();
    db.queue_pass(mailbox.id, PassKind::Full).await.unwrap();
    let ledger = Ledger::within(db.clone(), &mailbox.ledger_key());
    ledger.record_intents(&[intent(1)]).await.unwrap();
    let keep = Ledger::within(db.clone(), "cli a->b");
    keep.record_intents(&[intent(1)]).await.unwrap();
    assert!(
        matches!(
            db.delete_project(project.id).await,
            Err(StoreError::Busy(_))
        ),
        "refused while a pass is queued"
    );
    db.request_stop(mailbox.id).await.unwrap();
    db.delete_project(project.id).await.unwrap();
    assert!(matches!(
        db.mailbox(mailbox.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        ledger
            .source_folder_items("INBOX")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(keep.source_folder_items("INBOX").await.unwrap().len(), 1);
    assert!(db.projects(None).await.unwrap().is_empty());
}

async fn mailbox_results_are_kept(db: &Db) {
    let ids = mailbox_fixture(db, 1).await;
    let results = MailboxResults {
        copied: 10,
        already_present: 2,
        skipped: 1,
        failed: 1,
        bytes_copied: 12345,
        dest_byte_exact: Some(false),
    };
    db.set_mailbox_results(
        ids[0],
        PassKind::Full,
        MailboxStatus::CompletedWithErrors,
        &results,
        Some("1 message refused"),
    )
    .await
    .unwrap();
    let mailbox = db.mailbox(ids[0]).await.unwrap();
    assert_eq!(mailbox.status, MailboxStatus::CompletedWithErrors);
    assert_eq!(
        (
            mailbox.copied,
            mailbox.already_present,
            mailbox.skipped,
            mailbox.failed
        ),
        (10, 2, 1, 1)
    );
    assert_eq!(mailbox.bytes_copied, 12345);
    assert_eq!(mailbox.last_pass, Some(PassKind::Full));
    assert_eq!(mailbox.last_error.as_deref(), Some("1 message refused"));
    assert_eq!(mailbox.dest_byte_exact, Some(false));
    // A later pass that could not tell keeps what an earlier one learnt.
    let unknown = MailboxResults {
        dest_byte_exact: None,
        ..results
    };
    db.set_mailbox_results(
        ids[0],
        PassKind::Delta,
        MailboxStatus::Completed,
        &unknown,
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        db.mailbox(ids[0]).await.unwrap().dest_byte_exact,
        Some(false)
    );
}

async fn login_tokens_are_single_use_and_expire(db: &Db) {
    let later = mailmove_store::now() + 900;
    db.create_login_token("hash-a", "Ann@Example.com", later)
        .await
        .unwrap();
    db.create_login_token("hash-old", "ann@example.com", mailmove_store::now() - 1)
        .await
        .unwrap();
    assert_eq!(
        db.use_login_token("hash-a").await.unwrap(),
        LoginTokenUse::Accepted {
            email: "ann@example.com".into()
        }
    );
    assert_eq!(
        db.use_login_token("hash-a").await.unwrap(),
        LoginTokenUse::AlreadyUsed
    );
    assert_eq!(
        db.use_login_token("hash-old").await.unwrap(),
        LoginTokenUse::Expired
    );
    assert_eq!(
        db.use_login_token("never").await.unwrap(),
        LoginTokenUse::Unknown
    );
    // Two uses at once: exactly one is accepted.
    db.create_login_token("hash-race", "bob@example.com", later)
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        db.use_login_token("hash-race"),
        db.use_login_token("hash-race")
    );
    let accepted = [a.unwrap(), b.unwrap()]
        .into_iter()
        .filter(|u| matches!(u, LoginTokenUse::Accepted { .. }))
        .count();
    assert_eq!(accepted, 1);
    // Expired tokens are kept a day (to say "expired"), then removed.
    db.create_login_token("hash-ancient", "c@x", mailmove_store::now() - 90_000)
        .await
        .unwrap();
    db.delete_expired_logins(3600).await.unwrap();
    assert_eq!(
        db.use_login_token("hash-ancient").await.unwrap(),
        LoginTokenUse::Unknown
    );
    assert_eq!(
        db.use_login_token("hash-old").await.unwrap(),
        LoginTokenUse::Expired
    );
}

async fn sessions_open_expire_and_close(db: &Db) {
    const IDLE: i64 = 3600;
    let user = db.ensure_user("ann@example.com").await.unwrap();
    let later = mailmove_store::now() + 3600;
    db.create_session("s1", user, "csrf-1", later)
        .await
        .unwrap();
    db.create_session("s-old", user, "csrf-2", mailmove_store::now() - 1)
        .await
        .unwrap();
    let session = db.session("s1", IDLE).await.unwrap().unwrap();
    assert_eq!(
        (
            session.user_id,
            session.email.as_str(),
            session.csrf_token.as_str()
        ),
        (user, "ann@example.com", "csrf-1")
    );
    assert_eq!(session.expires_at, later);
    assert!(
        db.session("s-old", IDLE).await.unwrap().is_none(),
        "expired"
    );
    assert!(db.session("nope", IDLE).await.unwrap().is_none());
    assert_eq!(db.delete_expired_logins(IDLE).await.unwrap(), 1);
    db.delete_session("s1").await.unwrap();
    assert!(db.session("s1", IDLE).await.unwrap().is_none());
}

async fn an_idle_session_ends_and_use_keeps_it_open(db: &Db) {
    const IDLE: i64 = 3600;
    let user = db.ensure_user("ann@example.com").await.unwrap();
    let now = mailmove_store::now();
    for name in ["used", "idle"] {
        db.create_session(name, user, "csrf", now + 7 * 86_400)
            .await
            .unwrap();
    }
    // Both last seen long ago; one is used again just now.
    db.touch_session("used", now - IDLE - 10).await.unwrap();
    db.touch_session("idle", now - IDLE - 10).await.unwrap();
    assert!(db.session("used", IDLE).await.unwrap().is_none(), "idle");
    db.touch_session("used", now).await.unwrap();
    let used = db.session("used", IDLE).await.unwrap().unwrap();
    assert_eq!(used.last_seen_at, now);
    assert!(db.session("idle", IDLE).await.unwrap().is_none());
    assert!(
        db.session("idle", 10 * IDLE).await.unwrap().is_some(),
        "a longer idle time"
    );
    assert_eq!(db.delete_expired_logins(IDLE).await.unwrap(), 1);
    assert!(
        db.session("idle", 10 * IDLE).await.unwrap().is_none(),
        "removed"
    );
    assert!(db.session("used", IDLE).await.unwrap().is_some());
}

async fn logging_out_everywhere_ends_every_session_of_the_user_only(db: &Db) {
    let ann = db.ensure_user("ann@example.com").await.unwrap();
    let bob = db.ensure_user("bob@example.com").await.unwrap();
    let later = mailmove_store::now() + 3600;
    for (name, user) in [("ann-1", ann), ("ann-2", ann), ("bob-1", bob)] {
        db.create_session(name, user, "csrf", later).await.unwrap();
    }
    assert_eq!(db.delete_user_sessions(ann).await.unwrap(), 2);
    assert!(db.session("ann-1", 3600).await.unwrap().is_none());
    assert!(db.session("ann-2", 3600).await.unwrap().is_none());
    assert!(db.session("bob-1", 3600).await.unwrap().is_some());
    assert_eq!(db.delete_user_sessions(ann).await.unwrap(), 0);
}

async fn login_requests_are_counted_per_key_and_window(db: &Db) {
    for expected in 1..=3 {
        assert_eq!(
            db.count_login_request("email:a", 900).await.unwrap(),
            expected
        );
    }
    assert_eq!(db.count_login_request("email:b", 900).await.unwrap(), 1);
    // A window of no length has always ended: the count starts again.
    assert_eq!(db.count_login_request("email:a", 0).await.unwrap(), 1);
    assert_eq!(db.count_login_request("email:a", 900).await.unwrap(), 2);
    // Concurrent requests (several portal processes) each get their own count.
    let (one, two, three, four) = tokio::join!(
        db.count_login_request("address:1", 900),
        db.count_login_request("address:1", 900),
        db.count_login_request("address:1", 900),
        db.count_login_request("address:1", 900),
    );
    let mut counts = vec![one.unwrap(), two.unwrap(), three.unwrap(), four.unwrap()];
    counts.sort_unstable();
    assert_eq!(counts, vec![1, 2, 3, 4]);
}

async fn projects_are_reached_only_through_their_owner(db: &Db) {
    let ann = db.ensure_user("ann@example.com").await.unwrap();
    let bob = db.ensure_user("bob@example.com").await.unwrap();
    let first = db
        .create_project(
            "ann@example.com",
            "one",
            "imaps://o:993",
            "imaps://n:993",
            "{}",
        )
        .await
        .unwrap();
    let second = db
        .create_project(
            "ann@example.com",
            "two",
            "imaps://o:993",
            "imaps://n:993",
            "{}",
        )
        .await
        .unwrap();
    let theirs = db
        .create_project(
            "bob@example.com",
            "one",
            "imaps://o:993",
            "imaps://n:993",
            "{}",
        )
        .await
        .unwrap();
    let ids = db
        .add_mailboxes(first.id, &[new_mailbox(1), new_mailbox(2), new_mailbox(3)])
        .await
        .unwrap();
    db.queue_pass(ids[0], PassKind::Full).await.unwrap();
    db.queue_pass(ids[1], PassKind::Verify).await.unwrap();

    let mine = db.owned_projects(ann).await.unwrap();
    assert_eq!(
        mine.iter().map(|p| p.record.id).collect::<Vec<_>>(),
        vec![first.id, second.id]
    );
    assert_eq!(
        mine[0].status_counts,
        vec![
            (MailboxStatus::NotStarted, 1),
            (MailboxStatus::Verifying, 1),
            (MailboxStatus::Queued, 1)
        ]
    );
    assert_eq!(mine[0].mailbox_count(), 3);
    assert!(mine[1].status_counts.is_empty());
    assert_eq!(mine[0].finished_at, None);

    let one = db.owned_project(first.id, ann).await.unwrap();
    assert_eq!(one.record, first);
    assert_eq!(one.status_counts, mine[0].status_counts);
    assert!(matches!(
        db.owned_project(theirs.id, ann).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        db.owned_project(first.id, bob).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        db.owned_project(999_999, ann).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(db.owned_projects(bob).await.unwrap().len(), 1);
}

async fn finishing_a_project_erases_its_secrets(db: &Db) {
    let user = db.ensure_user("a@x").await.unwrap();
    let project = db
        .create_project("a@x", "done", "imaps://o", "imaps://n", "{}")
        .await
        .unwrap();
    let mut with_both = new_mailbox(1);
    with_both.dest_secret = Some(vec![9, 9]);
    db.add_mailboxes(project.id, &[with_both, new_mailbox(2)])
        .await
        .unwrap();
    assert!(db.finish_project(project.id).await.unwrap());
    assert!(
        !db.finish_project(project.id).await.unwrap(),
        "finished once"
    );
    let finished = db.owned_project(project.id, user).await.unwrap();
    assert!(finished.finished_at.is_some());
    for mailbox in db.mailboxes(project.id).await.unwrap() {
        assert_eq!((mailbox.source_secret, mailbox.dest_secret), (None, None));
    }
}

async fn failed_items_of_a_project(db: &Db) {
    let project = db
        .create_project("a@x", "f", "imaps://o", "imaps://n", "{}")
        .await
        .unwrap();
    let other = db
        .create_project("a@x", "g", "imaps://o", "imaps://n", "{}")
        .await
        .unwrap();
    let ids = db
        .add_mailboxes(project.id, &[new_mailbox(1), new_mailbox(2)])
        .await
        .unwrap();
    let other_ids = db.add_mailboxes(other.id, &[new_mailbox(1)]).await.unwrap();
    for (id, uids) in [
        (ids[1], vec![5, 6, 7]),
        (ids[0], vec![1, 2]),
        (other_ids[0], vec![3, 4]),
    ] {
        let ledger = Ledger::within(db.clone(), &db.mailbox(id).await.unwrap().ledger_key());
        let intents: Vec<Intent> = uids.iter().map(|&u| intent(u)).collect();
        ledger.record_intents(&intents).await.unwrap();
        // Every UID but the first fails; the first is copied.
        let mut outcomes = vec![Outcome::Copied {
            source_folder: "INBOX".into(),
            source_uidvalidity: 7,
            source_uid: uids[0],
            dest_folder: "INBOX".into(),
            dest_uidvalidity: Some(9),
            dest_uid: Some(1),
        }];
        outcomes.extend(uids[1..].iter().map(|&u| Outcome::Failed {
            intent: intent(u),
            reason: format!("refused {u}"),
        }));
        ledger.record_outcomes(&outcomes).await.unwrap();
    }
    let failed = db.failed_items(project.id).await.unwrap();
    let seen: Vec<_> = failed
        .iter()
        .map(|f| (f.mailbox_id, f.uid, f.reason.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        seen,
        vec![
            (ids[0], 2, "refused 2"),
            (ids[1], 6, "refused 6"),
            (ids[1], 7, "refused 7")
        ]
    );
    let first = &failed[0];
    assert_eq!(
        (
            first.source_email.as_str(),
            first.dest_email.as_str(),
            first.folder.as_str()
        ),
        ("user1@old.example", "user1@new.example", "INBOX")
    );
    assert_eq!(
        (
            first.subject.as_deref(),
            first.message_id.as_deref(),
            first.size
        ),
        (Some("hello"), Some("<2@x>"), 100)
    );
    assert_eq!(db.failed_items(other.id).await.unwrap().len(), 1);
}

async fn latest_passes_carry_progress(db: &Db) {
    let ids = mailbox_fixture(db, 3).await;
    let project_id = db.mailbox(ids[0]).await.unwrap().project_id;
    assert!(db.latest_passes(project_id).await.unwrap().is_empty());
    let verify = db.queue_pass(ids[0], PassKind::Verify).await.unwrap();
    let claimed = db.claim_pass("w", 60).await.unwrap().unwrap();
    assert_eq!(claimed.id, verify);
    db.finish_pass(verify, "w", PassState::Done, None, None)
        .await
        .unwrap();
    let full = db.queue_pass(ids[0], PassKind::Full).await.unwrap();
    db.claim_pass("w", 60).await.unwrap().unwrap();
    let progress = PassProgress {
        messages_total: 10,
        messages_done: 4,
        bytes_total: 1000,
        bytes_done: 400,
        current_folder: Some("Archive/2023".into()),
    };
    db.heartbeat(full, "w", 60, &progress).await.unwrap();
    let queued = db.queue_pass(ids[2], PassKind::Delta).await.unwrap();

    let latest = db.latest_passes(project_id).await.unwrap();
    assert_eq!(latest.len(), 2, "mailbox 2 has had no pass");
    assert_eq!(
        (
            latest[0].pass_id,
            latest[0].mailbox_id,
            latest[0].kind,
            latest[0].state
        ),
        (full, ids[0], PassKind::Full, PassState::Running)
    );
    assert_eq!(latest[0].progress, progress);
    assert!(latest[0].started_at.is_some());
    assert_eq!(
        (latest[1].pass_id, latest[1].kind, latest[1].state),
        (queued, PassKind::Delta, PassState::Queued)
    );
}

async fn ended_passes_are_notified_once(db: &Db) {
    let ids = mailbox_fixture(db, 2).await;
    let project_id = db.mailbox(ids[0]).await.unwrap().project_id;
    assert!(db.ended_rounds().await.unwrap().is_empty(), "no pass yet");
    db.queue_pass(ids[0], PassKind::Full).await.unwrap();
    db.queue_pass(ids[1], PassKind::Full).await.unwrap();
    assert!(db.ended_rounds().await.unwrap().is_empty(), "still queued");
    let first = db.claim_pass("w", 60).await.unwrap().unwrap();
    db.finish_pass(first.id, "w", PassState::Done, None, None)
        .await
        .unwrap();
    assert!(
        db.ended_rounds().await.unwrap().is_empty(),
        "one mailbox still runs"
    );
    let second = db.claim_pass("w", 60).await.unwrap().unwrap();
    db.finish_pass(second.id, "w", PassState::Failed, None, Some("x"))
        .await
        .unwrap();
    let ended = db.ended_rounds().await.unwrap();
    assert_eq!(
        ended,
        vec![EndedRound {
            project_id,
            kind: PassKind::Full,
            pass_ids: vec![first.id, second.id],
        }]
    );
    let (a, b) = tokio::join!(
        db.claim_ended_passes(&ended[0].pass_ids),
        db.claim_ended_passes(&ended[0].pass_ids)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 2, "each pass claimed exactly once");
    assert!(db.ended_rounds().await.unwrap().is_empty(), "told once");
    // A later pass makes news again.
    let next = db.queue_pass(ids[0], PassKind::Delta).await.unwrap();
    db.request_stop(ids[0]).await.unwrap();
    assert_eq!(
        db.ended_rounds().await.unwrap(),
        vec![EndedRound {
            project_id,
            kind: PassKind::Delta,
            pass_ids: vec![next],
        }]
    );
    assert_eq!(db.claim_ended_passes(&[next]).await.unwrap(), vec![next]);
    assert!(
        db.claim_ended_passes(&[first.id, next])
            .await
            .unwrap()
            .is_empty()
    );
}

/// A migration that ends while "Migrate new items" is queued a moment later is still
/// told about, without waiting for the new pass.
async fn a_round_is_told_even_when_another_kind_is_queued_right_after(db: &Db) {
    let ids = mailbox_fixture(db, 1).await;
    let project_id = db.mailbox(ids[0]).await.unwrap().project_id;
    let full = db.queue_pass(ids[0], PassKind::Full).await.unwrap();
    db.claim_pass("w", 60).await.unwrap().unwrap();
    db.finish_pass(full, "w", PassState::Done, None, None)
        .await
        .unwrap();
    let delta = db.queue_pass(ids[0], PassKind::Delta).await.unwrap();
    assert_eq!(
        db.ended_rounds().await.unwrap(),
        vec![EndedRound {
            project_id,
            kind: PassKind::Full,
            pass_ids: vec![full],
        }]
    );
    assert_eq!(db.claim_ended_passes(&[full]).await.unwrap(), vec![full]);
    db.claim_pass("w", 60).await.unwrap().unwrap();
    db.finish_pass(delta, "w", PassState::Done, None, None)
        .await
        .unwrap();
    assert_eq!(
        db.ended_rounds().await.unwrap(),
        vec![EndedRound {
            project_id,
            kind: PassKind::Delta,
            pass_ids: vec![delta],
        }]
    );
}

/// Creating a project is one transaction: a crash after any of its statements leaves
/// no project, no owner and no mailbox behind.
async fn creating_a_project_is_all_or_nothing(db: &Db) {
    let project = NewProject {
        owner_email: "new@x",
        name: "atomic",
        source: "imaps://o",
        dest: "imaps://n",
        settings: "{}",
    };
    let mut failures = 0;
    for step in 1.. {
        db.fail_at_step(step);
        let tried = std::cell::Cell::new(None);
        let result = db
            .create_project_with_mailboxes(&project, |id| {
                tried.set(Some(id));
                (1..=3).map(new_mailbox).collect()
            })
            .await;
        match result {
            Err(StoreError::Injected) => {
                failures += 1;
                assert!(db.projects(None).await.unwrap().is_empty(), "step {step}");
                if let Some(id) = tried.get() {
                    assert!(db.mailboxes(id).await.unwrap().is_empty(), "step {step}");
                }
            }
            Ok((record, ids)) => {
                db.fail_at_step(0);
                assert_eq!(ids.len(), 3);
                assert_eq!(db.mailboxes(record.id).await.unwrap().len(), 3);
                assert_eq!(record.owner_email, "new@x");
                break;
            }
            Err(e) => panic!("step {step}: {e}"),
        }
    }
    assert_eq!(failures, 5, "owner, project and three mailboxes");
}

/// Ending a pass is one transaction: a crash after any of its statements leaves the
/// pass running, its mailbox as it was and its host slot held; the pass is then taken
/// over and ended normally.
async fn ending_a_pass_is_all_or_nothing(db: &Db) {
    let ids = mailbox_fixture(db, 2).await;
    let pass = db.queue_pass(ids[0], PassKind::Full).await.unwrap();
    db.claim(&capped("w", 1)).await.unwrap().unwrap();
    // The other mailbox's pass needs the same servers' only slots.
    db.queue_pass(ids[1], PassKind::Full).await.unwrap();
    let end = PassEnd {
        status: Some(MailboxStatus::Completed),
        report: Some("{}".into()),
        results: Some(MailboxResults {
            copied: 59,
            bytes_copied: 5900,
            ..Default::default()
        }),
        progress: Some(PassProgress {
            messages_total: 59,
            messages_done: 59,
            ..Default::default()
        }),
        ..PassEnd::state(PassState::Done)
    };
    let mut failures = 0;
    for step in 1.. {
        db.fail_at_step(step);
        match db.end_pass(pass, "w", &end).await {
            Err(StoreError::Injected) => {
                failures += 1;
                let record = db.pass(pass).await.unwrap();
                assert_eq!(record.state, PassState::Running, "step {step}");
                assert_eq!(record.progress.messages_total, 0, "step {step}");
                let mailbox = db.mailbox(ids[0]).await.unwrap();
                assert_eq!(mailbox.status, MailboxStatus::Migrating, "step {step}");
                assert_eq!((mailbox.copied, mailbox.last_pass), (0, None));
                assert!(
                    db.claim(&capped("other", 1)).await.unwrap().is_none(),
                    "the slots are still held at step {step}"
                );
            }
            Ok(ended) => {
                db.fail_at_step(0);
                assert!(ended);
                break;
            }
            Err(e) => panic!("step {step}: {e}"),
        }
    }
    assert_eq!(failures, 4, "pass, progress, mailbox, host slot");
    let record = db.pass(pass).await.unwrap();
    assert_eq!(record.state, PassState::Done);
    assert_eq!(record.progress.messages_done, 59);
    let mailbox = db.mailbox(ids[0]).await.unwrap();
    assert_eq!(mailbox.status, MailboxStatus::Completed);
    assert_eq!(
        (mailbox.copied, mailbox.bytes_copied, mailbox.last_pass),
        (59, 5900, Some(PassKind::Full))
    );
    assert!(
        db.claim(&capped("other", 1)).await.unwrap().is_some(),
        "the slots were given back"
    );
    assert!(
        !db.end_pass(pass, "w", &end).await.unwrap(),
        "a pass ends once"
    );
}

async fn finishing_or_deleting_waits_for_passes_and_stops_new_ones(db: &Db) {
    let ids = mailbox_fixture(db, 2).await;
    let project_id = db.mailbox(ids[0]).await.unwrap().project_id;
    let queued = db
        .queue_passes(project_id, None, PassKind::Verify)
        .await
        .unwrap();
    assert_eq!(queued.len(), 2);
    assert!(matches!(
        db.finish_project(project_id).await,
        Err(StoreError::Busy(_))
    ));
    assert!(matches!(
        db.delete_project(project_id).await,
        Err(StoreError::Busy(_))
    ));
    assert_eq!(db.request_stops(project_id, None).await.unwrap(), 2);
    assert!(db.finish_project(project_id).await.unwrap());
    assert!(matches!(
        db.queue_passes(project_id, None, PassKind::Full).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        db.queue_pass(ids[0], PassKind::Full).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        db.add_mailboxes(project_id, &[new_mailbox(9)]).await,
        Err(StoreError::Conflict(_))
    ));
    db.delete_project(project_id).await.unwrap();
    assert!(matches!(
        db.queue_passes(project_id, None, PassKind::Full).await,
        Err(StoreError::NotFound(_))
    ));
}

/// A worker that takes a pass over finds its predecessor's copies in the ledger; the
/// pass's counts must still include them.
async fn a_pass_counts_what_every_attempt_of_it_copied(db: &Db) {
    let ids = mailbox_fixture(db, 1).await;
    let key = db.mailbox(ids[0]).await.unwrap().ledger_key();
    let earlier = db.queue_pass(ids[0], PassKind::Full).await.unwrap();
    db.claim_pass("w", 60).await.unwrap().unwrap();
    let ledger = Ledger::for_pass(db.clone(), &key, earlier);
    ledger.record_intents(&[intent(1)]).await.unwrap();
    ledger.record_outcomes(&[copied(1, 1)]).await.unwrap();
    db.finish_pass(earlier, "w", PassState::Done, None, None)
        .await
        .unwrap();

    let pass = db.queue_pass(ids[0], PassKind::Delta).await.unwrap();
    // The first attempt copies 2 and 3, and dies with 4 in doubt.
    db.claim_pass("dead", 60).await.unwrap().unwrap();
    let first = Ledger::for_pass(db.clone(), &key, pass);
    first
        .record_intents(&[intent(2), intent(3), intent(4)])
        .await
        .unwrap();
    first
        .record_outcomes(&[copied(2, 2), copied(3, 3)])
        .await
        .unwrap();
    // The next attempt finds 4 at the destination, finds 5 there too (put there by
    // someone else before any pass), copies 6, and 7 fails.
    let next = Ledger::for_pass(db.clone(), &key, pass);
    next.record_outcomes(&[
        Outcome::Linked {
            intent: intent(4),
            dest_uid: 4,
        },
        Outcome::Linked {
            intent: intent(5),
            dest_uid: 5,
        },
    ])
    .await
    .unwrap();
    next.record_intents(&[intent(6), intent(7)]).await.unwrap();
    next.record_outcomes(&[
        copied(6, 6),
        Outcome::Failed {
            intent: intent(7),
            reason: "too large".into(),
        },
    ])
    .await
    .unwrap();
    assert_eq!(
        db.pass_copies(pass).await.unwrap(),
        PassCopies {
            messages: 4,
            bytes: 400
        },
        "2, 3, 4 (in doubt, then found) and 6"
    );
    assert_eq!(
        db.pass_copies(earlier).await.unwrap(),
        PassCopies {
            messages: 1,
            bytes: 100
        }
    );
    // The command line's ledger marks no pass.
    let cli = Ledger::within(db.clone(), "cli a->b");
    cli.record_intents(&[intent(1)]).await.unwrap();
    cli.record_outcomes(&[copied(1, 1)]).await.unwrap();
    assert_eq!(db.pass_copies(pass).await.unwrap().messages, 4);
}

/// Queueing and finishing (or deleting) sent at the same instant: whichever commits
/// first, the other sees it, so a finished or deleted project never has a pass queued.
async fn queueing_racing_finishing_or_deleting_leaves_no_pass_behind(db: &Db) {
    for round in 0..16 {
        let ids = mailbox_fixture(db, 3).await;
        let project_id = db.mailbox(ids[0]).await.unwrap().project_id;
        let (queue_db, end_db) = (db.clone(), db.clone());
        let queue = tokio::spawn(async move {
            queue_db
                .queue_passes(project_id, None, PassKind::Full)
                .await
        });
        let end = tokio::spawn(async move {
            if round % 2 == 0 {
                end_db.finish_project(project_id).await.map(drop)
            } else {
                end_db.delete_project(project_id).await
            }
        });
        let (queued, ended) = (queue.await.unwrap(), end.await.unwrap());
        match (queued, ended) {
            // Queued first: the project was busy.
            (Ok(passes), Err(StoreError::Busy(_))) => {
                assert_eq!(passes.len(), 3, "round {round}");
                assert_eq!(db.unfinished_passes(project_id).await.unwrap(), 3);
                db.request_stops(project_id, None).await.unwrap();
            }
            // Finished or deleted first: the queue was refused.
            (Err(StoreError::Conflict(_) | StoreError::NotFound(_)), Ok(())) => {
                assert_eq!(
                    db.unfinished_passes(project_id).await.unwrap(),
                    0,
                    "round {round}"
                );
            }
            (queued, ended) => panic!("round {round}: {queued:?} and {ended:?}"),
        }
    }
    assert!(db.claim_pass("w", 60).await.unwrap().is_none());
}

fn copied(uid: u32, dest_uid: u32) -> Outcome {
    Outcome::Copied {
        source_folder: "INBOX".into(),
        source_uidvalidity: 7,
        source_uid: uid,
        dest_folder: "INBOX".into(),
        dest_uidvalidity: Some(9),
        dest_uid: Some(dest_uid),
    }
}

async fn mailbox_secrets_are_replaced_side_by_side(db: &Db) {
    let ids = mailbox_fixture(db, 2).await;
    db.set_mailbox_secrets(ids[0], None, Some(vec![4, 5]))
        .await
        .unwrap();
    let mailbox = db.mailbox(ids[0]).await.unwrap();
    assert_eq!(
        mailbox.source_secret.as_deref(),
        Some(&[1, 2, 3, 0][..]),
        "kept"
    );
    assert_eq!(mailbox.dest_secret.as_deref(), Some(&[4, 5][..]));
    db.set_mailbox_secrets(ids[0], Some(vec![6]), None)
        .await
        .unwrap();
    let mailbox = db.mailbox(ids[0]).await.unwrap();
    assert_eq!(
        (
            mailbox.source_secret.as_deref(),
            mailbox.dest_secret.as_deref()
        ),
        (Some(&[6][..]), Some(&[4, 5][..]))
    );
    let other = db.mailbox(ids[1]).await.unwrap();
    assert_eq!(other.dest_secret, None, "other mailboxes untouched");
}

/// Two processes on one SQLite file (a `serve` and a `mailmove project run`, say):
/// transactions that read before they write must wait for the other writer, never fail
/// with "database is locked".
#[tokio::test]
async fn two_handles_on_one_sqlite_file_write_at_once_without_busy_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.sqlite");
    let first = Db::open_sqlite(&path).await.unwrap();
    let second = Db::open_sqlite(&path).await.unwrap();
    let project = first
        .create_project("a@x", "p", "imaps://o", "imaps://n", "{}")
        .await
        .unwrap();
    let rows: Vec<NewMailbox> = (1..=40).map(new_mailbox).collect();
    let mailboxes = first.add_mailboxes(project.id, &rows).await.unwrap();
    let ids: Vec<i64> = mailboxes;
    let queue = |db: Db, ids: Vec<i64>| {
        tokio::spawn(async move {
            for id in ids {
                db.queue_pass(id, PassKind::Full).await?;
            }
            Ok::<_, StoreError>(())
        })
    };
    let (a, b) = tokio::join!(
        queue(first.clone(), ids.iter().copied().step_by(2).collect()),
        queue(
            second.clone(),
            ids.iter().copied().skip(1).step_by(2).collect()
        ),
    );
    a.unwrap().unwrap();
    b.unwrap().unwrap();
    for id in ids {
        // Queued once each: asking again returns the same pass.
        let again = second.queue_pass(id, PassKind::Full).await.unwrap();
        assert_eq!(first.queue_pass(id, PassKind::Full).await.unwrap(), again);
    }
}

async fn grants_are_kept_replaced_and_forgotten(db: &Db) {
    assert_eq!(
        db.grant_token("contoso", "alice@x.test").await.unwrap(),
        None
    );
    db.save_grant("contoso", "alice@x.test", b"sealed-1", Some("imap"))
        .await
        .unwrap();
    db.save_grant("contoso", "bob@x.test", b"sealed-b", None)
        .await
        .unwrap();
    db.save_grant("other", "alice@x.test", b"sealed-o", None)
        .await
        .unwrap();
    // A rotation replaces the token and keeps the scope it does not restate.
    db.save_grant("contoso", "alice@x.test", b"sealed-2", None)
        .await
        .unwrap();
    assert_eq!(
        db.grant_token("contoso", "alice@x.test").await.unwrap(),
        Some(b"sealed-2".to_vec())
    );
    let listed = db.grants().await.unwrap();
    let names: Vec<_> = listed
        .iter()
        .map(|g| (g.profile.as_str(), g.account.as_str(), g.scope.as_deref()))
        .collect();
    assert_eq!(
        names,
        [
            ("contoso", "alice@x.test", Some("imap")),
            ("contoso", "bob@x.test", None),
            ("other", "alice@x.test", None),
        ]
    );
    assert!(db.delete_grant("contoso", "alice@x.test").await.unwrap());
    assert!(!db.delete_grant("contoso", "alice@x.test").await.unwrap());
    assert_eq!(
        db.grant_token("contoso", "alice@x.test").await.unwrap(),
        None
    );
    assert_eq!(
        db.grant_token("other", "alice@x.test").await.unwrap(),
        Some(b"sealed-o".to_vec())
    );
}
