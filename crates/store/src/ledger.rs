//! The ledger of one or more mailbox pairs, in an SQLite file.

use std::path::Path;

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::StoreError;
use crate::db::{Db, Dialect, now};

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
    /// The pass that writes through this ledger, marked on the rows whose APPEND it
    /// sends, so that its counts cover every attempt of it (see [`Db::pass_copies`]).
    pass_id: Option<i64>,
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
            pass_id: None,
        }
    }

    /// The ledger of one pair inside a shared database, written by the pass `pass_id`.
    pub fn for_pass(db: Db, mailbox: &str, pass_id: i64) -> Ledger {
        Ledger {
            pass_id: Some(pass_id),
            ..Ledger::within(db, mailbox)
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

    /// Destination UIDs claimed in a destination folder by rows of other source
    /// folders. A planner takes its own folder's claims from the rows it read, so a
    /// write that lands between its two reads cannot make a message it wrote look
    /// like another folder's.
    pub async fn claimed_dest_uids_of_others(
        &self,
        dest_folder: &str,
        dest_uidvalidity: u32,
        source_folder: &str,
    ) -> Result<Vec<u32>, StoreError> {
        let rows = sqlx::query(
            "SELECT dest_uid FROM items WHERE mailbox = $1 AND dest_folder = $2 \
             AND dest_uidvalidity = $3 AND state = 'copied' AND dest_uid IS NOT NULL \
             AND source_folder <> $4",
        )
        .bind(&self.mailbox)
        .bind(dest_folder)
        .bind(dest_uidvalidity as i64)
        .bind(source_folder)
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
        let mut tx = self.db.begin_write(&self.db.writer).await?;
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

    /// Records intents; returns once they are durable. A batch of up to
    /// [`ROWS_PER_STATEMENT`] intents, none for the same message twice, is one
    /// statement (one round trip to the database, atomic on its own); anything else is
    /// one transaction.
    pub async fn record_intents(&self, intents: &[Intent]) -> Result<(), StoreError> {
        let writes: Vec<Write<'_>> = intents
            .iter()
            .map(|intent| Write::Upsert {
                intent,
                state: ItemState::Appending,
                dest_uid: None,
                reason: None,
            })
            .collect();
        self.write(&writes).await
    }

    /// Records outcomes, in as few statements as their order allows, all at once.
    pub async fn record_outcomes(&self, outcomes: &[Outcome]) -> Result<(), StoreError> {
        let writes: Vec<Write<'_>> = outcomes
            .iter()
            .map(|outcome| match outcome {
                Outcome::Copied {
                    source_folder,
                    source_uidvalidity,
                    source_uid,
                    dest_folder,
                    dest_uidvalidity,
                    dest_uid,
                } => Write::Copied {
                    source_folder,
                    source_uidvalidity: *source_uidvalidity,
                    source_uid: *source_uid,
                    dest_folder,
                    dest_uidvalidity: *dest_uidvalidity,
                    dest_uid: *dest_uid,
                },
                Outcome::Linked { intent, dest_uid } => Write::Upsert {
                    intent,
                    state: ItemState::Copied,
                    dest_uid: Some(*dest_uid),
                    reason: None,
                },
                Outcome::Failed { intent, reason } => Write::Upsert {
                    intent,
                    state: ItemState::Failed,
                    dest_uid: None,
                    reason: Some(reason),
                },
            })
            .collect();
        self.write(&writes).await
    }

    pub async fn close(&self) {
        self.db.close().await;
    }

    /// Applies row writes with the effect of running them one by one in order: runs of
    /// the same kind become one multi-row statement each, cut where a row would meet
    /// its own key again (PostgreSQL refuses to touch a row twice in one statement).
    /// One statement runs alone; several run in one transaction.
    async fn write(&self, writes: &[Write<'_>]) -> Result<(), StoreError> {
        let statements = group(writes);
        match statements.as_slice() {
            [] => Ok(()),
            [only] => {
                self.statement(only).execute(&self.db.writer).await?;
                Ok(())
            }
            several => {
                let mut tx = self.db.begin_write(&self.db.writer).await?;
                for rows in several {
                    self.statement(rows).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }
        }
    }

    /// One multi-row statement for rows of one kind.
    fn statement<'a>(
        &self,
        rows: &[&Write<'a>],
    ) -> sqlx::query::Query<'a, sqlx::Any, sqlx::any::AnyArguments> {
        let updated_at = now();
        match rows.first() {
            Some(Write::Copied { .. }) => {
                let mut sql = String::from(
                    "WITH done (mailbox, updated_at, source_folder, source_uidvalidity, \
                     source_uid, dest_folder, dest_uidvalidity, dest_uid) AS (VALUES ",
                );
                push_value_rows(&mut sql, self.db.dialect, rows.len(), 8);
                sql.push_str(
                    ") UPDATE items SET state = 'copied', dest_folder = done.dest_folder, \
                     dest_uidvalidity = done.dest_uidvalidity, dest_uid = done.dest_uid, \
                     reason = NULL, updated_at = done.updated_at FROM done \
                     WHERE items.mailbox = done.mailbox \
                     AND items.source_folder = done.source_folder \
                     AND items.source_uidvalidity = done.source_uidvalidity \
                     AND items.source_uid = done.source_uid",
                );
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for row in rows {
                    if let Write::Copied {
                        source_folder,
                        source_uidvalidity,
                        source_uid,
                        dest_folder,
                        dest_uidvalidity,
                        dest_uid,
                    } = row
                    {
                        query = query
                            .bind(self.mailbox.clone())
                            .bind(updated_at)
                            .bind(source_folder.to_string())
                            .bind(i64::from(*source_uidvalidity))
                            .bind(i64::from(*source_uid))
                            .bind(dest_folder.to_string())
                            .bind(dest_uidvalidity.map(i64::from))
                            .bind(dest_uid.map(i64::from));
                    }
                }
                query
            }
            _ => {
                let mut sql = String::from(
                    "INSERT INTO items (mailbox, updated_at, source_folder, source_uidvalidity, \
                     source_uid, state, dest_folder, dest_uidvalidity, dest_uid, content_key, \
                     message_id, subject, size, reason, pass_id) VALUES ",
                );
                push_value_rows(&mut sql, self.db.dialect, rows.len(), 15);
                sql.push_str(
                    " ON CONFLICT (mailbox, source_folder, source_uidvalidity, source_uid) \
                     DO UPDATE SET state = excluded.state, dest_folder = excluded.dest_folder, \
                     dest_uidvalidity = excluded.dest_uidvalidity, dest_uid = excluded.dest_uid, \
                     content_key = excluded.content_key, message_id = excluded.message_id, \
                     subject = excluded.subject, size = excluded.size, reason = excluded.reason, \
                     updated_at = excluded.updated_at, \
                     pass_id = CASE WHEN excluded.state = 'copied' AND items.state = 'appending' \
                                    THEN items.pass_id ELSE excluded.pass_id END",
                );
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for row in rows {
                    if let Write::Upsert {
                        intent,
                        state,
                        dest_uid,
                        reason,
                    } = row
                    {
                        query = query
                            .bind(self.mailbox.clone())
                            .bind(updated_at)
                            .bind(intent.source_folder.clone())
                            .bind(i64::from(intent.source_uidvalidity))
                            .bind(i64::from(intent.source_uid))
                            .bind(state.as_str())
                            .bind(intent.dest_folder.clone())
                            .bind(intent.dest_uidvalidity.map(i64::from))
                            .bind(dest_uid.map(i64::from))
                            .bind(intent.content_key.clone())
                            .bind(intent.message_id.clone())
                            .bind(intent.subject.clone())
                            .bind(intent.size as i64)
                            .bind(reason.map(str::to_string))
                            // A message found at the destination was not sent by this
                            // pass; one in doubt keeps the pass that sent it (above).
                            .bind(self.pass_id.filter(|_| *state != ItemState::Copied));
                    }
                }
                query
            }
        }
    }
}

/// Rows per multi-row statement: at 15 parameters a row, far below both databases'
/// limits on parameters (SQLite 32,766, PostgreSQL 65,535).
const ROWS_PER_STATEMENT: usize = 256;

/// One row write, borrowed from the caller's intents and outcomes.
enum Write<'a> {
    /// Insert or replace the whole row.
    Upsert {
        intent: &'a Intent,
        state: ItemState,
        dest_uid: Option<u32>,
        reason: Option<&'a str>,
    },
    /// The APPEND of an existing row succeeded.
    Copied {
        source_folder: &'a str,
        source_uidvalidity: u32,
        source_uid: u32,
        dest_folder: &'a str,
        dest_uidvalidity: Option<u32>,
        dest_uid: Option<u32>,
    },
}

impl Write<'_> {
    fn is_copied(&self) -> bool {
        matches!(self, Write::Copied { .. })
    }

    fn key(&self) -> (&str, u32, u32) {
        match self {
            Write::Upsert { intent, .. } => (
                &intent.source_folder,
                intent.source_uidvalidity,
                intent.source_uid,
            ),
            Write::Copied {
                source_folder,
                source_uidvalidity,
                source_uid,
                ..
            } => (source_folder, *source_uidvalidity, *source_uid),
        }
    }
}

/// Cuts writes into statements: a new one where the kind changes, a key repeats, or
/// the statement is full. Order is kept, so the effect is that of one write at a time.
fn group<'w, 'a>(writes: &'w [Write<'a>]) -> Vec<Vec<&'w Write<'a>>> {
    let mut statements: Vec<Vec<&Write<'a>>> = Vec::new();
    let mut keys = std::collections::HashSet::new();
    for write in writes {
        let cut = match statements.last() {
            None => true,
            Some(current) => {
                current.len() >= ROWS_PER_STATEMENT
                    || current[0].is_copied() != write.is_copied()
                    || keys.contains(&write.key())
            }
        };
        if cut {
            statements.push(Vec::new());
            keys.clear();
        }
        keys.insert(write.key());
        if let Some(current) = statements.last_mut() {
            current.push(write);
        }
    }
    statements
}

/// Appends `rows` parenthesised groups of `width` placeholders, every value bound
/// once in order: `($1, $2), ($3, $4)` on PostgreSQL, `(?, ?), (?, ?)` on SQLite. SQLite
/// looks a named parameter up by a linear search, both when it parses and when sqlx
/// binds, which costs quadratic time in a statement of hundreds of them; anonymous
/// ones it numbers as it goes.
fn push_value_rows(sql: &mut String, dialect: Dialect, rows: usize, width: usize) {
    use std::fmt::Write as _;
    let mut next = 1;
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..width {
            if column > 0 {
                sql.push_str(", ");
            }
            match dialect {
                Dialect::Sqlite => sql.push('?'),
                Dialect::Postgres => {
                    let _ = write!(sql, "${next}");
                }
            }
            next += 1;
        }
        sql.push(')');
    }
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
