//! mailmove's OAuth2 client: how mailmove gets access tokens for mailboxes at
//! Microsoft 365, Google and any OpenID Connect provider, and keeps them fresh for
//! passes that outlive them.
//!
//! - [`Provider`]: endpoints and mail scopes as data, from a preset
//!   ([`Provider::microsoft`], [`Provider::google`]) or a discovery document
//!   ([`Provider::discover`]); any endpoint can be overridden.
//! - [`Client`]: the grants (authorization code with PKCE and `state`, device code,
//!   client credentials with a secret or a signed assertion, the JWT-bearer grant of
//!   service accounts, refresh, revocation).
//! - [`Profiles`]: an operator's named sign-in profiles (provider, application,
//!   whose access) from a TOML file, each giving a [`TokenSource`] per mailbox.
//! - [`TokenSource`]: a valid token on demand for a pass, renewed ahead of expiry
//!   and after a server refused it, reporting rotated refresh tokens to be sealed.
//!
//! Requests go over `mailmove-net`'s TCP and verified TLS, one connection each,
//! with a timeout and a cap on the answer's size. Tokens, codes, verifiers and client
//! secrets are `Secret`s: never in a URL, a `Debug` or an error message.
//!
//! A pass that signs in to Microsoft 365 with a user's stored refresh token:
//!
//! ```no_run
//! use mailmove_model::Secret;
//! use mailmove_oauth::{Client, ClientAuth, HttpOptions, Provider, Renewal, TokenSource};
//!
//! # async fn pass(stored_refresh_token: Secret<String>) -> Result<(), mailmove_oauth::Error> {
//! let provider = Provider::microsoft("contoso.onmicrosoft.com");
//! let client = Client::new(provider, "app-id", ClientAuth::None, HttpOptions::default());
//! let source = TokenSource::new(
//!     client,
//!     "alice@contoso.com",
//!     Renewal::RefreshToken(stored_refresh_token),
//! )
//! .on_rotation(|rotated| { /* seal and store `rotated` in place of the old one */ });
//! let token = source.access_token().await?; // for XOAUTH2 / OAUTHBEARER
//! // ... the server refused `token` in the middle of the pass:
//! source.invalidate(&token).await;
//! match source.access_token().await {
//!     Ok(_fresh) => { /* reconnect with it */ }
//!     Err(error) if error.needs_sign_in() => { /* the mailbox fails: sign in again */ }
//!     Err(error) if error.is_transient() => { /* retry later */ }
//!     Err(error) => return Err(error),
//! }
//! # Ok(())
//! # }
//! ```

mod client;
mod error;
mod http;
mod jwt;
mod profile;
mod provider;
mod source;

pub use client::{
    Client, ClientAuth, DeviceAuthorization, DevicePoll, PendingAuthorization, ServiceAccount,
    Tokens,
};
pub use error::{Error, OAuthError};
pub use http::HttpOptions;
pub use jwt::SigningKey;
pub use profile::{Access, Profile, Profiles};
pub use provider::{Endpoints, Provider, scopes};
pub use source::{Renewal, RotationHook, TokenSource};
