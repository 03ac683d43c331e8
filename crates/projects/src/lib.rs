//! Project operations in one place: the portal and the `project` commands call these and
//! nothing else to create a project with its mailboxes, seal passwords, queue and stop
//! passes, finish, delete and report status. Each operation that writes is one store
//! transaction, so a crash or a concurrent request never leaves half of it done.

mod grants;
mod sealing;
mod settings;
mod status;

use mailmove_import::MailboxRow;
use mailmove_model::{PassKind, Secret};
use mailmove_secrets::Keyring;
use mailmove_store::{Db, MailboxRecord, NewProject, ProjectRecord, StoreError};

pub use grants::{Grants, RotationWriter, grant_context};
pub use mailmove_model::{TrialReport, TrialSide};
pub use sealing::{FallbackPasswords, Side, seal, sealed_rows, secret_context};
pub use settings::{ProjectSettings, SettingsError, SignInMethod};
pub use status::{MailboxState, MessageCounts, ProgressNow, ProjectStatus};

/// What creating a project needs.
#[derive(Clone, Debug)]
pub struct ProjectRequest<'a> {
    pub owner_email: &'a str,
    pub name: &'a str,
    /// Server-only endpoint URLs (`imaps://mail.old.example:993`).
    pub source: &'a str,
    pub dest: &'a str,
    pub settings: &'a ProjectSettings,
}

/// The most mailboxes a project of the portal holds unless its operator says otherwise:
/// as many as one spreadsheet may add there ([`mailmove_import::Limits::UPLOAD`]).
pub const DEFAULT_MAILBOXES_PER_PROJECT: usize = 5_000;

/// The operations, over a database and the key that seals its secrets.
#[derive(Clone)]
pub struct Projects {
    db: Db,
    keyring: Keyring,
    /// The most mailboxes one project may hold.
    mailbox_limit: usize,
}

impl Projects {
    /// The operations with the command line's limit on mailboxes per project: as many as
    /// one file may list ([`mailmove_import::Limits::FILE`]).
    pub fn new(db: Db, keyring: Keyring) -> Projects {
        Projects {
            db,
            keyring,
            mailbox_limit: mailmove_import::Limits::FILE.max_mailboxes,
        }
    }

    /// The same operations with at most `limit` mailboxes per project.
    pub fn with_mailbox_limit(self, limit: usize) -> Projects {
        Projects {
            mailbox_limit: limit,
            ..self
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Creates a project with its mailboxes, passwords sealed, all in one transaction.
    pub async fn create(
        &self,
        request: &ProjectRequest<'_>,
        rows: &[MailboxRow],
        fallback: &FallbackPasswords,
    ) -> Result<(ProjectRecord, Vec<i64>), StoreError> {
        request
            .settings
            .check()
            .map_err(|e| StoreError::Conflict(e.to_string()))?;
        self.within_limit(0, rows.len())?;
        let settings = request.settings.to_json();
        let project = NewProject {
            owner_email: request.owner_email,
            name: request.name,
            source: request.source,
            dest: request.dest,
            settings: &settings,
        };
        self.db
            .create_project_with_mailboxes(&project, |id| {
                sealed_rows(&self.keyring, id, rows, fallback)
            })
            .await
    }

    /// Adds mailboxes to a project that is not finished, all or none.
    pub async fn add_mailboxes(
        &self,
        project_id: i64,
        rows: &[MailboxRow],
        fallback: &FallbackPasswords,
    ) -> Result<Vec<i64>, StoreError> {
        let held = self.db.mailbox_count(project_id).await?;
        self.within_limit(held, rows.len())?;
        let sealed = sealed_rows(&self.keyring, project_id, rows, fallback);
        self.db.add_mailboxes(project_id, &sealed).await
    }

    /// Refuses to make a project that holds `held` mailboxes hold `adding` more than
    /// the limit. (Two lists added at the same instant may pass it together: the limit
    /// bounds what one person can make the workers do, not an exact count.)
    fn within_limit(&self, held: u64, adding: usize) -> Result<(), StoreError> {
        let limit = self.mailbox_limit;
        if held.saturating_add(adding as u64) <= limit as u64 {
            return Ok(());
        }
        Err(StoreError::Conflict(format!(
            "a migration holds at most {limit} mailboxes: this one has {held} and the list adds \
             {adding}; start another migration for the rest"
        )))
    }

    /// Replaces a mailbox's passwords; a side given `None` keeps its password.
    pub async fn set_passwords(
        &self,
        mailbox: &MailboxRecord,
        source: Option<&Secret<String>>,
        dest: Option<&Secret<String>>,
    ) -> Result<(), StoreError> {
        let seal_side = |password: Option<&Secret<String>>, side| {
            password.map(|p| {
                seal(
                    &self.keyring,
                    mailbox.project_id,
                    &mailbox.source_email,
                    side,
                    p,
                )
            })
        };
        self.db
            .set_mailbox_secrets(
                mailbox.id,
                seal_side(source, Side::Source),
                seal_side(dest, Side::Destination),
            )
            .await
    }

    /// Queues a pass for the chosen mailboxes (all with `None`); refused once the
    /// project is finished. Returns one pass id per mailbox (an already queued or
    /// running pass keeps its place).
    pub async fn queue(
        &self,
        project_id: i64,
        mailbox_ids: Option<&[i64]>,
        kind: PassKind,
    ) -> Result<Vec<i64>, StoreError> {
        self.db.queue_passes(project_id, mailbox_ids, kind).await
    }

    /// Asks the chosen mailboxes' passes to stop (a queued one stops at once).
    pub async fn stop(
        &self,
        project_id: i64,
        mailbox_ids: Option<&[i64]>,
    ) -> Result<usize, StoreError> {
        self.db.request_stops(project_id, mailbox_ids).await
    }

    /// Marks the project finished and erases its passwords; `Busy` while passes run.
    /// False if it was finished already.
    pub async fn finish(&self, project_id: i64) -> Result<bool, StoreError> {
        self.db.finish_project(project_id).await
    }

    /// Deletes the project with its mailboxes, passwords and ledgers; `Busy` while
    /// passes run.
    pub async fn delete(&self, project_id: i64) -> Result<(), StoreError> {
        self.db.delete_project(project_id).await
    }

    /// The project's status, as `project status --json` prints it.
    pub async fn status(&self, project: &ProjectRecord) -> Result<ProjectStatus, StoreError> {
        status::of(&self.db, project).await
    }
}
