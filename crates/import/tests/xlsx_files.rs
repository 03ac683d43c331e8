//! Real XLSX files, written with rust_xlsxwriter to a temporary directory and read back:
//! numeric cells, blank trailing rows, data that does not start in A1, misleading names.

use std::path::{Path, PathBuf};

use mailmove_import::{ImportError, MailboxRow, read_bytes, read_path};
use rust_xlsxwriter::{Format, Workbook, Worksheet};

/// A cell to write: text, a number (as Excel stores typed digits), or a formatted blank.
enum In {
    Text(&'static str),
    Number(f64),
    Blank,
}

const HEADER: [In; 6] = [
    In::Text("Source Email"),
    In::Text("Source Login Name"),
    In::Text("Source Password"),
    In::Text("Destination Email"),
    In::Text("Destination Login Name"),
    In::Text("Destination Password"),
];

fn fill(sheet: &mut Worksheet, top: u32, left: u16, rows: &[&[In]]) {
    let blank = Format::new().set_bold();
    for (row_index, row) in rows.iter().enumerate() {
        let row_number = top + u32::try_from(row_index).expect("few rows");
        for (column_index, cell) in row.iter().enumerate() {
            let column = left + u16::try_from(column_index).expect("few columns");
            match cell {
                In::Text(text) => sheet.write_string(row_number, column, *text),
                In::Number(number) => sheet.write_number(row_number, column, *number),
                In::Blank => sheet.write_blank(row_number, column, &blank),
            }
            .expect("write a cell");
        }
    }
}

/// Saves a one-sheet workbook with `rows` starting at (`top`, `left`), 0-based.
fn save(directory: &Path, name: &str, top: u32, left: u16, rows: &[&[In]]) -> PathBuf {
    let mut workbook = Workbook::new();
    fill(workbook.add_worksheet(), top, left, rows);
    let path = directory.join(name);
    workbook.save(&path).expect("save the workbook");
    path
}

fn read_ok(path: &Path) -> Vec<MailboxRow> {
    read_path(path).unwrap_or_else(|error| panic!("should be valid: {error}"))
}

fn password(secret: &Option<mailmove_model::Secret<String>>) -> Option<&str> {
    secret.as_ref().map(|secret| secret.expose().as_str())
}

#[test]
fn numeric_cells_come_out_as_the_digits_typed() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = save(
        directory.path(),
        "mailboxes.xlsx",
        0,
        0,
        &[
            &HEADER,
            &[
                In::Text("alice@old.example.com"),
                In::Number(12345.0),
                In::Number(987654.0),
                In::Text("alice@example.com"),
                In::Number(42.0),
                In::Text("  spaced password  "),
            ],
        ],
    );
    let rows = read_ok(&path);
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.line, 2);
    assert_eq!(row.source_login, "12345");
    assert_eq!(password(&row.source_password), Some("987654"));
    assert_eq!(row.dest_login, "42");
    assert_eq!(password(&row.dest_password), Some("  spaced password  "));
}

#[test]
fn blank_and_empty_cells_default_and_blank_trailing_rows_are_skipped() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = save(
        directory.path(),
        "mailboxes.xlsx",
        0,
        0,
        &[
            &HEADER,
            &[
                In::Text("alice@old.example.com"),
                In::Blank,
                In::Blank,
                In::Text("alice@example.com"),
            ],
            &[
                In::Text("bob@old.example.com"),
                In::Text(""),
                In::Text(""),
                In::Text("bob@example.com"),
            ],
            &[
                In::Blank,
                In::Blank,
                In::Blank,
                In::Blank,
                In::Blank,
                In::Blank,
            ],
            &[In::Text(" "), In::Text("   ")],
            &[
                In::Blank,
                In::Blank,
                In::Blank,
                In::Blank,
                In::Blank,
                In::Blank,
                In::Blank,
                In::Blank,
            ],
        ],
    );
    let rows = read_ok(&path);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].source_login, "alice@old.example.com");
    assert!(rows[0].source_password.is_none());
    assert_eq!(rows[1].line, 3);
    assert_eq!(rows[1].dest_login, "bob@example.com");
}

#[test]
fn rows_are_numbered_as_the_spreadsheet_shows_them_when_data_starts_lower() {
    let directory = tempfile::tempdir().expect("temporary directory");
    // Header in row 3, data from row 4, all starting in column B.
    let path = save(
        directory.path(),
        "mailboxes.xlsx",
        2,
        1,
        &[
            &[In::Text("Source Email"), In::Text("Destination Email")],
            &[
                In::Text("alice@old.example.com"),
                In::Text("alice@example.com"),
            ],
            &[In::Text("bob@old.example.com"), In::Text("")],
        ],
    );
    let Err(ImportError::Problems(problems)) = read_path(&path) else {
        panic!("bob has no destination")
    };
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].to_string(), "line 5: missing Destination Email");
}

