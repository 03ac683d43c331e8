//! Access tokens for a pass that outlives them: a `TokenSource` hands out a valid
//! token, gets a new one ahead of expiry or after a server refused the current one,
//! and tells its owner when the provider rotated the refresh token, so the new one
//! can be sealed and stored before the old one stops working.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mailmove_model::Secret;
use tokio::sync::Mutex;

use crate::client::{Client, ServiceAccount, Tokens};
use crate::error::Error;

/// A token is renewed when a tenth of its lifetime remains, a minute at most (so a
/// token that lives seconds is still used for most of them) ...
const RENEW_AHEAD_AT_MOST: Duration = Duration::from_secs(60);
/// ... and a second more: providers count lifetimes in whole seconds from a time
/// rounded down, so a token may end up to a second before `expires_in` says.
const ROUNDING: Duration = Duration::from_secs(1);

/// How a new access token is had.
#[derive(Clone, Debug)]
pub enum Renewal {
    /// A user's refresh token (delegated access).
    RefreshToken(Secret<String>),
    /// The application's own credentials (app-only access).
    ClientCredentials { scopes: Vec<String> },
    /// A service account acting for `subject` (Google's domain-wide delegation).
    JwtBearer {
        account: ServiceAccount,
        subject: String,
        scopes: Vec<String>,
    },
}

/// Called with each refresh token the provider rotated to; the old one is then
/// useless (and presenting it again may revoke the whole grant).
pub type RotationHook = Arc<dyn Fn(&Secret<String>) + Send + Sync>;

/// A valid access token on demand for one mailbox. Shared by a pass's lanes
/// (`&self` methods; one renewal at a time).
pub struct TokenSource {
    client: Client,
    account: String,
    on_rotation: Option<RotationHook>,
    state: Mutex<State>,
}

struct State {
    renewal: Renewal,
    current: Option<Current>,
}

struct Current {
    token: Secret<String>,
    /// When to renew: ahead of the expiry; `None` when the provider named no expiry
    /// (renewed only after a refusal).
    renew_at: Option<Instant>,
    expires_at: Option<SystemTime>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("account", &self.account)
            .field("provider", &self.client.provider().name)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// A source for `account` (the mailbox, named in errors) that gets its first
    /// token by `renewal`.
    pub fn new(client: Client, account: impl Into<String>, renewal: Renewal) -> TokenSource {
        TokenSource {
            client,
            account: account.into(),
            on_rotation: None,
            state: Mutex::new(State {
                renewal,
                current: None,
            }),
        }
    }

    /// Starts from tokens already had (a sign-in just finished): the access token is
    /// used until it is due, and a refresh token in them replaces one in the renewal.
    pub fn with_tokens(self, tokens: &Tokens) -> TokenSource {
        let mut state = self.state.into_inner();
        if let (Renewal::RefreshToken(old), Some(new)) = (&mut state.renewal, &tokens.refresh_token)
        {
            *old = new.clone();
        }
        state.current = Some(Current::from(tokens));
        TokenSource {
            state: Mutex::new(state),
            ..self
        }
    }

    /// `hook` is called with every rotated refresh token, before the new access token
    /// is handed out. Other callers wait meanwhile: keep it quick (send the token to
    /// whoever seals and stores it).
    pub fn on_rotation(mut self, hook: impl Fn(&Secret<String>) + Send + Sync + 'static) -> Self {
        self.on_rotation = Some(Arc::new(hook));
        self
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// A token that is not due for renewal, renewed first if it is. While the
    /// provider cannot be reached, a token that is due but not yet expired is still
    /// handed out.
    pub async fn access_token(&self) -> Result<Secret<String>, Error> {
        let mut state = self.state.lock().await;
        if let Some(current) = &state.current
            && current.renew_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok(current.token.clone());
        }
        match self.renew(&mut state).await {
            Err(error) if error.is_transient() => match &state.current {
                Some(current) if current.expires_at.is_some_and(|at| SystemTime::now() < at) => {
                    tracing::debug!(account = %self.account, "renewal failed, token still valid: {error}");
                    Ok(current.token.clone())
                }
                _ => Err(error),
            },
            result => result,
        }
    }

    /// A server refused `refused`: the next [`Self::access_token`] gets a new one.
    /// A token other than the current one (another lane already renewed) is ignored,
    /// so one refusal seen by many lanes renews once.
    pub async fn invalidate(&self, refused: &Secret<String>) {
        let mut state = self.state.lock().await;
        if state
            .current
            .as_ref()
            .is_some_and(|current| current.token == *refused)
        {
            state.current = None;
        }
    }

    /// Until when the current token holds, if one is held and its expiry is known.
    pub async fn expires_at(&self) -> Option<SystemTime> {
        let state = self.state.lock().await;
        state
            .current
            .as_ref()
            .and_then(|current| current.expires_at)
    }

    async fn renew(&self, state: &mut State) -> Result<Secret<String>, Error> {
        let tokens = match &state.renewal {
            Renewal::RefreshToken(refresh) => self.client.refresh(refresh, &self.account).await?,
            Renewal::ClientCredentials { scopes } => {
                let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
                self.client.client_credentials(&scopes).await?
            }
            Renewal::JwtBearer {
                account,
                subject,
                scopes,
            } => {
                let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
                self.client.jwt_bearer(account, subject, &scopes).await?
            }
        };
        if let (Renewal::RefreshToken(old), Some(new)) = (&mut state.renewal, &tokens.refresh_token)
            && old != new
        {
            *old = new.clone();
            if let Some(hook) = &self.on_rotation {
                hook(new);
            }
        }
        let current = Current::from(&tokens);
        let token = current.token.clone();
        state.current = Some(current);
        Ok(token)
    }
}

impl From<&Tokens> for Current {
    fn from(tokens: &Tokens) -> Current {
        let now = Instant::now();
        // Measured from now rather than from `tokens.expires_at`: a few milliseconds
        // early at worst, and immune to the wall clock moving.
        let remaining = tokens
            .expires_at
            .map(|at| at.duration_since(SystemTime::now()).unwrap_or_default());
        let renew_at = remaining.map(|remaining| {
            let lifetime = tokens.lifetime.unwrap_or(remaining);
            now + remaining.saturating_sub(renew_ahead(lifetime))
        });
        Current {
            token: tokens.access_token.clone(),
            renew_at,
            expires_at: tokens.expires_at,
        }
    }
}

/// How long before expiry a token of `lifetime` is renewed.
fn renew_ahead(lifetime: Duration) -> Duration {
    (lifetime / 10).min(RENEW_AHEAD_AT_MOST) + ROUNDING
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pass's lanes share one source across tasks.
    #[test]
    fn a_source_is_shared_by_spawned_tasks() {
        fn spawnable<T: Send + 'static>(_: &T) {}
        fn check(source: Arc<TokenSource>, refused: Secret<String>) {
            spawnable(&async move {
                source.invalidate(&refused).await;
                source.access_token().await
            });
        }
        let _ = check;
    }

    #[test]
    fn renewal_comes_a_tenth_early_or_a_minute_at_most_and_a_second_more() {
        assert_eq!(
            renew_ahead(Duration::from_secs(3600)),
            Duration::from_secs(61)
        );
        assert_eq!(
            renew_ahead(Duration::from_secs(300)),
            Duration::from_secs(31)
        );
        assert_eq!(
            renew_ahead(Duration::from_secs(4)),
            Duration::from_millis(1400)
        );
    }
}
