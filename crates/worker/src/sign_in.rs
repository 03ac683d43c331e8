//! OAuth2 sign-ins for passes: an operator's sign-in profiles and the kept sign-ins
//! of mailbox users, turned into the token source an account signs in with. Shared
//! by the workers (a project's side that signs in with a profile) and the command
//! line (`--source-oauth`).

use std::collections::HashMap;
use std::sync::Arc;

use mailmove_engine::Account;
use mailmove_oauth::{Access, Profile, Profiles};
use mailmove_projects::{Grants, RotationWriter};
use mailmove_store::StoreError;
use tokio::sync::Mutex;

/// Why a mailbox cannot sign in with a profile.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// The profile asks for the user's consent, and the user has not given it (or it
    /// was forgotten).
    #[error("no sign-in is kept for {account} with the profile {profile}")]
    NotSignedIn { profile: String, account: String },
    #[error(transparent)]
    OAuth(#[from] mailmove_oauth::Error),
    #[error("the kept sign-ins: {0}")]
    Store(#[from] StoreError),
}

/// The profiles of one profiles file and the grants of one database; each profile
/// is loaded (secrets read, discovery fetched) once.
pub struct SignInProfiles {
    profiles: Profiles,
    loaded: Mutex<HashMap<String, Profile>>,
    grants: Grants,
}

impl std::fmt::Debug for SignInProfiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInProfiles")
            .field("profiles", &self.profiles.names().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl SignInProfiles {
    pub fn new(profiles: Profiles, grants: Grants) -> SignInProfiles {
        SignInProfiles {
            profiles,
            loaded: Mutex::default(),
            grants,
        }
    }

    /// Makes `account` sign in with the profile `name`: a token source for its login,
    /// renewing the user's kept sign-in or the application's own access. For a kept
    /// sign-in, the writer that keeps its rotated refresh tokens: finish it once the
    /// account is dropped.
    pub async fn attach(
        &self,
        account: &mut Account,
        name: &str,
    ) -> Result<Option<RotationWriter>, SignInError> {
        let profile = self.profile(name).await?;
        let login = account.login.clone();
        let (source, writer) = match profile.access {
            Access::User => {
                let refresh_token =
                    self.grants
                        .refresh_token(name, &login)
                        .await?
                        .ok_or_else(|| SignInError::NotSignedIn {
                            profile: name.to_string(),
                            account: login.clone(),
                        })?;
                let (hook, writer) = self.grants.rotation_writer(name, &login);
                let source = profile
                    .token_source(&login, Some(refresh_token))?
                    .on_rotation(hook);
                (source, Some(writer))
            }
            _ => (profile.token_source(&login, None)?, None),
        };
        account.tokens = Some(Arc::new(source));
        Ok(writer)
    }

    async fn profile(&self, name: &str) -> Result<Profile, SignInError> {
        let mut loaded = self.loaded.lock().await;
        if let Some(profile) = loaded.get(name) {
            return Ok(profile.clone());
        }
        let profile = self.profiles.get(name).await?;
        loaded.insert(name.to_string(), profile.clone());
        Ok(profile)
    }
}
