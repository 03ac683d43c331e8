//! Adding mailboxes to a migration (SPEC §6.5): rows typed into the form ("+" adds a
//! row), or a spreadsheet (CSV or XLSX) uploaded whole, with the template to download.
//! Both go through `mailmove-import`'s one validator, so a bad row is reported with its
//! place and reason and nothing is half-imported; passwords are sealed at once and never
//! shown again, not even in a form sent back after an error. A mailbox's passwords can
//! be replaced (a trial that says "login refused: check the password"), never read.
//!
//! A form post or a spreadsheet adds at most [`Limits::UPLOAD`] mailboxes (5,000); a
//! spreadsheet is read off the async threads within a time limit
//! ([`crate::PortalConfig::spreadsheet_read_limit`]); at most
//! [`PROBLEMS_LISTED`] problems are listed, the rest counted. Everything else is linear in
//! the size of what was sent.

use std::time::Duration;

use axum::Form;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Redirect, Response};
use mailmove_import::{
    ImportError, Limits, MailboxRow, PROBLEMS_LISTED, TEMPLATE_CSV, TEMPLATE_FILE_NAME,
};
use mailmove_model::Secret;
use mailmove_projects::FallbackPasswords;
use mailmove_store::{MailboxRecord, OwnedProject, StoreError};
use serde::Deserialize;

use crate::AppState;
use crate::auth::{CurrentUser, Session};
use crate::routes::project::active_project;
use crate::routes::{Notice, PageError, layout, page};
use crate::views::{ExistingMailbox, MailboxesPage, PasswordsPage, RowFragment, RowView};

/// The most rows the form shows at once without JavaScript.
const MAX_FORM_ROWS: usize = 50;

/// The form's fields of one mailbox row, in the order they appear.
const ROW_FIELDS: [&str; 6] = [
    "source_email",
    "source_login",
    "source_password",
    "dest_email",
    "dest_login",
    "dest_password",
];

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RowsQuery {
    rows: Option<usize>,
    n: Option<usize>,
}

pub(crate) async fn form(
    State(state): State<AppState>,
    CurrentUser(session): CurrentUser,
    Path(id): Path<String>,
    Query(rows): Query<RowsQuery>,
    Query(notice): Query<Notice>,
) -> Result<Response, PageError> {
    let count = rows.rows.unwrap_or(1).clamp(1, MAX_FORM_ROWS);
    let rows = (1..=count)
        .map(|n| RowView {
            n,
            ..RowView::default()
        })
        .collect();
    render_form(
        &state,
        &session,
        &id,
        rows,
        Vec::new(),
        notice.text(),
        StatusCode::OK,
    )
    .await
}

/// One more empty row, for htmx to append (with the "+" link for the row after).
pub(crate) async fn row(
    State(state): State<AppState>,
    CurrentUser(session): CurrentUser,
    Path(id): Path<String>,
    Query(query): Query<RowsQuery>,
) -> Result<Response, PageError> {
    let project = active_project(&state, &session, &id).await?;
    let n = query.n.unwrap_or(2).clamp(1, 10_000);
    let view = RowFragment {
        project_id: project.record.id,
        row: RowView {
            n,
            ..RowView::default()
        },
        next_row: n + 1,
    };
    Ok(page(&view)?.into_response())
}

