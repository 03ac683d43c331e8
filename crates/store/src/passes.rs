//! Passes are jobs. A worker claims one with a lease (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL), keeps it with heartbeats, and a pass whose lease ran out (its worker
//! died) is claimed again by another worker, which resumes it from the ledger.
//!
//! Host slots cap the connections to one server across every worker: a pass holds a
//! leased slot on its source and destination hosts while it runs.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

pub use mailmove_model::PassKind;

use crate::StoreError;
use crate::db::{Db, now};
use crate::projects::{MailboxResults, MailboxStatus};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassState {
    Queued,
    Running,
    Done,
    Failed,
    Stopped,
}

impl PassState {
    pub fn as_str(self) -> &'static str {
        match self {
            PassState::Queued => "queued",
            PassState::Running => "running",
            PassState::Done => "done",
            PassState::Failed => "failed",
            PassState::Stopped => "stopped",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<PassState, StoreError> {
        [
            PassState::Queued,
            PassState::Running,
            PassState::Done,
            PassState::Failed,
            PassState::Stopped,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| StoreError::Corrupt(format!("pass state `{text}`")))
    }
}

#[derive(Clone, Debug)]
pub struct PassRecord {
    pub id: i64,
    pub mailbox_id: i64,
    pub kind: PassKind,
    pub state: PassState,
    pub worker: Option<String>,
    pub attempts: u32,
    pub progress: PassProgress,
    pub report: Option<String>,
    pub error: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// How far a running pass has come, written with each heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassProgress {
    pub messages_total: u64,
    pub messages_done: u64,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub current_folder: Option<String>,
}

/// A claimed pass: the worker owns it until its lease runs out.
pub type Claimed = PassRecord;

/// How a pass ended, written at once: the pass row, its mailbox's status (and counts),
/// and its host slots given back, in one transaction.
#[derive(Clone, Debug)]
pub struct PassEnd {
    pub state: PassState,
    /// The mailbox's status after the pass; `None` leaves the mailbox as it is.
    pub status: Option<MailboxStatus>,
    /// The pass's error, also the mailbox's `last_error` when a status is given.
    pub error: Option<String>,
    /// The pass's report as JSON.
    pub report: Option<String>,
    /// The counts the pass leaves on its mailbox (a migration's); `None` keeps the
    /// last migration's.
    pub results: Option<MailboxResults>,
    /// The pass's final figures (a trial's: what there is to copy).
    pub progress: Option<PassProgress>,
}

impl PassEnd {
    /// The pass row only.
    pub fn state(state: PassState) -> PassEnd {
        PassEnd {
            state,
            status: None,
            error: None,
            report: None,
            results: None,
            progress: None,
        }
    }
}

/// Messages the ledger says a pass put at the destination, over all its attempts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassCopies {
    pub messages: u64,
    pub bytes: u64,
}

impl Db {
    /// Queues a pass for a mailbox, unless one is already queued or running there
    /// (then that one's id is returned).
    pub async fn queue_pass(&self, mailbox_id: i64, kind: PassKind) -> Result<i64, StoreError> {
        let project_id = self.mailbox(mailbox_id).await?.project_id;
        let ids = self
            .queue_passes(project_id, Some(&[mailbox_id]), kind)
            .await?;
        ids.first()
            .copied()
            .ok_or_else(|| StoreError::NotFound(format!("no mailbox with id {mailbox_id}")))
    }

