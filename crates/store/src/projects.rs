//! Users, projects and mailbox pairs. Secrets arrive here already sealed (see
//! `mailmove-secrets`): the store never sees a password in clear.

// Queries built with format! only join constant SQL fragments; values are always bound.
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::StoreError;
use crate::db::{Db, now};
use crate::passes::{PassKind, parse_kind};

/// A mailbox pair's status, written as SPEC §2 shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailboxStatus {
    NotStarted,
    Verifying,
    ReadyForMigration,
    VerifyFailed,
    Queued,
    Migrating,
    Completed,
    CompletedWithErrors,
    Failed,
    Stopped,
}

impl MailboxStatus {
    pub const ALL: [MailboxStatus; 10] = [
        MailboxStatus::NotStarted,
        MailboxStatus::Verifying,
        MailboxStatus::ReadyForMigration,
        MailboxStatus::VerifyFailed,
        MailboxStatus::Queued,
        MailboxStatus::Migrating,
        MailboxStatus::Completed,
        MailboxStatus::CompletedWithErrors,
        MailboxStatus::Failed,
        MailboxStatus::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MailboxStatus::NotStarted => "Not started",
            MailboxStatus::Verifying => "Verifying",
            MailboxStatus::ReadyForMigration => "Ready for migration",
            MailboxStatus::VerifyFailed => "Verify failed",
            MailboxStatus::Queued => "Queued",
            MailboxStatus::Migrating => "Migrating",
            MailboxStatus::Completed => "Completed",
            MailboxStatus::CompletedWithErrors => "Completed with errors",
            MailboxStatus::Failed => "Failed",
            MailboxStatus::Stopped => "Stopped",
        }
    }

    pub fn parse(text: &str) -> Result<MailboxStatus, StoreError> {
        MailboxStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| StoreError::Corrupt(format!("mailbox status `{text}`")))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectRecord {
    pub id: i64,
    pub owner_email: String,
    pub name: String,
    /// Server-only endpoint URLs (`imaps://mail.old.example:993`).
    pub source: String,
    pub dest: String,
    /// Connection and copy settings, JSON, owned by the worker.
    pub settings: String,
    pub created_at: i64,
}

/// A project to create.
#[derive(Clone, Debug)]
pub struct NewProject<'a> {
    pub owner_email: &'a str,
    pub name: &'a str,
    /// Server-only endpoint URLs.
    pub source: &'a str,
    pub dest: &'a str,
    /// The project's settings as JSON.
    pub settings: &'a str,
}

/// A mailbox pair to add; secrets sealed by the caller.
#[derive(Clone, Debug)]
pub struct NewMailbox {
    pub source_email: String,
    pub source_login: String,
    pub source_secret: Option<Vec<u8>>,
    pub dest_email: String,
    pub dest_login: String,
    pub dest_secret: Option<Vec<u8>>,
}

#[derive(Clone, Debug)]
pub struct MailboxRecord {
    pub id: i64,
    pub project_id: i64,
    pub source_email: String,
    pub source_login: String,
    pub source_secret: Option<Vec<u8>>,
    pub dest_email: String,
    pub dest_login: String,
    pub dest_secret: Option<Vec<u8>>,
    pub status: MailboxStatus,
    pub last_pass: Option<PassKind>,
    pub copied: u64,
    pub already_present: u64,
    pub skipped: u64,
    pub failed: u64,
    pub bytes_copied: u64,
    pub last_error: Option<String>,
    /// Whether the destination keeps the bytes it is given, as the last pass that
    /// could tell found; `None` until one could.
    pub dest_byte_exact: Option<bool>,
}

impl MailboxRecord {
    /// The name of this pair's ledger inside the shared database.
    pub fn ledger_key(&self) -> String {
        format!("mailbox:{}", self.id)
    }
}

/// The counts a finished pass leaves on its mailbox.
#[derive(Clone, Debug, Default)]
pub struct MailboxResults {
    pub copied: u64,
    pub already_present: u64,
    pub skipped: u64,
    pub failed: u64,
    pub bytes_copied: u64,
    /// What the pass learnt of the destination; `None` keeps what an earlier one did.
    pub dest_byte_exact: Option<bool>,
}

