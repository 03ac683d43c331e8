//! Persistent state. Only this crate speaks SQL.
//!
//! The ledger records, for each source message of one mailbox pair, where it went
//! or why it did not. Its invariant: an APPEND is only ever sent after its intent
//! row is committed, so after a crash at any instant every message that might have
//! reached the destination is known as `appending` and is looked for there before
//! it is sent again.

mod ledger;

pub use ledger::{Intent, ItemRecord, ItemState, Ledger, Outcome, StoreError};
