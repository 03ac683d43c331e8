//! How to connect, beyond the server's address: one set of options for every
//! connector, filled once from the command line or a project's settings.

use std::time::Duration;

use crate::policy::NetworkPolicy;
use crate::tls::TlsOptions;

/// How to connect, beyond the endpoint itself. IMAP, POP3 and EWS take the same one;
/// a connector ignores what does not apply to it (COMPRESS is IMAP's alone).
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub tls: TlsOptions,
    /// Send a password over an unencrypted connection to a non-loopback host.
    pub allow_plaintext: bool,
    /// Longest wait for the TCP connection and then for the TLS handshake.
    pub connect_timeout: Duration,
    /// Longest wait with no byte moving before the connection counts as lost: over IMAP
    /// and POP3 a gap (a large message arriving slowly but steadily is read to its
    /// end; IMAP's writes are held to it too, see `Watchdog`), over EWS the wait for
    /// an answer's headers and then for each of its next bytes.
    pub response_timeout: Duration,
    /// Messages above this many bytes are spooled to an anonymous temporary file.
    pub spill_threshold: u64,
    /// The largest message copied: one larger (or, over IMAP and POP3, far larger than
    /// the size its server announced) is read and thrown away, never kept, and is an
    /// error for that message alone.
    pub max_message_size: u64,
    /// When to turn on IMAP COMPRESS=DEFLATE.
    pub compress: CompressMode,
    /// Which addresses connections may go to: anywhere by default (the command line),
    /// public ones and an allow-list for the portal's passes.
    pub network: NetworkPolicy,
}

/// 512 MiB: far above what any mail server accepts (Exchange Online: 150 MB, Gmail:
/// 25 MB sent, Dovecot: unlimited by default), far below a full disk.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 512 * 1024 * 1024;

/// The most bytes accepted for a message whose server announced `announced` (IMAP's
/// RFC822.SIZE, POP3's LIST size): servers count sizes a little differently from the
/// bytes they send (line ends, a header added on the way), so it gets room: an
/// eighth, at least 64 KiB.
pub fn tolerated(announced: u64) -> u64 {
    announced.saturating_add((announced / 8).max(64 * 1024))
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            tls: TlsOptions::default(),
            allow_plaintext: false,
            connect_timeout: Duration::from_secs(30),
            response_timeout: Duration::from_secs(300),
            spill_threshold: 2 * 1024 * 1024,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            compress: CompressMode::default(),
            network: NetworkPolicy::default(),
        }
    }
}

/// When a session is compressed (COMPRESS=DEFLATE, RFC 4978), where the server offers it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CompressMode {
    /// Unless the server is on this machine or a private network: there the link is
    /// faster than deflating, and compression would only cost both ends CPU.
    #[default]
    Auto,
    Always,
    Never,
}
