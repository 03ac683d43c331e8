//! OAuth2 on the command line: `mailmove auth login|list|logout`, and the token
//! sources that `--source-oauth` / `--dest-oauth` attach to a command's accounts.

use std::io::Write;

use anyhow::{Context, Result, anyhow};
use mailmove_engine::Account;
use mailmove_oauth::{Access, Profile, Profiles};
use mailmove_projects::{Grants, RotationWriter};
use mailmove_worker::{SignInError, SignInProfiles};
use time::OffsetDateTime;

use crate::args::{AuthCommand, OAuthArgs, SignInStore};
use crate::runner::open_database;
use crate::{CONNECTION, OK, USAGE, print_error};

pub async fn run(command: AuthCommand) -> Result<u8> {
    match command {
        AuthCommand::Login {
            profile,
            account,
            store,
        } => login(&profile, &account, &store).await,
        AuthCommand::List { store } => list(&store).await,
        AuthCommand::Logout {
            profile,
            account,
            store,
        } => logout(&profile, &account, &store).await,
    }
}

/// The device flow (RFC 8628): the code and the address on stdout, then a wait for
/// the user's approval; the refresh token is kept sealed. A profile whose application
/// signs in by itself needs no sign-in: it is checked by getting a token.
async fn login(name: &str, account: &str, store: &SignInStore) -> Result<u8> {
    let profile = load_profiles(store)?.get(name).await?;
    if !matches!(profile.access, Access::User) {
        return check_app_sign_in(&profile, account).await;
    }
    let client = &profile.client;
    let mut device = match client.start_device(&profile.scope_refs(), account).await {
        Ok(device) => device,
        Err(e) => return Ok(oauth_failure(&e)),
    };
    println!(
        "To sign in {account} with {name}, open {} in a browser and enter the code {}",
        device.verification_uri, device.user_code
    );
    if let Some(complete) = &device.verification_uri_complete {
        println!("(or open {complete})");
    }
    println!("Waiting for the approval...");
    std::io::stdout().flush().ok();
    let tokens = match client.wait_for_device(&mut device).await {
        Ok(tokens) => tokens,
        Err(e) => return Ok(oauth_failure(&e)),
    };
    let Some(refresh_token) = &tokens.refresh_token else {
        print_error(
            &format!(
                "{} signed {account} in but gave no refresh token, so later passes could \
                 not renew the sign-in",
                client.provider().name
            ),
            None,
        );
        eprintln!(
            "hint: ask for offline access: add \"offline_access\" to the profile's scopes \
             (Microsoft, OpenID Connect providers)"
        );
        return Ok(USAGE);
    };
    let (db, keyring) = open_database(&store.database).await?;
    Grants::new(db.clone(), keyring)
        .keep(name, account, refresh_token, tokens.scope.as_deref())
        .await?;
    db.close().await;
    println!("Signed in {account} with {name}: the sign-in is kept for later passes.");
    Ok(OK)
}

/// An application's own sign-in (client credentials, a service account) keeps
/// nothing; getting one token shows the configuration works.
async fn check_app_sign_in(profile: &Profile, account: &str) -> Result<u8> {
    let source = profile.token_source(account, None)?;
    match source.access_token().await {
        Ok(_) => {
            println!(
                "{} signs in by itself ({}): nothing to keep. A token was granted for {account}{}.",
                profile.name,
                profile.access.describe(),
                until(source.expires_at().await)
            );
            Ok(OK)
        }
        Err(e) => Ok(oauth_failure(&e)),
    }
}

async fn list(store: &SignInStore) -> Result<u8> {
    let path = store.profiles_file()?;
    let profiles = Profiles::load(&path)?;
    let names: Vec<&str> = profiles.names().collect();
    if names.is_empty() {
        println!("No sign-in profiles in {}.", path.display());
    } else {
        println!("Profiles in {}:", path.display());
        for name in names {
            println!("  {name}: {}", profiles.provider_of(name).unwrap_or(""));
        }
    }
    let (db, keyring) = open_database(&store.database).await?;
    let grants = Grants::new(db.clone(), keyring).list().await?;
    db.close().await;
    if grants.is_empty() {
        println!("No kept sign-ins.");
    }
    for grant in grants {
        println!(
            "  {} with {}: signed in {}, renewed {}{}",
            grant.account,
            grant.profile,
            when(grant.created_at),
            when(grant.updated_at),
            grant
                .scope
                .map(|scope| format!(", scopes {scope}"))
                .unwrap_or_default()
        );
    }
    Ok(OK)
}

