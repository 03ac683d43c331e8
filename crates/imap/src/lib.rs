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
    AppendOutcome, AppendRequest, Appender, Client, CompressMode, ConnectOptions, FetchStream,
    MailboxInfo, StorageQuota, quote,
};
pub use error::{Error, is_throttled};
pub use framing::FrameLimits;
pub use mailmove_model::mutf7;
pub use mailmove_net::{Body, NetError, TlsOptions, TlsSetupError};
pub use response::{Code, Fetch, ListEntry, Namespaces, Status, StatusKind};
