//! A mailbox user's own OAuth2 sign-in, for a project side that signs in with a
//! profile of the operator's (MigrationWiz's "waiting for the user" credentials):
//! the project's owner hands each user a link; the user opens it, signs in at the
//! provider and consents, and the refresh token is kept sealed for the passes. The
//! user never sees the project, and needs no portal account.
//!
//! The link is the mailbox, side and expiry sealed with the portal's key: nothing to
//! store, nothing to guess. The pending sign-in (PKCE verifier and `state`) travels
//! sealed in a cookie scoped to the callback, and the answer must name the mailbox
//! the link is for.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mailmove_model::Secret;
use mailmove_oauth::{Access, Profile};
use mailmove_projects::{ProjectSettings, Side, SignInMethod};
use mailmove_store::now;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::{cookie, redirect_with_cookies};
use crate::routes::{PageError, page};
use crate::views::{Layout, MessagePage};

/// The cookie that carries a pending sign-in from the provider's redirect back.
const PENDING_COOKIE: &str = "mailmove_signin";
/// How long a pending sign-in may take at the provider.
const PENDING_SECONDS: i64 = 15 * 60;
/// Where the provider sends the browser back; registered with the provider as
/// `PUBLIC_URL/oauth/callback`.
pub(crate) const CALLBACK_PATH: &str = "/oauth/callback";
const LINK_CONTEXT: &str = "portal:sign-in-link";
const PENDING_CONTEXT: &str = "portal:sign-in-pending";

/// What a sign-in link is for.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct LinkClaims {
    mailbox: i64,
    /// `source` or `destination`.
    side: String,
    expires: i64,
}

/// A pending sign-in, kept in the sealed cookie.
#[derive(Serialize, Deserialize)]
struct Pending {
    link: String,
    state: String,
    verifier: String,
    expires: i64,
}

/// The link a mailbox's user opens to sign in for `side`, valid `seconds`.
pub(crate) fn link_for(state: &AppState, mailbox: i64, side: Side, seconds: i64) -> String {
    let claims = LinkClaims {
        mailbox,
        side: side.as_str().to_string(),
        expires: now() + seconds,
    };
    let token = seal(
        state,
        &serde_json::to_string(&claims).unwrap_or_default(),
        LINK_CONTEXT,
    );
    format!("{}/signin/{token}", state.config().public_url)
}

fn seal(state: &AppState, text: &str, context: &str) -> String {
    URL_SAFE_NO_PAD.encode(
        state
            .keyring()
            .seal(&Secret::new(text.to_string()), context),
    )
}

fn open<T: for<'de> Deserialize<'de>>(state: &AppState, token: &str, context: &str) -> Option<T> {
    // A sealed token is a few hundred bytes; anything far longer is not one.
    if token.len() > 4096 {
        return None;
    }
    let sealed = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = state.keyring().open(&sealed, context).ok()?;
    serde_json::from_str(text.expose()).ok()
}

/// The mailbox a valid link names, its login on that side, and the profile it signs
/// in with.
struct Target {
    login: String,
    profile: Profile,
}

