//! How many statements the pages and commands that show a whole project run: the same
//! for 3 mailboxes as for 300, on SQLite and on PostgreSQL. Counted from sqlx's own
//! log of every statement it runs (the `sqlx::query` events), in a test binary of its
//! own so that no other test's statements are counted.

use std::sync::atomic::{AtomicU64, Ordering};

use mailmove_store::{Db, NewMailbox, PassKind};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

static STATEMENTS: AtomicU64 = AtomicU64::new(0);

struct CountStatements;

impl<S: tracing::Subscriber> Layer<S> for CountStatements {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() == "sqlx::query" {
            STATEMENTS.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Statements run by what `project status` and the portal's project page read.
async fn statements_to_show(db: &Db, project_id: i64, owner_id: i64) -> u64 {
    let before = STATEMENTS.load(Ordering::SeqCst);
    db.project_by_id(project_id).await.unwrap();
    db.owned_project(project_id, owner_id).await.unwrap();
    db.mailboxes(project_id).await.unwrap();
    db.latest_passes(project_id).await.unwrap();
    STATEMENTS.load(Ordering::SeqCst) - before
}

/// A project of `count` mailboxes, every one with a pass, some claimed.
async fn project_of(db: &Db, count: u32) -> (i64, i64) {
    let project = db
        .create_project("a@x", &format!("p{count}"), "imaps://o", "imaps://n", "{}")
        .await
        .unwrap();
    let rows: Vec<NewMailbox> = (0..count)
        .map(|n| NewMailbox {
            source_email: format!("user{n}@old.example"),
            source_login: format!("user{n}"),
            source_secret: None,
            dest_email: format!("user{n}@new.example"),
            dest_login: format!("user{n}"),
            dest_secret: None,
        })
        .collect();
    db.add_mailboxes(project.id, &rows).await.unwrap();
    db.queue_passes(project.id, None, PassKind::Full)
        .await
        .unwrap();
    db.claim_pass("w", 60).await.unwrap();
    db.claim_pass("w", 60).await.unwrap();
    let owner = db.ensure_user("a@x").await.unwrap();
    (project.id, owner)
}

async fn the_count_does_not_grow_with_mailboxes(db: &Db) {
    let (small, owner) = project_of(db, 3).await;
    let (large, _) = project_of(db, 300).await;
    // The fewest of a few runs: a connection the pool opens meanwhile runs its set-up
    // statements (SQLite's PRAGMAs) inside a count, never fewer.
    let mut for_small = u64::MAX;
    let mut for_large = u64::MAX;
    for _ in 0..3 {
        for_small = for_small.min(statements_to_show(db, small, owner).await);
        for_large = for_large.min(statements_to_show(db, large, owner).await);
    }
    assert!(for_small > 0, "sqlx's statement log is counted");
    assert_eq!(for_small, for_large);
    assert!(for_large <= 6, "{for_large} statements");
}

#[test]
fn showing_a_project_runs_as_many_statements_for_300_mailboxes_as_for_3() {
    let subscriber = tracing_subscriber::registry().with(CountStatements);
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Db::open_sqlite(&dir.path().join("count.sqlite"))
            .await
            .unwrap();
        the_count_does_not_grow_with_mailboxes(&sqlite).await;

        let admin_url = std::env::var("MAILMOVE_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
        let name = format!("mm_statements_{}", std::process::id());
        let admin = Db::open_admin(&admin_url)
            .await
            .expect("PostgreSQL is reachable (scripts/test starts it)");
        admin.create_database(&name).await.unwrap();
        let (base, _) = admin_url.rsplit_once('/').unwrap();
        let postgres = Db::open(&format!("{base}/{name}")).await.unwrap();
        the_count_does_not_grow_with_mailboxes(&postgres).await;
        postgres.close().await;
        admin.drop_database(&name).await.unwrap();
    });
}
