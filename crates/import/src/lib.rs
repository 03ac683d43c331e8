//! Reads the mailbox lists administrators upload (CSV, XLSX, and the other workbook
//! formats calamine reads) into validated rows: every row, or every problem, never part.
//!
//! The columns are MigrationWiz's (SPEC §5): `Source Email`, `Source Login Name`,
//! `Source Password`, `Destination Email`, `Destination Login Name`,
//! `Destination Password`, and its optional `Flags` column, which is ignored. Each file
//! format is read into one grid ([`table`]) and one validator ([`validate`]) applies the
//! rules, so CSV and XLSX cannot drift apart. Passwords are held in [`Secret`] from the
//! moment they leave the grid, and no message ever quotes a password cell.

mod address;
mod delimited;
mod detect;
mod limits;
mod table;
mod validate;
mod workbook;

use std::fmt;
use std::path::Path;

use mailmove_model::Secret;

pub use limits::Limits;

/// The most problems [`ImportError::Problems`] lists in its text; the rest are counted.
pub const PROBLEMS_LISTED: usize = 100;

/// The template offered for download: the header row and two example rows
/// (example.com addresses, no passwords).
pub const TEMPLATE_CSV: &[u8] = include_bytes!("../template/mailboxes-template.csv");

/// The name to offer [`TEMPLATE_CSV`] under.
pub const TEMPLATE_FILE_NAME: &str = "mailboxes-template.csv";

/// The bytes of the downloadable template; the same as [`TEMPLATE_CSV`].
pub fn template_csv() -> &'static [u8] {
    TEMPLATE_CSV
}

/// One mailbox pair from the file, validated: both addresses are well formed, logins
/// are filled in (from the address when the cell was empty), and no other row of the
/// file has the same source or destination address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxRow {
    /// The line (or worksheet row) a person sees the mailbox on, counting the header.
    pub line: usize,
    pub source_email: String,
    pub source_login: String,
    /// `None` when the cell was empty: the password may be asked for later. Kept exactly
    /// as written, spaces included.
    pub source_password: Option<Secret<String>>,
    pub dest_email: String,
    pub dest_login: String,
    /// As [`MailboxRow::source_password`].
    pub dest_password: Option<Secret<String>>,
}

/// One thing wrong with the file, where a person will find it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowProblem {
    /// The line as a person sees it: the header is line 1 when it is the first line.
    pub line: usize,
    /// What is wrong, written for the person who will fix the file. Never quotes a
    /// password.
    pub reason: String,
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read at all (I/O, a damaged workbook, text that is not
    /// UTF-8, a password-protected workbook).
    #[error("could not read the mailbox list: {0}")]
    Unreadable(String),
    /// Neither delimited text nor a workbook calamine reads.
    #[error("unsupported file type: {0}")]
    UnsupportedFormat(String),
    /// The file is larger than [`Limits`] allow (too many mailboxes, or a workbook that
    /// would unpack or spread beyond what a mailbox list needs); nothing was parsed past
    /// the limit.
    #[error("the mailbox list is too large: {0}")]
    TooLarge(String),
    /// The file was read, and these are all of its problems, in line order.
    #[error("{}", describe_problems(.0))]
    Problems(Vec<RowProblem>),
}

/// Reads the mailbox list at `path`, a file the operator chose ([`Limits::FILE`]); its
/// format comes from its extension and its content.
pub fn read_path(path: &Path) -> Result<Vec<MailboxRow>, ImportError> {
    let bytes = std::fs::read(path)
        .map_err(|error| ImportError::Unreadable(format!("{}: {error}", path.display())))?;
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy())
        .unwrap_or_default();
    read_bytes_within(&name, &bytes, Limits::FILE)
}

/// Reads a mailbox list within [`Limits::FILE`]. `name` is the file name it came with
/// (it may be empty or wrong: the content decides when it is unambiguous).
pub fn read_bytes(name: &str, bytes: &[u8]) -> Result<Vec<MailboxRow>, ImportError> {
    read_bytes_within(name, bytes, Limits::FILE)
}

/// Reads a mailbox list, refusing it as soon as it goes beyond `limits` (an upload to the
/// portal: [`Limits::UPLOAD`]). Workbooks are checked before they are parsed; the work
/// done is linear in the file's size.
pub fn read_bytes_within(
    name: &str,
    bytes: &[u8],
    limits: Limits,
) -> Result<Vec<MailboxRow>, ImportError> {
    let table = match detect::detect(name, bytes)? {
        detect::Format::Delimited => delimited::read(bytes, limits)?,
        detect::Format::Workbook(kind) => workbook::read(name, kind, bytes, limits)?,
    };
    validate::validate(&table).map_err(ImportError::Problems)
}

fn too_many_mailboxes(limits: Limits) -> ImportError {
    ImportError::TooLarge(format!(
        "it has more than {} mailboxes, the most one list may add; split it into several \
         files",
        group_digits(limits.max_mailboxes as u64)
    ))
}

/// `5000` as `5,000`.
fn group_digits(number: u64) -> String {
    let digits = number.to_string();
    let mut text = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

fn describe_problems(problems: &[RowProblem]) -> String {
    let mut text = match problems.len() {
        1 => "the mailbox list has a problem; nothing was imported:".to_string(),
        count => format!("the mailbox list has {count} problems; nothing was imported:"),
    };
    for problem in problems.iter().take(PROBLEMS_LISTED) {
        text.push_str("\n  ");
        text.push_str(&problem.to_string());
    }
    if problems.len() > PROBLEMS_LISTED {
        text.push_str(&format!(
            "\n  and {} more",
            group_digits((problems.len() - PROBLEMS_LISTED) as u64)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_display_lists_every_problem_with_its_line() {
        let error = ImportError::Problems(vec![
            RowProblem {
                line: 2,
                reason: "missing Source Email".into(),
            },
            RowProblem {
                line: 4,
                reason: "missing Destination Email".into(),
            },
        ]);
        assert_eq!(
            error.to_string(),
            "the mailbox list has 2 problems; nothing was imported:\n  \
             line 2: missing Source Email\n  line 4: missing Destination Email"
        );
    }

    #[test]
    fn only_the_first_problems_are_listed_and_the_rest_counted() {
        let problems = (0..250)
            .map(|index| RowProblem {
                line: index + 2,
                reason: "missing Source Email".into(),
            })
            .collect();
        let text = ImportError::Problems(problems).to_string();
        assert!(
            text.starts_with("the mailbox list has 250 problems"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1 + PROBLEMS_LISTED + 1, "{text}");
        assert!(text.ends_with("\n  and 150 more"), "{text}");
    }

    #[test]
    fn digits_are_grouped_by_thousands() {
        for (number, text) in [
            (0, "0"),
            (999, "999"),
            (5000, "5,000"),
            (1234567, "1,234,567"),
        ] {
            assert_eq!(group_digits(number), text);
        }
    }

    #[test]
    fn the_template_reads_back_as_two_mailboxes() {
        let rows = read_bytes(TEMPLATE_FILE_NAME, template_csv()).expect("the template is valid");
        assert_eq!(rows.len(), 2);
        assert!(
            rows.iter()
                .all(|row| row.source_email.ends_with("example.com"))
        );
        assert!(
            rows.iter()
                .all(|row| row.source_password.is_none() && row.dest_password.is_none())
        );
    }
}
