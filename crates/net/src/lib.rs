//! What every connector (IMAP, POP3, later EWS) shares: a TCP connection with errors a
//! person can act on, TLS with verified certificates, and message bodies that stay in
//! memory when small and are spooled to an anonymous temporary file when large.

mod body;
mod connect;
mod tls;

pub use body::{Body, BodySink};
pub use connect::{NetError, connect_tcp, tls_handshake};
pub use tls::{TlsOptions, TlsSetupError, client_config};
