//! Every reason a mailbox list is refused, each with the line a person must look at, and
//! the two promises around them: nothing is returned when any row is bad, and no password
//! ever appears in an error.

use mailmove_import::{ImportError, RowProblem, read_bytes};

const HEADER: &str = "Source Email,Source Login Name,Source Password,Destination Email,Destination Login Name,Destination Password";

/// The problems of a file that must be refused as a whole.
fn problems(text: &str) -> Vec<RowProblem> {
    match read_bytes("mailboxes.csv", text.as_bytes()) {
        Ok(rows) => panic!("should be refused, got {} rows", rows.len()),
        Err(ImportError::Problems(problems)) => problems,
        Err(other) => panic!("expected row problems, got: {other}"),
    }
}

fn lines_and_reasons(text: &str) -> Vec<String> {
    problems(text).iter().map(ToString::to_string).collect()
}

#[test]
fn missing_destination_email() {
    let text = format!("{HEADER}\na@old.example.com,,,a@example.com,,\nb@old.example.com,,,,,\n");
    assert_eq!(
        lines_and_reasons(&text),
        ["line 3: missing Destination Email"]
    );
}

#[test]
fn missing_source_email() {
    let text = format!("{HEADER}\n , b.login,,b@example.com,,\n");
    assert_eq!(lines_and_reasons(&text), ["line 2: missing Source Email"]);
}

#[test]
fn bad_source_address() {
    let text = format!("{HEADER}\nbob.old.example.com,,,bob@example.com,,\n");
    assert_eq!(
        lines_and_reasons(&text),
        ["line 2: Source Email is not an email address: it has no @"]
    );
}

#[test]
fn bad_destination_address() {
    let text = format!("{HEADER}\nbob@old.example.com,,,Bob Smith <bob@example.com>,,\n");
    let found = lines_and_reasons(&text);
    assert_eq!(found.len(), 1);
    assert!(
        found[0]
            .starts_with("line 2: Destination Email is not an email address: it contains a space"),
        "{found:?}"
    );
}

#[test]
fn bad_address_without_a_dot_in_the_domain() {
    let text = format!("{HEADER}\nbob@oldserver,,,bob@example.com,,\n");
    assert_eq!(
        lines_and_reasons(&text),
        ["line 2: Source Email is not an email address: its domain has no dot"]
    );
}

#[test]
fn duplicate_source_email_names_the_earlier_line() {
    let text = format!(
        "{HEADER}\na@old.example.com,,,a@example.com,,\nb@old.example.com,,,b@example.com,,\n A@Old.Example.com ,,,c@example.com,,\n"
    );
    assert_eq!(
        lines_and_reasons(&text),
        ["line 4: duplicate Source Email `A@Old.Example.com`: already on line 2"]
    );
}

#[test]
fn duplicate_destination_email_names_the_earlier_line() {
    let text = format!(
        "{HEADER}\na@old.example.com,,,a@example.com,,\nb@old.example.com,,,B@EXAMPLE.COM,,\nc@old.example.com,,,b@example.com,,\n"
    );
    assert_eq!(
        lines_and_reasons(&text),
        ["line 4: duplicate Destination Email `b@example.com`: already on line 3"]
    );
}

#[test]
fn missing_header_row() {
    let text =
        "alice@old.example.com,,,alice@example.com,,\nbob@old.example.com,,,bob@example.com,,\n";
    let found = lines_and_reasons(text);
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("line 1: no header row"), "{found:?}");
    assert!(found[0].contains("looks like a mailbox"), "{found:?}");
}

#[test]
fn a_header_row_that_names_nothing_we_know() {
    let found = lines_and_reasons("Name,Phone\nAlice,555\n");
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with("line 1: no header row: the first row names none of the columns"),
        "{found:?}"
    );
}

#[test]
fn missing_required_column() {
    let text = "Source Email,Source Password\nalice@old.example.com,pw\n";
    assert_eq!(
        lines_and_reasons(text),
        ["line 1: missing column `Destination Email`: the header row must name it"]
    );
}

#[test]
fn unknown_column() {
    let text = "Source Email,Destination Email, Department \nalice@old.example.com,alice@example.com,Sales\n";
    assert_eq!(
        lines_and_reasons(text),
        [
            "line 1: unknown column `Department`: expected one of Source Email, Source Login Name, \
             Source Password, Destination Email, Destination Login Name, Destination Password, Flags"
        ]
    );
}

#[test]
fn a_column_named_twice() {
    let text = "Source Email,Destination Email,source email\na@old.example.com,a@example.com,b@old.example.com\n";
    assert_eq!(
        lines_and_reasons(text),
        ["line 1: column `Source Email` appears twice (column 1 and column 3)"]
    );
}

#[test]
fn header_problems_are_all_reported_on_the_header_line() {
    let text = "Source Email,Login,Password\nalice@old.example.com,x,y\n";
    let found = lines_and_reasons(text);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found.iter().all(|problem| problem.starts_with("line 1: ")),
        "{found:?}"
    );
    assert!(found[0].contains("unknown column `Login`"), "{found:?}");
    assert!(found[1].contains("unknown column `Password`"), "{found:?}");
    assert!(
        found[2].contains("missing column `Destination Email`"),
        "{found:?}"
    );
}

#[test]
fn an_empty_file() {
    for text in ["", "\u{feff}", "\n\n\r\n", ",,,\n , ,\n"] {
        let found = lines_and_reasons(text);
        assert_eq!(found.len(), 1, "{text:?}");
        assert!(
            found[0].starts_with("line 1: the file is empty"),
            "{text:?}: {found:?}"
        );
    }
    let error = read_bytes("mailboxes.xlsx", b"").expect_err("empty");
    assert!(
        error.to_string().contains("line 1: the file is empty"),
        "{error}"
    );
}

