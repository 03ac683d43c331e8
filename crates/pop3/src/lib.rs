//! A POP3 client for reading a source mailbox: implicit TLS or STLS with verified
//! certificates, USER/PASS or AUTH PLAIN, STAT, LIST, UIDL, TOP and RETR streamed to
//! disk when large. It never sends DELE: the source is never changed.
//!
//! The protocol core does no I/O, so it can be property-tested and fuzzed:
//! [`unstuff`] undoes dot-stuffing in chunks split anywhere, [`response`] reads status
//! lines and listings. [`Client`] drives them over a tokio connection.
//!
//! # Byte-exactness of RETR
//!
//! A message comes back exactly as the server sends it, minus the dot-stuffing: lines
//! that begin with `.`, 8-bit bytes, NUL and bare LF pass untouched. The one change a
//! server makes is the CRLF it adds before the terminator to a message without a final
//! line break; [`Client::retr`] removes it again when the server announced the exact
//! size (see [`unstuff::server_added_line_break`]). Dovecot 2.3 does announce it, and
//! stores bare LFs as CRLF and drops a final lone CR when saving, so what RETR returns
//! is byte for byte what IMAP `BODY[]` returns for the same message.
//!
//! # Flags
//!
//! POP3 has none, but a server with IMAP too may keep one: Dovecot (with its default
//! `pop3_no_flag_updates = no`) marks a message `\Seen` once RETR has sent it, with
//! QUIT or without. TOP does not.
//!
//! # Tolerated server quirks
//!
//! Each has a name, used in the code where it bends.
//!
//! - `BARE_LF`: lines ending in LF alone, in status lines and in multi-line answers,
//!   where `.` LF then ends the answer. No server seen doing it yet (Dovecot sends
//!   CRLF throughout); tolerated because a client that waits for CR would hang.
//! - `LOWERCASE_STATUS`: `+ok` / `-err`. RFC 1939 has the upper-case words only; no
//!   server seen doing it yet, and reading them costs nothing.
//! - `UNSTUFFED_DOT`: a line beginning with a single `.` that is not the terminator.
//!   RFC 1939 says to drop the dot, but only a server that forgot to stuff sends it, so
//!   the dot is kept and the line stays as that server stores it.

mod client;
mod error;
pub mod response;
pub mod unstuff;

pub use client::Client;
pub use error::Error;
pub use mailmove_net::{Body, ConnectOptions, NetError, Remedy, TlsOptions, TlsSetupError};
