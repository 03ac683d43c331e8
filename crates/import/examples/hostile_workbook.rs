//! Writes hostile workbooks and prints the peak memory of reading one, the way calamine
//! reads it alone (a dense `Range`, as mailmove did before its limits) or through
//! `mailmove-import`. Each read is its own process, so its peak is its own.
//!
//! ```text
//! hostile_workbook write far-corner /tmp/corner.xlsx
//! hostile_workbook read /tmp/corner.xlsx import
//! (ulimit -v 4000000; hostile_workbook read /tmp/corner.xlsx calamine)  # aborts
//! ```
//!
//! Cases: `far-corner` (cells in A1 and XFD1048576, no dimension), `far-corner-dimension`
//! (the same declaring A1:XFD1048576), `strings-bomb:N` (N shared strings of 100 bytes,
//! 118 bytes each inflated), `lying-bomb:N` (the same, declared as 1,000 bytes).

#[path = "../tests/hostile/workbooks.rs"]
mod workbooks;

use std::io::Cursor;
use std::time::Instant;

use calamine::{Reader, Xlsx, open_workbook_from_rs};
use mailmove_import::{Limits, read_bytes_within};

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    match arguments
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["write", case, path] => write(case, path),
        ["read", path, way] => read(path, way),
        _ => {
            eprintln!("usage: hostile_workbook write CASE FILE | read FILE calamine|import");
            std::process::exit(2);
        }
    }
}

fn write(case: &str, path: &str) {
    let count = case
        .split_once(':')
        .and_then(|(_, count)| count.parse().ok())
        .unwrap_or(1_000_000);
    let bytes = match case {
        "far-corner" => workbooks::far_corner_workbook(None),
        "far-corner-dimension" => workbooks::far_corner_workbook(Some("A1:XFD1048576")),
        bomb if bomb.starts_with("strings-bomb") => workbooks::shared_strings_bomb(count),
        bomb if bomb.starts_with("lying-bomb") => {
            let mut bytes = workbooks::shared_strings_bomb(count);
            workbooks::declare_size(&mut bytes, "xl/sharedStrings.xml", 1_000);
            bytes
        }
        other => {
            eprintln!("unknown case {other}");
            std::process::exit(2);
        }
    };
    std::fs::write(path, &bytes).expect("write the workbook");
    println!("{case}: {} bytes zipped, written to {path}", bytes.len());
}

fn read(path: &str, way: &str) {
    let bytes = std::fs::read(path).expect("read the workbook");
    let started = Instant::now();
    let outcome = match way {
        "calamine" => match open_workbook_from_rs::<Xlsx<_>, _>(Cursor::new(&bytes)) {
            Ok(mut workbook) => match workbook.worksheet_range("Sheet1") {
                Ok(range) => {
                    let (rows, columns) = range.get_size();
                    format!("a range of {rows} × {columns} cells")
                }
                Err(error) => format!("error: {error}"),
            },
            Err(error) => format!("error: {error}"),
        },
        _ => match read_bytes_within("hostile.xlsx", &bytes, Limits::UPLOAD) {
            Ok(rows) => format!("{} mailboxes", rows.len()),
            Err(error) => format!("error: {}", error.to_string().replace('\n', " | ")),
        },
    };
    println!(
        "{way}: {outcome}\n  in {:.2} s, peak {} MiB",
        started.elapsed().as_secs_f64(),
        workbooks::peak_memory() / (1024 * 1024)
    );
}
