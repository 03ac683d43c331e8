//! What every connector (IMAP, POP3, EWS) shares: one set of connection options, a TCP
//! connection with errors a person can act on, to the addresses its policy permits
//! (`policy.rs`: anywhere, or public addresses and an operator's allow-list), TLS with verified certificates, the
//! set-up IMAP and POP3 have in common (TLS at once or after STARTTLS/STLS, plaintext
//! refused), how a session signs in (`sasl.rs`: password, an administrator for a
//! mailbox, an OAuth2 token), the remedies errors point to, a watchdog that gives up a connection on which nothing
//! moved for the response timeout (`watchdog.rs`), and message bodies that stay in memory when
//! small and are spooled to an anonymous temporary file when large.

mod body;
mod connect;
mod options;
mod policy;
mod remedy;
pub mod sasl;
mod setup;
mod tls;
mod watchdog;

pub use body::{Body, BodySink};
pub use connect::{NetError, connect_tcp, tls_handshake_within};
pub use options::{CompressMode, ConnectOptions, DEFAULT_MAX_MESSAGE_SIZE, tolerated};
pub use policy::{Cidr, CidrError, NetworkPolicy, is_internal};
pub use remedy::Remedy;
pub use sasl::{AdminForm, OAuthMechanism, SignIn};
pub use setup::{
    BeforeLogin, Opened, Stream, before_login, no_greeting, nothing_buffered, open, upgrade,
};
pub use tls::{TlsOptions, TlsSetupError, client_config};
pub use watchdog::{Watchdog, is_silence};
