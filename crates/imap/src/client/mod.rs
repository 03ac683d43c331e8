//! The async IMAP client. [`Client`] is one session: `connection` sets it up (TLS,
//! STARTTLS, COMPRESS) and frames what the server sends; `commands` are the commands a
//! migration sends (LOGIN, LIST, EXAMINE, STATUS, a streaming UID FETCH ...);
//! `appender` pipelines APPENDs, grouped into MULTIAPPEND where offered.

mod appender;
mod commands;
mod connection;

use std::time::Duration;

pub use appender::{AppendOutcome, AppendRequest, Appender};
pub use commands::{FetchStream, MailboxInfo, StorageQuota};
use connection::Connection;
pub use connection::MAX_UNTAGGED;

/// One IMAP session, from the greeting to LOGOUT. Its methods live with what they do:
/// set-up and the wire in `connection`, commands in `commands`, APPENDs in `appender`.
pub struct Client {
    connection: Connection,
    host: String,
    /// The server's port, which OAUTHBEARER names.
    port: u16,
    next_tag: u64,
    capabilities: Vec<String>,
    response_timeout: Duration,
    /// Set after a lost connection or a protocol error: the session is unusable.
    broken: bool,
    /// The server's address is this machine's or a private network's.
    peer_local: bool,
}

impl Client {
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case(name))
    }
}

/// Quotes a mailbox name or string for the wire; a literal where quoting cannot work.
pub fn quote(raw: &[u8]) -> String {
    if raw.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        // Not representable as a quoted string; never valid in a mailbox name either.
        return "\"\"".into();
    }
    let mut out = String::with_capacity(raw.len() + 2);
    out.push('"');
    for ch in String::from_utf8_lossy(raw).chars() {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
    out
}