#[test]
fn the_content_decides_when_the_name_is_missing_or_wrong() {
    let mut workbook = Workbook::new();
    fill(
        workbook.add_worksheet(),
        0,
        0,
        &[
            &[In::Text("Source Email"), In::Text("Destination Email")],
            &[
                In::Text("alice@old.example.com"),
                In::Text("alice@example.com"),
            ],
        ],
    );
    let bytes = workbook.save_to_buffer().expect("workbook bytes");
    assert!(bytes.starts_with(b"PK\x03\x04"));
    for name in [
        "",
        "upload",
        "mailboxes.csv",
        "mailboxes.bin",
        "MAILBOXES.XLSX",
    ] {
        let rows = read_bytes(name, &bytes).unwrap_or_else(|error| panic!("{name:?}: {error}"));
        assert_eq!(rows[0].dest_email, "alice@example.com", "{name:?}");
    }
}

#[test]
fn the_first_visible_worksheet_is_read() {
    let mut workbook = Workbook::new();
    let hidden = workbook.add_worksheet();
    hidden.set_name("Notes").expect("sheet name");
    fill(hidden, 0, 0, &[&[In::Text("not a mailbox list")]]);
    hidden.set_hidden(true);
    let visible = workbook.add_worksheet();
    // Excel cannot hide the active sheet, and the first sheet is active unless another is.
    visible.set_active(true);
    fill(
        visible,
        0,
        0,
        &[
            &[In::Text("Source Email"), In::Text("Destination Email")],
            &[
                In::Text("alice@old.example.com"),
                In::Text("alice@example.com"),
            ],
        ],
    );
    let extra = workbook.add_worksheet();
    fill(extra, 0, 0, &[&[In::Text("ignored")]]);
    let bytes = workbook.save_to_buffer().expect("workbook bytes");
    let rows = read_bytes("mailboxes.xlsx", &bytes).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(rows.len(), 1);
}

#[test]
fn a_value_beyond_the_named_columns_is_reported_by_its_column_letter() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = save(
        directory.path(),
        "mailboxes.xlsx",
        0,
        0,
        &[
            &[In::Text("Source Email"), In::Text("Destination Email")],
            &[
                In::Text("alice@old.example.com"),
                In::Text("alice@example.com"),
            ],
            &[
                In::Text("bob@old.example.com"),
                In::Text("bob@example.com"),
                In::Blank,
                In::Text("hunter2"),
            ],
        ],
    );
    let error = read_path(&path).expect_err("a value outside the columns");
    assert_eq!(
        error.to_string(),
        "the mailbox list has a problem; nothing was imported:\n  \
         line 3: a value in column D, which has no name in the header row"
    );
}

#[test]
fn duplicates_in_a_workbook_name_both_rows() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = save(
        directory.path(),
        "mailboxes.xlsx",
        0,
        0,
        &[
            &[In::Text("Source Email"), In::Text("Destination Email")],
            &[
                In::Text("alice@old.example.com"),
                In::Text("alice@example.com"),
            ],
            &[
                In::Text("carol@old.example.com"),
                In::Text("ALICE@example.com"),
            ],
        ],
    );
    let error = read_path(&path).expect_err("duplicate destination");
    assert!(
        error
            .to_string()
            .contains("line 3: duplicate Destination Email `ALICE@example.com`: already on line 2"),
        "{error}"
    );
}

#[test]
fn an_empty_workbook_is_an_empty_file() {
    let mut workbook = Workbook::new();
    workbook.add_worksheet();
    let bytes = workbook.save_to_buffer().expect("workbook bytes");
    let Err(ImportError::Problems(problems)) = read_bytes("mailboxes.xlsx", &bytes) else {
        panic!("an empty sheet has no mailboxes")
    };
    assert_eq!(problems[0].line, 1);
    assert!(
        problems[0].reason.starts_with("the file is empty"),
        "{}",
        problems[0]
    );
}

#[test]
fn a_damaged_workbook_is_unreadable() {
    let mut workbook = Workbook::new();
    fill(
        workbook.add_worksheet(),
        0,
        0,
        &[&[In::Text("Source Email")]],
    );
    let bytes = workbook.save_to_buffer().expect("workbook bytes");
    let damaged = &bytes[..bytes.len() / 2];
    let error = read_bytes("mailboxes.xlsx", damaged).expect_err("half a workbook");
    assert!(matches!(error, ImportError::Unreadable(_)), "{error}");
    assert!(error.to_string().contains("mailboxes.xlsx"), "{error}");
}

#[test]
fn a_zip_that_is_no_workbook_is_unsupported() {
    let mut workbook = Workbook::new();
    fill(
        workbook.add_worksheet(),
        0,
        0,
        &[&[In::Text("Source Email")]],
    );
    let bytes = workbook.save_to_buffer().expect("workbook bytes");
    // Cut to the first local file header: still a ZIP signature, no workbook inside.
    let error = read_bytes("upload", &bytes[..64]).expect_err("not a workbook");
    assert!(
        matches!(error, ImportError::UnsupportedFormat(_)),
        "{error}"
    );
}
