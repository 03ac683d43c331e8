//! What the web portal keeps beside the projects: one-time login tokens and sessions
//! (both stored only as hashes; a session ends at its expiry or after an idle time,
//! whichever comes first), the counters of the login rate limit, projects looked up through their owner, the finished
//! mark, the failed items of a project's ledgers, the latest pass of each mailbox for
//! live progress, and which ended passes the project's contact was told about.
//!
//! Every lookup of a project here takes the owner's user id, so a portal handler that
//! goes through these functions cannot reach another user's project.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::StoreError;
use crate::db::{Db, now};
use crate::passes::{PassKind, PassProgress, PassState, PassTimings, parse_kind};
use crate::projects::{MailboxStatus, ProjectRecord};

/// What became of a login link that was followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginTokenUse {
    /// Valid, and now used: the session may open for this email.
    Accepted { email: String },
    /// Known, but older than its validity.
    Expired,
    /// Known, and used before.
    AlreadyUsed,
    /// Never issued (or removed since).
    Unknown,
}

/// An open portal session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub user_id: i64,
    pub email: String,
    /// The token every state-changing request of this session must carry.
    pub csrf_token: String,
    pub expires_at: i64,
    /// When a request of this session was last seen (see [`Db::touch_session`]).
    pub last_seen_at: i64,
}

/// A project as its owner sees it in the portal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedProject {
    pub record: ProjectRecord,
    /// Set when the owner finished the migration.
    pub finished_at: Option<i64>,
    /// How many of its mailboxes are in each status (statuses with none are left out),
    /// in the order of [`MailboxStatus::ALL`].
    pub status_counts: Vec<(MailboxStatus, u64)>,
}

impl OwnedProject {
    pub fn mailbox_count(&self) -> u64 {
        self.status_counts.iter().map(|(_, n)| n).sum()
    }
}

/// One message of a project that the source could not give or the destination refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedItem {
    pub mailbox_id: i64,
    pub source_email: String,
    pub dest_email: String,
    pub folder: String,
    pub uid: u32,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub size: u64,
    pub reason: Option<String>,
}

/// The newest pass of one mailbox, as live progress shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassSnapshot {
    pub pass_id: i64,
    pub mailbox_id: i64,
    pub kind: PassKind,
    pub state: PassState,
    pub progress: PassProgress,
    pub error: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub timings: PassTimings,
    /// The pass's report as JSON (a trial's pre-flight findings, a migration's report).
    pub report: Option<String>,
}

/// Ended passes of one kind over a project that its contact was not told about, once
/// no pass of that kind is queued or running there any more: one round, one email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndedRound {
    pub project_id: i64,
    pub kind: PassKind,
    /// Oldest first.
    pub pass_ids: Vec<i64>,
}

impl Db {
    /// Records a login link, by the SHA-256 of its token only.
    pub async fn create_login_token(
        &self,
        token_hash: &str,
        email: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO login_tokens (token_hash, email, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(email.trim().to_lowercase())
        .bind(now())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Uses a login token once: of two concurrent uses, exactly one is accepted.
    /// What [`Db::use_login_token`] would answer, without using the token: a link
    /// scanner that fetches every link in an email must not use up the login.
    pub async fn peek_login_token(&self, token_hash: &str) -> Result<LoginTokenUse, StoreError> {
        let known = sqlx::query(
            "SELECT email, used_at, expires_at FROM login_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = known else {
            return Ok(LoginTokenUse::Unknown);
        };
        Ok(if row.try_get::<Option<i64>, _>(1)?.is_some() {
            LoginTokenUse::AlreadyUsed
        } else if row.try_get::<i64, _>(2)? <= now() {
            LoginTokenUse::Expired
        } else {
            LoginTokenUse::Accepted {
                email: row.try_get(0)?,
            }
        })
    }

    pub async fn use_login_token(&self, token_hash: &str) -> Result<LoginTokenUse, StoreError> {
        let now = now();
        let accepted = sqlx::query(
            "UPDATE login_tokens SET used_at = $1 \
             WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING email",
        )
        .bind(now)
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = accepted {
            return Ok(LoginTokenUse::Accepted {
                email: row.try_get(0)?,
            });
        }
        let known = sqlx::query("SELECT used_at FROM login_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match known {
            None => LoginTokenUse::Unknown,
            Some(row) if row.try_get::<Option<i64>, _>(0)?.is_some() => LoginTokenUse::AlreadyUsed,
            Some(_) => LoginTokenUse::Expired,
        })
    }

    /// Opens a session for a user, by the SHA-256 of its cookie only.
    pub async fn create_session(
        &self,
        session_hash: &str,
        user_id: i64,
        csrf_token: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let now = now();
        sqlx::query(
            "INSERT INTO sessions (session_hash, user_id, csrf_token, created_at, expires_at, \
             last_seen_at) VALUES ($1, $2, $3, $4, $5, $4)",
        )
        .bind(session_hash)
        .bind(user_id)
        .bind(csrf_token)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session with this hash, if it has not expired and was seen within the last
    /// `idle_seconds`.
    pub async fn session(
        &self,
        session_hash: &str,
        idle_seconds: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let now = now();
        let row = sqlx::query(
            "SELECT s.user_id, u.email, s.csrf_token, s.expires_at, s.last_seen_at \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.session_hash = $1 AND s.expires_at > $2 AND s.last_seen_at > $3",
        )
        .bind(session_hash)
        .bind(now)
        .bind(now.saturating_sub(idle_seconds))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(SessionRecord {
                user_id: row.try_get(0)?,
                email: row.try_get(1)?,
                csrf_token: row.try_get(2)?,
                expires_at: row.try_get(3)?,
                last_seen_at: row.try_get(4)?,
            })
        })
        .transpose()
    }

