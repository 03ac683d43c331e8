//! One migration's page (SPEC §6.6–§6.8): its mailboxes with status and live progress,
//! and the actions on all or chosen mailboxes: the trial (a `verify` pass), Migrate
//! (`full`), Migrate new items (`delta`), Retry errors (`retry`), Stop; then Finish
//! (the project is marked finished and its passwords erased) or Delete.

use std::collections::{HashMap, HashSet};

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use mailmove_projects::{ProjectSettings, Side, SignInMethod};
use mailmove_store::{OwnedProject, PassKind, PassState, StoreError, now};

use crate::AppState;
use crate::auth::CurrentUser;
use crate::presets::describe;
use crate::routes::{Notice, PageError, layout, owned_project, page};
use crate::views::{
    MailboxView, MessagePage, ProjectPage, progress_html, status_html, summary_html,
};

pub(crate) async fn show(
    State(state): State<AppState>,
    CurrentUser(session): CurrentUser,
    Path(id): Path<String>,
    Query(notice): Query<Notice>,
) -> Result<Response, PageError> {
    let project = owned_project(&state, &session, &id).await?;
    let db = state.db();
    let mailboxes = db.mailboxes(project.record.id).await?;
    let passes: HashMap<i64, _> = db
        .latest_passes(project.record.id)
        .await?
        .into_iter()
        .map(|p| (p.mailbox_id, p))
        .collect();
    let now = now();
    let live = passes
        .values()
        .any(|p| matches!(p.state, PassState::Queued | PassState::Running));
    let views = mailboxes
        .iter()
        .map(|m| MailboxView {
            id: m.id,
            source_email: m.source_email.clone(),
            dest_email: m.dest_email.clone(),
            status_html: status_html(m, passes.get(&m.id)),
            progress_html: progress_html(m, passes.get(&m.id), now),
        })
        .collect();
    let view = ProjectPage {
        layout: layout(&session, project.record.name.clone()),
        id: project.record.id,
        name: project.record.name.clone(),
        source: describe(&project.record.source),
        dest: describe(&project.record.dest),
        notice: notice.text(),
        finished: project.finished_at.map(day),
        live,
        summary_html: summary_html(&mailboxes),
        mailboxes: views,
        users_sign_in: ProjectSettings::from_json(&project.record.settings).is_ok_and(|s| {
            [s.source_sign_in, s.dest_sign_in]
                .iter()
                .any(|m| matches!(m, SignInMethod::OAuth { .. }))
        }),
    };
    Ok(page(&view)?.into_response())
}

