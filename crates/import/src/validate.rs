//! The rules of a mailbox list, the same for every file format: a header row of known
//! columns, then rows that each name two well-formed addresses used by no other row.
//! Every problem is collected before anything is returned, so a file is taken whole or
//! not at all.
//!
//! No message quotes a password cell, an address that is not valid, or any cell of a
//! row with a value outside the named columns: a row shifted by an unquoted delimiter in
//! a password carries pieces of that password in other columns. Valid addresses (in the
//! duplicate messages) and header names are quoted.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use mailmove_model::Secret;

use crate::address::address_fault;
use crate::table::{Cell, ColumnNaming, Row, Table};
use crate::{MailboxRow, RowProblem};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    SourceEmail,
    SourceLogin,
    SourcePassword,
    DestEmail,
    DestLogin,
    DestPassword,
    /// MigrationWiz's per-row options; accepted and ignored.
    Flags,
}

impl Column {
    const ALL: [Column; 7] = [
        Column::SourceEmail,
        Column::SourceLogin,
        Column::SourcePassword,
        Column::DestEmail,
        Column::DestLogin,
        Column::DestPassword,
        Column::Flags,
    ];
    const REQUIRED: [Column; 2] = [Column::SourceEmail, Column::DestEmail];

    fn name(self) -> &'static str {
        match self {
            Column::SourceEmail => "Source Email",
            Column::SourceLogin => "Source Login Name",
            Column::SourcePassword => "Source Password",
            Column::DestEmail => "Destination Email",
            Column::DestLogin => "Destination Login Name",
            Column::DestPassword => "Destination Password",
            Column::Flags => "Flags",
        }
    }

    /// Matches a header cell regardless of case and of the spaces around and between words.
    fn from_header(text: &str) -> Option<Column> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let normalized = words.join(" ");
        Column::ALL
            .into_iter()
            .find(|column| column.name().eq_ignore_ascii_case(&normalized))
    }
}

const EMPTY_FILE: &str = "the file is empty: it needs a header row (Source Email, Destination Email, \
                          ...) and one row per mailbox; the template shows the layout";

