//! The self-service web portal of SPEC §6, served by `mailmove serve`: log in with an
//! emailed one-time link, list "My Migrations", create a project from two server
//! endpoints (typed in or from a preset), add mailbox pairs by hand or by spreadsheet,
//! queue trial and migration passes, watch their progress live (server-sent events) and
//! download the reports. Passes are run by `mailmove-worker`; this crate only queues them
//! and reads their progress from the store.
//!
//! Invariants, kept here and checked by the handler tests:
//! - only this crate speaks HTTP;
//! - every state-changing request (every POST) passes the CSRF check in [`auth`] before
//!   a handler runs;
//! - every project is looked up through the session's user ([`Db::owned_project`]):
//!   anyone else's project answers 404, like one that does not exist;
//! - a mailbox password goes from the form straight into [`Keyring::seal`] and is never
//!   rendered, logged or sent back; login tokens and session ids are stored hashed.

mod advice;
mod assets;
mod auth;
mod mail;
mod notify;
mod presets;
mod routes;
mod sse;
mod views;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use mailmove_net::Cidr;
use mailmove_secrets::Keyring;
use mailmove_store::Db;

pub use advice::advice;
pub use mail::{MailError, Mailer, OutgoingMail, SentMail};
pub use notify::notify_ended_passes;

/// How the portal behaves; [`PortalConfig::for_listen`] gives the defaults.
#[derive(Clone, Debug)]
pub struct PortalConfig {
    /// The address people reach the portal at, without a trailing slash; emailed links
    /// start with it. Never taken from a request's Host header, which a client chooses.
    pub public_url: String,
    /// Cookies carry `Secure` (sent over HTTPS only).
    pub secure_cookies: bool,
    /// A CA file (PEM) trusted for both servers of every project created here: an
    /// operator's choice (`serve --tls-ca`), since portal users cannot upload one.
    pub tls_ca: Option<PathBuf>,
    /// How long an emailed login link works.
    pub login_link_seconds: i64,
    /// How long a session lasts at most.
    pub session_seconds: i64,
    /// A session unused for this long ends (live progress on an open page is not use).
    pub session_idle_seconds: i64,
    /// Login links sent per email address, and login requests per client address, in
    /// `login_window` (at most a day: older counters are removed).
    pub logins_per_email: usize,
    pub logins_per_address: usize,
    pub login_window: Duration,
    /// Proxies whose `X-Forwarded-For` names the client (the operator's reverse proxy);
    /// any other peer is the client itself.
    pub trusted_proxies: Vec<Cidr>,
    /// Live-progress streams one session may hold open at once (in this process).
    pub streams_per_session: usize,
    /// The most mailboxes one project may hold.
    pub mailboxes_per_project: usize,
    /// How often live progress reads the passes.
    pub progress_every: Duration,
    /// How often ended passes are looked for, to email the project's contact.
    pub notify_every: Duration,
    /// How long reading one uploaded spreadsheet may take (on a blocking thread); the
    /// limits on its size keep a read far below the default 20 s.
    pub spreadsheet_read_limit: Duration,
    /// How "Find my settings" looks servers up: DNS server, ports, time limits, and
    /// where it may connect (public addresses and the operator's networks, as the
    /// passes). The CA of `tls_ca` is added when it runs.
    pub discovery: mailmove_discover::Settings,
    /// Discoveries one user may ask for in `discovery_window`.
    pub discoveries_per_user: usize,
    pub discovery_window: Duration,
    /// The operator's OAuth2 sign-in profiles, for projects whose mailboxes' users sign
    /// in themselves through a link (`/signin/...`); none by default.
    pub sign_in_profiles: Arc<mailmove_oauth::Profiles>,
}

