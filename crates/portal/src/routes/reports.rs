//! The reports of SPEC §6.8, as CSV files: each mailbox's statistics, and every failed
//! item (folder, subject, size, reason) from the project's ledgers. Cells that a
//! spreadsheet would run as a formula are defused.

use axum::extract::{Path, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::auth::CurrentUser;
use crate::routes::{PageError, owned_project};
use crate::views::server_text;

pub(crate) async fn mailbox_statistics(
    State(state): State<AppState>,
    CurrentUser(session): CurrentUser,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let project = owned_project(&state, &session, &id).await?;
    let mut rows = vec![
        [
            "Source Email",
            "Destination Email",
            "Status",
            "Last Pass",
            "Copied",
            "Already Present",
            "Skipped",
            "Failed",
            "Bytes Copied",
            "Destination Keeps Bytes",
            "Last Error",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for m in state.db().mailboxes(project.record.id).await? {
        rows.push(vec![
            m.source_email,
            m.dest_email,
            m.status.as_str().to_string(),
            m.last_pass
                .map(|kind| kind.as_str().to_string())
                .unwrap_or_default(),
            m.copied.to_string(),
            m.already_present.to_string(),
            m.skipped.to_string(),
            m.failed.to_string(),
            m.bytes_copied.to_string(),
            match m.dest_byte_exact {
                Some(true) => "yes".to_string(),
                Some(false) => "no".to_string(),
                None => String::new(),
            },
            m.last_error
                .as_deref()
                .map(server_text)
                .unwrap_or_default()
                .into_owned(),
        ]);
    }
    csv_file(&project.record.name, "mailboxes", &rows)
}

pub(crate) async fn failed_items(
    State(state): State<AppState>,
    CurrentUser(session): CurrentUser,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let project = owned_project(&state, &session, &id).await?;
    let mut rows = vec![
        [
            "Source Email",
            "Destination Email",
            "Folder",
            "UID",
            "Message-ID",
            "Subject",
            "Size",
            "Reason",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for item in state.db().failed_items(project.record.id).await? {
        rows.push(vec![
            item.source_email,
            item.dest_email,
            server_text(&item.folder).into_owned(),
            item.uid.to_string(),
            item.message_id.unwrap_or_default(),
            item.subject
                .as_deref()
                .map(server_text)
                .unwrap_or_default()
                .into_owned(),
            item.size.to_string(),
            item.reason
                .as_deref()
                .map(server_text)
                .unwrap_or_default()
                .into_owned(),
        ]);
    }
    csv_file(&project.record.name, "failed-items", &rows)
}

fn csv_file(project: &str, report: &str, rows: &[Vec<String>]) -> Result<Response, PageError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer
            .write_record(row.iter().map(|cell| defused(cell)))
            .map_err(|e| PageError::Internal(format!("a CSV report: {e}")))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| PageError::Internal(format!("a CSV report: {e}")))?;
    let name: String = project
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}-{report}.csv\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// A cell a spreadsheet would take for a formula (a subject such as `=HYPERLINK(...)`)
/// gets a leading apostrophe, which spreadsheets show as text.
fn defused(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formulas_are_defused() {
        assert_eq!(super::defused("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(super::defused("@SUM(1)"), "'@SUM(1)");
        assert_eq!(super::defused("Re: hello"), "Re: hello");
        assert_eq!(super::defused(""), "");
    }
}