pub(crate) fn validate(table: &Table) -> Result<Vec<MailboxRow>, Vec<RowProblem>> {
    let mut rows = table.rows.iter().filter(|row| !row.is_blank());
    let Some(header_row) = rows.next() else {
        return Err(vec![problem(1, EMPTY_FILE)]);
    };
    let header = Header::read(header_row, table.naming)?;

    let mut mailboxes = Vec::new();
    let mut problems = Vec::new();
    let mut sources = HashMap::new();
    let mut destinations = HashMap::new();
    for row in rows {
        let mut row_check = RowCheck {
            row,
            header: &header,
            problems: &mut problems,
        };
        if let Some(mailbox) = row_check.mailbox(table.naming, &mut sources, &mut destinations) {
            mailboxes.push(mailbox);
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if mailboxes.is_empty() {
        return Err(vec![problem(
            header_row.line + 1,
            "no mailboxes: the file has a header row but no rows below it",
        )]);
    }
    Ok(mailboxes)
}

fn problem(line: usize, reason: impl Into<String>) -> RowProblem {
    RowProblem {
        line,
        reason: reason.into(),
    }
}

/// The column each cell of a row belongs to; `None` for a cell whose header is blank.
struct Header {
    columns: Vec<Option<Column>>,
}

impl Header {
    fn read(row: &Row, naming: ColumnNaming) -> Result<Header, Vec<RowProblem>> {
        let columns: Vec<Option<Column>> = row
            .cells
            .iter()
            .map(|cell| match cell {
                Cell::Text(text) => Column::from_header(text),
                Cell::SpreadsheetError(_) => None,
            })
            .collect();
        if columns.iter().all(Option::is_none) {
            // Not a header at all, perhaps a mailbox: quoting its cells could show a password.
            let looks_like_a_mailbox = row
                .cells
                .iter()
                .any(|cell| matches!(cell, Cell::Text(text) if text.contains('@')));
            let reason = if looks_like_a_mailbox {
                "no header row: the first row must name the columns (Source Email, Destination \
                 Email, ...), but this one looks like a mailbox; add the template's header row \
                 above it"
            } else {
                "no header row: the first row names none of the columns Source Email, Source \
                 Login Name, Source Password, Destination Email, Destination Login Name, \
                 Destination Password; the template shows the layout"
            };
            return Err(vec![problem(row.line, reason)]);
        }

        let mut problems = Vec::new();
        for (index, cell) in row.cells.iter().enumerate() {
            let text = match cell {
                Cell::Text(text) => text.trim(),
                Cell::SpreadsheetError(error) => {
                    problems.push(problem(
                        row.line,
                        format!(
                            "the header cell in {} holds the spreadsheet error {error}: it should \
                             name a column",
                            naming.label(index)
                        ),
                    ));
                    continue;
                }
            };
            match columns[index] {
                None if text.is_empty() => {}
                None => problems.push(problem(
                    row.line,
                    format!(
                        "unknown column `{text}`: expected one of {}",
                        expected_columns()
                    ),
                )),
                Some(Column::Flags) => {}
                Some(column) => {
                    let first = columns.iter().position(|other| *other == Some(column));
                    if let Some(first) = first.filter(|first| *first < index) {
                        problems.push(problem(
                            row.line,
                            format!(
                                "column `{}` appears twice ({} and {})",
                                column.name(),
                                naming.label(first),
                                naming.label(index)
                            ),
                        ));
                    }
                }
            }
        }
        for column in Column::REQUIRED {
            if !columns.contains(&Some(column)) {
                problems.push(problem(
                    row.line,
                    format!(
                        "missing column `{}`: the header row must name it",
                        column.name()
                    ),
                ));
            }
        }
        if problems.is_empty() {
            Ok(Header { columns })
        } else {
            Err(problems)
        }
    }

    fn index_of(&self, column: Column) -> Option<usize> {
        self.columns.iter().position(|other| *other == Some(column))
    }

    fn is_named(&self, index: usize) -> bool {
        matches!(self.columns.get(index), Some(Some(_)))
    }
}

fn expected_columns() -> String {
    let names: Vec<&str> = Column::ALL.iter().map(|column| column.name()).collect();
    names.join(", ")
}

/// What one cell of a named column holds.
enum Value<'a> {
    Absent,
    /// Trimmed, except in password columns, where it is exactly as written.
    Text(&'a str),
    SpreadsheetError(&'a str),
}

/// The checks of one data row, writing its problems beside those of the other rows.
struct RowCheck<'a> {
    row: &'a Row,
    header: &'a Header,
    problems: &'a mut Vec<RowProblem>,
}

impl RowCheck<'_> {
    /// The row as a mailbox, or `None` after recording why it is not one.
    fn mailbox(
        &mut self,
        naming: ColumnNaming,
        sources: &mut HashMap<String, usize>,
        destinations: &mut HashMap<String, usize>,
    ) -> Option<MailboxRow> {
        if let Some(index) = self.first_cell_outside_the_columns() {
            // The columns of this row may have shifted; say nothing about its values.
            let reason = match naming {
                ColumnNaming::Delimited { delimiter } if index >= self.header.columns.len() => {
                    format!(
                        "more cells than the header row has columns (a value in {}); a value \
                         that contains {} must be written in double quotes",
                        naming.label(index),
                        delimiter_name(delimiter)
                    )
                }
                _ => format!(
                    "a value in {}, which has no name in the header row",
                    naming.label(index)
                ),
            };
            self.report(reason);
            return None;
        }

        let source_email = self.address(Column::SourceEmail, sources);
        let dest_email = self.address(Column::DestEmail, destinations);
        let source_login = self.login(Column::SourceLogin);
        let dest_login = self.login(Column::DestLogin);
        let source_password = self.password(Column::SourcePassword);
        let dest_password = self.password(Column::DestPassword);

        // Every check above has run and reported, so stopping at the first failure here
        // loses no problem.
        let source_email = source_email?;
        let dest_email = dest_email?;
        Some(MailboxRow {
            line: self.row.line,
            source_login: source_login?.unwrap_or_else(|| source_email.clone()),
            source_password: source_password?,
            dest_login: dest_login?.unwrap_or_else(|| dest_email.clone()),
            dest_password: dest_password?,
            source_email,
            dest_email,
        })
    }

    fn report(&mut self, reason: impl Into<String>) {
        self.problems.push(problem(self.row.line, reason));
    }

    fn first_cell_outside_the_columns(&self) -> Option<usize> {
        self.row
            .cells
            .iter()
            .enumerate()
            .position(|(index, cell)| !self.header.is_named(index) && !cell.is_blank())
    }

    fn value(&self, column: Column) -> Value<'_> {
        let cell = self
            .header
            .index_of(column)
            .and_then(|index| self.row.cells.get(index));
        match cell {
            None => Value::Absent,
            Some(Cell::SpreadsheetError(error)) => Value::SpreadsheetError(error),
            Some(Cell::Text(text)) => {
                let text = if is_password(column) {
                    text.as_str()
                } else {
                    text.trim()
                };
                if text.is_empty() {
                    Value::Absent
                } else {
                    Value::Text(text)
                }
            }
        }
    }

    /// The address in `column`, if it is one and no earlier row has it in that column.
    fn address(&mut self, column: Column, seen: &mut HashMap<String, usize>) -> Option<String> {
        let text = match self.value(column) {
            Value::Absent => {
                self.report(format!("missing {}", column.name()));
                return None;
            }
            Value::SpreadsheetError(error) => {
                let reason = spreadsheet_error(column, error);
                self.report(reason);
                return None;
            }
            Value::Text(text) => text.to_string(),
        };
        if let Some(fault) = address_fault(&text) {
            // Not quoted: when an unquoted delimiter in a password shifts the row (and no
            // extra cell betrays it), a piece of the password sits in this column.
            self.report(format!(
                "{} is not an email address: {fault}",
                column.name()
            ));
            return None;
        }
        match seen.entry(text.to_lowercase()) {
            Entry::Occupied(first) => {
                let reason = format!(
                    "duplicate {} `{text}`: already on line {}",
                    column.name(),
                    first.get()
                );
                self.report(reason);
                None
            }
            Entry::Vacant(slot) => {
                slot.insert(self.row.line);
                Some(text)
            }
        }
    }

    /// `Some(None)` when the cell is empty (the login is then the address).
    fn login(&mut self, column: Column) -> Option<Option<String>> {
        match self.value(column) {
            Value::Absent => Some(None),
            Value::Text(text) => Some(Some(text.to_string())),
            Value::SpreadsheetError(error) => {
                let reason = spreadsheet_error(column, error);
                self.report(reason);
                None
            }
        }
    }

    /// `Some(None)` when the cell is empty: the password may be asked for later.
    fn password(&mut self, column: Column) -> Option<Option<Secret<String>>> {
        match self.value(column) {
            Value::Absent => Some(None),
            Value::Text(text) => Some(Some(Secret::new(text.to_string()))),
            Value::SpreadsheetError(error) => {
                let reason = spreadsheet_error(column, error);
                self.report(reason);
                None
            }
        }
    }
}

