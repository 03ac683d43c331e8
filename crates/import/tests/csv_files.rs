//! Good CSV files as people and programs really save them, read through the public API.

use mailmove_import::{MailboxRow, read_bytes, read_path};

const HEADER: &str = "Source Email,Source Login Name,Source Password,Destination Email,Destination Login Name,Destination Password";

fn read(text: &[u8]) -> Vec<MailboxRow> {
    read_bytes("mailboxes.csv", text).unwrap_or_else(|error| panic!("should be valid: {error}"))
}

fn password(secret: &Option<mailmove_model::Secret<String>>) -> Option<&str> {
    secret.as_ref().map(|secret| secret.expose().as_str())
}

#[test]
fn logins_default_to_the_address_and_passwords_may_be_absent() {
    let rows = read(b"Source Email,Destination Email\nalice@old.example.com,alice@example.com\n");
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.line, 2);
    assert_eq!(row.source_email, "alice@old.example.com");
    assert_eq!(row.source_login, "alice@old.example.com");
    assert_eq!(row.dest_email, "alice@example.com");
    assert_eq!(row.dest_login, "alice@example.com");
    assert!(row.source_password.is_none() && row.dest_password.is_none());
}

#[test]
fn every_column_is_read() {
    let text = format!(
        "{HEADER}\nalice@old.example.com,alice.old,s3cret,alice@example.com,alice.new,n3w\n"
    );
    let row = &read(text.as_bytes())[0];
    assert_eq!(row.source_login, "alice.old");
    assert_eq!(password(&row.source_password), Some("s3cret"));
    assert_eq!(row.dest_login, "alice.new");
    assert_eq!(password(&row.dest_password), Some("n3w"));
}

#[test]
fn passwords_keep_their_spaces_and_everything_else_is_trimmed() {
    let text = format!(
        "{HEADER}\n  alice@old.example.com ,  alice.old  ,  two spaces each side  ,\talice@example.com\t, ,\" quoted \"\n"
    );
    let row = &read(text.as_bytes())[0];
    assert_eq!(row.source_email, "alice@old.example.com");
    assert_eq!(row.source_login, "alice.old");
    assert_eq!(
        password(&row.source_password),
        Some("  two spaces each side  ")
    );
    assert_eq!(row.dest_email, "alice@example.com");
    assert_eq!(
        row.dest_login, "alice@example.com",
        "a login of spaces is no login"
    );
    assert_eq!(password(&row.dest_password), Some(" quoted "));
}

#[test]
fn a_utf8_byte_order_mark_and_crlf_line_ends_are_read() {
    let text = format!("\u{feff}{HEADER}\r\nalice@old.example.com,,,alice@example.com,,\r\n");
    let rows = read(text.as_bytes());
    assert_eq!(rows[0].source_email, "alice@old.example.com");
    assert_eq!(rows[0].line, 2);
}

#[test]
fn semicolons_are_the_delimiter_when_the_header_has_no_comma() {
    let text = "Source Email;Source Password;Destination Email\r\n\
                alice@old.example.com;pass,with,commas;alice@example.com\r\n\
                bob@old.example.com;;bob@example.com\r\n";
    let rows = read(text.as_bytes());
    assert_eq!(rows.len(), 2);
    assert_eq!(password(&rows[0].source_password), Some("pass,with,commas"));
    assert_eq!(rows[1].dest_email, "bob@example.com");
}

#[test]
fn quoted_values_hold_commas_newlines_and_quotes_and_lines_stay_physical() {
    let text = format!(
        "{HEADER}\n\
         alice@old.example.com,\"Smith, Alice\",\"line one\nline two\",alice@example.com,,\"say \"\"hi\"\"\"\n\
         bob@old.example.com,,,bob@example.com,,\n"
    );
    let rows = read(text.as_bytes());
    assert_eq!(rows[0].line, 2);
    assert_eq!(rows[0].source_login, "Smith, Alice");
    assert_eq!(
        password(&rows[0].source_password),
        Some("line one\nline two")
    );
    assert_eq!(password(&rows[0].dest_password), Some("say \"hi\""));
    assert_eq!(
        rows[1].line, 4,
        "the quoted newline makes alice's row two lines long"
    );
}

#[test]
fn headers_match_in_any_case_order_and_spacing_and_flags_are_ignored() {
    let text = "  destination EMAIL , FLAGS ,source email,Source  Login Name\n\
                alice@example.com,Something,alice@old.example.com,alice.old\n";
    let row = &read(text.as_bytes())[0];
    assert_eq!(row.source_email, "alice@old.example.com");
    assert_eq!(row.source_login, "alice.old");
    assert_eq!(row.dest_email, "alice@example.com");
}

#[test]
fn blank_rows_anywhere_are_skipped_without_renumbering() {
    let text = format!(
        "\n{HEADER}\n\
         alice@old.example.com,,,alice@example.com,,\n\
         \n\
         ,,,,,\n\
         bob@old.example.com,,,bob@example.com,,\n\
         ,,,,,\n\
         \x20 , ,\t,,,\n\
         \n"
    );
    let rows = read(text.as_bytes());
    let lines: Vec<usize> = rows.iter().map(|row| row.line).collect();
    assert_eq!(lines, [3, 6]);
}

#[test]
fn trailing_empty_cells_beyond_the_header_are_harmless() {
    let rows =
        read(b"Source Email,Destination Email,\nalice@old.example.com,alice@example.com,,,\n");
    assert_eq!(rows.len(), 1);
}

#[test]
fn an_upload_without_a_name_is_read_as_csv() {
    let rows = read_bytes(
        "",
        b"Source Email,Destination Email\na@old.example.com,a@example.com\n",
    )
    .expect("text without a name is CSV");
    assert_eq!(rows.len(), 1);
}

#[test]
fn excel_unicode_text_is_read() {
    let text = "Source Email\tSource Password\tDestination Email\r\nalice@old.example.com\tp\u{e4}ss\talice@example.com\r\n";
    let bytes: Vec<u8> = [
        &[0xFF, 0xFE][..],
        &text
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect::<Vec<u8>>(),
    ]
    .concat();
    let rows = read_bytes("mailboxes.txt", &bytes).expect("UTF-16 tab-separated text");
    assert_eq!(password(&rows[0].source_password), Some("p\u{e4}ss"));
}

#[test]
fn international_addresses_are_kept_as_written() {
    let rows =
        read("Source Email,Destination Email\nJörg@Bücher.example,jorg@example.com\n".as_bytes());
    assert_eq!(rows[0].source_email, "Jörg@Bücher.example");
}

#[test]
fn read_path_reads_a_file_on_disk() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("mailboxes.csv");
    std::fs::write(&path, mailmove_import::TEMPLATE_CSV).expect("write the template");
    let rows = read_path(&path).expect("the template is valid");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].source_login, "bob.smith");
}

#[test]
fn a_missing_file_is_unreadable_and_named() {
    let error = read_path(std::path::Path::new("/nonexistent/mailboxes.csv")).expect_err("no file");
    assert!(
        matches!(error, mailmove_import::ImportError::Unreadable(_)),
        "{error}"
    );
    assert!(
        error.to_string().contains("/nonexistent/mailboxes.csv"),
        "{error}"
    );
}
