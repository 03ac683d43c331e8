//! The ledger of one or more mailbox pairs, in an SQLite file.

use std::path::Path;

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::StoreError;
use crate::db::{Db, now};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemState {
    /// The APPEND may have been sent; its outcome was not recorded.
    Appending,
    /// At the destination (`dest_uid` known with UIDPLUS).
    Copied,
    /// Refused by the source or the destination; `reason` says why.
    Failed,
}

impl ItemState {
    fn as_str(self) -> &'static str {
        match self {
            ItemState::Appending => "appending",
            ItemState::Copied => "copied",
            ItemState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "appending" => Ok(ItemState::Appending),
            "copied" => Ok(ItemState::Copied),
            "failed" => Ok(ItemState::Failed),
            other => Err(StoreError::Corrupt(other.to_string())),
        }
    }
}

/// One source message's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemRecord {
    pub source_folder: String,
    pub source_uidvalidity: u32,
    pub source_uid: u32,
    pub state: ItemState,
    pub dest_folder: Option<String>,
    pub dest_uidvalidity: Option<u32>,
    pub dest_uid: Option<u32>,
    pub content_key: String,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub size: u64,
    pub reason: Option<String>,
}

/// Written before an APPEND is sent.
#[derive(Clone, Debug)]
pub struct Intent {
    pub source_folder: String,
    pub source_uidvalidity: u32,
    pub source_uid: u32,
    pub dest_folder: String,
    pub dest_uidvalidity: Option<u32>,
    pub content_key: String,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub size: u64,
}

/// How a message ended, keyed by its source identity.
#[derive(Clone, Debug)]
pub enum Outcome {
    Copied {
        source_folder: String,
        source_uidvalidity: u32,
        source_uid: u32,
        dest_folder: String,
        dest_uidvalidity: Option<u32>,
        dest_uid: Option<u32>,
    },
    /// Found at the destination already (a crash or an earlier tool put it there).
    Linked {
        intent: Intent,
        dest_uid: u32,
    },
    Failed {
        intent: Intent,
        reason: String,
    },
}

/// The ledger of one mailbox pair, inside a [`Db`] that may hold many.
#[derive(Clone, Debug)]
pub struct Ledger {
    db: Db,
    mailbox: String,
}

impl Ledger {
    /// Opens (creating if needed) an SQLite ledger file; `mailbox` names the pair in it.
    pub async fn open(path: &Path, mailbox: &str) -> Result<Ledger, StoreError> {
        Ok(Ledger::within(Db::open_sqlite(path).await?, mailbox))
    }

    /// The ledger of one pair inside a shared database.
    pub fn within(db: Db, mailbox: &str) -> Ledger {
        Ledger {
            db,
            mailbox: mailbox.to_string(),
        }
    }

