//! An Exchange Web Services server for tests, since no Exchange can run here: it answers
//! the operations a mailbox migration needs with the shapes Microsoft documents
//! (MS-OXWSCORE, MS-OXWSFOLD, MS-OXWSSYNC, MS-OXWSMSG, MS-OXWSXPROP, messages.xsd and
//! types.xsd), authenticates with Basic, NTLM or a bearer token, and misbehaves on
//! demand (ErrorServerBusy, HTTP throttling, size limits, slowness).
//!
//! Messages are kept as the exact MIME bytes they were created from (a real Exchange
//! re-renders them), so byte-exact copies can be checked.
//!
//! ```no_run
//! use mailmove_testkit::ews::{EwsConfig, EwsServer, Seed};
//!
//! # fn main() -> anyhow::Result<()> {
//! let server = EwsServer::start(EwsConfig::default())?;
//! server.add_user("alice@example.com", "secret");
//! server.add_message("alice@example.com", &["Inbox"], b"Subject: hi\r\n\r\nbody\r\n", Seed::default())?;
//! // ... point the code under test at server.url() ...
//! assert_eq!(server.messages("alice@example.com", &["Inbox"]).len(), 1);
//! # Ok(())
//! # }
//! ```

mod autodiscover;
mod http;
mod ntlm;

/// NTLM from the client's side (NEGOTIATE and NTLMv2 AUTHENTICATE messages), for tests
/// that speak raw HTTP to the server.
pub use ntlm::client as ntlm_client;
mod soap;
mod store;
mod xml;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use time::OffsetDateTime;

use crate::certs;
use store::Store;

/// An authentication scheme the server offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthScheme {
    /// `Authorization: Basic`, with the address or the local part as login.
    Basic,
    /// NTLMv2, bound to the connection as IIS does.
    Ntlm,
    /// `Authorization: Bearer <token>` with this token. The mailbox is the one named by
    /// `X-AnchorMailbox`, or the only user when there is one.
    Bearer(String),
}

/// How the server is set up. Everything else can be changed while it runs.
#[derive(Debug, Clone)]
pub struct EwsConfig {
    /// The schemes offered, in the order of the `WWW-Authenticate` headers.
    pub auth: Vec<AuthScheme>,
    /// HTTPS with a certificate from a fresh test CA (see [`EwsServer::ca_pem`]).
    pub https: bool,
    /// The NetBIOS domain the NTLM challenge announces.
    pub netbios_domain: String,
    /// Largest MIME accepted by CreateItem; `None` for no limit.
    pub max_message_size: Option<usize>,
}

impl Default for EwsConfig {
    /// Basic and NTLM over plain HTTP, no size limit.
    fn default() -> Self {
        EwsConfig {
            auth: vec![AuthScheme::Basic, AuthScheme::Ntlm],
            https: false,
            netbios_domain: "MAILMOVE".to_string(),
            max_message_size: None,
        }
    }
}

impl EwsConfig {
    /// Basic only.
    pub fn basic() -> Self {
        EwsConfig {
            auth: vec![AuthScheme::Basic],
            ..EwsConfig::default()
        }
    }

    /// NTLM only.
    pub fn ntlm() -> Self {
        EwsConfig {
            auth: vec![AuthScheme::Ntlm],
            ..EwsConfig::default()
        }
    }

    /// Bearer tokens only.
    pub fn bearer(token: &str) -> Self {
        EwsConfig {
            auth: vec![AuthScheme::Bearer(token.to_string())],
            ..EwsConfig::default()
        }
    }

    /// Basic, NTLM and this bearer token.
    pub fn any(token: &str) -> Self {
        EwsConfig {
            auth: vec![
                AuthScheme::Basic,
                AuthScheme::Ntlm,
                AuthScheme::Bearer(token.to_string()),
            ],
            ..EwsConfig::default()
        }
    }

    /// The same over HTTPS.
    pub fn with_https(self) -> Self {
        EwsConfig {
            https: true,
            ..self
        }
    }
}

/// A message's follow-up flag (EWS `FlagStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlagStatus {
    #[default]
    NotFlagged,
    Flagged,
    Complete,
}

