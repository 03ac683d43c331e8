//! Real-server test harnesses, so mailmove is tested against real IMAP/POP3 behaviour
//! instead of mocks: a private Dovecot per test, an independent blocking IMAP client to
//! seed and check mailboxes, deterministic message generators, an EWS server, and a
//! real OAuth2/OpenID Connect provider (`oidc`) whose tokens Dovecot accepts.
//!
//! Nothing here depends on another crate of the workspace: the checker must stay an
//! independent witness of what the code under test did.
//!
//! ```no_run
//! use mailmove_testkit::{Dovecot, messages};
//!
//! # fn main() -> anyhow::Result<()> {
//! let source = Dovecot::start_default()?;
//! source.add_user("alice", "secret")?;
//! let mut checker = source.checker("alice", "secret")?;
//! let body = messages::simple("m1@example.com", "Hello", 1_000);
//! let uid = checker.append("INBOX", &["\\Seen"], Some("01-Jan-2020 10:00:00 +0000"), &body)?;
//! // ... run the code under test against source.host() / source.imap_port() ...
//! let fetched = checker.fetch_all("INBOX")?;
//! assert_eq!(fetched[0].uid, uid);
//! assert_eq!(fetched[0].body, body);
//! # Ok(())
//! # }
//! ```

mod certs;
mod checker;
mod courier;
mod cyrus;
mod daemon;
mod dns;
mod dovecot;
pub mod ews;
pub mod messages;
pub mod oidc;
mod ports;
mod process;
mod web;

pub use checker::{AuthRefusal, CheckedMessage, Checker, ListedFolder, Sasl};
pub use courier::Courier;
pub use cyrus::Cyrus;
pub use dns::{DnsRecord, DnsServer};
pub use dovecot::{Dovecot, DovecotOAuth2, DovecotOptions, MasterUser};
pub use ports::free_port;
pub use web::{WebAnswer, WebSite};

/// A file of the testkit's own directory (`oidc/`, a test's script). Found through
/// the crate directory of the test that runs (cargo sets `CARGO_MANIFEST_DIR` when it
/// runs one; every crate sits beside `testkit/`), since a build reused from another
/// checkout of the same sources keeps that checkout's path in `env!`; else where the
/// testkit was built.
pub fn testkit_path(relative: &str) -> std::path::PathBuf {
    let running = std::env::var_os("CARGO_MANIFEST_DIR").and_then(|dir| {
        let found = std::path::Path::new(&dir)
            .parent()?
            .join("testkit")
            .join(relative);
        found.exists().then_some(found)
    });
    running.unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative))
}