    /// Records that the session was used at `at` (seconds since the epoch; `now()` but
    /// in tests), which moves its idle timeout.
    pub async fn touch_session(&self, session_hash: &str, at: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE session_hash = $2")
            .bind(at)
            .bind(session_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_session(&self, session_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE session_hash = $1")
            .bind(session_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends every session of a user ("log out everywhere"); returns how many there were.
    pub async fn delete_user_sessions(&self, user_id: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Counts one login request under `key` and returns the requests counted under it
    /// in its current window, this one included. A window starts with the first request
    /// after the previous one ended and lasts `window_seconds` (at most a day, see
    /// [`Db::delete_expired_logins`]). One statement: concurrent requests from several
    /// portal processes each get their own count.
    pub async fn count_login_request(
        &self,
        key: &str,
        window_seconds: i64,
    ) -> Result<u64, StoreError> {
        let now = now();
        let row = sqlx::query(
            "INSERT INTO login_limits (limit_key, window_start, hits) VALUES ($1, $2, 1) \
             ON CONFLICT (limit_key) DO UPDATE SET \
             hits = CASE WHEN login_limits.window_start <= $3 THEN 1 \
                 ELSE login_limits.hits + 1 END, \
             window_start = CASE WHEN login_limits.window_start <= $3 THEN $2 \
                 ELSE login_limits.window_start END \
             RETURNING hits",
        )
        .bind(key)
        .bind(now)
        .bind(now.saturating_sub(window_seconds))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>(0)?.max(0) as u64)
    }

    /// Removes expired sessions, sessions idle for `idle_seconds`, login tokens expired
    /// for more than a day (kept that long so a late click is told "expired" rather than
    /// "unknown") and login counters whose window began more than a day ago.
    pub async fn delete_expired_logins(&self, idle_seconds: i64) -> Result<u64, StoreError> {
        let now = now();
        let sessions =
            sqlx::query("DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
                .bind(now)
                .bind(now.saturating_sub(idle_seconds))
                .execute(&self.pool)
                .await?
                .rows_affected();
        let tokens = sqlx::query("DELETE FROM login_tokens WHERE expires_at <= $1")
            .bind(now - 86_400)
            .execute(&self.pool)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM login_limits WHERE window_start <= $1")
            .bind(now - 86_400)
            .execute(&self.pool)
            .await?;
        Ok(sessions + tokens)
    }

    /// How many mailboxes a project holds.
    pub async fn mailbox_count(&self, project_id: i64) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM mailboxes WHERE project_id = $1")
            .bind(project_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)?.max(0) as u64)
    }

    /// A user's projects, oldest first, with their mailbox counts per status.
    pub async fn owned_projects(&self, user_id: i64) -> Result<Vec<OwnedProject>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{OWNED_SELECT} WHERE p.owner_id = $1 ORDER BY p.id"
        )))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let counts = sqlx::query(
            "SELECT m.project_id, m.status, COUNT(*) FROM mailboxes m \
             JOIN projects p ON p.id = m.project_id WHERE p.owner_id = $1 \
             GROUP BY m.project_id, m.status",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let mut by_project: BTreeMap<i64, Vec<(MailboxStatus, u64)>> = BTreeMap::new();
        for row in &counts {
            let status = MailboxStatus::parse(&row.try_get::<String, _>(1)?)?;
            by_project
                .entry(row.try_get(0)?)
                .or_default()
                .push((status, row.try_get::<i64, _>(2)? as u64));
        }
        rows.iter()
            .map(|row| {
                let (record, finished_at) = owned(row)?;
                let counts = by_project.remove(&record.id).unwrap_or_default();
                Ok(OwnedProject {
                    record,
                    finished_at,
                    status_counts: in_status_order(counts),
                })
            })
            .collect()
    }