impl FlagStatus {
    fn as_str(self) -> &'static str {
        match self {
            FlagStatus::NotFlagged => "NotFlagged",
            FlagStatus::Flagged => "Flagged",
            FlagStatus::Complete => "Complete",
        }
    }

    fn parse(text: &str) -> Option<FlagStatus> {
        match text.trim() {
            "NotFlagged" => Some(FlagStatus::NotFlagged),
            "Flagged" => Some(FlagStatus::Flagged),
            "Complete" => Some(FlagStatus::Complete),
            _ => None,
        }
    }

    /// PR_FLAG_STATUS (0x1090): 0 none, 1 complete, 2 flagged.
    fn mapi_value(self) -> i32 {
        match self {
            FlagStatus::NotFlagged => 0,
            FlagStatus::Complete => 1,
            FlagStatus::Flagged => 2,
        }
    }
}

/// The state of a message seeded with [`EwsServer::add_message`], as if delivered.
#[derive(Debug, Clone)]
pub struct Seed {
    pub is_read: bool,
    pub flag: FlagStatus,
    pub categories: Vec<String>,
    /// DateTimeReceived (PR_MESSAGE_DELIVERY_TIME).
    pub received: OffsetDateTime,
}

impl Default for Seed {
    /// Unread, not flagged, no categories, received 2024-01-01 00:00 UTC.
    fn default() -> Self {
        Seed {
            is_read: false,
            flag: FlagStatus::NotFlagged,
            categories: Vec::new(),
            received: time::macros::datetime!(2024-01-01 0:00 UTC),
        }
    }
}

/// A folder as tests see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderSnapshot {
    /// The EWS FolderId.
    pub id: String,
    /// Display names from below `msgfolderroot` down to the folder.
    pub path: Vec<String>,
    /// FolderClass (`IPF.Note`, `IPF.Appointment`, …), if set.
    pub class: Option<String>,
    /// The distinguished id (`inbox`, `sentitems`, …), if it has one.
    pub distinguished: Option<String>,
}

/// An extended MAPI property as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendedSnapshot {
    /// For tagged properties: the 16-bit property id.
    pub property_tag: Option<u16>,
    /// For named properties: the property set GUID, lowercase.
    pub property_set_id: Option<String>,
    pub property_name: Option<String>,
    pub property_id: Option<u32>,
    /// The EWS type name: `Integer`, `String`, `SystemTime`, `StringArray`, …
    pub property_type: String,
    /// One value, or several for array types.
    pub values: Vec<String>,
}

/// A message as tests see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemSnapshot {
    /// The EWS ItemId.
    pub id: String,
    /// The MIME bytes exactly as created.
    pub mime: Vec<u8>,
    pub subject: Option<String>,
    pub is_read: bool,
    pub is_draft: bool,
    /// PR_MESSAGE_FLAGS.
    pub message_flags: i32,
    pub flag: FlagStatus,
    pub categories: Vec<String>,
    /// DateTimeReceived (PR_MESSAGE_DELIVERY_TIME).
    pub received: OffsetDateTime,
    /// DateTimeSent (PR_CLIENT_SUBMIT_TIME), from the Date header unless set.
    pub sent: Option<OffsetDateTime>,
    /// Extended properties stored with the item (not the ones computed from fields).
    pub extended: Vec<ExtendedSnapshot>,
}

/// Faults and limits a test may change at any time.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub busy: u32,
    pub busy_backoff_ms: u64,
    pub throttle: u32,
    pub throttle_status: u16,
    pub throttle_retry_after: u64,
    pub delay: Duration,
    pub max_message_size: Option<usize>,
}

/// What the serving thread and the test share.
pub(crate) struct Shared {
    pub auth: Vec<AuthScheme>,
    pub names: ntlm::ServerNames,
    pub base_url: String,
    pub store: Mutex<Store>,
    pub faults: Mutex<Faults>,
    pub counts: Mutex<BTreeMap<String, usize>>,
}

impl Shared {
    pub fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.faults)
    }

    pub fn ews_url(&self) -> String {
        format!("{}/EWS/Exchange.asmx", self.base_url)
    }
}

/// A poisoned lock only means another test thread panicked; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running EWS server on 127.0.0.1, on its own thread and tokio runtime. Dropping it
/// stops it.
pub struct EwsServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    ca_file: Option<tempfile::NamedTempFile>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EwsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EwsServer")
            .field("url", &self.url())
            .finish()
    }
}

impl EwsServer {
    /// Binds a free port on 127.0.0.1 and starts serving.
    pub fn start(config: EwsConfig) -> Result<EwsServer> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let scheme = if config.https { "https" } else { "http" };

