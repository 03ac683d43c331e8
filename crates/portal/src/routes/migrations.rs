//! "My Migrations" (SPEC §6.2) and "Start a new migration" (§6.3, §6.4): the user's
//! projects with their mailbox counts per status, and the form that creates a project
//! from a source and a destination endpoint.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use mailmove_projects::{FallbackPasswords, ProjectRequest, ProjectSettings, SignInMethod};
use mailmove_store::StoreError;
use serde::Deserialize;

use crate::AppState;
use crate::auth::CurrentUser;
use crate::presets::{EndpointForm, Side, describe, resolve};
use crate::routes::{Notice, PageError, layout, page};
use crate::views::{
    MigrationsPage, NewMigrationPage, ProjectSummary, SideForm, SignInOption, status_counts,
};

pub(crate) async fn list(
    State(state): State<AppState>,
    CurrentUser(session): CurrentUser,
    Query(notice): Query<Notice>,
) -> Result<Response, PageError> {
    let projects = state
        .db()
        .owned_projects(session.user_id)
        .await?
        .into_iter()
        .map(|p| ProjectSummary {
            id: p.record.id,
            mailboxes: p.mailbox_count(),
            counts: status_counts(&p.status_counts),
            name: p.record.name,
            source: describe(&p.record.source),
            dest: describe(&p.record.dest),
            finished: p.finished_at.is_some(),
        })
        .collect();
    let view = MigrationsPage {
        layout: layout(&session, "My Migrations"),
        notice: notice.text(),
        projects,
    };
    Ok(page(&view)?.into_response())
}

pub(crate) async fn new_form(
    State(state): State<AppState>,
    CurrentUser(session): CurrentUser,
) -> Result<Response, PageError> {
    let view = NewMigrationPage {
        layout: layout(&session, "Start a new migration"),
        errors: Vec::new(),
        name: String::new(),
        sides: vec![
            side_form(&state, Side::Source, &EndpointForm::default(), ""),
            side_form(&state, Side::Destination, &EndpointForm::default(), ""),
        ],
    };
    Ok(page(&view)?.into_response())
}

/// The new-migration form as posted; a field left out is empty.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct NewMigrationForm {
    name: String,
    source_kind: String,
    source_preset: String,
    source_host: String,
    source_port: String,
    source_security: String,
    dest_kind: String,
    dest_preset: String,
    dest_host: String,
    dest_port: String,
    dest_security: String,
    source_sign_in: String,
    dest_sign_in: String,
}

pub(crate) async fn create(
    State(state): State<AppState>,
    CurrentUser(session): CurrentUser,
    Form(form): Form<NewMigrationForm>,
) -> Result<Response, PageError> {
    let source_form = EndpointForm {
        kind: form.source_kind,
        preset: form.source_preset,
        host: form.source_host,
        port: form.source_port,
        security: form.source_security,
    };
    let dest_form = EndpointForm {
        kind: form.dest_kind,
        preset: form.dest_preset,
        host: form.dest_host,
        port: form.dest_port,
        security: form.dest_security,
    };
    let name = form.name.trim().to_string();
    let mut errors = Vec::new();
    if name.is_empty() {
        errors.push("Give the migration a name, such as the company or the mailbox.".to_string());
    } else if name.chars().count() > 100 || name.chars().any(char::is_control) {
        errors.push("The name must be at most 100 characters, on one line.".to_string());
    }
    let source = resolve(Side::Source, &source_form).map_err(|e| errors.push(capitalise(&e)));
    let dest = resolve(Side::Destination, &dest_form).map_err(|e| errors.push(capitalise(&e)));
    let source_sign_in = chosen_sign_in(&state, &source_form.preset, &form.source_sign_in)
        .map_err(|e| errors.push(e));
    let dest_sign_in =
        chosen_sign_in(&state, &dest_form.preset, &form.dest_sign_in).map_err(|e| errors.push(e));
    if let (true, Ok(source), Ok(dest), Ok(source_sign_in), Ok(dest_sign_in)) = (
        errors.is_empty(),
        &source,
        &dest,
        source_sign_in,
        dest_sign_in,
    ) {
        let settings = ProjectSettings {
            tls_ca: state.config().tls_ca.clone(),
            source_sign_in,
            dest_sign_in,
            ..ProjectSettings::default()
        };
        let request = ProjectRequest {
            owner_email: &session.email,
            name: &name,
            source,
            dest,
            settings: &settings,
        };
        match state
            .projects()
            .create(&request, &[], &FallbackPasswords::default())
            .await
        {
            Ok((project, _)) => {
                return Ok(Redirect::to(&format!(
                    "/projects/{}/mailboxes?notice=created",
                    project.id
                ))
                .into_response());
            }
            Err(StoreError::Conflict(_)) => errors.push(format!(
                "You already have a migration named “{name}”: choose another name."
            )),
            Err(e) => return Err(e.into()),
        }
    }
    let view = NewMigrationPage {
        layout: layout(&session, "Start a new migration"),
        errors,
        name,
        sides: vec![
            side_form(&state, Side::Source, &source_form, &form.source_sign_in),
            side_form(&state, Side::Destination, &dest_form, &form.dest_sign_in),
        ],
    };
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page(&view)?).into_response())
}

/// A side of the form, with the sign-in methods the operator offers.
fn side_form(state: &AppState, side: Side, form: &EndpointForm, chosen: &str) -> SideForm {
    let mut view = SideForm::new(side, form);
    let profiles = &state.config().sign_in_profiles;
    if profiles.names().next().is_none() {
        return view;
    }
    let chosen = default_sign_in(state, &form.preset, chosen);
    view.sign_ins = std::iter::once(SignInOption {
        value: "password".into(),
        label: "Each mailbox's password".into(),
        selected: chosen == "password",
    })
    .chain(profiles.names().map(|name| SignInOption {
        value: name.to_string(),
        label: format!(
            "Each user signs in ({name}: {})",
            profiles.provider_of(name).unwrap_or_default()
        ),
        selected: chosen == name,
    }))
    .collect();
    view
}

/// What a side signs in with when the form does not say: a profile of the preset's
/// provider where the operator has one (Microsoft 365 and Google refuse passwords),
/// else passwords.
fn default_sign_in(state: &AppState, preset: &str, chosen: &str) -> String {
    if !chosen.is_empty() {
        return chosen.to_string();
    }
    let provider = match preset {
        "microsoft365" => "microsoft",
        "gmail" => "google",
        _ => return "password".into(),
    };
    let profiles = &state.config().sign_in_profiles;
    profiles
        .names()
        .find(|name| profiles.provider_of(name) == Some(provider))
        .unwrap_or("password")
        .to_string()
}

/// The sign-in method chosen for a side: passwords, or one of the operator's profiles.
fn chosen_sign_in(state: &AppState, preset: &str, chosen: &str) -> Result<SignInMethod, String> {
    match default_sign_in(state, preset, chosen).as_str() {
        "password" => Ok(SignInMethod::Password),
        name if state.config().sign_in_profiles.names().any(|n| n == name) => {
            Ok(SignInMethod::OAuth {
                profile: name.to_string(),
            })
        }
        _ => Err("Choose how the mailboxes sign in from the list.".into()),
    }
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
