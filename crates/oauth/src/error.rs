//! Why a sign-in failed, in the user's terms, with the provider's OAuth `error` code
//! kept machine-readable so callers can tell "sign in again" from "try later".
//!
//! No variant ever holds a token, a refresh token, a client secret or a code: the
//! provider's own description is scrubbed of every secret the request carried before
//! it is kept (`http::scrub`).

use std::fmt;

use mailmove_net::{NetError, Remedy};

/// An OAuth error answer (RFC 6749 §5.2, RFC 8628 §3.5): `error` and, when the
/// provider sent one, `error_description`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthError {
    /// The machine-readable code: `invalid_grant`, `invalid_client`,
    /// `access_denied`, `expired_token`, ...
    pub code: String,
    pub description: Option<String>,
}

impl OAuthError {
    /// The grant behind the request is gone (revoked, expired, used twice, the
    /// user's password changed) or was never given (denied, consent missing): only a
    /// new sign-in, or an administrator's consent, helps. OpenID Connect Core §3.1.2.6
    /// names the last three.
    pub fn needs_sign_in(&self) -> bool {
        matches!(
            self.code.as_str(),
            "invalid_grant"
                | "access_denied"
                | "expired_token"
                | "interaction_required"
                | "login_required"
                | "consent_required"
        )
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code)?;
        if let Some(description) = &self.description {
            write!(f, " ({description})")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong talking to a provider.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The provider answered the request with an OAuth error.
    #[error("{provider} refused {action} for {account}: {error}")]
    Refused {
        /// The provider's name: "Microsoft", "Google", or its issuer's host.
        provider: String,
        /// What was asked, in words: "the sign-in", "the token refresh", ...
        action: &'static str,
        /// Whose sign-in: a mailbox, a service account acting for one, or the
        /// application itself.
        account: String,
        error: OAuthError,
    },
    /// The device code expired before the user approved it.
    #[error("the code for {account} expired before it was approved at the provider")]
    DeviceCodeExpired { account: String },
    /// The provider could not be reached (connection, TLS, timeout).
    #[error("cannot reach the provider at {url}: {reason}")]
    Unreachable {
        url: String,
        reason: String,
        #[source]
        net: Option<NetError>,
    },
    /// The provider failed on its side (HTTP 5xx, 429): worth trying again later.
    #[error("the provider at {url} failed (HTTP {status}); try again later")]
    ProviderFailed { url: String, status: u16 },
    /// The provider answered something an OAuth provider must not.
    #[error("the provider at {url} gave an answer mailmove cannot use: {reason}")]
    BadAnswer { url: String, reason: String },
    /// The configuration given cannot work (an endpoint that is not HTTPS, an endpoint
    /// the provider does not have, an unreadable key or CA file).
    #[error("{0}")]
    Configuration(String),
    /// The redirect back from the provider does not belong to this sign-in.
    #[error("the answer from the provider does not belong to this sign-in: {0}")]
    Mismatch(&'static str),
}

impl Error {
    /// The OAuth error answer inside, if the provider refused.
    pub fn oauth(&self) -> Option<&OAuthError> {
        match self {
            Error::Refused { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Only a new sign-in (by the user, or the administrator's consent) can fix it.
    pub fn needs_sign_in(&self) -> bool {
        match self {
            Error::Refused { error, .. } => error.needs_sign_in(),
            Error::DeviceCodeExpired { .. } => true,
            _ => false,
        }
    }

    /// Worth trying again later with the same credentials: the provider was
    /// unreachable, slow or failing on its side.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { net, .. } => !matches!(
                net,
                Some(NetError::UntrustedCertificate { .. } | NetError::Setup(_))
            ),
            Error::ProviderFailed { .. } => true,
            Error::Refused { error, .. } => {
                matches!(
                    error.code.as_str(),
                    "temporarily_unavailable" | "server_error"
                )
            }
            _ => false,
        }
    }

    /// Which fix applies, for the program that shows the error to word.
    pub fn remedy(&self) -> Option<Remedy> {
        if self.needs_sign_in() {
            return Some(Remedy::SignInAgain);
        }
        match self {
            Error::Unreachable { net: Some(net), .. } => net.remedy(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_names_the_account_and_keeps_the_code() {
        let error = Error::Refused {
            provider: "Microsoft".into(),
            action: "the sign-in",
            account: "alice@example.test".into(),
            error: OAuthError {
                code: "invalid_grant".into(),
                description: Some("grant request is invalid".into()),
            },
        };
        assert_eq!(
            error.to_string(),
            "Microsoft refused the sign-in for alice@example.test: \
             invalid_grant (grant request is invalid)"
        );
        assert!(error.needs_sign_in());
        assert!(!error.is_transient());
        assert_eq!(error.remedy(), Some(Remedy::SignInAgain));
    }

    #[test]
    fn server_failures_are_transient() {
        let error = Error::ProviderFailed {
            url: "https://login.example.test/token".into(),
            status: 503,
        };
        assert!(error.is_transient());
        assert!(!error.needs_sign_in());
    }
}
