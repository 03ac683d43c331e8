//! Workbooks built to exhaust memory are refused before they are parsed, with the limit
//! named, and reading them stays within a bounded peak. Each is read in a child process
//! (this test binary run again for one test) so that its peak memory is its own.
//!
//! Before the limits, the far-corner workbook (5 KB) made calamine allocate a dense grid
//! of 1.7·10¹⁰ cells and the process abort; `examples/hostile_workbook.rs` prints the
//! figures of both ways.

mod hostile;

use std::path::Path;
use std::process::Command;

use hostile::workbooks::{declare_size, far_corner_workbook, peak_memory, shared_strings_bomb};
use mailmove_import::{ImportError, Limits, read_bytes_within};

/// Generous: the test binary itself, the file, and what a list of 5,000 mailboxes needs.
const PEAK_BOUND: u64 = 256 * 1024 * 1024;

const CHILD_VARIABLE: &str = "MAILMOVE_HOSTILE_WORKBOOK";

/// The child's side: reads the file named by the variable and prints what happened and
/// its peak memory. Does nothing in a normal run.
#[test]
fn child_reads_the_workbook_named_by_the_environment() {
    let Some(path) = std::env::var_os(CHILD_VARIABLE) else {
        return;
    };
    let bytes = std::fs::read(&path).expect("read the workbook");
    let outcome = match read_bytes_within("hostile.xlsx", &bytes, Limits::UPLOAD) {
        Ok(rows) => format!("read {} mailboxes", rows.len()),
        Err(error @ ImportError::TooLarge(_)) => format!("too large: {error}"),
        Err(error) => format!("refused: {error}"),
    };
    // libtest prints the test's name on the same line as the first of these.
    println!("\nOUTCOME: {}", outcome.replace('\n', " | "));
    println!("PEAK: {}", peak_memory());
}

/// Reads `bytes` in a child process: what it said, and its peak memory in bytes.
fn read_in_child(bytes: &[u8]) -> (String, u64) {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("hostile.xlsx");
    std::fs::write(&path, bytes).expect("write the workbook");
    let output = Command::new(std::env::current_exe().expect("this test binary"))
        .args([
            "--exact",
            "child_reads_the_workbook_named_by_the_environment",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_VARIABLE, Path::new(&path))
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the child failed ({}): {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|line| line.split_once(name).map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("no {name} in: {stdout}"))
            .to_string()
    };
    let peak = field("PEAK: ").parse().expect("a number of bytes");
    (field("OUTCOME: "), peak)
}

fn assert_bounded(outcome: &str, peak: u64) {
    assert!(
        peak < PEAK_BOUND,
        "peak {} MiB reading: {outcome}",
        peak / (1024 * 1024)
    );
}

#[test]
fn a_worksheet_declaring_a1_to_xfd1048576_is_refused_by_its_dimension() {
    let bytes = far_corner_workbook(Some("A1:XFD1048576"));
    assert!(bytes.len() < 5 * 1024, "{} bytes", bytes.len());
    let (outcome, peak) = read_in_child(&bytes);
    assert!(
        outcome.starts_with("too large:") && outcome.contains("A1:XFD1048576"),
        "{outcome}"
    );
    assert!(outcome.contains("17,179,869,184 cells"), "{outcome}");
    assert_bounded(&outcome, peak);
}

#[test]
fn cells_in_a1_and_xfd1048576_without_a_dimension_are_read_sparsely() {
    // No dimension to refuse: the cells are read one by one, and the value far away is a
    // row problem like any value outside the named columns.
    let bytes = far_corner_workbook(None);
    let (outcome, peak) = read_in_child(&bytes);
    assert!(
        outcome.contains("line 1048576: a value in column XFD, which has no name"),
        "{outcome}"
    );
    assert_bounded(&outcome, peak);
}

#[test]
fn a_dimension_that_lies_small_does_not_let_the_far_corner_through_densely() {
    let bytes = far_corner_workbook(Some("A1:B2"));
    let (outcome, peak) = read_in_child(&bytes);
    assert!(outcome.contains("line 1048576"), "{outcome}");
    assert_bounded(&outcome, peak);
}

#[test]
fn a_shared_strings_part_larger_than_the_limit_is_refused_by_its_declared_size() {
    // 40 MB of shared strings, zipped to a few hundred KB.
    let bytes = shared_strings_bomb(340_000);
    let (outcome, peak) = read_in_child(&bytes);
    assert!(
        outcome.starts_with("too large:")
            && outcome.contains("`xl/sharedStrings.xml` unpacks to")
            && outcome.contains("16.8 MB"),
        "{outcome}"
    );
    assert_bounded(&outcome, peak);
}

#[test]
fn a_shared_strings_part_that_lies_about_its_size_is_stopped_at_its_declaration() {
    let mut bytes = shared_strings_bomb(340_000);
    declare_size(&mut bytes, "xl/sharedStrings.xml", 1_000);
    let (outcome, peak) = read_in_child(&bytes);
    // The ZIP reader stops inflating a part past its declared size.
    assert!(
        outcome.starts_with("refused:") && outcome.contains("larger than its declared"),
        "{outcome}"
    );
    assert_bounded(&outcome, peak);
}

#[test]
fn an_honest_small_workbook_built_the_same_way_is_read() {
    let (outcome, peak) = read_in_child(&shared_strings_bomb(10));
    assert_eq!(outcome, "read 1 mailboxes");
    assert_bounded(&outcome, peak);
}

#[test]
fn xls_and_ods_which_calamine_reads_only_densely_are_refused_in_uploads_unopened() {
    let ole = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1 the rest of a workbook";
    let zip = shared_strings_bomb(1);
    for (name, bytes, what) in [
        ("list.xls", &ole[..], "(.xls)"),
        ("list.ods", &zip[..], "(.ods)"),
    ] {
        let error = read_bytes_within(name, bytes, Limits::UPLOAD).expect_err(name);
        assert!(
            matches!(error, ImportError::UnsupportedFormat(_)),
            "{error}"
        );
        let text = error.to_string();
        assert!(text.contains(what) && text.contains(".xlsx"), "{text}");
    }
    // The command line's operator may still read them: this one is damaged, not refused.
    let error = read_bytes_within("list.xls", ole, Limits::FILE).expect_err("damaged");
    assert!(matches!(error, ImportError::Unreadable(_)), "{error}");
}
