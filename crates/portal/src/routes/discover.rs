//! "Find my settings" on "Start a new migration": `GET /discover?side=source&address=…`
//! answers, as JSON, the server settings found for a mailbox address or domain, for the
//! page's script to fill the side's kind, preset, server, port and security with, and
//! says where they came from. It makes this server do network requests for whoever is
//! signed in, so it is bounded: signed-in users only, a few discoveries per user in a
//! window, a few at once for the whole portal, the configured sources and conventional
//! mail ports only, short time limits, and no private or loopback address unless the
//! operator allowed them.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use mailmove_discover::{Candidate, Check, Discovery, Target, discover};
use mailmove_model::{Kind, Security};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::CurrentUser;
use crate::presets::{PRESETS, Side};

/// A discovery's answer is waited for at most this many of its steps' timeouts.
const OVERALL_STEPS: u32 = 6;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct DiscoverQuery {
    address: String,
    side: String,
}

/// What the page's script reads.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Found {
    found: bool,
    /// The form's values: `imap`, `pop3` or `ews`; a preset id or empty; the server,
    /// the port and `tls` or `starttls`.
    kind: &'static str,
    preset: &'static str,
    host: String,
    port: String,
    security: &'static str,
    /// One sentence for the person: what was found, where from, how it signs in.
    message: String,
}

pub(crate) async fn find(
    State(state): State<AppState>,
    CurrentUser(session): CurrentUser,
    Query(query): Query<DiscoverQuery>,
) -> Response {
    let side = if query.side == "destination" || query.side == "dest" {
        Side::Destination
    } else {
        Side::Source
    };
    if let Err(e) = Target::parse(&query.address) {
        return answer(StatusCode::BAD_REQUEST, &refusal(&e.to_string()));
    }
    let config = state.config();
    // The store's request counter, as for logins: counted across portal processes.
    let key = format!("discover:user:{}", session.user_id);
    let window = config
        .discovery_window
        .as_secs()
        .try_into()
        .unwrap_or(i64::MAX);
    let counted = match state.db().count_login_request(&key, window).await {
        Ok(counted) => counted,
        Err(e) => {
            tracing::error!("the database failed: {e}");
            let text = "The settings could not be looked up: fill in the server below.";
            return answer(StatusCode::INTERNAL_SERVER_ERROR, &refusal(text));
        }
    };
    if counted > config.discoveries_per_user as u64 {
        let text = "You asked for settings many times in a short while: wait a few minutes, \
                    or fill the server in yourself.";
        return answer(StatusCode::TOO_MANY_REQUESTS, &refusal(text));
    }
    let Ok(_slot) = state.discovery_slots().try_acquire() else {
        let text = "The portal is looking up settings for others right now: try again in a \
                    moment.";
        return answer(StatusCode::SERVICE_UNAVAILABLE, &refusal(text));
    };
    let mut settings = config.discovery.clone();
    settings.tls.extra_ca = config.tls_ca.clone();
    // Every step has its own deadline; this bounds the whole, whatever the sources do.
    let limit = settings.timeout * OVERALL_STEPS;
    match tokio::time::timeout(limit, discover(&query.address, &settings, None)).await {
        Ok(Ok(found)) => answer(StatusCode::OK, &describe(&found, side)),
        Ok(Err(e)) => answer(StatusCode::BAD_REQUEST, &refusal(&e.to_string())),
        Err(_) => answer(
            StatusCode::OK,
            &refusal("Looking up the settings took too long: fill in the server below."),
        ),
    }
}

fn answer(status: StatusCode, found: &Found) -> Response {
    let body = serde_json::to_string(found).unwrap_or_else(|_| "{}".into());
    (
        status,
        [
            (CONTENT_TYPE, "application/json"),
            (CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn refusal(message: &str) -> Found {
    Found {
        message: message.to_string(),
        ..Found::default()
    }
}

/// The form's values for the best candidate this side can use.
fn describe(found: &Discovery, side: Side) -> Found {
    let shown = found.address.as_deref().unwrap_or(&found.domain);
    let best = match side {
        Side::Source => found.best(),
        Side::Destination => found.best_for_destination(),
    };
    let Some(best) = best else {
        let plaintext = found
            .candidates
            .iter()
            .find(|c| matches!(c.check, Check::PlaintextOnly { .. }));
        let mut message = format!("No settings were found for {shown}: fill in the server below.");
        if let Some(c) = plaintext {
            message.push_str(&format!(
                " {}:{} answers without encryption only, so it was not chosen.",
                c.host, c.port
            ));
        }
        return refusal(&message);
    };
    Found {
        found: true,
        kind: match best.kind {
            Kind::Imap => "imap",
            Kind::Pop3 => "pop3",
            Kind::Ews => "ews",
        },
        preset: preset_of(best),
        host: best.host.clone(),
        port: best.port.to_string(),
        security: if best.security == Security::Tls {
            "tls"
        } else {
            "starttls"
        },
        message: format!(
            "Found {} at {}:{} via {}{}; signs in with {}.",
            best.service.label(),
            best.host,
            best.port,
            best.found_via_text(),
            match best.check {
                Check::Verified { .. } => " (checked: it answers with verified TLS)",
                _ => " (not checked from here)",
            },
            best.sign_in.label()
        ),
    }
}

/// The preset whose server this is, so the form shows the familiar name.
fn preset_of(candidate: &Candidate) -> &'static str {
    PRESETS
        .iter()
        .find(|p| {
            let host = match candidate.kind {
                Kind::Imap => p.imap,
                Kind::Pop3 => p.pop,
                Kind::Ews => None,
            };
            host == Some(candidate.host.as_str())
                && candidate.port
                    == if candidate.kind == Kind::Pop3 {
                        995
                    } else {
                        993
                    }
        })
        .map_or("", |p| p.id)
}