/// Saves the typed rows: all of them, or none with every problem listed.
pub(crate) async fn add_rows(
    State(state): State<AppState>,
    CurrentUser(session): CurrentUser,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let project = active_project(&state, &session, &id).await?;
    let typed = match typed_rows(&fields) {
        Ok(typed) => typed,
        Err(error) => {
            let one_row = vec![RowView {
                n: 1,
                ..RowView::default()
            }];
            return render_form(
                &state,
                &session,
                &id,
                one_row,
                vec![error],
                None,
                StatusCode::PAYLOAD_TOO_LARGE,
            )
            .await;
        }
    };
    let shown: Vec<RowView> = if typed.is_empty() {
        vec![RowView {
            n: 1,
            ..RowView::default()
        }]
    } else {
        typed.iter().map(TypedRow::view).collect()
    };
    let rows = match validate_typed(&typed) {
        Ok(rows) => rows,
        Err(errors) => {
            return render_form(
                &state,
                &session,
                &id,
                shown,
                errors,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    match save(&state, project.record.id, &rows).await? {
        Ok(count) => Ok(added(project.record.id, count)),
        Err(error) => {
            render_form(
                &state,
                &session,
                &id,
                shown,
                vec![error],
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

/// Saves the mailboxes of an uploaded spreadsheet: all of them, or none with every
/// problem listed by line.
pub(crate) async fn upload(
    State(state): State<AppState>,
    CurrentUser(session): CurrentUser,
    Path(id): Path<String>,
    mut multipart: Multipart,
) -> Result<Response, PageError> {
    let project = active_project(&state, &session, &id).await?;
    let mut file: Option<(String, Vec<u8>)> = None;
    let mut unreadable = false;
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) if field.name() == Some("spreadsheet") => {
                let name = field.file_name().unwrap_or("").to_string();
                match field.bytes().await {
                    Ok(bytes) => file = Some((name, bytes.to_vec())),
                    Err(_) => unreadable = true,
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                unreadable = true;
                break;
            }
        }
    }
    let result = match file {
        _ if unreadable => Err(vec![
            "The upload could not be read: try again, or save the file anew.".to_string(),
        ]),
        Some((_, bytes)) if bytes.is_empty() => Err(vec![
            "Choose a spreadsheet file (CSV or XLSX) to upload.".to_string(),
        ]),
        None => Err(vec![
            "Choose a spreadsheet file (CSV or XLSX) to upload.".to_string(),
        ]),
        Some((name, bytes)) => {
            read_spreadsheet(name, bytes, state.config().spreadsheet_read_limit).await
        }
    };
    let one_row = || {
        vec![RowView {
            n: 1,
            ..RowView::default()
        }]
    };
    let rows = match result {
        Ok(rows) => rows,
        Err(errors) => {
            return render_form(
                &state,
                &session,
                &id,
                one_row(),
                errors,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    match save(&state, project.record.id, &rows).await? {
        Ok(count) => Ok(added(project.record.id, count)),
        Err(error) => {
            render_form(
                &state,
                &session,
                &id,
                one_row(),
                vec![error],
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

/// Reads an uploaded spreadsheet on a blocking thread, so a slow one never holds the
/// threads that serve pages (with SQLite, `serve` also runs the passes). A read that
/// outlives the time limit is answered at once; its thread ends when the read does,
/// which the size limits bound.
async fn read_spreadsheet(
    name: String,
    bytes: Vec<u8>,
    time_limit: Duration,
) -> Result<Vec<MailboxRow>, Vec<String>> {
    let reading = tokio::task::spawn_blocking(move || {
        mailmove_import::read_bytes_within(&name, &bytes, Limits::UPLOAD)
    });
    match tokio::time::timeout(time_limit, reading).await {
        Ok(Ok(Ok(rows))) => Ok(rows),
        Ok(Ok(Err(ImportError::Problems(problems)))) => Err(problems
            .iter()
            .map(|p| format!("Line {}: {}", p.line, p.reason))
            .collect()),
        Ok(Ok(Err(other))) => Err(vec![capitalised(&other.to_string())]),
        Ok(Err(_)) => Err(vec![
            "The spreadsheet could not be read: save it again as CSV and upload that.".to_string(),
        ]),
        Err(_) => Err(vec![format!(
            "Reading the spreadsheet took longer than {} seconds: save it again as CSV, or \
             split it into smaller files.",
            time_limit.as_secs()
        )]),
    }
}

pub(crate) async fn passwords_form(
    State(state): State<AppState>,
    CurrentUser(session): CurrentUser,
    Path((id, mailbox)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let project = active_project(&state, &session, &id).await?;
    let mailbox = project_mailbox(&state, &project, &mailbox).await?;
    passwords_page(&session, &project, &mailbox, None, StatusCode::OK)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PasswordsForm {
    source_password: String,
    dest_password: String,
}

/// Replaces the passwords typed in (an empty field keeps what is stored), sealed as
/// when the mailbox was added.
pub(crate) async fn set_passwords(
    State(state): State<AppState>,
    CurrentUser(session): CurrentUser,
    Path((id, mailbox)): Path<(String, String)>,
    Form(form): Form<PasswordsForm>,
) -> Result<Response, PageError> {
    let project = active_project(&state, &session, &id).await?;
    let mailbox = project_mailbox(&state, &project, &mailbox).await?;
    if form.source_password.is_empty() && form.dest_password.is_empty() {
        let error = "Type a new password for the source, the destination, or both.";
        return passwords_page(
            &session,
            &project,
            &mailbox,
            Some(error.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    let typed = |password: String| (!password.is_empty()).then(|| Secret::new(password));
    let source = typed(form.source_password);
    let dest = typed(form.dest_password);
    state
        .projects()
        .set_passwords(&mailbox, source.as_ref(), dest.as_ref())
        .await?;
    Ok(Redirect::to(&format!("/projects/{}?notice=passwords", project.record.id)).into_response())
}

/// Mailbox `id` of the project; a mailbox of another project is not found.
async fn project_mailbox(
    state: &AppState,
    project: &OwnedProject,
    id: &str,
) -> Result<MailboxRecord, PageError> {
    let id: i64 = id.parse().map_err(|_| PageError::NotFound)?;
    let mailbox = state.db().mailbox(id).await?;
    if mailbox.project_id != project.record.id {
        return Err(PageError::NotFound);
    }
    Ok(mailbox)
}

fn passwords_page(
    session: &Session,
    project: &OwnedProject,
    mailbox: &MailboxRecord,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let stored = |secret: &Option<Vec<u8>>| {
        if secret.is_some() {
            "a password"
        } else {
            "none"
        }
    };
    let view = PasswordsPage {
        layout: layout(
            session,
            format!("Change the passwords of {}", mailbox.source_email),
        ),
        project_id: project.record.id,
        project_name: project.record.name.clone(),
        mailbox_id: mailbox.id,
        source_email: mailbox.source_email.clone(),
        dest_email: mailbox.dest_email.clone(),
        source_saved: stored(&mailbox.source_secret),
        dest_saved: stored(&mailbox.dest_secret),
        error,
    };
    Ok((status, page(&view)?).into_response())
}

/// The spreadsheet template: the header row and two example rows, no passwords.
pub(crate) async fn template() -> Response {
    (
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{TEMPLATE_FILE_NAME}\""),
            ),
        ],
        TEMPLATE_CSV,
    )
        .into_response()
}

async fn render_form(
    state: &AppState,
    session: &Session,
    id: &str,
    rows: Vec<RowView>,
    errors: Vec<String>,
    notice: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let project = active_project(state, session, id).await?;
    let existing = state
        .db()
        .mailboxes(project.record.id)
        .await?
        .iter()
        .map(ExistingMailbox::of)
        .collect();
    let next_row = rows.len() + 1;
    let errors = listed(errors);
    let view = MailboxesPage {
        layout: layout(session, format!("Add mailboxes to {}", project.record.name)),
        project_id: project.record.id,
        project_name: project.record.name,
        notice,
        errors,
        rows,
        next_row,
        existing,
    };
    Ok((status, page(&view)?).into_response())
}

/// The first [`PROBLEMS_LISTED`] problems, and how many more there are.
fn listed(mut errors: Vec<String>) -> Vec<String> {
    if errors.len() > PROBLEMS_LISTED {
        let more = errors.len() - PROBLEMS_LISTED;
        errors.truncate(PROBLEMS_LISTED);
        errors.push(format!(
            "And {more} more {}: fix these first, then try again.",
            if more == 1 { "problem" } else { "problems" }
        ));
    }
    errors
}

fn added(project_id: i64, count: usize) -> Response {
    Redirect::to(&format!(
        "/projects/{project_id}?notice=added&count={count}"
    ))
    .into_response()
}

/// Seals the rows' passwords and adds them, all or none. The inner error is a problem to
/// show the person (a mailbox the project already has).
async fn save(
    state: &AppState,
    project_id: i64,
    rows: &[MailboxRow],
) -> Result<Result<usize, String>, PageError> {
    match state
        .projects()
        .add_mailboxes(project_id, rows, &FallbackPasswords::default())
        .await
    {
        Ok(ids) => Ok(Ok(ids.len())),
        Err(StoreError::Conflict(reason)) => Ok(Err(capitalised(&reason))),
        Err(e) => Err(e.into()),
    }
}

/// One row of the form as typed: its number and its six fields.
struct TypedRow {
    n: usize,
    values: [String; 6],
}

impl TypedRow {
    fn is_empty(&self) -> bool {
        self.values.iter().all(|v| v.trim().is_empty())
    }

    /// What the form shows again: everything but the passwords.
    fn view(&self) -> RowView {
        RowView {
            n: self.n,
            source_email: self.values[0].clone(),
            source_login: self.values[1].clone(),
            dest_email: self.values[3].clone(),
            dest_login: self.values[4].clone(),
        }
    }
}

/// Groups the posted fields into rows: the k-th `source_email` belongs with the k-th of
/// every other row field, as the form lays them out. More rows than one list may add
/// ([`Limits::UPLOAD`]) are refused before any is checked.
fn typed_rows(fields: &[(String, String)]) -> Result<Vec<TypedRow>, String> {
    let most = Limits::UPLOAD.max_mailboxes;
    let mut rows: Vec<TypedRow> = Vec::new();
    let mut seen = [0usize; 6];
    for (name, value) in fields {
        let Some(column) = ROW_FIELDS.iter().position(|f| f == name) else {
            continue;
        };
        let index = seen[column];
        if index >= most {
            return Err(format!(
                "The form has more than {most} mailbox rows, the most one form may add: add \
                 them in several steps, or upload a spreadsheet."
            ));
        }
        seen[column] += 1;
        while rows.len() <= index {
            rows.push(TypedRow {
                n: rows.len() + 1,
                values: Default::default(),
            });
        }
        rows[index].values[column] = value.clone();
    }
    Ok(rows)
}

/// Checks the typed rows with the spreadsheet validator: they are written as a CSV file
/// (header on line 1, the k-th filled row on line k + 1) and read back, and each problem
/// is told by the row number the person sees.
fn validate_typed(typed: &[TypedRow]) -> Result<Vec<MailboxRow>, Vec<String>> {
    let filled: Vec<&TypedRow> = typed.iter().filter(|row| !row.is_empty()).collect();
    if filled.is_empty() {
        return Err(vec!["Enter at least one mailbox.".to_string()]);
    }
    let broken: Vec<String> = filled
        .iter()
        .filter(|row| row.values.iter().any(|v| v.contains(['\r', '\n'])))
        .map(|row| format!("Mailbox {}: a field holds a line break.", row.n))
        .collect();
    if !broken.is_empty() {
        return Err(broken);
    }
    let mut writer = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Always)
        .from_writer(Vec::new());
    let header = [
        "Source Email",
        "Source Login Name",
        "Source Password",
        "Destination Email",
        "Destination Login Name",
        "Destination Password",
    ];
    let written = writer.write_record(header).is_ok()
        && filled
            .iter()
            .all(|row| writer.write_record(&row.values).is_ok());
    let bytes = match (written, writer.into_inner()) {
        (true, Ok(bytes)) => bytes,
        _ => return Err(vec!["The mailboxes could not be read.".to_string()]),
    };
    mailmove_import::read_bytes_within("mailboxes.csv", &bytes, Limits::UPLOAD).map_err(|e| match e
    {
        ImportError::Problems(problems) => problems
            .iter()
            .map(
                |p| match p.line.checked_sub(2).and_then(|k| filled.get(k)) {
                    Some(row) => format!("Mailbox {}: {}", row.n, p.reason),
                    None => capitalised(&p.reason),
                },
            )
            .collect(),
        other => vec![capitalised(&other.to_string())],
    })
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn typed_rows_are_grouped_by_position_and_checked_by_row_number() {
        let posted = fields(&[
            ("csrf", "x"),
            ("source_email", "a@old.example"),
            ("source_login", ""),
            ("source_password", "pw, with \"quotes\""),
            ("dest_email", "a@new.example"),
            ("dest_login", ""),
            ("dest_password", ""),
            ("source_email", ""),
            ("source_login", ""),
            ("source_password", ""),
            ("dest_email", ""),
            ("dest_login", ""),
            ("dest_password", ""),
            ("source_email", "not an address"),
            ("source_login", ""),
            ("source_password", "secret"),
            ("dest_email", "c@new.example"),
            ("dest_login", ""),
            ("dest_password", ""),
        ]);
        let typed = typed_rows(&posted).unwrap();
        assert_eq!(typed.len(), 3);
        let errors = validate_typed(&typed).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("Mailbox 3:"), "{errors:?}");
        assert!(!errors[0].contains("secret"));

        let rows = validate_typed(&typed[..2]).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].source_login, "a@old.example");
        assert_eq!(
            rows[0].source_password.as_ref().unwrap().expose(),
            "pw, with \"quotes\""
        );
        assert!(rows[0].dest_password.is_none());
    }

    #[test]
    fn nothing_typed_or_line_breaks_are_refused() {
        assert_eq!(
            validate_typed(&typed_rows(&fields(&[("source_email", " ")])).unwrap()).unwrap_err(),
            vec!["Enter at least one mailbox."]
        );
        let errors =
            validate_typed(&typed_rows(&fields(&[("source_email", "a@b.example\nx")])).unwrap())
                .unwrap_err();
        assert_eq!(errors, vec!["Mailbox 1: a field holds a line break."]);
    }

    #[test]
    fn more_rows_than_one_list_may_add_are_refused_before_any_is_checked() {
        let most = Limits::UPLOAD.max_mailboxes;
        let at_most: Vec<(String, String)> = (0..most)
            .map(|_| ("source_email".to_string(), String::new()))
            .collect();
        assert_eq!(typed_rows(&at_most).unwrap().len(), most);
        let over: Vec<(String, String)> = (0..=most)
            .map(|_| ("source_email".to_string(), String::new()))
            .collect();
        let error = typed_rows(&over).err().expect("refused");
        assert!(error.contains("more than 5000 mailbox rows"), "{error}");
    }

    #[test]
    fn only_the_first_problems_are_listed() {
        let errors: Vec<String> = (0..250).map(|n| format!("Mailbox {n}: missing")).collect();
        let shown = listed(errors);
        assert_eq!(shown.len(), PROBLEMS_LISTED + 1);
        assert_eq!(shown[PROBLEMS_LISTED - 1], "Mailbox 99: missing");
        assert!(
            shown[PROBLEMS_LISTED].starts_with("And 150 more problems"),
            "{shown:?}"
        );
        assert_eq!(listed(vec!["one".into()]), vec!["one".to_string()]);
    }
}