    /// The project `project_id` if `user_id` owns it; anyone else's is `NotFound`, the
    /// same answer as a project that does not exist.
    pub async fn owned_project(
        &self,
        project_id: i64,
        user_id: i64,
    ) -> Result<OwnedProject, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "{OWNED_SELECT} WHERE p.id = $1 AND p.owner_id = $2"
        )))
        .bind(project_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no project with id {project_id}")))?;
        let (record, finished_at) = owned(&row)?;
        let counts = sqlx::query(
            "SELECT status, COUNT(*) FROM mailboxes WHERE project_id = $1 GROUP BY status",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok((
                MailboxStatus::parse(&row.try_get::<String, _>(0)?)?,
                row.try_get::<i64, _>(1)? as u64,
            ))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(OwnedProject {
            record,
            finished_at,
            status_counts: in_status_order(counts),
        })
    }

    /// Marks a project finished and erases its mailboxes' stored passwords: a finished
    /// migration keeps its reports and no secret. Returns false if it was finished already.
    /// Refused (`Busy`) while a pass is queued or running: the check and the marking
    /// are one transaction holding the project row.
    pub async fn finish_project(&self, project_id: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin_write(&self.pool).await?;
        self.hold_idle_project(&mut tx, project_id).await?;
        let marked = sqlx::query(
            "UPDATE projects SET finished_at = $1 WHERE id = $2 AND finished_at IS NULL",
        )
        .bind(now())
        .bind(project_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "UPDATE mailboxes SET source_secret = NULL, dest_secret = NULL WHERE project_id = $1",
        )
        .bind(project_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(marked == 1)
    }

    /// Replaces a mailbox's sealed secrets; a side given `None` keeps its secret.
    pub async fn set_mailbox_secrets(
        &self,
        mailbox_id: i64,
        source_secret: Option<Vec<u8>>,
        dest_secret: Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write(&self.pool).await?;
        for (column, secret) in [
            ("source_secret", source_secret),
            ("dest_secret", dest_secret),
        ] {
            if let Some(secret) = secret {
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE mailboxes SET {column} = $1, updated_at = $2 WHERE id = $3"
                )))
                .bind(secret)
                .bind(now())
                .bind(mailbox_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every failed item of a project's mailboxes, by mailbox, folder and UID.
    pub async fn failed_items(&self, project_id: i64) -> Result<Vec<FailedItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.id, m.source_email, m.dest_email, i.source_folder, i.source_uid, \
                    i.message_id, i.subject, i.size, i.reason \
             FROM mailboxes m JOIN items i ON i.mailbox = 'mailbox:' || CAST(m.id AS TEXT) \
             WHERE m.project_id = $1 AND i.state = 'failed' \
             ORDER BY m.id, i.source_folder, i.source_uid",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(FailedItem {
                    mailbox_id: row.try_get(0)?,
                    source_email: row.try_get(1)?,
                    dest_email: row.try_get(2)?,
                    folder: row.try_get(3)?,
                    uid: row.try_get::<i64, _>(4)? as u32,
                    message_id: row.try_get(5)?,
                    subject: row.try_get(6)?,
                    size: row.try_get::<i64, _>(7)? as u64,
                    reason: row.try_get(8)?,
                })
            })
            .collect()
    }

    /// The newest pass of each mailbox of a project that has had one, in one query.
    pub async fn latest_passes(&self, project_id: i64) -> Result<Vec<PassSnapshot>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, mailbox_id, kind, state, messages_total, messages_done, bytes_total, \
                    bytes_done, current_folder, error, started_at, finished_at, report, created_at, \
                    queued_ms, waiting_since_ms, started_ms, run_started_ms, running_ms \
             FROM passes WHERE id IN (SELECT MAX(s.id) FROM passes s \
                 JOIN mailboxes m ON m.id = s.mailbox_id WHERE m.project_id = $1 \
                 GROUP BY s.mailbox_id) \
             ORDER BY mailbox_id",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(snapshot).collect()
    }

    /// Rounds of ended passes nobody was told about. A round is due when its project
    /// has no pass of the same kind queued or running: a "Migrate new items" queued
    /// right after a migration ends does not hold back the news of the migration.
    pub async fn ended_rounds(&self) -> Result<Vec<EndedRound>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.project_id, s.kind, s.id FROM passes s \
             JOIN mailboxes m ON m.id = s.mailbox_id \
             WHERE s.state NOT IN ('queued', 'running') AND s.notified_at IS NULL \
             AND NOT EXISTS (SELECT 1 FROM passes o JOIN mailboxes om ON om.id = o.mailbox_id \
                 WHERE om.project_id = m.project_id AND o.kind = s.kind \
                 AND o.state IN ('queued', 'running')) \
             ORDER BY m.project_id, s.kind, s.id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut rounds: Vec<EndedRound> = Vec::new();
        for row in &rows {
            let project_id: i64 = row.try_get(0)?;
            let kind = parse_kind(&row.try_get::<String, _>(1)?)?;
            let pass_id: i64 = row.try_get(2)?;
            match rounds.last_mut() {
                Some(round) if round.project_id == project_id && round.kind == kind => {
                    round.pass_ids.push(pass_id)
                }
                _ => rounds.push(EndedRound {
                    project_id,
                    kind,
                    pass_ids: vec![pass_id],
                }),
            }
        }
        Ok(rounds)
    }

    /// Claims the news of these ended passes; returns the ones this caller claimed (of
    /// several portals claiming the same passes, each pass goes to exactly one).
    pub async fn claim_ended_passes(&self, pass_ids: &[i64]) -> Result<Vec<i64>, StoreError> {
        if pass_ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> =
            (0..pass_ids.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "UPDATE passes SET notified_at = $1 WHERE notified_at IS NULL \
             AND state NOT IN ('queued', 'running') AND id IN ({}) RETURNING id",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(now());
        for id in pass_ids {
            query = query.bind(*id);
        }
        let mut claimed: Vec<i64> = query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        claimed.sort_unstable();
        Ok(claimed)
    }
}

