//! What went wrong, sorted by who misbehaved, with messages a person can act on.

use std::time::Duration;

/// A failure of a whole request. A failure of one item in a batch is an [`ItemError`]
/// inside an `Ok` instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached, or TLS failed (names the address).
    #[error(transparent)]
    Net(#[from] mailmove_net::NetError),
    #[error("{}", describe_bad_url(url, reason))]
    BadUrl { url: String, reason: String },
    #[error(
        "refusing to send the password for {login} in clear to {url}: it is http://, not https://"
    )]
    PlaintextRefused { login: String, url: String },
    #[error(
        "Exchange refused the login for {login}: check the password{}",
        in_parentheses(text)
    )]
    AuthFailed { login: String, text: String },
    #[error("{}", describe_http(*status, text))]
    Http { status: u16, text: String },
    /// A SOAP fault, or a response message that failed the whole request
    /// (`ErrorAccessDenied`, `ErrorNonExistentMailbox`, ...).
    #[error("{}", describe_fault(code, message))]
    Fault { code: String, message: String },
    #[error(
        "Exchange kept answering that it is busy (throttling) after mailmove waited {} s in \
         total for this request; try again later or with fewer connections",
        waited.as_secs()
    )]
    Throttled { waited: Duration },
    #[error("the connection to Exchange was lost: {0}")]
    ConnectionLost(String),
    #[error("Exchange sent an answer mailmove cannot read: {0}")]
    Protocol(String),
    #[error("autodiscover found no EWS address for {email}: {tried}")]
    AutodiscoverFailed { email: String, tried: String },
}

