//! Logging in and out (SPEC §6.1): a contact email and the terms give a one-time link
//! by email; following it opens a session. Tokens are 256 random bits, stored as
//! SHA-256, valid once for 15 minutes; the links sent are limited per email and per
//! client address (`auth::login_allowed`). Logging out ends this session, or every
//! session of the user.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponse, Redirect, Response};
use mailmove_store::{LoginTokenUse, now};
use serde::Deserialize;

use crate::auth::{
    ClientAddress, CurrentUser, LOGIN_CSRF_COOKIE, MaybeUser, SESSION_COOKIE, cookie,
    login_allowed, random_token, redirect_with_cookies, set_cookie, token_hash, too_many_requests,
};
use crate::routes::{PageError, page};
use crate::views::{Layout, LoginConfirmPage, LoginPage, LoginSentPage, MessagePage, TermsPage};
use crate::{AppState, OutgoingMail};

/// How long the login form's CSRF cookie lives.
const LOGIN_FORM_SECONDS: i64 = 24 * 3600;

pub(crate) async fn form(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    headers: HeaderMap,
) -> Response {
    if user.is_some() {
        return Redirect::to("/migrations").into_response();
    }
    login_form(
        &state,
        &headers,
        String::new(),
        None,
        axum::http::StatusCode::OK,
    )
}