impl PortalConfig {
    /// Defaults for a portal listening on `listen`: links to `http://listen`, `Secure`
    /// cookies unless the address is a loopback one (a portal reachable from other
    /// machines belongs behind HTTPS).
    pub fn for_listen(listen: SocketAddr) -> PortalConfig {
        let host = if listen.ip().is_unspecified() {
            "localhost".to_string()
        } else if listen.is_ipv6() {
            format!("[{}]", listen.ip())
        } else {
            listen.ip().to_string()
        };
        PortalConfig {
            public_url: format!("http://{host}:{}", listen.port()),
            secure_cookies: !listen.ip().is_loopback(),
            tls_ca: None,
            login_link_seconds: 15 * 60,
            session_seconds: 7 * 24 * 3600,
            session_idle_seconds: 8 * 3600,
            logins_per_email: 5,
            logins_per_address: 20,
            login_window: Duration::from_secs(15 * 60),
            trusted_proxies: Vec::new(),
            streams_per_session: 4,
            mailboxes_per_project: mailmove_projects::DEFAULT_MAILBOXES_PER_PROJECT,
            progress_every: Duration::from_secs(1),
            notify_every: Duration::from_secs(5),
            spreadsheet_read_limit: Duration::from_secs(20),
            discovery: mailmove_discover::Settings {
                timeout: Duration::from_secs(4),
                policy: mailmove_net::NetworkPolicy::public_only(Vec::new()),
                conventional_ports_only: true,
                ..mailmove_discover::Settings::default()
            },
            discoveries_per_user: 10,
            discovery_window: Duration::from_secs(10 * 60),
            sign_in_profiles: Arc::default(),
        }
    }

    /// Emailed links start with `url` (e.g. `https://migrate.example.com`); an `https`
    /// address makes the cookies `Secure` too.
    pub fn with_public_url(mut self, url: &str) -> PortalConfig {
        self.public_url = url.trim_end_matches('/').to_string();
        if self.public_url.starts_with("https://") {
            self.secure_cookies = true;
        }
        self
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    shared: Arc<Shared>,
}

struct Shared {
    projects: mailmove_projects::Projects,
    /// Seals sign-in links and pending sign-ins.
    keyring: Keyring,
    /// Where mailbox users' sign-ins are kept.
    grants: mailmove_projects::Grants,
    mailer: Mailer,
    config: PortalConfig,
    streams: sse::OpenStreams,
    /// Discoveries running at once for the whole portal.
    discovery_slots: tokio::sync::Semaphore,
}

impl AppState {
    pub fn new(db: Db, keyring: Keyring, mailer: Mailer, config: PortalConfig) -> AppState {
        AppState {
            shared: Arc::new(Shared {
                keyring: keyring.clone(),
                grants: mailmove_projects::Grants::new(db.clone(), keyring.clone()),
                projects: mailmove_projects::Projects::new(db, keyring)
                    .with_mailbox_limit(config.mailboxes_per_project),
                mailer,
                config,
                streams: sse::OpenStreams::default(),
                discovery_slots: tokio::sync::Semaphore::new(DISCOVERIES_AT_ONCE),
            }),
        }
    }

    pub fn db(&self) -> &Db {
        self.shared.projects.db()
    }

    pub(crate) fn keyring(&self) -> &Keyring {
        &self.shared.keyring
    }

    pub(crate) fn grants(&self) -> &mailmove_projects::Grants {
        &self.shared.grants
    }

    /// Every project operation goes through here (see `mailmove-projects`).
    pub(crate) fn projects(&self) -> &mailmove_projects::Projects {
        &self.shared.projects
    }

    pub fn config(&self) -> &PortalConfig {
        &self.shared.config
    }

    pub(crate) fn mailer(&self) -> &Mailer {
        &self.shared.mailer
    }

    pub(crate) fn streams(&self) -> &sse::OpenStreams {
        &self.shared.streams
    }