impl Error {
    /// Worth trying again later: the connection or the server's load failed, not the
    /// request.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Throttled { .. } | Error::ConnectionLost(_) | Error::Protocol(_) => true,
            Error::Http { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            Error::Fault { code, .. } => is_transient_code(code),
            _ => false,
        }
    }

    /// Which fix applies, when one does: the program that shows the error words it.
    pub fn remedy(&self) -> Option<mailmove_net::Remedy> {
        match self {
            Error::Net(e) => e.remedy(),
            Error::PlaintextRefused { .. } => Some(mailmove_net::Remedy::EncryptOrAllowPlaintext),
            Error::AuthFailed { .. } => Some(mailmove_net::Remedy::CheckPassword),
            _ => None,
        }
    }

    /// Could not connect or log in at all, or the account cannot open the mailbox: the
    /// kind a person must fix before anything is copied.
    pub fn is_connection_setup(&self) -> bool {
        match self {
            Error::Net(_)
            | Error::BadUrl { .. }
            | Error::PlaintextRefused { .. }
            | Error::AuthFailed { .. }
            | Error::AutodiscoverFailed { .. } => true,
            Error::Http { status, .. } => matches!(status, 301..=308 | 401 | 403 | 404),
            Error::Fault { code, .. } => matches!(
                code.as_str(),
                "ErrorAccessDenied"
                    | "ErrorNonExistentMailbox"
                    | "ErrorImpersonateUserDenied"
                    | "ErrorInvalidSmtpAddress"
                    | "ErrorMailboxConfiguration"
                    | "ErrorNoRespondingCASInDestinationSite"
            ),
            _ => false,
        }
    }

    /// The EWS response code of a fault, e.g. `ErrorFolderExists`.
    pub fn fault_code(&self) -> Option<&str> {
        match self {
            Error::Fault { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// One item of a batch failed (`ErrorItemNotFound`, `ErrorMessageSizeExceeded`, ...);
/// the rest of the batch is unaffected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe_fault(code, message))]
pub struct ItemError {
    /// The EWS response code, e.g. `ErrorItemNotFound`.
    pub code: String,
    pub message: String,
}

impl ItemError {
    /// Worth trying this item again later.
    pub fn is_transient(&self) -> bool {
        is_transient_code(&self.code)
    }
}

/// EWS response codes that mean "later", not "never".
pub(crate) fn is_transient_code(code: &str) -> bool {
    matches!(
        code,
        "ErrorServerBusy"
            | "ErrorInternalServerTransientError"
            | "ErrorTimeoutExpired"
            | "ErrorMailboxStoreUnavailable"
            | "ErrorMailboxMoveInProgress"
            | "ErrorConnectionFailed"
            | "ErrorBatchProcessingStopped"
            | "ErrorTooManyObjectsOpened"
            | "ErrorExceededConnectionCount"
    )
}

fn in_parentheses(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(" ({text})")
    }
}

fn describe_bad_url(url: &str, reason: &str) -> String {
    format!("{url} is not a usable EWS address: {reason}")
}

fn describe_http(status: u16, text: &str) -> String {
    let hint = match status {
        301..=308 => {
            "Exchange redirected the request, usually to a web login page: the URL is \
             probably not the EWS endpoint (it ends in /EWS/Exchange.asmx)"
        }
        403 => {
            "Exchange forbids EWS for this account: an administrator may have disabled it \
             (Set-CASMailbox -EwsEnabled) or blocked this client"
        }
        404 => "there is no EWS endpoint at this URL (it ends in /EWS/Exchange.asmx)",
        429 | 503 => "Exchange is overloaded or throttling",
        500..=599 => "Exchange failed while answering",
        _ => "Exchange answered with an unexpected HTTP status",
    };
    if text.is_empty() {
        format!("{hint} (HTTP {status})")
    } else {
        format!("{hint} (HTTP {status}: {text})")
    }
}

/// The code of an [`ItemError`] mailmove makes itself: the item's MIME content was
/// larger than the maximum message size and none of it was kept.
pub const MIME_TOO_LARGE: &str = "mailmove:MimeContentTooLarge";

fn describe_fault(code: &str, message: &str) -> String {
    if code == MIME_TOO_LARGE {
        return message.to_string();
    }
    let hint = match code {
        "ErrorAccessDenied" => Some(
            "the account lacks access to this mailbox or folder: grant it FullAccess on the \
             mailbox, or log in as the mailbox owner",
        ),
        "ErrorNonExistentMailbox" | "ErrorInvalidSmtpAddress" => {
            Some("Exchange has no mailbox at this address")
        }
        "ErrorImpersonateUserDenied" => {
            Some("the account may not impersonate this mailbox (ApplicationImpersonation role)")
        }
        "ErrorServerBusy" => Some("Exchange is busy (throttling)"),
        "ErrorMessageSizeExceeded" => Some(
            "the message is larger than Exchange accepts (maxReceivedMessageSize / MaxSendSize)",
        ),
        "ErrorQuotaExceeded" => Some("the mailbox is over its quota"),
        "ErrorItemNotFound" => Some("the item no longer exists"),
        "ErrorFolderNotFound" => Some("the folder no longer exists"),
        _ => None,
    };
    match (hint, message.is_empty()) {
        (Some(hint), true) => format!("{hint} ({code})"),
        (Some(hint), false) => format!("{hint} ({code}: {message})"),
        (None, true) => format!("Exchange refused the request: {code}"),
        (None, false) => format!("Exchange refused the request: {code}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_say_what_to_do() {
        let auth = Error::AuthFailed {
            login: "alice@example.com".into(),
            text: String::new(),
        };
        assert_eq!(
            auth.to_string(),
            "Exchange refused the login for alice@example.com: check the password"
        );
        let denied = Error::Fault {
            code: "ErrorAccessDenied".into(),
            message: "Access is denied.".into(),
        };
        assert!(denied.to_string().contains("lacks access to this mailbox"));
        assert!(denied.is_connection_setup());
        assert!(!denied.is_transient());
    }

    #[test]
    fn texts_name_no_flag_and_remedies_say_which_fix() {
        use mailmove_net::Remedy;
        let refused = Error::PlaintextRefused {
            login: "alice".into(),
            url: "http://mail.example/EWS/Exchange.asmx".into(),
        };
        assert_eq!(
            refused.to_string(),
            "refusing to send the password for alice in clear to \
             http://mail.example/EWS/Exchange.asmx: it is http://, not https://"
        );
        assert_eq!(refused.remedy(), Some(Remedy::EncryptOrAllowPlaintext));
        let untrusted = Error::Net(mailmove_net::NetError::UntrustedCertificate {
            host: "mail.example".into(),
            reason: "it has expired".into(),
        });
        assert_eq!(
            untrusted.to_string(),
            "certificate for mail.example is not trusted: it has expired"
        );
        assert_eq!(untrusted.remedy(), Some(Remedy::TrustCertificate));
        let auth = Error::AuthFailed {
            login: "alice".into(),
            text: String::new(),
        };
        assert_eq!(auth.remedy(), Some(Remedy::CheckPassword));
        assert_eq!(Error::Protocol("x".into()).remedy(), None);
    }

    #[test]
    fn kinds() {
        assert!(
            Error::Throttled {
                waited: Duration::from_secs(1)
            }
            .is_transient()
        );
        assert!(
            Error::Http {
                status: 503,
                text: String::new()
            }
            .is_transient()
        );
        assert!(
            Error::Http {
                status: 404,
                text: String::new()
            }
            .is_connection_setup()
        );
        let busy = ItemError {
            code: "ErrorServerBusy".into(),
            message: String::new(),
        };
        assert!(busy.is_transient());
    }
}
