//! Persistent state, in SQLite (the default, a file, no setup) or PostgreSQL (shared by
//! workers on many machines). Only this crate speaks SQL.
//!
//! The ledger records, for each source message of a mailbox pair, where it went or why
//! it did not. Its invariant: an APPEND is only ever sent after its intent row is
//! committed, so after a crash at any instant every message that might have reached the
//! destination is known as `appending` and is looked for there before it is sent again.

mod accounts;
mod claim;
mod db;
mod grants;
mod ledger;
mod passes;
mod projects;

pub use accounts::{
    EndedRound, FailedItem, LoginTokenUse, OwnedProject, PassSnapshot, SessionRecord,
};
pub use claim::{Claimer, QueueLimits, RunLimits, Wakeups};
pub use db::{Db, Dialect, now, now_ms};
pub use grants::GrantRecord;
pub use ledger::{Intent, ItemRecord, ItemState, Ledger, Outcome};
pub use passes::{
    Claimed, PassCopies, PassEnd, PassKind, PassProgress, PassRecord, PassState, PassTimings,
};
pub use projects::{
    MailboxRecord, MailboxResults, MailboxStatus, NewMailbox, NewProject, ProjectRecord,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("`{0}` is not a database URL: use sqlite://PATH or postgres://USER@HOST/NAME")]
    BadUrl(String),
    #[error("cannot open the database {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("the database failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the database holds an unexpected value: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    /// Refused while passes of the project are queued or running.
    #[error("{0}")]
    Busy(String),
    /// A failure injected by a test ([`Db::fail_at_step`]).
    #[error("a failure injected by a test")]
    Injected,
}
