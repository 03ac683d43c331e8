//! What went wrong, sorted by who misbehaved, with messages a person can act on.

use crate::response::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Net(#[from] mailmove_net::NetError),
    #[error("login refused for {login}: check the password ({text})")]
    AuthFailed { login: String, text: String },
    /// The server refused an OAuth2 access token: expired, revoked, or for another
    /// mailbox. A fresh token may pass.
    #[error("the server refused the access token for {user} ({text})")]
    TokenRefused { user: String, text: String },
    /// The server does not offer what this sign-in needs.
    #[error("the server does not offer {needed}, which this sign-in needs")]
    CannotSignIn { needed: String },
    #[error("the server refused {command}: {}", status.describe())]
    No { command: String, status: Status },
    #[error("the server rejected {command} as invalid: {}", status.describe())]
    Bad { command: String, status: Status },
    #[error("the connection was lost: {0}")]
    ConnectionLost(String),
    #[error("the server broke the protocol: {0}")]
    Protocol(String),
}

impl Error {
    /// Worth reconnecting and trying again: the connection failed, not the request.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::ConnectionLost(_) | Error::Protocol(_) => true,
            Error::No { status, .. } => is_throttled(status),
            _ => false,
        }
    }

    /// Which fix applies, when one does: the program that shows the error words it.
    pub fn remedy(&self) -> Option<mailmove_net::Remedy> {
        match self {
            Error::Net(e) => e.remedy(),
            Error::AuthFailed { .. } => Some(mailmove_net::Remedy::CheckPassword),
            Error::TokenRefused { .. } => Some(mailmove_net::Remedy::SignInAgain),
            Error::CannotSignIn { .. } => Some(mailmove_net::Remedy::OtherSignIn),
            _ => None,
        }
    }

    /// Could not connect or log in at all: the exit code 3 kind.
    pub fn is_connection_setup(&self) -> bool {
        matches!(
            self,
            Error::Net(_)
                | Error::AuthFailed { .. }
                | Error::TokenRefused { .. }
                | Error::CannotSignIn { .. }
        )
    }
}

/// Throttling answers that mean "slow down", not "this failed".
pub fn is_throttled(status: &Status) -> bool {
    let text = status.describe().to_ascii_uppercase();
    [
        "[THROTTLED]",
        "[UNAVAILABLE]",
        "SERVER UNAVAILABLE",
        "TRY AGAIN LATER",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

impl From<crate::framing::FrameError> for Error {
    fn from(error: crate::framing::FrameError) -> Self {
        match error {
            crate::framing::FrameError::Closed => {
                Error::ConnectionLost("the server closed the connection".into())
            }
            crate::framing::FrameError::LineTooLong(n) => {
                Error::Protocol(format!("a response line longer than {n} bytes"))
            }
            crate::framing::FrameError::TooManyLiterals(n) => {
                Error::Protocol(format!("a response with more than {n} literals"))
            }
            crate::framing::FrameError::Io(e) => Error::from(e),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        // TLS's own words for a connection cut without a goodbye end in a link to
        // rustls's manual: the person reading the error needs the plain fact.
        if error.kind() == std::io::ErrorKind::UnexpectedEof
            && error.to_string().contains("close_notify")
        {
            return Error::ConnectionLost(
                "the connection was cut in the middle of an answer".into(),
            );
        }
        Error::ConnectionLost(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailmove_net::{NetError, Remedy};

    #[test]
    fn a_tls_connection_cut_is_said_plainly() {
        let cut = std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify: https://docs.rs/rustls/",
        );
        assert_eq!(
            Error::from(cut).to_string(),
            Error::ConnectionLost("the connection was cut in the middle of an answer".into())
                .to_string()
        );
    }

    #[test]
    fn remedies_say_which_fix_applies() {
        let untrusted = Error::Net(NetError::UntrustedCertificate {
            host: "mail.old.example".into(),
            reason: "it was issued by an authority this machine does not trust".into(),
        });
        assert_eq!(untrusted.remedy(), Some(Remedy::TrustCertificate));
        assert!(!untrusted.to_string().contains("--"), "{untrusted}");
        let auth = Error::AuthFailed {
            login: "alice".into(),
            text: "x".into(),
        };
        assert_eq!(auth.remedy(), Some(Remedy::CheckPassword));
        assert_eq!(Error::Protocol("x".into()).remedy(), None);
    }
}