        let (tls, ca_file) = if config.https {
            let generated = certs::generate()?;
            let tls =
                crate::certs::tls_acceptor(&generated.server_cert_pem, &generated.server_key_pem)?;
            let mut file = tempfile::Builder::new()
                .prefix("ews-ca-")
                .suffix(".pem")
                .tempfile()?;
            std::io::Write::write_all(&mut file, generated.ca_pem.as_bytes())?;
            (Some(tls), Some(file))
        } else {
            (None, None)
        };

        let shared = Arc::new(Shared {
            auth: config.auth,
            names: ntlm::ServerNames {
                netbios_domain: config.netbios_domain,
                netbios_computer: "EXCH01".to_string(),
                dns_domain: "mailmove.test".to_string(),
            },
            base_url: format!("{scheme}://127.0.0.1:{}", addr.port()),
            store: Mutex::new(Store::default()),
            faults: Mutex::new(Faults {
                max_message_size: config.max_message_size,
                ..Faults::default()
            }),
            counts: Mutex::new(BTreeMap::new()),
        });

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("ews-server")
            .build()
            .context("building the EWS server's runtime")?;
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ews-server".to_string())
            .spawn(move || {
                runtime.block_on(http::serve(listener, tls, thread_shared, shutdown_rx));
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;

        Ok(EwsServer {
            shared,
            addr,
            ca_file,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The EWS endpoint, e.g. `http://127.0.0.1:41234/EWS/Exchange.asmx`.
    pub fn url(&self) -> String {
        self.shared.ews_url()
    }

    /// Scheme, host and port, e.g. `https://127.0.0.1:41234`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The PEM file of the CA that signed the HTTPS certificate (for `localhost` and
    /// `127.0.0.1`); `None` over plain HTTP.
    pub fn ca_pem(&self) -> Option<&Path> {
        self.ca_file.as_ref().map(|f| f.path())
    }

    /// Creates a mailbox with the default folders, or changes an existing one's password.
    pub fn add_user(&self, email: &str, password: &str) {
        self.shared.store().add_user(email, password);
    }

    /// Gives `email` Exchange's ApplicationImpersonation role: its requests may carry
    /// an `ExchangeImpersonation` header and act for any mailbox.
    pub fn allow_impersonation(&self, email: &str) {
        self.shared
            .store()
            .impersonators
            .insert(email.to_lowercase());
    }

    /// Changes a user's password (existing NTLM connections stay authenticated).
    pub fn set_password(&self, email: &str, password: &str) -> Result<()> {
        let mut store = self.shared.store();
        let mailbox = store
            .mailbox(email)
            .ok_or_else(|| anyhow!("no user {email}"))?;
        mailbox.password = password.to_string();
        Ok(())
    }

    /// Creates the folders of a display-name path under `msgfolderroot` that do not exist
    /// yet (class `IPF.Note`); returns the last one's id.
    pub fn create_folder(&self, user: &str, path: &[&str]) -> Result<String> {
        let mut guard = self.shared.store();
        let store = &mut *guard;
        // Keys are taken up front because the mailbox borrows the store; unused ones are
        // simply skipped numbers.
        let mut keys: Vec<u64> = (0..path.len()).map(|_| store.key()).collect();
        let mailbox = store
            .mailbox(user)
            .ok_or_else(|| anyhow!("no user {user}"))?;
        let mut here = mailbox.top();
        for name in path {
            here = match mailbox.child_named(here, name) {
                Some(existing) => existing,
                None => mailbox
                    .create_folder(keys.remove(0), here, name, Some("IPF.Note".to_string()))
                    .map_err(|e| anyhow!("cannot create {name:?}: {e:?}"))?,
            };
        }
        Ok(mailbox.folder_id(here))
    }

    /// Puts a message into a folder as if delivered (not a draft); returns its ItemId.
    pub fn add_message(
        &self,
        user: &str,
        path: &[&str],
        mime: &[u8],
        seed: Seed,
    ) -> Result<String> {
        let mut guard = self.shared.store();
        let store = &mut *guard;
        let key = store.key();
        let mailbox = store
            .mailbox(user)
            .ok_or_else(|| anyhow!("no user {user}"))?;
        let folder = mailbox
            .folder_at(path)
            .ok_or_else(|| anyhow!("no folder {path:?} for {user}"))?;
        let summary = store::summarize_mime(mime);
        let change = mailbox.bump();
        let now = OffsetDateTime::now_utc();
        let mut item = store::Item {
            key,
            folder,
            mime: mime.to_vec(),
            item_class: "IPM.Note".to_string(),
            subject: summary.subject,
            message_id: summary.message_id,
            from: summary.from,
            sent: summary.date,
            received: seed.received,
            created: now,
            modified: now,
            message_flags: 0,
            flag: seed.flag,
            categories: seed.categories,
            extended: Vec::new(),
            created_change: change,
            content_change: change,
            change,
        };
        item.set_read(seed.is_read);
        mailbox.items.insert(key, item);
        Ok(mailbox.item_id(key))
    }

    /// Deletes a message (so synchronization reports a Delete).
    pub fn delete_message(&self, user: &str, item_id: &str) -> Result<()> {
        let mut store = self.shared.store();
        let mailbox = store
            .mailbox(user)
            .ok_or_else(|| anyhow!("no user {user}"))?;
        let Some(key) = mailbox.item_by_id(item_id) else {
            bail!("no item {item_id}");
        };
        mailbox.delete_item(key);
        Ok(())
    }

    /// Every folder below `msgfolderroot`, depth first.
    ///
    /// # Panics
    /// If the user does not exist.
    pub fn folders(&self, user: &str) -> Vec<FolderSnapshot> {
        let mut store = self.shared.store();
        let mailbox = store
            .mailbox(user)
            .unwrap_or_else(|| panic!("no user {user}"));
        mailbox
            .descendants(mailbox.top())
            .into_iter()
            .map(|ix| FolderSnapshot {
                id: mailbox.folder_id(ix),
                path: mailbox.path_of(ix),
                class: mailbox.folders[ix].class.clone(),
                distinguished: mailbox.folders[ix].distinguished.map(str::to_string),
            })
            .collect()
    }

    /// The messages of a folder, in creation order.
    ///
    /// # Panics
    /// If the user or the folder does not exist.
    pub fn messages(&self, user: &str, path: &[&str]) -> Vec<ItemSnapshot> {
        let mut store = self.shared.store();
        let mailbox = store
            .mailbox(user)
            .unwrap_or_else(|| panic!("no user {user}"));
        let folder = mailbox
            .folder_at(path)
            .unwrap_or_else(|| panic!("no folder {path:?} for {user}"));
        mailbox
            .items_in(folder)
            .into_iter()
            .map(|key| {
                let item = &mailbox.items[&key];
                ItemSnapshot {
                    id: mailbox.item_id(key),
                    mime: item.mime.clone(),
                    subject: item.subject.clone(),
                    is_read: item.is_read(),
                    is_draft: item.is_draft(),
                    message_flags: item.message_flags,
                    flag: item.flag,
                    categories: item.categories.clone(),
                    received: item.received,
                    sent: item.sent,
                    extended: item.extended.iter().map(extended_snapshot).collect(),
                }
            })
            .collect()
    }

    /// How many requests named this SOAP operation (`FindItem`, `CreateItem`, …) were
    /// received after authentication, faulted ones included.
    pub fn requests(&self, operation: &str) -> usize {
        lock(&self.shared.counts)
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    /// The next `count` EWS requests fail with ErrorServerBusy asking to back off
    /// `backoff_ms` milliseconds.
    pub fn set_busy(&self, count: u32, backoff_ms: u64) {
        let mut faults = self.shared.faults();
        faults.busy = count;
        faults.busy_backoff_ms = backoff_ms;
    }

    /// The next `count` EWS requests get HTTP `status` (429 or 503) with `Retry-After`.
    pub fn set_http_throttle(&self, count: u32, status: u16, retry_after_secs: u64) {
        let mut faults = self.shared.faults();
        faults.throttle = count;
        faults.throttle_status = status;
        faults.throttle_retry_after = retry_after_secs;
    }

    /// CreateItem of a larger MIME fails with ErrorMessageSizeExceeded for that item.
    pub fn set_max_message_size(&self, bytes: usize) {
        self.shared.faults().max_message_size = Some(bytes);
    }

    /// Every request waits this long before it is answered.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.faults().delay = delay;
    }
}

fn extended_snapshot(value: &store::ExtendedValue) -> ExtendedSnapshot {
    let (property_tag, property_set_id, property_name, property_id) = match &value.key {
        store::PropKey::Tag(tag) => (Some(*tag), None, None, None),
        store::PropKey::Name { set, name } => (None, Some(set.clone()), Some(name.clone()), None),
        store::PropKey::Id { set, id } => (None, Some(set.clone()), None, Some(*id)),
    };
    ExtendedSnapshot {
        property_tag,
        property_set_id,
        property_name,
        property_id,
        property_type: value.property_type.clone(),
        values: value.values.clone(),
    }
}

impl Drop for EwsServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