/// Queues a pass of the kind of the button pressed for the chosen mailboxes (all when
/// none is chosen). A mailbox that already has a pass queued or running keeps it.
pub(crate) async fn queue_passes(
    State(state): State<AppState>,
    CurrentUser(session): CurrentUser,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let project = active_project(&state, &session, &id).await?;
    let kind = fields
        .iter()
        .find(|(name, _)| name == "pass")
        .and_then(|(_, value)| PassKind::parse(value))
        .ok_or(PageError::NotFound)?;
    let chosen = chosen_mailboxes(&state, &project, &fields).await?;
    if chosen.is_empty() {
        return Ok(back(&project, nothing_chosen(&fields)));
    }
    match state
        .projects()
        .queue(project.record.id, Some(&chosen), kind)
        .await
    {
        Ok(_) => {}
        // Finished since the page was shown: the store refused in the same transaction.
        Err(StoreError::Conflict(_)) => return Err(PageError::Finished),
        // Over the operator's limit of passes waiting at once: nothing was queued.
        Err(StoreError::Busy(_)) => {
            return Ok(back(
                &project,
                &format!("notice=queue-full&count={}", chosen.len()),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(back(
        &project,
        &format!(
            "notice=queued&pass={}&count={}",
            kind.as_str(),
            chosen.len()
        ),
    ))
}

pub(crate) async fn stop(
    State(state): State<AppState>,
    CurrentUser(session): CurrentUser,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let project = active_project(&state, &session, &id).await?;
    let chosen = chosen_mailboxes(&state, &project, &fields).await?;
    if chosen.is_empty() {
        return Ok(back(&project, nothing_chosen(&fields)));
    }
    state
        .projects()
        .stop(project.record.id, Some(&chosen))
        .await?;
    Ok(back(
        &project,
        &format!("notice=stopped&count={}", chosen.len()),
    ))
}

/// Finishing marks the project finished and erases its stored passwords; refused while
/// a pass is queued or running.
pub(crate) async fn finish(
    State(state): State<AppState>,
    CurrentUser(session): CurrentUser,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let project = active_project(&state, &session, &id).await?;
    match state.projects().finish(project.record.id).await {
        Ok(_) => Ok(back(&project, "notice=finished")),
        Err(StoreError::Busy(_)) => Ok(back(&project, "notice=busy")),
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    CurrentUser(session): CurrentUser,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let project = owned_project(&state, &session, &id).await?;
    if !fields
        .iter()
        .any(|(name, value)| name == "confirm" && value == "yes")
    {
        return Ok(back(&project, "notice=confirm"));
    }
    match state.projects().delete(project.record.id).await {
        Ok(()) => Ok(Redirect::to("/migrations?notice=deleted").into_response()),
        Err(StoreError::Busy(_)) => Ok(back(&project, "notice=busy")),
        Err(e) => Err(e.into()),
    }
}

/// The user's project, if it is not finished yet.
pub(crate) async fn active_project(
    state: &AppState,
    session: &crate::auth::Session,
    id: &str,
) -> Result<OwnedProject, PageError> {
    let project = owned_project(state, session, id).await?;
    if project.finished_at.is_some() {
        return Err(PageError::Finished);
    }
    Ok(project)
}

/// The ids of the project's mailboxes named by the `mailbox` fields, or all of them
/// when none is. Ids of mailboxes outside this project are ignored.
async fn chosen_mailboxes(
    state: &AppState,
    project: &OwnedProject,
    fields: &[(String, String)],
) -> Result<Vec<i64>, PageError> {
    let all = state.db().mailboxes(project.record.id).await?;
    Ok(chosen_of(all.iter().map(|m| m.id), fields))
}

/// Of the project's mailbox ids `all`, those the `mailbox` fields name (all when none
/// does). Linear: a form may name tens of thousands of ids.
fn chosen_of(all: impl Iterator<Item = i64>, fields: &[(String, String)]) -> Vec<i64> {
    let named: HashSet<i64> = fields
        .iter()
        .filter(|(name, _)| name == "mailbox")
        .filter_map(|(_, value)| value.parse().ok())
        .collect();
    all.filter(|id| named.is_empty() || named.contains(id))
        .collect()
}

/// Why an action found no mailbox: the project has none, or the chosen ones are not
/// its own.
fn nothing_chosen(fields: &[(String, String)]) -> &'static str {
    if fields.iter().any(|(name, _)| name == "mailbox") {
        "notice=not-chosen"
    } else {
        "notice=empty"
    }
}

fn back(project: &OwnedProject, query: &str) -> Response {
    Redirect::to(&format!("/projects/{}?{query}", project.record.id)).into_response()
}

/// A Unix time as the day it falls on (UTC), `2025-11-26`.
fn day(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .map(|t| t.date().to_string())
        .unwrap_or_default()
}

/// How long a sign-in link handed to a mailbox's user works.
const SIGN_IN_LINK_SECONDS: i64 = 14 * 24 * 3600;

/// `GET /projects/{id}/mailboxes/{mailbox}/signin-link`: for the project's owner, the
/// link each side's user opens to sign in themselves (sides that sign in with a
/// user's own consent only).
pub(crate) async fn sign_in_link(
    State(state): State<AppState>,
    CurrentUser(session): CurrentUser,
    Path((id, mailbox)): Path<(String, i64)>,
) -> Result<Response, PageError> {
    let project = owned_project(&state, &session, &id).await?;
    let mailbox = state.db().mailbox(mailbox).await?;
    if mailbox.project_id != project.record.id {
        return Err(PageError::NotFound);
    }
    let settings = ProjectSettings::from_json(&project.record.settings)
        .map_err(|e| PageError::Internal(e.to_string()))?;
    let mut lines = Vec::new();
    for (side, method, login) in [
        (
            Side::Source,
            &settings.source_sign_in,
            &mailbox.source_login,
        ),
        (
            Side::Destination,
            &settings.dest_sign_in,
            &mailbox.dest_login,
        ),
    ] {
        if matches!(method, SignInMethod::OAuth { .. }) {
            lines.push(format!(
                "Send {login} this link to sign in to the {} mailbox (it works for 14 days): {}",
                side.as_str(),
                crate::routes::signin::link_for(&state, mailbox.id, side, SIGN_IN_LINK_SECONDS)
            ));
        }
    }
    if lines.is_empty() {
        lines.push("This migration's mailboxes sign in with passwords: no link is needed.".into());
    }
    let view = MessagePage {
        layout: layout(&session, "Sign-in link"),
        heading: format!("Sign-in link for {}", mailbox.source_email),
        lines,
        link_href: format!("/projects/{}", project.record.id),
        link_text: "Back to the migration".into(),
    };
    Ok(page(&view)?.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_dates() {
        assert_eq!(day(0), "1970-01-01");
        assert_eq!(day(1_764_115_200), "2025-11-26");
    }

    #[test]
    fn chosen_mailboxes_are_the_named_ones_of_the_project_or_all() {
        let fields = |ids: &[&str]| -> Vec<(String, String)> {
            ids.iter()
                .map(|id| ("mailbox".to_string(), id.to_string()))
                .chain([("csrf".to_string(), "x".to_string())])
                .collect()
        };
        assert_eq!(chosen_of([1, 2, 3].into_iter(), &fields(&[])), [1, 2, 3]);
        assert_eq!(
            chosen_of([1, 2, 3].into_iter(), &fields(&["3", "1", "99", "x"])),
            [1, 3]
        );
        // Tens of thousands of named ids against as many mailboxes: a set, not a scan.
        let many: Vec<String> = (0..60_000).map(|id| id.to_string()).collect();
        let named: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(chosen_of(0..60_000, &fields(&named)).len(), 60_000);
    }
}