/// The login form, with the cookie its CSRF token is checked against.
fn login_form(
    state: &AppState,
    headers: &HeaderMap,
    email: String,
    error: Option<String>,
    status: axum::http::StatusCode,
) -> Response {
    let token = cookie(headers, LOGIN_CSRF_COOKIE)
        .filter(|t| t.len() == 43)
        .unwrap_or_else(random_token);
    let view = LoginPage {
        layout: Layout::new("Log in", None, token.clone()),
        email,
        error,
    };
    match page(&view) {
        Ok(html) => (
            status,
            [(
                SET_COOKIE,
                set_cookie(
                    LOGIN_CSRF_COOKIE,
                    &token,
                    LOGIN_FORM_SECONDS,
                    state.config().secure_cookies,
                ),
            )],
            html,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    terms: Option<String>,
}

pub(crate) async fn request_link(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let email = form.email.trim().to_lowercase();
    let config = state.config();
    let unprocessable = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
    if !plausible_email(&email) {
        // Counted against the client's address only: an unchecked string is no key.
        return match login_allowed(&state, None, address).await {
            Ok(true) => login_form(
                &state,
                &headers,
                form.email,
                Some("Enter your email address, such as name@example.com.".into()),
                unprocessable,
            ),
            Ok(false) => too_many_requests(),
            Err(e) => PageError::Store(e).into_response(),
        };
    }
    if form.terms.as_deref() != Some("accepted") {
        return login_form(
            &state,
            &headers,
            form.email,
            Some("Accept the terms of use to go on.".into()),
            unprocessable,
        );
    }
    match login_allowed(&state, Some(&email), address).await {
        Ok(true) => {}
        Ok(false) => return too_many_requests(),
        Err(e) => return PageError::Store(e).into_response(),
    }
    let token = random_token();
    let minutes = config.login_link_seconds / 60;
    if let Err(e) = state
        .db()
        .create_login_token(
            &token_hash(&token),
            &email,
            now() + config.login_link_seconds,
        )
        .await
    {
        return PageError::Store(e).into_response();
    }
    let link = format!("{}/login/{token}", config.public_url);
    let mail = OutgoingMail {
        to: email.clone(),
        subject: "Your mailmove login link".into(),
        body: format!(
            "Follow this link to log in to mailmove:\n\n{link}\n\nIt works once, within {minutes} \
             minutes. If you did not ask for it, ignore this email: nobody can log in without it.\n"
        ),
    };
    if let Err(e) = state.mailer().send(mail).await {
        return PageError::Mail(e).into_response();
    }
    let view = LoginSentPage {
        layout: Layout::new("Check your email", None, ""),
        email,
        minutes,
    };
    page(&view).into_response()
}

/// Opens an emailed link: a page with one button that logs in. Opening the link uses
/// nothing up, so a mail scanner that fetches every link cannot spend the login.
pub(crate) async fn open_link(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let found = match state.db().peek_login_token(&token_hash(&token)).await {
        Ok(found) => found,
        Err(e) => return PageError::Store(e).into_response(),
    };
    let LoginTokenUse::Accepted { email } = found else {
        return link_refused(found);
    };
    // The button's form is checked against the session's CSRF token, or without a
    // session against the login form's cookie, set here (the link may be opened in
    // another browser than the one that asked for it).
    let csrf = match &user {
        Some(session) => session.csrf.clone(),
        None => cookie(&headers, LOGIN_CSRF_COOKIE)
            .filter(|t| t.len() == 43)
            .unwrap_or_else(random_token),
    };
    let view = LoginConfirmPage {
        layout: Layout::new("Log in", None, csrf.clone()),
        email,
        action: format!("/login/{token}"),
    };
    match page(&view) {
        Ok(html) => (
            [(
                SET_COOKIE,
                set_cookie(
                    LOGIN_CSRF_COOKIE,
                    &csrf,
                    LOGIN_FORM_SECONDS,
                    state.config().secure_cookies,
                ),
            )],
            html,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// The button of an emailed link's page: a valid token opens a session, once.
pub(crate) async fn follow_link(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Response {
    let db = state.db();
    let used = match db.use_login_token(&token_hash(&token)).await {
        Ok(used) => used,
        Err(e) => return PageError::Store(e).into_response(),
    };
    match used {
        LoginTokenUse::Accepted { email } => match open_session(&state, &email).await {
            Ok(response) => response,
            Err(e) => e.into_response(),
        },
        refused => link_refused(refused),
    }
}

/// Why a login link does not log in, and what to do.
fn link_refused(found: LoginTokenUse) -> Response {
    let (status, heading, line) = match found {
        LoginTokenUse::Accepted { .. } => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "This login link could not be used",
            "Ask for a new one.",
        ),
        LoginTokenUse::Expired => (
            axum::http::StatusCode::GONE,
            "This login link has expired",
            "Login links work for 15 minutes. Ask for a new one.",
        ),
        LoginTokenUse::AlreadyUsed => (
            axum::http::StatusCode::GONE,
            "This login link was already used",
            "Each login link works once. Ask for a new one.",
        ),
        LoginTokenUse::Unknown => (
            axum::http::StatusCode::NOT_FOUND,
            "This login link is not valid",
            "Check that the whole link was copied, or ask for a new one.",
        ),
    };
    let view = MessagePage {
        layout: Layout::new(heading, None, ""),
        heading: heading.into(),
        lines: vec![line.into()],
        link_href: "/login".into(),
        link_text: "Ask for a new login link".into(),
    };
    (status, page(&view)).into_response()
}

async fn open_session(state: &AppState, email: &str) -> Result<Response, PageError> {
    let db = state.db();
    let config = state.config();
    let user_id = db.ensure_user(email).await?;
    let session = random_token();
    db.create_session(
        &token_hash(&session),
        user_id,
        &random_token(),
        now() + config.session_seconds,
    )
    .await?;
    Ok(redirect_with_cookies(
        "/migrations",
        vec![
            set_cookie(
                SESSION_COOKIE,
                &session,
                config.session_seconds,
                config.secure_cookies,
            ),
            set_cookie(LOGIN_CSRF_COOKIE, "", 0, config.secure_cookies),
        ],
    ))
}

pub(crate) async fn logout(
    State(state): State<AppState>,
    CurrentUser(session): CurrentUser,
) -> Response {
    if let Err(e) = state.db().delete_session(&session.hash).await {
        return PageError::Store(e).into_response();
    }
    redirect_with_cookies(
        "/login",
        vec![set_cookie(
            SESSION_COOKIE,
            "",
            0,
            state.config().secure_cookies,
        )],
    )
}

/// Ends every session of the user, on every device ("log out everywhere"): a session
/// left open on a shared computer, or one whose cookie was taken.
pub(crate) async fn logout_everywhere(
    State(state): State<AppState>,
    CurrentUser(session): CurrentUser,
) -> Response {
    if let Err(e) = state.db().delete_user_sessions(session.user_id).await {
        return PageError::Store(e).into_response();
    }
    redirect_with_cookies(
        "/login",
        vec![set_cookie(
            SESSION_COOKIE,
            "",
            0,
            state.config().secure_cookies,
        )],
    )
}

pub(crate) async fn terms(MaybeUser(user): MaybeUser) -> Response {
    let layout = match &user {
        Some(session) => crate::routes::layout(session, "Terms of use"),
        None => Layout::new("Terms of use", None, ""),
    };
    page(&TermsPage { layout }).into_response()
}

/// One `@`, something on each side, a dot in the domain, no spaces: the mail server
/// decides the rest.
fn plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && !email.contains(['<', '>', ',', ';', '"'])
        && (domain.contains('.') || domain == "localhost")
}

#[cfg(test)]
mod tests {
    use super::plausible_email;

    #[test]
    fn emails_are_checked_loosely() {
        for good in [
            "a@example.com",
            "first.last+tag@sub.example.org",
            "admin@localhost",
        ] {
            assert!(plausible_email(good), "{good}");
        }
        for bad in [
            "",
            "a",
            "@example.com",
            "a@",
            "a b@example.com",
            "a@b@c.com",
            "a@example",
            "<a@example.com>",
        ] {
            assert!(!plausible_email(bad), "{bad}");
        }
    }
}