async fn target(state: &AppState, token: &str) -> Result<Target, Response> {
    let claims: LinkClaims = open(state, token, LINK_CONTEXT).ok_or_else(|| {
        message(
            StatusCode::NOT_FOUND,
            "This sign-in link is not valid",
            "Check that the whole link was copied, or ask for a new one.",
        )
    })?;
    if claims.expires <= now() {
        return Err(message(
            StatusCode::GONE,
            "This sign-in link has expired",
            "Ask whoever sent it for a new one.",
        ));
    }
    let gone = || {
        message(
            StatusCode::NOT_FOUND,
            "This sign-in link is no longer in use",
            "The migration it was for has changed or ended.",
        )
    };
    let db = state.db();
    let mailbox = db.mailbox(claims.mailbox).await.map_err(|_| gone())?;
    let project = db
        .project_by_id(mailbox.project_id)
        .await
        .map_err(|_| gone())?;
    let settings = ProjectSettings::from_json(&project.settings).map_err(|_| gone())?;
    let (method, login) = match claims.side.as_str() {
        "source" => (&settings.source_sign_in, mailbox.source_login),
        _ => (&settings.dest_sign_in, mailbox.dest_login),
    };
    let SignInMethod::OAuth { profile } = method else {
        return Err(gone());
    };
    let profile = state
        .config()
        .sign_in_profiles
        .get(profile)
        .await
        .map_err(|e| {
            tracing::warn!("sign-in profile {profile}: {e}");
            message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Signing in is not possible right now",
                "The service's sign-in settings are incomplete: tell whoever sent the link.",
            )
        })?;
    if !matches!(profile.access, Access::User) {
        return Err(message(
            StatusCode::OK,
            "Nothing to do",
            "This mailbox is reached without your sign-in.",
        ));
    }
    Ok(Target { login, profile })
}

/// `GET /signin/{token}`: what the link is for, and the way to the provider.
pub(crate) async fn show(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let target = match target(&state, &token).await {
        Ok(target) => target,
        Err(response) => return response,
    };
    let provider = &target.profile.client.provider().name;
    let view = MessagePage {
        layout: Layout::new("Sign in", None, ""),
        heading: format!("Sign in {}", target.login),
        lines: vec![
            format!(
                "Your mail is being moved. To let it be read from your mailbox, sign in to \
                 {provider} as {} and allow access.",
                target.login
            ),
            "You can withdraw this permission at any time in your account's settings.".into(),
        ],
        link_href: format!("/signin/{token}/start"),
        link_text: format!("Sign in with {provider}"),
    };
    page(&view).into_response()
}

/// `GET /signin/{token}/start`: to the provider, with the pending sign-in sealed in
/// a cookie for the way back.
pub(crate) async fn start(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let target = match target(&state, &token).await {
        Ok(target) => target,
        Err(response) => return response,
    };
    let redirect_uri = format!("{}{CALLBACK_PATH}", state.config().public_url);
    let (url, pending) = match target.profile.client.authorization_url(
        &redirect_uri,
        &target.profile.scope_refs(),
        Some(&target.login),
    ) {
        Ok(started) => started,
        Err(e) => return provider_failed(&e),
    };
    let pending = Pending {
        link: token,
        state: pending.state().expose().clone(),
        verifier: pending.verifier().expose().clone(),
        expires: now() + PENDING_SECONDS,
    };
    let sealed = seal(
        &state,
        &serde_json::to_string(&pending).unwrap_or_default(),
        PENDING_CONTEXT,
    );
    // Lax: the provider's redirect back is a top-level navigation from its site.
    let secure = if state.config().secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = HeaderValue::try_from(format!(
        "{PENDING_COOKIE}={sealed}; Path={CALLBACK_PATH}; Max-Age={PENDING_SECONDS}; HttpOnly; SameSite=Lax{secure}"
    ));
    match cookie {
        Ok(cookie) => redirect_with_cookies(url.as_str(), vec![cookie]),
        Err(_) => PageError::Internal("sign-in".into()).into_response(),
    }
}

