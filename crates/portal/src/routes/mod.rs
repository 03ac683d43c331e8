//! The pages, one module each, and what they share: the error pages, the security
//! headers, the one way to look up a project (through its owner), and the notices shown
//! after an action.

pub(crate) mod discover;
pub(crate) mod login;
pub(crate) mod mailboxes;
pub(crate) mod migrations;
pub(crate) mod project;
pub(crate) mod reports;
pub(crate) mod signin;

use askama::Template;
use axum::extract::Request;
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use mailmove_store::{OwnedProject, PassKind, StoreError};
use serde::Deserialize;
use tracing::{error, warn};

use crate::AppState;
use crate::auth::{MaybeUser, Session};
use crate::views::{Layout, MessagePage, pass_name};

/// Why a request gets an error page instead of what it asked for.
#[derive(Debug)]
pub(crate) enum PageError {
    /// No such page, or a project that is not the user's (the same answer on purpose).
    NotFound,
    /// A state-changing request without the right CSRF token.
    Csrf,
    TooManyRequests,
    /// A session asked for more live-progress streams than it may hold.
    TooManyStreams,
    TooLarge,
    /// A finished migration was asked to do more.
    Finished,
    Store(StoreError),
    /// The login email could not be sent.
    Mail(crate::MailError),
    /// A bug: logged, and the person is told to try again.
    Internal(String),
}

impl From<StoreError> for PageError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(_) => PageError::NotFound,
            other => PageError::Store(other),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, heading, line, link_href, link_text) = match &self {
            PageError::NotFound => (
                StatusCode::NOT_FOUND,
                "Page not found",
                "There is nothing here, or it is not yours to see.",
                "/migrations",
                "Go to My Migrations",
            ),
            PageError::Csrf => (
                StatusCode::FORBIDDEN,
                "This form has expired",
                "For your safety the request was refused: it did not come from a page of this \
                 portal in your current session. Go back, reload the page and try again.",
                "/",
                "Start again",
            ),
            PageError::TooManyRequests => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many login requests",
                "Too many login links were asked for this address or from this network. Wait \
                 15 minutes, then try again; the links already sent still work.",
                "/login",
                "Back to log in",
            ),
            PageError::TooManyStreams => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many pages open",
                "Live progress is shown on a few pages at once per login. Close some of the \
                 pages of this portal, then reload this one.",
                "/migrations",
                "Go to My Migrations",
            ),
            PageError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "That was too large",
                "The portal takes spreadsheets up to 10 MiB and forms up to 5,000 mailboxes. \
                 Split the list into smaller files.",
                "/migrations",
                "Go to My Migrations",
            ),
            PageError::Finished => (
                StatusCode::CONFLICT,
                "This migration is finished",
                "A finished migration runs no more passes and takes no more mailboxes. Start a \
                 new migration instead.",
                "/migrations",
                "Go to My Migrations",
            ),
            PageError::Store(e) => {
                error!("the database failed: {e}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The portal could not reach its database. Try again in a moment.",
                    "/migrations",
                    "Go to My Migrations",
                )
            }
            PageError::Internal(e) => {
                error!("{e}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The portal could not show this page. Try again in a moment.",
                    "/migrations",
                    "Go to My Migrations",
                )
            }
            PageError::Mail(e) => {
                warn!("a login email could not be sent: {e}");
                (
                    StatusCode::BAD_GATEWAY,
                    "The email could not be sent",
                    "The mail server did not take the login email. Try again in a few minutes.",
                    "/login",
                    "Back to log in",
                )
            }
        };
        let page = MessagePage {
            layout: Layout::new(heading, None, ""),
            heading: heading.into(),
            lines: vec![line.into()],
            link_href: link_href.into(),
            link_text: link_text.into(),
        };
        (status, Html(page.render().unwrap_or_default())).into_response()
    }
}

/// Renders a page.
pub(crate) fn page<T: Template>(template: &T) -> Result<Html<String>, PageError> {
    template
        .render()
        .map(Html)
        .map_err(|e| PageError::Internal(format!("a page failed to render: {e}")))
}

/// The frame of a signed-in user's page.
pub(crate) fn layout(session: &Session, title: impl Into<String>) -> Layout {
    Layout::new(title, Some(session.email.clone()), session.csrf.clone())
}

/// The project with this id if the session's user owns it; anyone else's, or an id
/// that is not a number, is the same 404 as a project that does not exist.
pub(crate) async fn owned_project(
    state: &AppState,
    session: &Session,
    id: &str,
) -> Result<OwnedProject, PageError> {
    let id: i64 = id.parse().map_err(|_| PageError::NotFound)?;
    Ok(state.db().owned_project(id, session.user_id).await?)
}

/// `/`: My Migrations when signed in, else the login page.
pub(crate) async fn home(MaybeUser(user): MaybeUser) -> Redirect {
    match user {
        Some(_) => Redirect::to("/migrations"),
        None => Redirect::to("/login"),
    }
}

pub(crate) async fn not_found() -> PageError {
    PageError::NotFound
}

/// Headers on every response: a strict content security policy (scripts and styles
/// from this server only), no framing, no referrer (a login link in the address bar
/// never leaks), and pages that are never cached.
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let asset = request.uri().path().starts_with("/assets/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
             object-src 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !asset && !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// What an action redirects with: a code from a fixed list, never text from the
/// request, so a crafted link cannot put words on the page.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Notice {
    notice: Option<String>,
    pass: Option<String>,
    count: Option<u32>,
}

impl Notice {
    pub fn text(&self) -> Option<String> {
        let count = self.count.unwrap_or(0);
        let mailboxes = if count == 1 { "mailbox" } else { "mailboxes" };
        Some(match self.notice.as_deref()? {
            "created" => "Migration created. Now add its mailboxes.".into(),
            "added" => format!("Added {count} {mailboxes}."),
            "queued" => {
                let kind = PassKind::parse(self.pass.as_deref()?)?;
                format!(
                    "{} queued for {count} {mailboxes}. Progress shows below.",
                    pass_name(kind)
                )
            }
            "stopped" => format!("Asked {count} {mailboxes} to stop."),
            "finished" => "Migration finished.".into(),
            "passwords" => "Passwords saved. Run the trial again to check them.".into(),
            "busy" => {
                "Passes are still queued or running: stop them, or wait for them to end, first."
                    .into()
            }
            "queue-full" => format!(
                "Not queued: {count} {mailboxes} would be more passes waiting at once than \
                 this service allows for one migration or one person. Queue them once some \
                 have ended, or fewer at a time."
            ),
            "empty" => "Add mailboxes first.".into(),
            "not-chosen" => {
                "The chosen mailboxes are not in this migration: nothing was done.".into()
            }
            "confirm" => "Tick the box to confirm the deletion.".into(),
            "deleted" => "Migration deleted, with its mailboxes and passwords.".into(),
            _ => return None,
        })
    }
}
