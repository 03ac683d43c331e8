//! The ledger of one or more mailbox pairs, in an SQLite file.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state file {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("the state database failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the state database holds an unknown item state `{0}`")]
    Corrupt(String),
}

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

#[derive(Clone, Debug)]
pub struct Ledger {
    pool: SqlitePool,
    mailbox: String,
}

impl Ledger {
    /// Opens (creating if needed) the ledger file; `mailbox` names the pair within it.
    pub async fn open(path: &Path, mailbox: &str) -> Result<Ledger, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL with NORMAL survives the process being killed at any instant (the
            // promise); only a power cut can lose the last transactions.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Ledger {
            pool,
            mailbox: mailbox.to_string(),
        })
    }

    /// Every row of one source folder, whatever its UIDVALIDITY.
    pub async fn source_folder_items(
        &self,
        source_folder: &str,
    ) -> Result<Vec<ItemRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM items WHERE mailbox = ? AND source_folder = ? ORDER BY source_uid",
        )
        .bind(&self.mailbox)
        .bind(source_folder)
        .fetch_all(&self.pool)
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
            "SELECT dest_uid FROM items WHERE mailbox = ? AND dest_folder = ? \
             AND dest_uidvalidity = ? AND state = 'copied' AND dest_uid IS NOT NULL",
        )
        .bind(&self.mailbox)
        .bind(dest_folder)
        .bind(dest_uidvalidity as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get::<i64, _>(0) as u32).collect())
    }

    /// Records intents in one transaction; returns once they are durable.
    pub async fn record_intents(&self, intents: &[Intent]) -> Result<(), StoreError> {
        if intents.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
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
        let mut tx = self.pool.begin().await?;
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
                        "UPDATE items SET state = 'copied', dest_folder = ?, dest_uidvalidity = ?, \
                         dest_uid = ?, reason = NULL, updated_at = CURRENT_TIMESTAMP \
                         WHERE mailbox = ? AND source_folder = ? AND source_uidvalidity = ? AND source_uid = ?",
                    )
                    .bind(dest_folder)
                    .bind(dest_uidvalidity.map(i64::from))
                    .bind(dest_uid.map(i64::from))
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
        self.pool.close().await;
    }
}

async fn upsert(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    mailbox: &str,
    intent: &Intent,
    state: ItemState,
    dest_uid: Option<u32>,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO items (mailbox, source_folder, source_uidvalidity, source_uid, state, \
         dest_folder, dest_uidvalidity, dest_uid, content_key, message_id, subject, size, reason) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (mailbox, source_folder, source_uidvalidity, source_uid) DO UPDATE SET \
         state = excluded.state, dest_folder = excluded.dest_folder, \
         dest_uidvalidity = excluded.dest_uidvalidity, dest_uid = excluded.dest_uid, \
         content_key = excluded.content_key, message_id = excluded.message_id, \
         subject = excluded.subject, size = excluded.size, reason = excluded.reason, \
         updated_at = CURRENT_TIMESTAMP",
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
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn record(row: &sqlx::sqlite::SqliteRow) -> Result<ItemRecord, StoreError> {
    let uid = |name: &str| row.get::<Option<i64>, _>(name).map(|v| v as u32);
    Ok(ItemRecord {
        source_folder: row.get("source_folder"),
        source_uidvalidity: row.get::<i64, _>("source_uidvalidity") as u32,
        source_uid: row.get::<i64, _>("source_uid") as u32,
        state: ItemState::parse(row.get::<&str, _>("state"))?,
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

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    mailbox TEXT NOT NULL,
    source_folder TEXT NOT NULL,
    source_uidvalidity INTEGER NOT NULL,
    source_uid INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('appending', 'copied', 'failed')),
    dest_folder TEXT,
    dest_uidvalidity INTEGER,
    dest_uid INTEGER,
    content_key TEXT NOT NULL,
    message_id TEXT,
    subject TEXT,
    size INTEGER NOT NULL,
    reason TEXT,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (mailbox, source_folder, source_uidvalidity, source_uid)
);
CREATE INDEX IF NOT EXISTS items_by_dest ON items (mailbox, dest_folder, dest_uidvalidity);
";

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test]
    async fn intents_then_outcomes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let ledger = Ledger::open(&path, "a->b").await.unwrap();
        ledger
            .record_intents(&[intent(1), intent(2), intent(3)])
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
            ])
            .await
            .unwrap();
        ledger.close().await;

        let ledger = Ledger::open(&path, "a->b").await.unwrap();
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
            ]
        );
        assert_eq!(rows[1].reason.as_deref(), Some("too large"));
        assert_eq!(
            ledger.claimed_dest_uids("INBOX", 9).await.unwrap(),
            vec![41]
        );
        assert!(
            ledger
                .claimed_dest_uids("INBOX", 10)
                .await
                .unwrap()
                .is_empty()
        );
        // Another pair in the same file sees nothing of this one.
        let other = Ledger::open(&path, "c->d").await.unwrap();
        assert!(other.source_folder_items("INBOX").await.unwrap().is_empty());
    }
}