fn is_password(column: Column) -> bool {
    matches!(column, Column::SourcePassword | Column::DestPassword)
}

/// An error value such as `#N/A` is the spreadsheet's own text, never the password.
fn spreadsheet_error(column: Column, error: &str) -> String {
    format!(
        "{} holds the spreadsheet error {error} instead of a value",
        column.name()
    )
}

fn delimiter_name(delimiter: u8) -> String {
    match delimiter {
        b',' => "a comma".to_string(),
        b';' => "a semicolon".to_string(),
        b'\t' => "a tab".to_string(),
        other => format!("`{}`", char::from(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[&[&str]]) -> Table {
        let rows = rows
            .iter()
            .enumerate()
            .map(|(index, cells)| Row {
                line: index + 1,
                cells: cells
                    .iter()
                    .map(|cell| Cell::Text(cell.to_string()))
                    .collect(),
            })
            .collect();
        Table {
            rows,
            naming: ColumnNaming::Delimited { delimiter: b',' },
        }
    }

    fn reasons(table: &Table) -> Vec<String> {
        match validate(table) {
            Ok(rows) => panic!("expected problems, got {rows:?}"),
            Err(problems) => problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn headers_match_without_regard_to_case_or_spacing() {
        for text in [
            "Source Email",
            "source email",
            "  SOURCE   EMAIL ",
            "Source\u{a0}Email",
        ] {
            assert_eq!(
                Column::from_header(text),
                Some(Column::SourceEmail),
                "{text:?}"
            );
        }
        assert_eq!(Column::from_header(" flags "), Some(Column::Flags));
        assert_eq!(Column::from_header("SourceEmail"), None);
    }

    #[test]
    fn a_blank_header_cell_is_no_column_until_a_row_fills_it() {
        let ok = table(&[
            &["Source Email", "", "Destination Email", ""],
            &["a@x.org", "", "b@y.org", " "],
        ]);
        assert_eq!(validate(&ok).expect("valid").len(), 1);

        let filled = table(&[
            &["Source Email", "", "Destination Email"],
            &["a@x.org", "oops", "b@y.org"],
        ]);
        assert_eq!(
            reasons(&filled),
            ["line 2: a value in column 2, which has no name in the header row"]
        );
    }

    #[test]
    fn a_row_with_several_faults_reports_each() {
        let bad = table(&[&["Source Email", "Destination Email"], &["nobody", ""]]);
        assert_eq!(
            reasons(&bad),
            [
                "line 2: Source Email is not an email address: it has no @",
                "line 2: missing Destination Email",
            ]
        );
    }

    #[test]
    fn duplicates_are_case_insensitive_and_name_the_first_line() {
        let bad = table(&[
            &["Source Email", "Destination Email"],
            &["a@x.org", "a@y.org"],
            &["b@x.org", "b@y.org"],
            &["A@X.ORG", "c@y.org"],
            &["d@x.org", "B@y.org"],
        ]);
        assert_eq!(
            reasons(&bad),
            [
                "line 4: duplicate Source Email `A@X.ORG`: already on line 2",
                "line 5: duplicate Destination Email `B@y.org`: already on line 3",
            ]
        );
    }

    #[test]
    fn a_header_cell_holding_an_error_is_reported() {
        let mut bad = table(&[
            &["Source Email", "Destination Email"],
            &["a@x.org", "b@y.org"],
        ]);
        bad.rows[0]
            .cells
            .push(Cell::SpreadsheetError("#REF!".into()));
        bad.naming = ColumnNaming::Lettered { first_column: 0 };
        assert_eq!(
            reasons(&bad),
            [
                "line 1: the header cell in column C holds the spreadsheet error #REF!: it should name a column"
            ]
        );
    }

    #[test]
    fn error_cells_in_data_rows_are_named_by_column() {
        let mut bad = table(&[
            &[
                "Source Email",
                "Source Password",
                "Destination Email",
                "Flags",
            ],
            &["a@x.org", "", "b@y.org", ""],
        ]);
        bad.rows[1].cells[1] = Cell::SpreadsheetError("#N/A".into());
        bad.rows[1].cells[3] = Cell::SpreadsheetError("#VALUE!".into());
        assert_eq!(
            reasons(&bad),
            ["line 2: Source Password holds the spreadsheet error #N/A instead of a value"]
        );
    }
}