    /// Queues a pass for each chosen mailbox of a project (every one with `None`), in
    /// one transaction that holds the project row: refused once the project is finished,
    /// and never interleaved with finishing or deleting it. A mailbox that has a pass
    /// queued or running keeps it (its id is returned). A full pass starts out with the
    /// totals of the mailbox's last passed trial, until its worker counts its own.
    pub async fn queue_passes(
        &self,
        project_id: i64,
        mailbox_ids: Option<&[i64]>,
        kind: PassKind,
    ) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.begin_write(&self.pool).await?;
        self.hold_active_project(&mut tx, project_id).await?;
        let mut ids = Vec::new();
        for mailbox_id in chosen_mailboxes(&mut tx, project_id, mailbox_ids).await? {
            let existing = sqlx::query(
                "SELECT id FROM passes WHERE mailbox_id = $1 AND state IN ('queued', 'running')",
            )
            .bind(mailbox_id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = existing {
                ids.push(row.try_get(0)?);
                continue;
            }
            let (messages_total, bytes_total) = if kind == PassKind::Full {
                sqlx::query(
                    "SELECT messages_total, bytes_total FROM passes \
                     WHERE mailbox_id = $1 AND kind = 'verify' AND state = 'done' \
                     ORDER BY id DESC LIMIT 1",
                )
                .bind(mailbox_id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| Ok::<_, sqlx::Error>((row.try_get::<i64, _>(0)?, row.try_get(1)?)))
                .transpose()?
                .unwrap_or((0, 0))
            } else {
                (0, 0)
            };
            let id: i64 = sqlx::query(
                "INSERT INTO passes (mailbox_id, kind, state, created_at, messages_total, bytes_total) \
                 VALUES ($1, $2, 'queued', $3, $4, $5) RETURNING id",
            )
            .bind(mailbox_id)
            .bind(kind.as_str())
            .bind(now())
            .bind(messages_total)
            .bind(bytes_total)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
            let status = match kind {
                PassKind::Verify => MailboxStatus::Verifying,
                _ => MailboxStatus::Queued,
            };
            sqlx::query("UPDATE mailboxes SET status = $1, updated_at = $2 WHERE id = $3")
                .bind(status.as_str())
                .bind(now())
                .bind(mailbox_id)
                .execute(&mut *tx)
                .await?;
            ids.push(id);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Locks a project's row for the transaction (on PostgreSQL; SQLite's write
    /// transaction holds the file), refusing a missing or finished project.
    pub(crate) async fn hold_active_project(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        project_id: i64,
    ) -> Result<(), StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT finished_at FROM projects WHERE id = $1 {}",
            self.lock_rows()
        )))
        .bind(project_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no project with id {project_id}")))?;
        if row.try_get::<Option<i64>, _>(0)?.is_some() {
            return Err(StoreError::Conflict(
                "the project is finished: no pass can run and no mailbox be added".into(),
            ));
        }
        Ok(())
    }

    /// Takes the oldest pass that is queued (and due), or whose worker's lease ran out.
    pub async fn claim_pass(
        &self,
        worker: &str,
        lease_seconds: i64,
    ) -> Result<Option<Claimed>, StoreError> {
        let now = now();
        let sql = format!(
            "UPDATE passes SET state = 'running', worker = $1, lease_until = $2, \
             attempts = attempts + 1, started_at = COALESCE(started_at, $3) \
             WHERE id = (SELECT id FROM passes \
                         WHERE (state = 'queued' AND not_before <= $3) \
                            OR (state = 'running' AND lease_until < $3) \
                         ORDER BY id LIMIT 1 {}) \
             RETURNING *",
            self.skip_locked()
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(worker)
            .bind(now + lease_seconds)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(pass).transpose()
    }

    /// Extends a lease and records progress. `None` means the lease was lost (another
    /// worker has the pass now): stop working on it. `Some(true)` means a stop was asked.
    pub async fn heartbeat(
        &self,
        pass_id: i64,
        worker: &str,
        lease_seconds: i64,
        progress: &PassProgress,
    ) -> Result<Option<bool>, StoreError> {
        let until = now() + lease_seconds;
        let row = sqlx::query(
            "UPDATE passes SET lease_until = $1, messages_total = $2, messages_done = $3, \
             bytes_total = $4, bytes_done = $5, current_folder = $6 \
             WHERE id = $7 AND worker = $8 AND state = 'running' RETURNING stop_requested",
        )
        .bind(until)
        .bind(progress.messages_total as i64)
        .bind(progress.messages_done as i64)
        .bind(progress.bytes_total as i64)
        .bind(progress.bytes_done as i64)
        .bind(progress.current_folder.as_deref())
        .bind(pass_id)
        .bind(worker)
        .fetch_optional(&self.pool)
        .await?;
        if row.is_some() {
            sqlx::query("UPDATE host_slots SET lease_until = $1 WHERE pass_id = $2")
                .bind(until)
                .bind(pass_id)
                .execute(&self.pool)
                .await?;
        }
        Ok(match row {
            Some(row) => Some(row.try_get::<i64, _>(0)? != 0),
            None => None,
        })
    }

    /// Ends a pass (done, failed or stopped) if this worker still holds it, leaving
    /// its mailbox as it was.
    pub async fn finish_pass(
        &self,
        pass_id: i64,
        worker: &str,
        state: PassState,
        report: Option<&str>,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let end = PassEnd {
            report: report.map(str::to_string),
            error: error.map(str::to_string),
            ..PassEnd::state(state)
        };
        self.end_pass(pass_id, worker, &end).await
    }

    /// Ends a pass if this worker still holds it: the pass row, its mailbox's status
    /// and counts, and its host slots, in one transaction (a crash leaves all or none).
    /// False, and nothing written, if the lease was lost.
    pub async fn end_pass(
        &self,
        pass_id: i64,
        worker: &str,
        end: &PassEnd,
    ) -> Result<bool, StoreError> {
        let now = now();
        let mut tx = self.begin_write(&self.pool).await?;
        self.step()?;
        let ended = sqlx::query(
            "UPDATE passes SET state = $1, report = $2, error = $3, finished_at = $4, lease_until = 0 \
             WHERE id = $5 AND worker = $6 AND state = 'running' RETURNING mailbox_id, kind",
        )
        .bind(end.state.as_str())
        .bind(end.report.as_deref())
        .bind(end.error.as_deref())
        .bind(now)
        .bind(pass_id)
        .bind(worker)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(ended) = ended else {
            return Ok(false);
        };
        let mailbox_id: i64 = ended.try_get(0)?;
        let kind: String = ended.try_get(1)?;
        if let Some(progress) = &end.progress {
            self.step()?;
            sqlx::query(
                "UPDATE passes SET messages_total = $1, messages_done = $2, bytes_total = $3, \
                 bytes_done = $4, current_folder = $5 WHERE id = $6",
            )
            .bind(progress.messages_total as i64)
            .bind(progress.messages_done as i64)
            .bind(progress.bytes_total as i64)
            .bind(progress.bytes_done as i64)
            .bind(progress.current_folder.as_deref())
            .bind(pass_id)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(status) = end.status {
            self.step()?;
            match &end.results {
                Some(results) => {
                    sqlx::query(
                        "UPDATE mailboxes SET status = $1, last_pass = $2, copied = $3, \
                         already_present = $4, skipped = $5, failed = $6, bytes_copied = $7, \
                         last_error = $8, updated_at = $9, \
                         dest_byte_exact = COALESCE($11, dest_byte_exact) WHERE id = $10",
                    )
                    .bind(status.as_str())
                    .bind(kind)
                    .bind(results.copied as i64)
                    .bind(results.already_present as i64)
                    .bind(results.skipped as i64)
                    .bind(results.failed as i64)
                    .bind(results.bytes_copied as i64)
                    .bind(end.error.as_deref())
                    .bind(now)
                    .bind(mailbox_id)
                    .bind(results.dest_byte_exact.map(i64::from))
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query(
                        "UPDATE mailboxes SET status = $1, last_error = $2, updated_at = $3 WHERE id = $4",
                    )
                    .bind(status.as_str())
                    .bind(end.error.as_deref())
                    .bind(now)
                    .bind(mailbox_id)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        self.step()?;
        sqlx::query("UPDATE host_slots SET lease_until = 0, pass_id = NULL WHERE pass_id = $1")
            .bind(pass_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// What the ledger says a pass put at the destination, over all its attempts: a
    /// worker that takes over a pass counts the messages its predecessor copied too.
    pub async fn pass_copies(&self, pass_id: i64) -> Result<PassCopies, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM items \
             WHERE pass_id = $1 AND state = 'copied'",
        )
        .bind(pass_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(PassCopies {
            messages: row.try_get::<i64, _>(0)?.max(0) as u64,
            bytes: row.try_get::<i64, _>(1)?.max(0) as u64,
        })
    }

    /// Puts a pass back in the queue, due after `delay_seconds` (a transient failure,
    /// or no free host slot).
    pub async fn requeue_pass(
        &self,
        pass_id: i64,
        worker: &str,
        delay_seconds: i64,
        error: Option<&str>,
        count_attempt: bool,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write(&self.pool).await?;
        let requeued = sqlx::query(
            "UPDATE passes SET state = 'queued', worker = NULL, lease_until = 0, not_before = $1, \
             error = $2, attempts = attempts - $3 WHERE id = $4 AND worker = $5 AND state = 'running'",
        )
        .bind(now() + delay_seconds)
        .bind(error)
        .bind(if count_attempt { 0i64 } else { 1 })
        .bind(pass_id)
        .bind(worker)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if requeued == 1 {
            sqlx::query("UPDATE host_slots SET lease_until = 0, pass_id = NULL WHERE pass_id = $1")
                .bind(pass_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Asks the running or queued passes of these mailboxes to stop.
    pub async fn request_stop(&self, mailbox_id: i64) -> Result<(), StoreError> {
        let mut tx = self.begin_write(&self.pool).await?;
        self.stop_in(&mut tx, mailbox_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Asks the passes of a project's chosen mailboxes (every one with `None`) to stop,
    /// in one transaction.
    pub async fn request_stops(
        &self,
        project_id: i64,
        mailbox_ids: Option<&[i64]>,
    ) -> Result<usize, StoreError> {
        let mut tx = self.begin_write(&self.pool).await?;
        let mut stopped = 0;
        for mailbox_id in chosen_mailboxes(&mut tx, project_id, mailbox_ids).await? {
            self.stop_in(&mut tx, mailbox_id).await?;
            stopped += 1;
        }
        tx.commit().await?;
        Ok(stopped)
    }

    async fn stop_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        mailbox_id: i64,
    ) -> Result<(), StoreError> {
        let tx = &mut **tx;
        sqlx::query(
            "UPDATE passes SET stop_requested = 1 WHERE mailbox_id = $1 AND state = 'running'",
        )
        .bind(mailbox_id)
        .execute(&mut *tx)
        .await?;
        let queued = sqlx::query(
            "UPDATE passes SET state = 'stopped', finished_at = $1 WHERE mailbox_id = $2 AND state = 'queued'",
        )
        .bind(now())
        .bind(mailbox_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if queued > 0 {
            sqlx::query("UPDATE mailboxes SET status = $1, updated_at = $2 WHERE id = $3")
                .bind(MailboxStatus::Stopped.as_str())
                .bind(now())
                .bind(mailbox_id)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    /// The newest pass of a mailbox.
    pub async fn latest_pass(&self, mailbox_id: i64) -> Result<Option<PassRecord>, StoreError> {
        let row =
            sqlx::query("SELECT * FROM passes WHERE mailbox_id = $1 ORDER BY id DESC LIMIT 1")
                .bind(mailbox_id)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(pass).transpose()
    }

    pub async fn pass(&self, id: i64) -> Result<PassRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM passes WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no pass with id {id}")))?;
        pass(&row)
    }

    /// Passes of a project not finished yet.
    pub async fn unfinished_passes(&self, project_id: i64) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM passes WHERE state IN ('queued', 'running') \
             AND mailbox_id IN (SELECT id FROM mailboxes WHERE project_id = $1)",
        )
        .bind(project_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>(0)? as u64)
    }

    /// Tries to take one of `cap` slots on `host` for a pass, until `lease_until`.
    pub async fn acquire_host_slot(
        &self,
        host: &str,
        cap: u32,
        pass_id: i64,
        lease_seconds: i64,
    ) -> Result<bool, StoreError> {
        let now = now();
        for slot in 0..cap.max(1) {
            let taken = sqlx::query(
                "INSERT INTO host_slots (host, slot, pass_id, lease_until) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (host, slot) DO UPDATE SET pass_id = excluded.pass_id, \
                 lease_until = excluded.lease_until \
                 WHERE host_slots.lease_until < $5",
            )
            .bind(host)
            .bind(i64::from(slot))
            .bind(pass_id)
            .bind(now + lease_seconds)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if taken == 1 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A slot on every one of `hosts`, or on none: a pass that finds one host full
    /// gives back what it took on the others, rather than holding them idle until
    /// their lease runs out.
    pub async fn acquire_host_slots(
        &self,
        hosts: &[String],
        cap: u32,
        pass_id: i64,
        lease_seconds: i64,
    ) -> Result<bool, StoreError> {
        for host in hosts {
            match self
                .acquire_host_slot(host, cap, pass_id, lease_seconds)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    self.release_host_slots(pass_id).await?;
                    return Ok(false);
                }
                Err(e) => {
                    let _ = self.release_host_slots(pass_id).await;
                    return Err(e);
                }
            }
        }
        Ok(true)
    }

    pub async fn release_host_slots(&self, pass_id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE host_slots SET lease_until = 0, pass_id = NULL WHERE pass_id = $1")
            .bind(pass_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// The ids of a project's mailboxes, in order; with `chosen`, only those among them.
async fn chosen_mailboxes(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    project_id: i64,
    chosen: Option<&[i64]>,
) -> Result<Vec<i64>, StoreError> {
    let all: Vec<i64> = sqlx::query("SELECT id FROM mailboxes WHERE project_id = $1 ORDER BY id")
        .bind(project_id)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    Ok(all
        .into_iter()
        .filter(|id| chosen.is_none_or(|chosen| chosen.contains(id)))
        .collect())
}

fn pass(row: &AnyRow) -> Result<PassRecord, StoreError> {
    let count = |name: &str| -> Result<u64, StoreError> { Ok(row.try_get::<i64, _>(name)? as u64) };
    let kind: String = row.try_get("kind")?;
    Ok(PassRecord {
        id: row.try_get("id")?,
        mailbox_id: row.try_get("mailbox_id")?,
        kind: parse_kind(&kind)?,
        state: PassState::parse(&row.try_get::<String, _>("state")?)?,
        worker: row.try_get("worker")?,
        attempts: count("attempts")? as u32,
        progress: PassProgress {
            messages_total: count("messages_total")?,
            messages_done: count("messages_done")?,
            bytes_total: count("bytes_total")?,
            bytes_done: count("bytes_done")?,
            current_folder: row.try_get("current_folder")?,
        },
        report: row.try_get("report")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

pub(crate) fn parse_kind(text: &str) -> Result<PassKind, StoreError> {
    PassKind::parse(text).ok_or_else(|| StoreError::Corrupt(format!("pass kind `{text}`")))
}
