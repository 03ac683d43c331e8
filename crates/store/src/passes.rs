//! Passes are jobs. A worker claims one with a lease (see `claim.rs`), keeps it with
//! heartbeats, and a pass whose lease ran out (its worker died) is claimed again by
//! another worker, which resumes it from the ledger.
//!
//! Host slots cap the connections to one server across every worker: a pass holds a
//! leased slot on its source and destination hosts from its claim until it ends or goes
//! back to the queue, when they are given back in the same transaction.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

pub use mailmove_model::PassKind;

use crate::StoreError;
use crate::db::{Db, now, now_ms};
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
    /// When the pass first really ran (with its host slots), in seconds.
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub timings: PassTimings,
}

/// How long a pass spent in each state, in milliseconds, as of when it was read: queued
/// (from queueing until a claim first found it due but its server full, or until it
/// ran), waiting for a host slot (from then until it ran), and running (every run of
/// it, this one so far included). Rates are messages over running time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassTimings {
    pub queued_ms: u64,
    pub waiting_ms: u64,
    pub running_ms: u64,
}

impl PassTimings {
    /// From a row of `passes` with the scheduler's columns (any columns it lacks read
    /// as never set).
    pub(crate) fn of(row: &AnyRow) -> Result<PassTimings, StoreError> {
        let ms = |name: &str| row.try_get::<Option<i64>, _>(name).ok().flatten();
        let seconds = |name: &str| -> Result<Option<i64>, StoreError> {
            Ok(row.try_get::<Option<i64>, _>(name)?.map(|s| s * 1000))
        };
        let now = now_ms();
        let queued_at = ms("queued_ms").or(seconds("created_at")?).unwrap_or(now);
        let finished = seconds("finished_at")?;
        // The end of waiting: the first run, or the end of a pass that never ran.
        let ran_at = ms("started_ms").or(finished).unwrap_or(now).max(queued_at);
        let waiting_since = ms("waiting_since_ms").map(|w| w.clamp(queued_at, ran_at));
        let running_now = ms("run_started_ms").map_or(0, |r| (now - r).max(0));
        let span = |from: i64, to: i64| (to - from).max(0) as u64;
        Ok(PassTimings {
            queued_ms: span(queued_at, waiting_since.unwrap_or(ran_at)),
            waiting_ms: waiting_since.map_or(0, |w| span(w, ran_at)),
            running_ms: (ms("running_ms").unwrap_or(0) + running_now).max(0) as u64,
        })
    }
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
        let active: std::collections::HashMap<i64, i64> = sqlx::query(
            "SELECT s.mailbox_id, s.id FROM passes s JOIN mailboxes m ON m.id = s.mailbox_id \
             WHERE m.project_id = $1 AND s.state IN ('queued', 'running')",
        )
        .bind(project_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, sqlx::Error>>()?;
        let chosen = chosen_mailboxes(&mut tx, project_id, mailbox_ids).await?;
        let adding = chosen.iter().filter(|id| !active.contains_key(id)).count();
        self.check_queue_limits(&mut tx, project_id, adding).await?;
        if adding > 0 {
            self.wake_claimers(&mut tx).await?;
        }
        let mut ids = Vec::new();
        for mailbox_id in chosen {
            if let Some(id) = active.get(&mailbox_id) {
                ids.push(*id);
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
                "INSERT INTO passes (mailbox_id, kind, state, created_at, messages_total, bytes_total, \
                 queued_ms) VALUES ($1, $2, 'queued', $3, $4, $5, $6) RETURNING id",
            )
            .bind(mailbox_id)
            .bind(kind.as_str())
            .bind(now())
            .bind(messages_total)
            .bind(bytes_total)
            .bind(now_ms())
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
        let mut tx = self.begin_write(&self.pool).await?;
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
        .fetch_optional(&mut *tx)
        .await?;
        if row.is_some() {
            sqlx::query("UPDATE host_slots SET lease_until = $1 WHERE pass_id = $2")
                .bind(until)
                .bind(pass_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
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
            "UPDATE passes SET state = $1, report = $2, error = $3, finished_at = $4, lease_until = 0, \
             running_ms = running_ms + COALESCE($7 - run_started_ms, 0), run_started_ms = NULL \
             WHERE id = $5 AND worker = $6 AND state = 'running' RETURNING mailbox_id, kind",
        )
        .bind(end.state.as_str())
        .bind(end.report.as_deref())
        .bind(end.error.as_deref())
        .bind(now)
        .bind(pass_id)
        .bind(worker)
        .bind(now_ms())
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
        self.wake_claimers(&mut tx).await?;
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
             error = $2, attempts = attempts - $3, \
             running_ms = running_ms + COALESCE($6 - run_started_ms, 0), run_started_ms = NULL \
             WHERE id = $4 AND worker = $5 AND state = 'running'",
        )
        .bind(now() + delay_seconds)
        .bind(error)
        .bind(if count_attempt { 0i64 } else { 1 })
        .bind(pass_id)
        .bind(worker)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if requeued == 1 {
            sqlx::query("UPDATE host_slots SET lease_until = 0, pass_id = NULL WHERE pass_id = $1")
                .bind(pass_id)
                .execute(&mut *tx)
                .await?;
            self.wake_claimers(&mut tx).await?;
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

pub(crate) fn pass(row: &AnyRow) -> Result<PassRecord, StoreError> {
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
        timings: PassTimings::of(row)?,
    })
}

pub(crate) fn parse_kind(text: &str) -> Result<PassKind, StoreError> {
    PassKind::parse(text).ok_or_else(|| StoreError::Corrupt(format!("pass kind `{text}`")))
}