impl Db {
    /// The user with this contact email, created on first use.
    pub async fn ensure_user(&self, email: &str) -> Result<i64, StoreError> {
        let email = email.trim().to_lowercase();
        sqlx::query(
            "INSERT INTO users (email, created_at) VALUES ($1, $2) ON CONFLICT (email) DO NOTHING",
        )
        .bind(&email)
        .bind(now())
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT id FROM users WHERE email = $1")
            .bind(&email)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    pub async fn create_project(
        &self,
        owner_email: &str,
        name: &str,
        source: &str,
        dest: &str,
        settings: &str,
    ) -> Result<ProjectRecord, StoreError> {
        let project = NewProject {
            owner_email,
            name,
            source,
            dest,
            settings,
        };
        let (record, _) = self
            .create_project_with_mailboxes(&project, |_| Vec::new())
            .await?;
        Ok(record)
    }

    /// Creates a project with its owner (on first use) and its mailboxes, in one
    /// transaction: after a crash at any point, either all of it exists or none.
    /// `mailboxes` is given the new project's id, which sealed secrets are bound to.
    pub async fn create_project_with_mailboxes(
        &self,
        project: &NewProject<'_>,
        mailboxes: impl FnOnce(i64) -> Vec<NewMailbox>,
    ) -> Result<(ProjectRecord, Vec<i64>), StoreError> {
        let email = project.owner_email.trim().to_lowercase();
        let mut tx = self.begin_write(&self.pool).await?;
        self.step()?;
        sqlx::query(
            "INSERT INTO users (email, created_at) VALUES ($1, $2) ON CONFLICT (email) DO NOTHING",
        )
        .bind(&email)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        let owner: i64 = sqlx::query("SELECT id FROM users WHERE email = $1")
            .bind(&email)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        self.step()?;
        let result = sqlx::query(
            "INSERT INTO projects (owner_id, name, source, dest, settings, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(owner)
        .bind(project.name)
        .bind(project.source)
        .bind(project.dest)
        .bind(project.settings)
        .bind(now())
        .fetch_one(&mut *tx)
        .await;
        let id: i64 = match result {
            Ok(row) => row.try_get(0)?,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!(
                    "a project named `{}` already exists for {}",
                    project.name, project.owner_email
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let ids = self.insert_mailboxes(&mut tx, id, &mailboxes(id)).await?;
        tx.commit().await?;
        Ok((self.project_by_id(id).await?, ids))
    }

    pub async fn project_by_id(&self, id: i64) -> Result<ProjectRecord, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!("{PROJECT_SELECT} WHERE p.id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no project with id {id}")))?;
        project(&row)
    }

    /// The project called `name`; with `owner`, only that user's.
    pub async fn project_by_name(
        &self,
        name: &str,
        owner: Option<&str>,
    ) -> Result<ProjectRecord, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{PROJECT_SELECT} WHERE p.name = $1 ORDER BY p.id"
        )))
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        let mut found: Vec<ProjectRecord> = rows.iter().map(project).collect::<Result<_, _>>()?;
        if let Some(owner) = owner {
            let owner = owner.trim().to_lowercase();
            found.retain(|p| p.owner_email == owner);
        }
        match found.len() {
            0 => Err(StoreError::NotFound(format!("no project named `{name}`"))),
            1 => Ok(found.remove(0)),
            _ => Err(StoreError::Conflict(format!(
                "several users have a project named `{name}`: add --owner EMAIL"
            ))),
        }
    }

    /// Every project, or one user's.
    pub async fn projects(&self, owner: Option<&str>) -> Result<Vec<ProjectRecord>, StoreError> {
        let rows = match owner {
            Some(owner) => {
                sqlx::query(AssertSqlSafe(format!(
                    "{PROJECT_SELECT} WHERE u.email = $1 ORDER BY p.id"
                )))
                .bind(owner.trim().to_lowercase())
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(AssertSqlSafe(format!("{PROJECT_SELECT} ORDER BY p.id")))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(project).collect()
    }

    /// Deletes a project with its mailboxes, their secrets, passes and ledgers;
    /// refused (`Busy`) while a pass of it is queued or running. The check and the
    /// deletion are one transaction holding the project row, so no pass can be queued
    /// in between.
    pub async fn delete_project(&self, id: i64) -> Result<(), StoreError> {
        let mut tx = self.begin_write(&self.pool).await?;
        self.hold_idle_project(&mut tx, id).await?;
        sqlx::query(
            "DELETE FROM items WHERE mailbox IN \
             (SELECT 'mailbox:' || CAST(id AS TEXT) FROM mailboxes WHERE project_id = $1)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM passes WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE project_id = $1)")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM mailboxes WHERE project_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM projects WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds mailbox pairs, all or none; refused once the project is finished.
    pub async fn add_mailboxes(
        &self,
        project_id: i64,
        rows: &[NewMailbox],
    ) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.begin_write(&self.pool).await?;
        self.hold_active_project(&mut tx, project_id).await?;
        let ids = self.insert_mailboxes(&mut tx, project_id, rows).await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn insert_mailboxes(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        project_id: i64,
        rows: &[NewMailbox],
    ) -> Result<Vec<i64>, StoreError> {
        let mut ids = Vec::with_capacity(rows.len());
        for row in rows {
            self.step()?;
            let inserted = sqlx::query(
                "INSERT INTO mailboxes (project_id, source_email, source_login, source_secret, \
                 dest_email, dest_login, dest_secret, status, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            )
            .bind(project_id)
            .bind(&row.source_email)
            .bind(&row.source_login)
            .bind(row.source_secret.clone())
            .bind(&row.dest_email)
            .bind(&row.dest_login)
            .bind(row.dest_secret.clone())
            .bind(MailboxStatus::NotStarted.as_str())
            .bind(now())
            .fetch_one(&mut **tx)
            .await;
            match inserted {
                Ok(r) => ids.push(r.try_get(0)?),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    return Err(StoreError::Conflict(format!(
                        "the project already has a mailbox {} -> {}",
                        row.source_email, row.dest_email
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(ids)
    }

    /// Locks a project's row for the transaction and refuses (`Busy`) if a pass of it
    /// is queued or running.
    pub(crate) async fn hold_idle_project(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        project_id: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT id FROM projects WHERE id = $1 {}",
            self.lock_rows()
        )))
        .bind(project_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no project with id {project_id}")))?;
        let running: i64 = sqlx::query(
            "SELECT COUNT(*) FROM passes WHERE state IN ('queued', 'running') \
             AND mailbox_id IN (SELECT id FROM mailboxes WHERE project_id = $1)",
        )
        .bind(project_id)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
        if running > 0 {
            return Err(StoreError::Busy(format!(
                "{running} passes of the project are queued or running: stop them first"
            )));
        }
        Ok(())
    }

    pub async fn mailboxes(&self, project_id: i64) -> Result<Vec<MailboxRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM mailboxes WHERE project_id = $1 ORDER BY id")
            .bind(project_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(mailbox).collect()
    }

    pub async fn mailbox(&self, id: i64) -> Result<MailboxRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM mailboxes WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no mailbox with id {id}")))?;
        mailbox(&row)
    }

    pub async fn set_mailbox_status(
        &self,
        id: i64,
        status: MailboxStatus,
        last_error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE mailboxes SET status = $1, last_error = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(status.as_str())
        .bind(last_error)
        .bind(now())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records how a pass ended on its mailbox.
    pub async fn set_mailbox_results(
        &self,
        id: i64,
        pass: PassKind,
        status: MailboxStatus,
        results: &MailboxResults,
        last_error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE mailboxes SET status = $1, last_pass = $2, copied = $3, already_present = $4, \
             skipped = $5, failed = $6, bytes_copied = $7, last_error = $8, updated_at = $9, \
             dest_byte_exact = COALESCE($11, dest_byte_exact) WHERE id = $10",
        )
        .bind(status.as_str())
        .bind(pass.as_str())
        .bind(results.copied as i64)
        .bind(results.already_present as i64)
        .bind(results.skipped as i64)
        .bind(results.failed as i64)
        .bind(results.bytes_copied as i64)
        .bind(last_error)
        .bind(now())
        .bind(id)
        .bind(results.dest_byte_exact.map(i64::from))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

const PROJECT_SELECT: &str = "SELECT p.id, u.email, p.name, p.source, p.dest, p.settings, p.created_at \
     FROM projects p JOIN users u ON u.id = p.owner_id";

fn project(row: &AnyRow) -> Result<ProjectRecord, StoreError> {
    Ok(ProjectRecord {
        id: row.try_get(0)?,
        owner_email: row.try_get(1)?,
        name: row.try_get(2)?,
        source: row.try_get(3)?,
        dest: row.try_get(4)?,
        settings: row.try_get(5)?,
        created_at: row.try_get(6)?,
    })
}

fn mailbox(row: &AnyRow) -> Result<MailboxRecord, StoreError> {
    let count = |name: &str| -> Result<u64, StoreError> { Ok(row.try_get::<i64, _>(name)? as u64) };
    Ok(MailboxRecord {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        source_email: row.try_get("source_email")?,
        source_login: row.try_get("source_login")?,
        source_secret: row.try_get("source_secret")?,
        dest_email: row.try_get("dest_email")?,
        dest_login: row.try_get("dest_login")?,
        dest_secret: row.try_get("dest_secret")?,
        status: MailboxStatus::parse(&row.try_get::<String, _>("status")?)?,
        last_pass: row
            .try_get::<Option<String>, _>("last_pass")?
            .as_deref()
            .map(parse_kind)
            .transpose()?,
        copied: count("copied")?,
        already_present: count("already_present")?,
        skipped: count("skipped")?,
        failed: count("failed")?,
        bytes_copied: count("bytes_copied")?,
        last_error: row.try_get("last_error")?,
        dest_byte_exact: row
            .try_get::<Option<i64>, _>("dest_byte_exact")?
            .map(|exact| exact != 0),
    })
}
