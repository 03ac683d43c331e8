//! An IMAP client for copying mailboxes: framing apart from lenient parsing, literals
//! streamed to disk when large, TLS and STARTTLS with verified certificates,
//! pipelined FETCH and APPEND.
//!
//! Only this crate (and the other connectors) open sockets.

mod client;
mod compress;
mod error;
pub mod framing;
pub mod quirks;
pub mod response;

pub use client::{
    AppendOutcome, AppendRequest, Appender, Client, FetchStream, MAX_UNTAGGED, MailboxInfo,
    StorageQuota, quote,
};
pub use error::{Error, is_throttled};
pub use framing::{FrameLimits, LiteralBound, Oversized, tolerated};
pub use mailmove_model::mutf7;
// The connection options live in `mailmove-net`, shared with POP3 and EWS; named
// here too for the crates that reach them through the IMAP client.
pub use mailmove_net::{
    Body, CompressMode, ConnectOptions, NetError, Remedy, TlsOptions, TlsSetupError,
};
pub use response::{Code, Fetch, ListEntry, Namespaces, Status, StatusKind};