#[test]
fn a_header_without_mailboxes() {
    let text = format!("{HEADER}\n,,,,,\n\n");
    assert_eq!(
        lines_and_reasons(&text),
        ["line 2: no mailboxes: the file has a header row but no rows below it"]
    );
}

#[test]
fn a_row_with_more_cells_than_headers() {
    let text = "Source Email,Destination Email\na@old.example.com,a@example.com\nb@old.example.com,b@example.com,extra\n";
    assert_eq!(
        lines_and_reasons(text),
        [
            "line 3: more cells than the header row has columns (a value in column 3); a value \
             that contains a comma must be written in double quotes"
        ]
    );
}

#[test]
fn several_bad_rows_are_all_reported_in_order() {
    let text = format!(
        "{HEADER}\n\
         a@old.example.com,,,a@example.com,,\n\
         ,,,b@example.com,,\n\
         c@old.example.com,,,,,\n\
         \n\
         d@old.example.com,,,\"multi\nline\",,\n\
         a@old.example.com,,,e@example.com,,\n"
    );
    let found = problems(&text);
    let lines: Vec<usize> = found.iter().map(|problem| problem.line).collect();
    assert_eq!(lines, [3, 4, 6, 8]);
    assert_eq!(found[0].reason, "missing Source Email");
    assert_eq!(found[1].reason, "missing Destination Email");
    assert!(
        found[2]
            .reason
            .starts_with("Destination Email is not an email address: it contains a space")
    );
    assert_eq!(
        found[3].reason,
        "duplicate Source Email `a@old.example.com`: already on line 2"
    );
}

#[test]
fn one_bad_row_among_good_ones_returns_nothing() {
    let mut text = format!("{HEADER}\n");
    for index in 0..50 {
        text.push_str(&format!(
            "user{index}@old.example.com,,pw{index},user{index}@example.com,,\n"
        ));
    }
    text.push_str("broken,,,user50@example.com,,\n");
    let result = read_bytes("mailboxes.csv", text.as_bytes());
    let Err(ImportError::Problems(found)) = result else {
        panic!("the whole file is refused")
    };
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].line, 52);
}

#[test]
fn text_that_is_not_utf8_is_unreadable_with_its_line() {
    let bytes = b"Source Email,Destination Email\nm\xFCller@old.example.com,m@example.com\n";
    let error = read_bytes("mailboxes.csv", bytes).expect_err("Latin-1");
    assert!(matches!(error, ImportError::Unreadable(_)), "{error}");
    assert!(
        error.to_string().contains("line 2 is not UTF-8 text"),
        "{error}"
    );
}

#[test]
fn unsupported_file_type() {
    let png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR";
    let error = read_bytes("mailboxes.png", png).expect_err("an image");
    assert!(
        matches!(error, ImportError::UnsupportedFormat(_)),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .starts_with("unsupported file type: `mailboxes.png`"),
        "{error}"
    );
}

#[test]
fn a_workbook_name_on_text_is_unreadable() {
    let error =
        read_bytes("mailboxes.xlsx", b"Source Email,Destination Email\n").expect_err("text");
    assert!(matches!(error, ImportError::Unreadable(_)), "{error}");
}

/// Each file holds the password `Pa55-LEAK` (or a piece of it) in a row that is refused;
/// neither the error's Display nor its Debug may show any of it.
#[test]
fn no_password_appears_in_any_error() {
    let files = [
        // Missing addresses beside passwords.
        format!("{HEADER}\n,,Pa55-LEAK,,,Pa55-LEAK\n"),
        // A bad address beside passwords.
        format!("{HEADER}\nbad,,Pa55-LEAK,also bad,,Pa55-LEAK\n"),
        // Duplicates carrying passwords.
        format!(
            "{HEADER}\na@old.example.com,,Pa55-LEAK,a@example.com,,\na@old.example.com,,Pa55-LEAK,a@example.com,,Pa55-LEAK\n"
        ),
        // An unquoted comma in a password shifts the row: its pieces land in other columns.
        format!("{HEADER}\na@old.example.com,,Pa55,LEAK,a@example.com,,\n"),
        format!("{HEADER}\na@old.example.com,,Pa55,LEAK,,a@example.com,,\n"),
        // No header row: the first row is a mailbox with passwords.
        "a@old.example.com,,Pa55-LEAK,a@example.com,,Pa55-LEAK\n".to_string(),
        ",,Pa55-LEAK,,,\n".to_string(),
        // A header error elsewhere in a file that holds passwords.
        format!("{HEADER},Extra\na@old.example.com,,Pa55-LEAK,a@example.com,,Pa55-LEAK,\n"),
    ];
    for text in files {
        let error = read_bytes("mailboxes.csv", text.as_bytes()).expect_err(&text);
        let shown = format!("{error}\n{error:?}");
        for piece in ["Pa55", "LEAK"] {
            assert!(
                !shown.contains(piece),
                "a password piece shows in:\n{shown}\nfor file:\n{text}"
            );
        }
    }
}

#[test]
fn no_password_appears_in_the_debug_of_good_rows() {
    let text = format!("{HEADER}\na@old.example.com,,Pa55-LEAK,a@example.com,,Pa55-LEAK\n");
    let rows = read_bytes("mailboxes.csv", text.as_bytes()).expect("valid");
    let shown = format!("{rows:?}");
    assert!(!shown.contains("Pa55"), "{shown}");
    assert!(shown.contains("[redacted]"), "{shown}");
}
