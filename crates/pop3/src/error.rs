//! What went wrong, sorted by who misbehaved, with messages a person can act on.

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
    /// A `-ERR` answer; `command` never holds a password.
    #[error("the server refused {command}: {text}")]
    Err { command: String, text: String },
    #[error("the connection was lost: {0}")]
    ConnectionLost(String),
    #[error("the server broke the protocol: {0}")]
    Protocol(String),
    /// A message larger than its bound (what LIST announced, with room, or the
    /// maximum message size): none of it was kept. The session stays usable when the
    /// answer was read to its end, which `received` then counts whole.
    #[error("{}", too_large(*.received, *.announced, *.bound, *.whole))]
    TooLarge {
        received: u64,
        announced: Option<u64>,
        bound: u64,
        /// The answer was read to its end (else it was cut off past the maximum).
        whole: bool,
    },
}

fn too_large(received: u64, announced: Option<u64>, bound: u64, whole: bool) -> String {
    let received = if whole {
        format!("{received} bytes")
    } else {
        format!("more than {received} bytes")
    };
    match announced {
        Some(announced) if mailmove_net::tolerated(announced) <= bound => {
            format!("the server sent {received} for a message it announced at {announced} bytes")
        }
        _ => format!(
            "the message is {received}, larger than the maximum message size of {bound} bytes"
        ),
    }
}

impl Error {
    /// Worth reconnecting and trying again: the connection failed, not the request, or
    /// the server said the failure is temporary (RFC 3206 `[SYS/TEMP]`, or `[IN-USE]`
    /// when another session holds the maildrop).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::ConnectionLost(_) | Error::Protocol(_) => true,
            Error::Err { text, .. } => is_temporary(text),
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

/// RFC 3206 response codes that mean "later", not "never".
pub(crate) fn is_temporary(text: &str) -> bool {
    let upper = text.to_ascii_uppercase();
    ["[SYS/TEMP", "[IN-USE", "[LOGIN-DELAY"]
        .iter()
        .any(|code| upper.starts_with(code))
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Error::ConnectionLost(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let refused = |text: &str| Error::Err {
            command: "RETR 1".into(),
            text: text.into(),
        };
        assert!(Error::ConnectionLost("x".into()).is_transient());
        assert!(Error::Protocol("x".into()).is_transient());
        assert!(refused("[SYS/TEMP] try again").is_transient());
        assert!(refused("[in-use] locked").is_transient());
        assert!(!refused("There's no message 9.").is_transient());
        assert!(!refused("[SYS/PERM] broken").is_transient());
        assert!(
            Error::Net(mailmove_net::NetError::DataBeforeTls { host: "h".into() })
                .is_connection_setup()
        );
        assert!(
            Error::AuthFailed {
                login: "a".into(),
                text: "b".into()
            }
            .is_connection_setup()
        );
        assert!(!refused("x").is_connection_setup());
    }

    #[test]
    fn remedies_say_which_fix_applies() {
        use mailmove_net::{NetError, Remedy};
        let auth = Error::AuthFailed {
            login: "alice".into(),
            text: "x".into(),
        };
        assert_eq!(auth.remedy(), Some(Remedy::CheckPassword));
        let refused = Error::Net(NetError::PlaintextRefused {
            host: "h".into(),
            why: "it offers no STLS".into(),
        });
        assert_eq!(refused.remedy(), Some(Remedy::EncryptOrAllowPlaintext));
        assert!(!refused.to_string().contains("--"), "{refused}");
        assert_eq!(Error::ConnectionLost("x".into()).remedy(), None);
    }

    #[test]
    fn the_auth_message_says_what_to_check() {
        let error = Error::AuthFailed {
            login: "alice".into(),
            text: "[AUTH] Authentication failed.".into(),
        };
        assert_eq!(
            error.to_string(),
            "login refused for alice: check the password ([AUTH] Authentication failed.)"
        );
    }
}