const OWNED_SELECT: &str = "SELECT p.id, u.email, p.name, p.source, p.dest, p.settings, p.created_at, p.finished_at \
     FROM projects p JOIN users u ON u.id = p.owner_id";

fn owned(row: &AnyRow) -> Result<(ProjectRecord, Option<i64>), StoreError> {
    Ok((
        ProjectRecord {
            id: row.try_get(0)?,
            owner_email: row.try_get(1)?,
            name: row.try_get(2)?,
            source: row.try_get(3)?,
            dest: row.try_get(4)?,
            settings: row.try_get(5)?,
            created_at: row.try_get(6)?,
        },
        row.try_get(7)?,
    ))
}

fn in_status_order(mut counts: Vec<(MailboxStatus, u64)>) -> Vec<(MailboxStatus, u64)> {
    counts.sort_by_key(|(status, _)| MailboxStatus::ALL.iter().position(|s| s == status));
    counts
}

fn snapshot(row: &AnyRow) -> Result<PassSnapshot, StoreError> {
    let count = |index: usize| -> Result<u64, StoreError> {
        Ok(row.try_get::<i64, _>(index)?.max(0) as u64)
    };
    let kind: String = row.try_get(2)?;
    let state: String = row.try_get(3)?;
    Ok(PassSnapshot {
        pass_id: row.try_get(0)?,
        mailbox_id: row.try_get(1)?,
        kind: parse_kind(&kind)?,
        state: PassState::parse(&state)?,
        progress: PassProgress {
            messages_total: count(4)?,
            messages_done: count(5)?,
            bytes_total: count(6)?,
            bytes_done: count(7)?,
            current_folder: row.try_get(8)?,
        },
        error: row.try_get(9)?,
        started_at: row.try_get(10)?,
        finished_at: row.try_get(11)?,
        report: row.try_get(12)?,
        timings: PassTimings::of(row)?,
    })
}
