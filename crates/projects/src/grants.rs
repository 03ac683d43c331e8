//! OAuth2 grants kept for later passes: each refresh token sealed, bound to its
//! profile and account, and replaced when the provider rotates it, before the pass
//! that rotated it ends.

use mailmove_model::Secret;
use mailmove_secrets::Keyring;
use mailmove_store::{Db, GrantRecord, StoreError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The grants of one database, sealed with its key.
#[derive(Clone)]
pub struct Grants {
    db: Db,
    keyring: Keyring,
}

/// What a refresh token is bound to: another profile's or account's row does not
/// open it.
pub fn grant_context(profile: &str, account: &str) -> String {
    format!("grant:{profile}:{}", account.to_lowercase())
}

impl Grants {
    pub fn new(db: Db, keyring: Keyring) -> Grants {
        Grants { db, keyring }
    }

    /// Keeps `refresh_token` for `account` under `profile`, replacing any before.
    pub async fn keep(
        &self,
        profile: &str,
        account: &str,
        refresh_token: &Secret<String>,
        scope: Option<&str>,
    ) -> Result<(), StoreError> {
        let sealed = self
            .keyring
            .seal(refresh_token, &grant_context(profile, account));
        self.db
            .save_grant(profile, &account.to_lowercase(), &sealed, scope)
            .await
    }

    /// The refresh token kept for `account` under `profile`, if any.
    pub async fn refresh_token(
        &self,
        profile: &str,
        account: &str,
    ) -> Result<Option<Secret<String>>, StoreError> {
        let Some(sealed) = self
            .db
            .grant_token(profile, &account.to_lowercase())
            .await?
        else {
            return Ok(None);
        };
        self.keyring
            .open(&sealed, &grant_context(profile, account))
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("the sign-in of {account}: {e}")))
    }

    pub async fn list(&self) -> Result<Vec<GrantRecord>, StoreError> {
        self.db.grants().await
    }

    /// Forgets a grant; false if none was kept.
    pub async fn forget(&self, profile: &str, account: &str) -> Result<bool, StoreError> {
        self.db.delete_grant(profile, &account.to_lowercase()).await
    }

    /// A hook for a token source's rotations (which must return at once) and the
    /// writer behind it: every rotated token is kept in order, and
    /// [`RotationWriter::finish`] waits until the last one is.
    pub fn rotation_writer(
        &self,
        profile: &str,
        account: &str,
    ) -> (
        impl Fn(&Secret<String>) + Send + Sync + 'static,
        RotationWriter,
    ) {
        let (sender, mut receiver) = mpsc::unbounded_channel::<Secret<String>>();
        let grants = self.clone();
        let (profile, account) = (profile.to_string(), account.to_string());
        let task = tokio::spawn(async move {
            let mut result = Ok(());
            while let Some(token) = receiver.recv().await {
                result = grants.keep(&profile, &account, &token, None).await;
                if let Err(e) = &result {
                    tracing::error!(%account, "cannot keep the rotated sign-in: {e}");
                }
            }
            result
        });
        let hook = move |token: &Secret<String>| {
            // The writer only stops after every sender is gone.
            let _ = sender.send(token.clone());
        };
        (hook, RotationWriter { task })
    }
}

/// Waits for the rotated refresh tokens of a pass to be kept.
pub struct RotationWriter {
    task: JoinHandle<Result<(), StoreError>>,
}

impl RotationWriter {
    /// After the hook (and the token source holding it) is dropped: the last
    /// rotation's outcome.
    pub async fn finish(self) -> Result<(), StoreError> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(StoreError::Corrupt(format!(
                "keeping a rotated sign-in stopped: {e}"
            ))),
        }
    }
}