    pub(crate) fn discovery_slots(&self) -> &tokio::sync::Semaphore {
        &self.shared.discovery_slots
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("public_url", &self.shared.config.public_url)
            .finish_non_exhaustive()
    }
}

/// Discoveries ("Find my settings") running at once for the whole portal: each makes
/// a few dozen DNS questions and connections.
const DISCOVERIES_AT_ONCE: usize = 4;

/// The largest spreadsheet upload: 5,000 mailboxes (the most one list may add, see
/// [`mailmove_import::Limits::UPLOAD`]) take well under 1 MB as CSV or XLSX.
pub const UPLOAD_LIMIT: usize = 10 * 1024 * 1024;
/// The form of typed mailboxes (5,000 rows of six fields fit), and the project page's
/// forms that name the ticked mailboxes (tens of thousands of ids fit).
pub const MAILBOX_FORM_LIMIT: usize = 1024 * 1024;
/// Every other form: a few fields.
pub const FORM_LIMIT: usize = 64 * 1024;

/// The most a request to `path` may send: [`UPLOAD_LIMIT`] (and the multipart wrapping
/// around it) for the spreadsheet upload, [`MAILBOX_FORM_LIMIT`] for the typed mailboxes
/// and the forms that name ticked mailboxes, [`FORM_LIMIT`] for everything else. The
/// CSRF check reads no more than this.
pub(crate) fn body_limit(path: &str) -> usize {
    if path.ends_with("/mailboxes/upload") {
        UPLOAD_BODY_LIMIT
    } else if path.ends_with("/mailboxes") || path.ends_with("/passes") || path.ends_with("/stop") {
        MAILBOX_FORM_LIMIT
    } else {
        FORM_LIMIT
    }
}

/// The upload and the multipart headers and fields around it.
const UPLOAD_BODY_LIMIT: usize = UPLOAD_LIMIT + 64 * 1024;

/// Every page and action of the portal.
pub fn router(state: AppState) -> Router {
    use routes::{discover, login, mailboxes, migrations, project, reports, signin};
    Router::new()
        .route("/", get(routes::home))
        .route("/login", get(login::form).post(login::request_link))
        .route(
            "/login/{token}",
            get(login::open_link).post(login::follow_link),
        )
        .route("/logout", post(login::logout))
        .route("/logout/everywhere", post(login::logout_everywhere))
        .route("/terms", get(login::terms))
        .route(
            "/migrations",
            get(migrations::list).post(migrations::create),
        )
        .route("/migrations/new", get(migrations::new_form))
        .route("/discover", get(discover::find))
        .route("/signin/{token}", get(signin::show))
        .route("/signin/{token}/start", get(signin::start))
        .route(signin::CALLBACK_PATH, get(signin::callback))
        .route(
            "/projects/{id}/mailboxes/{mailbox}/signin-link",
            get(project::sign_in_link),
        )
        .route("/projects/{id}", get(project::show))
        .route(
            "/projects/{id}/passes",
            post(project::queue_passes).layer(DefaultBodyLimit::max(MAILBOX_FORM_LIMIT)),
        )
        .route(
            "/projects/{id}/stop",
            post(project::stop).layer(DefaultBodyLimit::max(MAILBOX_FORM_LIMIT)),
        )
        .route("/projects/{id}/finish", post(project::finish))
        .route("/projects/{id}/delete", post(project::delete))
        .route("/projects/{id}/events", get(sse::project_events))
        .route(
            "/projects/{id}/mailboxes",
            get(mailboxes::form)
                .post(mailboxes::add_rows)
                .layer(DefaultBodyLimit::max(MAILBOX_FORM_LIMIT)),
        )
        .route("/projects/{id}/mailboxes/row", get(mailboxes::row))
        .route(
            "/projects/{id}/mailboxes/upload",
            post(mailboxes::upload).layer(DefaultBodyLimit::max(UPLOAD_BODY_LIMIT)),
        )
        .route(
            "/projects/{id}/mailboxes/{mailbox}/passwords",
            get(mailboxes::passwords_form).post(mailboxes::set_passwords),
        )
        .route(
            "/projects/{id}/reports/mailboxes.csv",
            get(reports::mailbox_statistics),
        )
        .route(
            "/projects/{id}/reports/failed-items.csv",
            get(reports::failed_items),
        )
        .route("/mailboxes-template.csv", get(mailboxes::template))
        .route("/assets/{name}", get(assets::serve))
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        .layer(from_fn_with_state(state.clone(), auth::require_csrf))
        .layer(from_fn_with_state(state.clone(), auth::load_session))
        .layer(from_fn(routes::security_headers))
        .with_state(state)
}

/// Serves the portal on `listener` until the process ends, with the background task
/// that emails a project's contact when its passes end.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    let background = tokio::spawn(notify::run(state.clone()));
    // Stops the background task however this future ends (returned or dropped).
    let _background = AbortOnDrop(background);
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