    /// Every row of one source folder, whatever its UIDVALIDITY.
    pub async fn source_folder_items(
        &self,
        source_folder: &str,
    ) -> Result<Vec<ItemRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM items WHERE mailbox = $1 AND source_folder = $2 ORDER BY source_uid",
        )
        .bind(&self.mailbox)
        .bind(source_folder)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(record).collect()
    }

    /// Destination UIDs already claimed by rows in a destination folder.
    pub async fn claimed_dest_uids(
        &self,
        dest_folder: &str,
        dest_uidvalidity: u32,
    ) -> Result<Vec<u32>, StoreError> {
        let rows = sqlx::query(
            "SELECT dest_uid FROM items WHERE mailbox = $1 AND dest_folder = $2 \
             AND dest_uidvalidity = $3 AND state = 'copied' AND dest_uid IS NOT NULL",
        )
        .bind(&self.mailbox)
        .bind(dest_folder)
        .bind(dest_uidvalidity as i64)
        .fetch_all(&self.db.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get::<i64, _>(0) as u32).collect())
    }

    /// Stable numbers for a source without UIDs (POP3): each key (a UIDL, or a content
    /// hash) gets the next free number the first time it is seen, and keeps it.
    pub async fn assign_source_uids(
        &self,
        folder: &str,
        keys: &[String],
    ) -> Result<Vec<u32>, StoreError> {
        let mut tx = self.db.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT source_key, uid FROM source_ids WHERE mailbox = $1 AND folder = $2",
        )
        .bind(&self.mailbox)
        .bind(folder)
        .fetch_all(&mut *tx)
        .await?;
        let mut known = std::collections::HashMap::with_capacity(rows.len());
        let mut next = 1u32;
        for row in &rows {
            let uid = row.try_get::<i64, _>(1)? as u32;
            next = next.max(uid + 1);
            known.insert(row.try_get::<String, _>(0)?, uid);
        }
        let mut uids = Vec::with_capacity(keys.len());
        for key in keys {
            let uid = match known.get(key) {
                Some(uid) => *uid,
                None => {
                    sqlx::query("INSERT INTO source_ids (mailbox, folder, source_key, uid) VALUES ($1, $2, $3, $4)")
                        .bind(&self.mailbox)
                        .bind(folder)
                        .bind(key)
                        .bind(i64::from(next))
                        .execute(&mut *tx)
                        .await?;
                    known.insert(key.clone(), next);
                    next += 1;
                    next - 1
                }
            };
            uids.push(uid);
        }
        tx.commit().await?;
        Ok(uids)
    }

    /// Records intents in one transaction; returns once they are durable.
    pub async fn record_intents(&self, intents: &[Intent]) -> Result<(), StoreError> {
        if intents.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.pool.begin().await?;
        for intent in intents {
            upsert(
                &mut tx,
                &self.mailbox,
                intent,
                ItemState::Appending,
                None,
                None,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records outcomes in one transaction.
    pub async fn record_outcomes(&self, outcomes: &[Outcome]) -> Result<(), StoreError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.pool.begin().await?;
        for outcome in outcomes {
            match outcome {
                Outcome::Copied {
                    source_folder,
                    source_uidvalidity,
                    source_uid,
                    dest_folder,
                    dest_uidvalidity,
                    dest_uid,
                } => {
                    sqlx::query(
                        "UPDATE items SET state = 'copied', dest_folder = $1, dest_uidvalidity = $2, \
                         dest_uid = $3, reason = NULL, updated_at = $4 \
                         WHERE mailbox = $5 AND source_folder = $6 AND source_uidvalidity = $7 \
                         AND source_uid = $8",
                    )
                    .bind(dest_folder)
                    .bind(dest_uidvalidity.map(i64::from))
                    .bind(dest_uid.map(i64::from))
                    .bind(now())
                    .bind(&self.mailbox)
                    .bind(source_folder)
                    .bind(*source_uidvalidity as i64)
                    .bind(*source_uid as i64)
                    .execute(&mut *tx)
                    .await?;
                }
                Outcome::Linked { intent, dest_uid } => {
                    upsert(
                        &mut tx,
                        &self.mailbox,
                        intent,
                        ItemState::Copied,
                        Some(*dest_uid),
                        None,
                    )
                    .await?;
                }
                Outcome::Failed { intent, reason } => {
                    upsert(
                        &mut tx,
                        &self.mailbox,
                        intent,
                        ItemState::Failed,
                        None,
                        Some(reason),
                    )
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.db.close().await;
    }
}

async fn upsert(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    mailbox: &str,
    intent: &Intent,
    state: ItemState,
    dest_uid: Option<u32>,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO items (mailbox, source_folder, source_uidvalidity, source_uid, state, \
         dest_folder, dest_uidvalidity, dest_uid, content_key, message_id, subject, size, reason, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (mailbox, source_folder, source_uidvalidity, source_uid) DO UPDATE SET \
         state = excluded.state, dest_folder = excluded.dest_folder, \
         dest_uidvalidity = excluded.dest_uidvalidity, dest_uid = excluded.dest_uid, \
         content_key = excluded.content_key, message_id = excluded.message_id, \
         subject = excluded.subject, size = excluded.size, reason = excluded.reason, \
         updated_at = excluded.updated_at",
    )
    .bind(mailbox)
    .bind(&intent.source_folder)
    .bind(intent.source_uidvalidity as i64)
    .bind(intent.source_uid as i64)
    .bind(state.as_str())
    .bind(&intent.dest_folder)
    .bind(intent.dest_uidvalidity.map(i64::from))
    .bind(dest_uid.map(i64::from))
    .bind(&intent.content_key)
    .bind(&intent.message_id)
    .bind(&intent.subject)
    .bind(intent.size as i64)
    .bind(reason)
    .bind(now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn record(row: &AnyRow) -> Result<ItemRecord, StoreError> {
    let uid = |name: &str| row.get::<Option<i64>, _>(name).map(|v| v as u32);
    Ok(ItemRecord {
        source_folder: row.get("source_folder"),
        source_uidvalidity: row.get::<i64, _>("source_uidvalidity") as u32,
        source_uid: row.get::<i64, _>("source_uid") as u32,
        state: ItemState::parse(&row.get::<String, _>("state"))?,
        dest_folder: row.get("dest_folder"),
        dest_uidvalidity: uid("dest_uidvalidity"),
        dest_uid: uid("dest_uid"),
        content_key: row.get("content_key"),
        message_id: row.get("message_id"),
        subject: row.get("subject"),
        size: row.get::<i64, _>("size") as u64,
        reason: row.get("reason"),
    })
}