/// `GET /oauth/callback`: the provider's answer, for the pending sign-in in the
/// cookie; the refresh token kept if the account is the link's mailbox.
pub(crate) async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let pending: Option<Pending> =
        cookie(&headers, PENDING_COOKIE).and_then(|sealed| open(&state, &sealed, PENDING_CONTEXT));
    let Some(pending) = pending.filter(|p| p.expires > now()) else {
        return message(
            StatusCode::BAD_REQUEST,
            "This sign-in cannot be finished",
            "It took too long or was started in another browser: open your sign-in link again.",
        );
    };
    let target = match target(&state, &pending.link).await {
        Ok(target) => target,
        Err(response) => return response,
    };
    let client = &target.profile.client;
    let redirect_uri = format!("{}{CALLBACK_PATH}", state.config().public_url);
    let resumed = client.resume_authorization(
        Secret::new(pending.state),
        Secret::new(pending.verifier),
        &redirect_uri,
        &target.login,
    );
    let query = uri.query().unwrap_or_default();
    let code = match resumed.code_from_redirect(query) {
        Ok(code) => code,
        Err(e) => return provider_failed(&e),
    };
    let tokens = match client.exchange_code(&resumed, &code).await {
        Ok(tokens) => tokens,
        Err(e) => return provider_failed(&e),
    };
    let signed_in_as = tokens
        .id_token
        .as_ref()
        .and_then(|t| id_token_account(t.expose()));
    if !signed_in_as
        .as_deref()
        .is_some_and(|who| who.eq_ignore_ascii_case(&target.login))
    {
        return message(
            StatusCode::FORBIDDEN,
            "Signed in as someone else",
            &format!(
                "This link is for {}, and the sign-in was for {}: sign in as {} instead.",
                target.login,
                signed_in_as.as_deref().unwrap_or("an unnamed account"),
                target.login
            ),
        );
    }
    let Some(refresh_token) = &tokens.refresh_token else {
        return message(
            StatusCode::BAD_GATEWAY,
            "The sign-in gave no lasting permission",
            "The provider did not grant offline access: tell whoever sent the link.",
        );
    };
    let kept = state
        .grants()
        .keep(
            &target.profile.name,
            &target.login,
            refresh_token,
            tokens.scope.as_deref(),
        )
        .await;
    if let Err(e) = kept {
        tracing::error!("cannot keep the sign-in of {}: {e}", target.login);
        return PageError::Internal("sign-in".into()).into_response();
    }
    let mut response = message(
        StatusCode::OK,
        "Signed in",
        &format!(
            "Thank you: {} can now be moved. You may close this page.",
            target.login
        ),
    );
    if let Ok(clear) = HeaderValue::try_from(format!(
        "{PENDING_COOKIE}=; Path={CALLBACK_PATH}; Max-Age=0; HttpOnly; SameSite=Lax"
    )) {
        response
            .headers_mut()
            .append(axum::http::header::SET_COOKIE, clear);
    }
    response
}

/// Who an ID token says signed in: its `email`, else its `sub`. The token came from
/// the token endpoint over verified TLS to the client that asked, which OpenID
/// Connect Core §3.1.3.7 lets stand in for checking its signature.
fn id_token_account(id_token: &str) -> Option<String> {
    let payload = id_token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims["email"]
        .as_str()
        .or_else(|| claims["sub"].as_str())
        .map(str::to_string)
}

fn provider_failed(error: &mailmove_oauth::Error) -> Response {
    tracing::info!("sign-in: {error}");
    let line = if error.needs_sign_in() {
        "The sign-in was refused or cancelled. Open your sign-in link to try again."
    } else {
        "The sign-in service could not be reached or answered something unexpected. Try \
         again later."
    };
    message(StatusCode::BAD_GATEWAY, "The sign-in did not finish", line)
}

fn message(status: StatusCode, heading: &str, line: &str) -> Response {
    let view = MessagePage {
        layout: Layout::new(heading, None, ""),
        heading: heading.into(),
        lines: vec![line.into()],
        link_href: String::new(),
        link_text: String::new(),
    };
    (status, page(&view)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_token_names_its_account_by_email_else_subject() {
        let token = |claims: &str| format!("h.{}.s", URL_SAFE_NO_PAD.encode(claims));
        assert_eq!(
            id_token_account(&token(r#"{"sub":"x1","email":"a@b.test"}"#)).as_deref(),
            Some("a@b.test")
        );
        assert_eq!(
            id_token_account(&token(r#"{"sub":"a@b.test"}"#)).as_deref(),
            Some("a@b.test")
        );
        assert_eq!(id_token_account("not a token"), None);
    }
}