/// Revokes the refresh token at the provider where it has a revocation endpoint,
/// then forgets it; forgetting does not wait on a provider that cannot be reached.
async fn logout(name: &str, account: &str, store: &SignInStore) -> Result<u8> {
    let (db, keyring) = open_database(&store.database).await?;
    let grants = Grants::new(db.clone(), keyring);
    let Some(refresh_token) = grants.refresh_token(name, account).await? else {
        db.close().await;
        print_error(
            &format!("no sign-in is kept for {account} with the profile {name}"),
            None,
        );
        return Ok(USAGE);
    };
    let revoked = match load_profiles(store)?.get(name).await {
        Ok(profile) if profile.client.provider().endpoints.revocation.is_some() => profile
            .client
            .revoke(&refresh_token, "refresh_token", account)
            .await
            .map(|()| true)
            .map_err(|e| e.to_string()),
        Ok(profile) => Err(format!(
            "{} offers no revocation endpoint; end the sign-in in the provider's account \
             settings",
            profile.client.provider().name
        )),
        Err(e) => Err(e.to_string()),
    };
    grants.forget(name, account).await?;
    db.close().await;
    match revoked {
        Ok(_) => println!("Signed {account} out of {name}: revoked at the provider and forgotten."),
        Err(why) => {
            println!("Forgot the sign-in of {account} with {name}.");
            eprintln!("warning: not revoked at the provider: {why}");
        }
    }
    Ok(OK)
}

fn load_profiles(store: &SignInStore) -> Result<Profiles> {
    let path = store.profiles_file()?;
    Ok(Profiles::load(&path)?)
}

/// An OAuth error as the command line shows it; the exit code of a sign-in that
/// did not happen.
fn oauth_failure(error: &mailmove_oauth::Error) -> u8 {
    print_error(&error.to_string(), error.remedy());
    if error.is_transient() {
        CONNECTION
    } else {
        USAGE
    }
}

/// The OAuth2 sign-ins of one command: the profiles and the kept sign-ins opened on
/// first use, and every rotated refresh token kept before the command ends.
pub struct SignIns {
    store: SignInStore,
    /// The profiles `--source-oauth` and `--dest-oauth` name.
    source_profile: Option<String>,
    dest_profile: Option<String>,
    profiles: Option<SignInProfiles>,
    writers: Vec<RotationWriter>,
}

impl SignIns {
    pub fn new(args: &OAuthArgs) -> SignIns {
        SignIns {
            store: args.store.clone(),
            source_profile: args.source_oauth.clone(),
            dest_profile: args.dest_oauth.clone(),
            profiles: None,
            writers: Vec::new(),
        }
    }

    /// Makes `account` sign in with the profile `name`.
    pub async fn attach(&mut self, account: &mut Account, name: &str) -> Result<()> {
        if self.profiles.is_none() {
            let (db, keyring) = open_database(&self.store.database)
                .await
                .context("the kept sign-ins")?;
            let profiles = load_profiles(&self.store)?;
            self.profiles = Some(SignInProfiles::new(profiles, Grants::new(db, keyring)));
        }
        let profiles = self.profiles.as_ref().expect("just opened");
        match profiles.attach(account, name).await {
            Ok(writer) => {
                self.writers.extend(writer);
                Ok(())
            }
            Err(SignInError::NotSignedIn { profile, account }) => Err(anyhow!(
                "no sign-in is kept for {account} with the profile {profile}: run \
                 `mailmove auth login {profile} --account {account}` first"
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// [`Self::attach`] for each side the command line gave a profile.
    pub async fn attach_both(&mut self, source: &mut Account, dest: &mut Account) -> Result<()> {
        if let Some(name) = self.source_profile.clone() {
            self.attach(source, &name).await?;
        }
        if let Some(name) = self.dest_profile.clone() {
            self.attach(dest, &name).await?;
        }
        Ok(())
    }

    /// Waits until every rotated refresh token is kept. Call it after the accounts
    /// (and their token sources) are dropped.
    pub async fn finish(self) -> Result<()> {
        for writer in self.writers {
            writer.finish().await.context("keeping a renewed sign-in")?;
        }
        Ok(())
    }
}

/// How `check` tells how a side signed in.
pub async fn describe(account: &Account, profile: Option<&str>) -> Option<String> {
    let tokens = account.tokens.as_ref()?;
    Some(format!(
        "signed in with OAuth2 ({}){}",
        profile.unwrap_or("token"),
        until(tokens.expires_at().await)
    ))
}

fn until(expires_at: Option<std::time::SystemTime>) -> String {
    match expires_at {
        Some(at) => format!(
            ", the token holds until {}",
            when(OffsetDateTime::from(at).unix_timestamp())
        ),
        None => String::new(),
    }
}

fn when(unix: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| unix.to_string())
}
